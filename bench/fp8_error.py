#!/usr/bin/env python3
"""Output error of fp8 weight storage for the UNets (``load_unet(weight_dtype=torch.float8_e4m3fn)``).

The demo cascade's trained UNets (base64, sr256) sample on fixed prompts and seeds: fp32 weights and compute (the
reference), bf16 weights and compute, and fp8 (e4m3fn) weights with bf16 compute (the same T5 embeddings for
all). On the CPU, where bf16 convolutions are very slow, fp8 weights compute in fp32 and the bf16 row is left out
(``--bf16`` adds it): the fp8 row is then the error of the weight rounding alone. Reported per stage: PSNR against
the fp32 images (dB; higher is closer) and the mean
absolute pixel difference (0..1 scale), and the relative error of one UNet forward. SR stages take the fp32
reference's 64 px images as input, so each stage's own error is measured, not the accumulated one.

    python bench/fp8_error.py [--prompts 4] [--seeds 2] [--out bench/results/fp8_error.json]

Runs on the CPU in a few minutes (on a GPU: --device cuda). Prints a table; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cascade_core.demo import DEMO_DIR  # noqa: E402
from cascade_core.demo.settings import NEGATIVE_PROMPT, STAGES  # noqa: E402
from cascade_core.stage import sample_stage, schedule_sigmas, unet_guider  # noqa: E402
from cascade_core.text import load_text_encoder  # noqa: E402
from cascade_core.train.shapes import HELD_OUT  # noqa: E402
from cascade_core.unet.loading import load_unet  # noqa: E402

FP8 = torch.float8_e4m3fn
SIZES = {"base64": 64, "sr256": 256}


def _prompts(n: int) -> list[str]:
    return [f"a large {c} {s} on the {p}, on a white background" for c, s, p in sorted(HELD_OUT)[:n]]


def _sample(unet, name: str, positive, negative, low, seed: int, device) -> torch.Tensor:
    s = STAGES[name]
    guider = unet_guider(unet, positive.to(unet.dtype), negative.to(unet.dtype), s.guidance,
                         threshold_percentile=s.threshold_percentile, threshold_max=s.threshold_max)
    sigmas = schedule_sigmas(guider.denoiser, s.steps, s.schedule)
    extra = {} if low is None else {"low_res": low.to(unet.dtype), "noise_level": s.noise_level}
    size = SIZES[name]
    x = sample_stage(guider, sigmas, batch_size=positive.shape[0], height=size, width=size, sampler=s.sampler,
                     generator=torch.Generator().manual_seed(seed), device=device, **extra)
    return ((x.float().clamp(-1, 1) + 1) / 2).cpu()


def _forward_error(models: dict, positive, device) -> dict:
    torch.manual_seed(0)
    c = models["fp32"].config
    size = 32
    x = torch.randn(2, c.in_channels, size, size, device=device)
    t = torch.tensor([100.0, 800.0], device=device)
    noise = torch.tensor([100, 100], device=device) if c.is_super_resolution else None
    text = positive[:1].expand(2, -1, -1)
    out = {m: u(x.to(u.dtype), t, text.to(u.dtype), noise).float() for m, u in models.items()}
    return {m: float((out[m] - out["fp32"]).norm() / out["fp32"].norm()) for m in models if m != "fp32"}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="also bf16 (default only on CUDA)")
    ap.add_argument("--stages", default=",".join(SIZES), help="comma-separated, of " + ", ".join(SIZES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fp8_error.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    half = device.type == "cuda" or args.bf16
    compute = torch.bfloat16 if half else torch.float32
    modes = {"fp32": (torch.float32, None), **({"bf16": (torch.bfloat16, None)} if half else {}), "fp8": (compute, FP8)}
    start = time.perf_counter()
    t5 = load_text_encoder(DEMO_DIR / "t5", device=device, dtype=torch.float32)
    prompts = _prompts(args.prompts)
    embeds, _ = t5.encode(prompts + [NEGATIVE_PROMPT])
    positive, negative = embeds[:-1], embeds[-1:].expand(len(prompts), -1, -1)
    rows, low = [], None
    for name in args.stages.split(","):
        models = {m: load_unet(DEMO_DIR / name, device=device, dtype=d, weight_dtype=w) for m, (d, w) in modes.items()}
        nbytes = {m: sum(p.numel() * p.element_size() for p in u.parameters()) for m, u in models.items()}
        images = {m: [] for m in modes}
        refs_64 = []
        for seed in range(args.seeds):
            for m in modes:
                images[m].append(_sample(models[m], name, positive, negative, low[seed] if low else None, seed,
                                         device))
            refs_64.append(images["fp32"][-1] * 2 - 1)
        row = {"stage": name, "size": SIZES[name], "images": args.prompts * args.seeds,
               "weight_bytes": nbytes, "forward_rel_error": _forward_error(models, positive, device),
               "compute": {m: str(d).removeprefix("torch.") for m, (d, _) in modes.items()}}
        for m in (m for m in modes if m != "fp32"):
            ref, got = torch.cat(images["fp32"]), torch.cat(images[m])
            row[f"psnr_{m}_db"] = round(_psnr(got, ref), 2)
            row[f"mean_abs_{m}"] = round(float((got - ref).abs().mean()), 5)
        rows.append(row)
        low = refs_64  # the next stage upsamples the fp32 reference's images
    result = {"what": "fp8 (e4m3fn) UNet weights vs bf16 vs fp32 on the demo cascade's trained UNets, same seeds",
              "rows": rows, "prompts": prompts, "stages": args.stages, "seeds": args.seeds, "device": str(device),
              "machine": f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}",
              "seconds": round(time.perf_counter() - start, 1)}
    others = [m for m in modes if m != "fp32"]
    print(f"{'stage':8} {'weight MB ' + '/'.join(modes):>24} " + " ".join(
        f"{'fwd err ' + m:>12} {'PSNR ' + m:>10} {'|d| ' + m:>9}" for m in others))
    for r in rows:
        b = "/".join(f"{r['weight_bytes'][m] / 1e6:.1f}" for m in modes)
        print(f"{r['stage']:8} {b:>24} " + " ".join(
            f"{r['forward_rel_error'][m]:12.4f} {r[f'psnr_{m}_db']:10.2f} {r[f'mean_abs_{m}']:9.4f}" for m in others))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
