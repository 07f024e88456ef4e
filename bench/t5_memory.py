#!/usr/bin/env python3
"""GPU benchmark of the T5-v1.1-XXL text encoder: memory and time per precision mode.

Random weights at the real XXL shapes (no downloads) are written once as a bf16 single file and as a
ComfyUI-style scaled-fp8 file. Each mode then runs in its own subprocess (clean peak numbers): load
time, parameter bytes, peak GPU memory while loading and while encoding a CFG pair, host peak RSS
growth during the load, encode time, offload time, and the relative error of the embeddings against
fp32 compute of the same (bf16-stored) weights. Random weights do not reproduce T5's real activation
outliers, so the fp16 row says nothing about fp16 overflow on the real checkpoint.

    python bench/t5_memory.py --out bench/results/t5_memory.json [--layers 24] [--workdir /tmp/t5b]
    python bench/t5_memory.py --smoke        # tiny width on the CPU, to check the script

Prints a table; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _text_models import XXL_CONFIG, train_spiece  # noqa: E402

from cascade_core.text import build_t5_encoder, load_text_encoder  # noqa: E402
from cascade_core.weights import read_tensors  # noqa: E402

PROMPTS = ["a photograph of a golden dragon under the sea, highly detailed, soft light", ""]
E4M3 = torch.float8_e4m3fn
LINEAR = (".q.weight", ".k.weight", ".v.weight", ".o.weight", ".wi_0.weight", ".wi_1.weight", ".wo.weight")
MODES = {  # name: (file, dtype, weight_dtype)
    "fp32": ("bf16", torch.float32, None),
    "bf16": ("bf16", torch.bfloat16, None),
    "fp16+wo32": ("bf16", torch.float16, None),
    "fp8 on load": ("bf16", torch.bfloat16, E4M3),
    "fp8 file": ("fp8", torch.bfloat16, None),
}


def _std(key: str, cfg: dict) -> float:
    d, inner = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"]
    table = {".q.weight": (d * cfg["d_kv"]) ** -0.5, ".o.weight": inner ** -0.5, ".wo.weight": cfg["d_ff"] ** -0.5}
    return next((v for k, v in table.items() if key.endswith(k)), 1.0 if key == "shared.weight" else d ** -0.5)


def write_files(cfg: dict, workdir: Path, device: str) -> None:
    """``t5_bf16.safetensors`` and ``t5_fp8.safetensors`` (scaled fp8 linears, fp16 rest) in ``workdir``."""
    from safetensors.torch import save_file

    shapes = {k: v.shape for k, v in build_t5_encoder(cfg).state_dict().items() if k != "encoder.embed_tokens.weight"}
    bf16, fp8 = {}, {"scaled_fp8": torch.empty(0, dtype=E4M3)}
    gen = torch.Generator(device).manual_seed(0)
    for key, shape in shapes.items():
        if "layer_norm" in key:
            w = 1 + 0.1 * torch.randn(shape, generator=gen, device=device)
        else:
            w = torch.randn(shape, generator=gen, device=device) * _std(key, cfg)
        bf16[key] = w.to(torch.bfloat16).cpu()
        if key.endswith(LINEAR):
            scale = w.abs().max() / torch.finfo(E4M3).max
            fp8[key], fp8[key[:-6] + "scale_weight"] = (w / scale).to(E4M3).cpu(), scale.float().reshape(()).cpu()
        else:
            fp8[key] = w.to(torch.float16).cpu()
    save_file(bf16, str(workdir / "t5_bf16.safetensors"))
    save_file(fp8, str(workdir / "t5_fp8.safetensors"))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak(device: str) -> int:
    return torch.cuda.max_memory_allocated() if device == "cuda" else 0


def run_mode(name: str, workdir: Path, device: str) -> dict:
    """Load and encode in one mode (call in a fresh process); saves the embeddings for comparison."""
    from safetensors.torch import save_file

    import transformers  # noqa: F401  (imported before timing: the load time excludes it)

    file, dtype, weight_dtype = MODES[name]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    enc = load_text_encoder(workdir / f"t5_{file}.safetensors", tokenizer=workdir / "spm", device=device,
                            dtype=dtype, weight_dtype=weight_dtype, cache=None)
    _sync(device)
    out = {"mode": name, "load_s": time.perf_counter() - t0, "param_GB": enc.parameter_bytes / 1e9,
           "load_peak_GB": _peak(device) / 1e9,
           "host_rss_growth_GB": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0) / 1e9}
    embeds, _ = enc.encode(PROMPTS, use_cache=False)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        embeds, _ = enc.encode(PROMPTS, use_cache=False)
        _sync(device)
        times.append(time.perf_counter() - t0)
    out.update(encode_ms=1e3 * sorted(times)[2], encode_peak_GB=_peak(device) / 1e9)
    t0 = time.perf_counter()
    enc.to("cpu")
    _sync(device)
    out["offload_s"] = time.perf_counter() - t0
    out["gpu_after_offload_GB"] = torch.cuda.memory_allocated() / 1e9 if device == "cuda" else 0.0
    save_file({"embeds": embeds.float().cpu().contiguous()}, str(workdir / f"embeds_{name.replace(' ', '_')}.st"))
    return out


def _errors(rows: list[dict], workdir: Path) -> None:
    ref = read_tensors(workdir / "embeds_fp32.st")["embeds"]
    for row in rows:
        got = read_tensors(workdir / f"embeds_{row['mode'].replace(' ', '_')}.st")["embeds"]
        row["rel_err_vs_fp32"] = ((got - ref).norm() / ref.norm()).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "t5_memory.json")
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/t5_bench"))
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    device = "cpu" if args.smoke else "cuda"
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.workdir, device)), flush=True)
        return
    cfg = {**XXL_CONFIG, "num_layers": args.layers}
    if args.smoke:
        cfg.update(d_model=64, d_kv=16, num_heads=4, d_ff=96, vocab_size=512)
    args.workdir.mkdir(parents=True, exist_ok=True)
    train_spiece(args.workdir / "spm")
    t0 = time.perf_counter()
    write_files(cfg, args.workdir, device)
    print(f"wrote weights in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for name in MODES:
        cmd = [sys.executable, __file__, "--mode", name, "--workdir", str(args.workdir)] + ["--smoke"] * args.smoke
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"{name}: failed\n{res.stderr[-3000:]}", flush=True)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    if any(r["mode"] == "fp32" for r in rows):
        _errors(rows, args.workdir)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    result = {"device": gpu, "config": cfg, "torch": torch.__version__, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    cols = ["mode", "param_GB", "load_s", "load_peak_GB", "host_rss_growth_GB", "encode_ms", "encode_peak_GB",
            "offload_s", "gpu_after_offload_GB", "rel_err_vs_fp32"]
    print(f"T5 encoder, {args.layers} layers, {gpu}")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r.get(c, float('nan')):.4g}" if c != "mode" else r[c] for c in cols))


if __name__ == "__main__":
    main()
