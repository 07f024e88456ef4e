#!/usr/bin/env python3
"""Fewer steps at equal quality? Stage I samplers and step counts on the demo cascade (issue 12, item 3; CPU).

For held-out prompts of the demo (fixed seeds, the demo's base64 UNet, its T5, CFG and thresholding settings),
each row runs stage I with one sampler / schedule / step count and reports:

  psnr_to_ode_db   median over the images of each one's PSNR against the probability-flow ODE solution (dpmpp_2m
                   with ``--reference-steps`` steps on the ``dpm`` schedule, same initial noise): how far a
                   deterministic solver is from where it converges; ``worst_psnr_to_ode_db`` the lowest (with
                   dynamic thresholding some trajectories branch, and one such image would swamp a mean);
                   stochastic samplers: not comparable, null
  oracle           the demo oracle's accuracy per attribute (colour / shape / position / size; 0..1)
  seconds          wall time of the stage for all prompts, and per image

    python bench/step_presets.py [--prompts 16] [--threads 2]   # bench/results/step_presets.json + a table
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.demo_quality import KEYS, attribute_scores, heldout_scenes, prompts_of  # noqa: E402
from cascade_core.demo.pipeline import demo_models  # noqa: E402
from cascade_core.demo.settings import NEGATIVE_PROMPT, STAGES  # noqa: E402
from cascade_core.image import pixels_to_images  # noqa: E402
from cascade_core.stage import sample_stage, schedule_sigmas, unet_guider  # noqa: E402

OUT = ROOT / "bench" / "results" / "step_presets.json"
# (sampler, schedule, steps): the demo's own default first (ddpm 25), IF's reference count (ddpm 100), then the
# deterministic solvers at falling step counts
# deterministic rows share the reference's schedule (the same start sigma: the same ODE solution to converge to)
ROWS = [("ddpm", "leading", 25), ("ddpm", "leading", 100), ("ddim", "dpm", 50), ("ddim", "dpm", 25),
        ("dpmpp_2m", "dpm", 50), ("dpmpp_2m", "dpm", 25), ("dpmpp_2m", "dpm", 15), ("dpmpp_2m", "dpm", 10)]
DETERMINISTIC = ("ddim", "dpmpp_2m", "euler")


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per-image PSNR of image batches [B, H, W, C] in 0..1, dB."""
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return [math.inf if float(m) == 0 else 10 * math.log10(1.0 / float(m)) for m in mse]


def run_stage(models: dict, prompts: list[str], sampler: str, schedule: str, steps: int, seed: int) -> torch.Tensor:
    """Stage I of the demo for ``prompts`` -> images [B, 64, 64, 3] in 0..1 (the same initial noise per seed)."""
    settings = STAGES["base64"]
    embeds, _ = models["t5"].encode(list(prompts) + [NEGATIVE_PROMPT])
    positive, negative = embeds[:-1], embeds[-1:].expand_as(embeds[:-1])
    guider = unet_guider(models["base64"], positive, negative, settings.guidance,
                         threshold_percentile=settings.threshold_percentile, threshold_max=settings.threshold_max)
    sigmas = schedule_sigmas(guider.denoiser, steps, schedule)
    x = sample_stage(guider, sigmas, batch_size=len(prompts), height=64, width=64, sampler=sampler,
                     generator=torch.Generator().manual_seed(seed))
    return pixels_to_images(x)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    models = demo_models("cpu")
    scenes = heldout_scenes(args.prompts)
    prompts = prompts_of(scenes)
    with torch.inference_mode():
        reference = run_stage(models, prompts, "dpmpp_2m", "dpm", args.reference_steps, args.seed)
        rows = []
        for sampler, schedule, steps in ROWS:
            t = time.perf_counter()
            images = run_stage(models, prompts, sampler, schedule, steps, args.seed)
            seconds = time.perf_counter() - t
            hits = attribute_scores(images, scenes)
            psnr = psnr_db(images, reference) if sampler in DETERMINISTIC else None
            rows.append(dict(sampler=sampler, schedule=schedule, steps=steps, seconds=seconds,
                             seconds_per_image=seconds / len(prompts),
                             psnr_to_ode_db=None if psnr is None else statistics.median(psnr),
                             worst_psnr_to_ode_db=None if psnr is None else min(psnr), psnr_per_image=psnr,
                             oracle={k: hits[k] / len(scenes) for k in KEYS}))
            print(json.dumps(rows[-1]), flush=True)
    result = dict(machine=f"{platform.processor() or platform.machine()}, {args.threads} CPU threads, torch "
                          f"{torch.__version__}", prompts=len(prompts), seed=args.seed,
                  reference=f"dpmpp_2m, dpm schedule, {args.reference_steps} steps", stage="demo base64 (stage I)",
                  rows=rows, total_seconds=time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\n{'sampler':10s} {'schedule':9s} {'steps':>5s} {'s/image':>8s} {'PSNR to ODE (median / worst)':>28s}  "
          f"oracle ({'/'.join(KEYS)})")
    for r in rows:
        psnr = "-" if r["psnr_to_ode_db"] is None else \
            f"{r['psnr_to_ode_db']:.1f} / {r['worst_psnr_to_ode_db']:.1f} dB"
        print(f"{r['sampler']:10s} {r['schedule']:9s} {r['steps']:5d} {r['seconds_per_image']:8.2f} {psnr:>28s}  "
              + " / ".join(f"{r['oracle'][k]:.2f}" for k in KEYS))
    print(f"wrote {args.out} in {result['total_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
