#!/usr/bin/env python3
"""GPU benchmark of model placement: the full cascade (T5-XXL -> IF-I-XL 64 -> IF-II-L 256 -> x4 1024) per policy
(keep, model, block, auto) under per-process memory fractions of 8 and 16 GiB and the whole card, against
diffusers' enable_model_cpu_offload / enable_sequential_cpu_offload (and no offload, on the whole card) on the
same weights, plus T5-XXL offload and reload times from pinned memory (goal <= 1 s in bf16), and last ``auto+fp8``
rows: ``auto`` with the IF-I / IF-II weights stored in fp8 (``float8_e4m3fn``, bf16 compute; T5 stays bf16).
Non-square rows (``--aspects``, default 112x64 and 64x96, width x height of the 64 px stage; each later stage 4x):
``auto`` on the whole card (the first also at the smallest budget), with ``peak_vs_square`` / ``area_vs_square``
against the square ``auto`` row of the same budget (no surprise peak: the first should not exceed the second).

Random weights at the real sizes (bench/memory_models.py), bf16 (VAE fp32), one prompt with CFG, steps kept
small (10/10/10) so the whole run takes a few minutes; our x4 stage decodes in 64-latent VAE tiles. Each row:
``policy``, ``budget_gib`` (None = the whole card), ``ok``, ``peak_gib`` (torch.cuda.max_memory_allocated),
``seconds`` (wall time of the full cascade, synchronised), ``modes`` (what each model ran as) or ``error``.

    python bench/memory.py                          # writes bench/results/memory_<card>.json, prints a table
    python bench/memory.py --dry-run --out /tmp/m.json   # tiny models on the CPU, same code, seconds

In ``--dry-run`` the budgets are simulated: ``device_budgets={"cpu": budget scaled by tiny/real model bytes}``,
no memory fraction, no peak; diffusers' offload rows record the error they raise without CUDA / accelerate.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory_models import build_models, diffusers_pipelines, real_sizes_gib  # noqa: E402
from cascade_core.cascade import Cascade  # noqa: E402
from cascade_core.offload import GIB, ModelManager  # noqa: E402
from cascade_core.unet.ops import store_weights_in  # noqa: E402

POLICIES = ("keep", "model", "block", "auto")
PROMPT = "a photograph of a red fox in the snow, highly detailed"


class Bench:
    def __init__(self, dry_run: bool):
        self.dry = dry_run
        self.device = "cpu" if dry_run else "cuda"
        self.steps = 2 if dry_run else 10
        self.size = 8 if dry_run else 64
        self.scale = 1.0
        self.total = torch.cuda.get_device_properties(0).total_memory if not dry_run else 0

    # -- budgets, timing, peak ---------------------------------------------------------------------
    def limit(self, budget_gib: float | None) -> None:
        """Per-process memory fraction for ``budget_gib`` (None: the whole card); frees cached blocks first."""
        if self.dry:
            return
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        fraction = 1.0 if budget_gib is None else min(1.0, budget_gib * GIB / self.total)
        torch.cuda.set_per_process_memory_fraction(fraction)
        torch.cuda.reset_peak_memory_stats()

    def sync(self) -> None:
        if not self.dry:
            torch.cuda.synchronize()

    def peak(self) -> float | None:
        return None if self.dry else torch.cuda.max_memory_allocated() / GIB

    def manager_args(self, budget_gib: float | None) -> dict:
        if not self.dry:
            return {"budget_gib": budget_gib}
        return {"device_budgets": None if budget_gib is None else {"cpu": int(budget_gib * GIB * self.scale)}}

    def timed(self, fn) -> tuple[bool, float, str | None]:
        self.sync()
        t0 = time.perf_counter()
        try:
            fn()
            self.sync()
            return True, time.perf_counter() - t0, None
        except Exception as exc:  # an OOM or a budget error is a result, not a crash
            return False, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    # -- ours ----------------------------------------------------------------------------------------
    def cascade_row(self, models, policy: str, budget_gib: float | None, steps: int | None = None,
                    hw: tuple[int, int] | None = None) -> dict:
        self.limit(budget_gib)
        height, width = hw or (self.size, self.size)
        cascade = Cascade(models.t5, models.base, models.sr, models.upscaler, policy=policy, device=self.device,
                          upscaler_options={"vae_tile": 64}, **self.manager_args(budget_gib))
        try:
            ok, seconds, error = self.timed(lambda: cascade(PROMPT, seed=0, steps=steps or self.steps, height=height,
                                                            width=width))
            report = cascade.report()
            row = dict(impl="ours", policy=policy, budget_gib=budget_gib, ok=ok, peak_gib=self.peak(),
                       seconds=seconds, modes={m.name: m.mode for m in report.models}, evictions=report.evictions,
                       height=height, width=width)
            if error:
                row["error"] = error
            return row
        finally:
            cascade.close()
            self.limit(None)

    def t5_rows(self, models) -> dict:
        """T5 to the GPU from pinned memory and back: first load (pins), reloads, offload frozen / with writeback."""
        self.limit(None)
        out = {"t5_gib": models.sizes()["t5"] / GIB}
        for writeback in (False, True):
            manager = ModelManager("model", **self.manager_args(None))
            manager.add("t5", models.t5.model, device=self.device, writeback=writeback)
            times = []
            for _ in range(4):
                ok, load_s, error = self.timed(lambda m=manager: m.use("t5"))
                ok2, off_s, error2 = self.timed(lambda m=manager: m.offload("t5"))
                if error or error2:
                    out["error"] = error or error2
                    break
                times.append((load_s, off_s))
            manager.remove("t5")
            if times:
                key = "writeback" if writeback else "frozen"
                out[f"first_load_s_{key}"] = times[0][0]
                out[f"reload_s_{key}"] = sorted(t[0] for t in times[1:])[len(times[1:]) // 2] if times[1:] else None
                out[f"offload_s_{key}"] = sorted(t[1] for t in times)[len(times) // 2]
        out["goal_reload_s"] = 1.0
        return out

    # -- diffusers -----------------------------------------------------------------------------------
    def diffusers_row(self, pipes, mode: str, budget_gib: float | None) -> dict:
        first, second, third = pipes
        self.limit(budget_gib)
        g = torch.Generator("cpu").manual_seed(0)

        def run():
            for pipe in pipes:
                pipe.to(self.device) if mode == "no_offload" else getattr(pipe, f"enable_{mode}")()
            pos, neg = first.encode_prompt(PROMPT, clean_caption=False)
            img = first(prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=self.steps,
                        output_type="pt", generator=g, height=self.size, width=self.size).images
            img = second(image=img, prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=self.steps,
                         noise_level=250, output_type="pt", generator=g).images
            third(prompt=PROMPT, image=img.clamp(-1, 1), num_inference_steps=self.steps, noise_level=100,
                  guidance_scale=9.0, output_type="pt", generator=g)

        ok, seconds, error = self.timed(run)
        row = dict(impl="diffusers", policy=f"diffusers_{mode}", budget_gib=budget_gib, ok=ok, peak_gib=self.peak(),
                   seconds=seconds)
        if error:
            row["error"] = error
        for pipe in pipes:
            try:
                pipe.to("cpu") if mode == "no_offload" else pipe.remove_all_hooks()
            except Exception:  # noqa: S110 - a pipeline left half-hooked only matters to the rows after it
                pass
        self.limit(None)
        return row


def pin_models(models) -> float:
    """Page-lock every host weight once (what the manager does on first use), outside the timed rows."""
    t0 = time.perf_counter()
    up = models.upscaler
    for module in (models.t5.model, models.base, models.sr, up.unet, up.vae, up.text.model):
        for t in [*module.parameters(), *module.buffers()]:
            if t.device.type == "cpu" and not t.is_pinned():
                t.data = t.data.pin_memory()
    return time.perf_counter() - t0


def aspect_sizes(spec: str, size: int, multiple: int) -> list[tuple[int, int]]:
    """``"112x64,64x96"`` (width x height at a 64 px base) -> [(height, width)] scaled to ``size`` (the dry run's 8 px
    base), rounded to ``multiple``; ``""`` or ``"none"`` -> []."""
    out = []
    for item in (s for s in spec.split(",") if s.strip() and s.strip() != "none"):
        w, h = (int(v) for v in item.lower().split("x"))
        out.append(tuple(max(multiple, round(v * size / 64 / multiple) * multiple) for v in (h, w)))
    return out


def aspect_rows(bench: Bench, models, sizes: list[tuple[int, int]], budgets: list, square: list[dict]) -> list[dict]:
    """``auto`` at each non-square size on the whole card, and the first size also at the smallest budget (a row
    costs a full cascade), each against the square ``auto`` row of its budget."""
    smallest = min((b for b in budgets if b is not None), default=None)
    runs = [(None, hw) for hw in sizes] + ([(smallest, sizes[0])] if sizes and smallest is not None else [])
    rows = []
    for budget, hw in runs:
        ref = next((r for r in square if r["policy"] == "auto" and r["budget_gib"] == budget), None)
        row = bench.cascade_row(models, "auto", budget, hw=hw)
        row["area_vs_square"] = hw[0] * hw[1] / bench.size**2
        if ref is not None and row["peak_gib"] is not None and ref["peak_gib"]:
            row["peak_vs_square"] = row["peak_gib"] / ref["peak_gib"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def card_name() -> str:
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_")


def print_table(result: dict) -> None:
    print(f"\n{'policy':34s} {'budget':>7s} {'ok':>3s} {'peak GiB':>9s} {'seconds':>8s}  modes / error")
    for r in result["rows"]:
        budget = "card" if r["budget_gib"] is None else f"{r['budget_gib']} GiB"
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        extra = r.get("error") or ", ".join(f"{k}={v}" for k, v in r.get("modes", {}).items())
        if r.get("height") is not None and r["height"] != r["width"]:
            vs = "-" if r.get("peak_vs_square") is None else f"x{r['peak_vs_square']:.2f}"
            extra = f"{r['width']}x{r['height']} base, peak {vs} for area x{r['area_vs_square']:.2f}; {extra}"
        print(f"{r['policy']:34s} {budget:>7s} {'yes' if r['ok'] else 'no':>3s} {peak:>9s} {r['seconds']:8.2f}  "
              f"{extra}")
    print("T5 offload/reload:", json.dumps(result["t5_offload"]))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/memory_<card>.json)")
    ap.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, same code")
    ap.add_argument("--no-diffusers", action="store_true")
    ap.add_argument("--no-fp8", action="store_true", help="skip the auto+fp8 rows (IF-I/IF-II weights in fp8)")
    ap.add_argument("--budgets", default="8,16,card", help="GiB per run, comma-separated; card = no fraction")
    ap.add_argument("--steps", type=int, default=None, help="steps of every stage (default 10; dry run 2)")
    ap.add_argument("--aspects", default="112x64,64x96",
                    help="non-square 64 px stage sizes, width x height, comma-separated ('none' skips them)")
    args = ap.parse_args(argv)
    budgets = [None if b == "card" else float(b) for b in args.budgets.split(",")]
    torch.set_num_threads(1 if args.dry_run else torch.get_num_threads())
    bench = Bench(args.dry_run)
    bench.steps = args.steps or bench.steps
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("bench/memory.py needs a CUDA GPU (use --dry-run to check the script on the CPU)")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode(False):
        models = build_models(args.dry_run, Path(tmp), build_device=bench.device, dtype=dtype)
        real = real_sizes_gib()
        sizes = models.sizes()
        bench.scale = sum(sizes.values()) / (sum(real.values()) * GIB)
        build_s = time.perf_counter() - t0
        pin_s = pin_models(models) if not args.dry_run else 0.0
        print(f"models built in {build_s:.1f} s: " + ", ".join(f"{k} {v / GIB:.3f} GiB" for k, v in sizes.items()),
              flush=True)
        bench.cascade_row(models, "keep", None, steps=1)  # warm-up: kernels, allocator, pinned pages
        rows = []
        for budget in budgets:
            for policy in POLICIES:
                rows.append(bench.cascade_row(models, policy, budget))
                print(json.dumps(rows[-1]), flush=True)
        rows += aspect_rows(bench, models, aspect_sizes(args.aspects, bench.size, models.base.config.size_multiple),
                            budgets, list(rows))
        t5 = bench.t5_rows(models)
        if not args.no_diffusers:
            try:
                pipes = diffusers_pipelines(models, args.dry_run)
            except Exception:
                pipes = None
                rows.append(dict(impl="diffusers", policy="diffusers", budget_gib=None, ok=False, peak_gib=None,
                                 seconds=0.0, error=traceback.format_exc(limit=1)[-300:]))
            runs = [("no_offload", None)] + [(mode, b) for mode in ("model_cpu_offload", "sequential_cpu_offload")
                                             for b in budgets if b is not None]
            for mode, budget in runs if pipes is not None else ():
                rows.append(bench.diffusers_row(pipes, mode, budget))
                print(json.dumps(rows[-1]), flush=True)
        if not args.no_fp8:  # last: converts the UNets in place (diffusers' pipelines share their tensors)
            for unet in (models.base, models.sr):
                store_weights_in(unet, torch.float8_e4m3fn, dtype)
            pin_s += pin_models(models) if not args.dry_run else 0.0
            for budget in budgets:
                row = bench.cascade_row(models, "auto", budget)
                rows.append(dict(row, policy="auto+fp8", weight_dtype="float8_e4m3fn"))
                print(json.dumps(rows[-1]), flush=True)
    import diffusers

    note = (f"random weights at the real sizes; steps kept small ({bench.steps} per stage) so the run fits in a "
            "few minutes; host weights pinned once before the runs (pin_seconds); one prompt with CFG; our x4 stage "
            "decodes in 64-latent VAE tiles; budget_gib None = the whole card (no memory fraction)")
    result = dict(device="cpu (dry run, tiny models)" if args.dry_run else torch.cuda.get_device_name(),
                  torch=torch.__version__, diffusers=diffusers.__version__, dry_run=args.dry_run,
                  dtype=str(dtype).removeprefix("torch."), steps={str(s): bench.steps for s in (64, 256, 1024)},
                  note=note, model_gib_real=real, model_gib_built={k: v / GIB for k, v in sizes.items()},
                  build_seconds=build_s, pin_seconds=pin_s, total_seconds=time.perf_counter() - t0, rows=rows,
                  t5_offload=t5)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"memory_{card_name()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {out} in {result['total_seconds']:.1f} s")
    return result


if __name__ == "__main__":
    main()
