#!/usr/bin/env python3
"""CPU speed of the demo cascade, for regression tracking every session (issue 12): the built-in demo models at
their default settings (T5 -> 64 -> 256 -> 1024, 25 / 15 / 8 DDPM steps, one prompt with CFG), stage by stage,
and the same stage I with its text work done per step (the plain path) to show what reusing it gains.

    python bench/cascade_cpu.py [--threads 2] [--reps 2]   # bench/results/cascade_cpu.json + a table

Compare a run with the committed JSON on the same kind of machine (its "machine" field says which); the seconds
are medians over ``--reps`` runs after one warm-up cascade.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cascade_core.demo.pipeline import demo_cascade  # noqa: E402
from cascade_core.demo.settings import DEFAULT_PROMPT, STAGES  # noqa: E402
from cascade_core.unet.text_context import text_work_per_step  # noqa: E402

OUT = ROOT / "bench" / "results" / "cascade_cpu.json"


def median_seconds(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cascade = demo_cascade("cpu")
    prompts = [DEFAULT_PROMPT]
    with torch.inference_mode():
        out = cascade(prompts, seed=0)  # warm-up, and the inputs of the SR stages
        rows = {
            "t5": median_seconds(lambda: cascade.encode(prompts), args.reps),
            "64": median_seconds(lambda: cascade(prompts, seed=0, up_to=64), args.reps),
            "256": median_seconds(lambda: cascade.upscale(out[64], prompts, "sr"), args.reps),
            "1024": median_seconds(lambda: cascade.upscale(out[256], prompts, "upscaler"), args.reps),
            "total": median_seconds(lambda: cascade(prompts, seed=0), args.reps),
        }
        with text_work_per_step():
            plain64 = median_seconds(lambda: cascade(prompts, seed=0, up_to=64), args.reps)
    steps = {"64": STAGES["base64"].steps, "256": STAGES["sr256"].steps, "1024": STAGES["sr1024"].steps}
    result = dict(machine=f"{platform.processor() or platform.machine()}, {args.threads} CPU threads, "
                          f"{platform.system()}, torch {torch.__version__}",
                  steps=steps, reps=args.reps, seconds=rows,
                  seconds_per_step={k: rows[k] / steps[k] for k in steps},
                  variants={"64_text_work_per_step": plain64, "64_text_reuse_gain": plain64 / rows["64"] - 1},
                  note="the 64 row includes its T5 encode (Cascade.__call__ up_to=64); 256 / 1024 include theirs",
                  total_seconds=time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{'stage':6s} {'steps':>5s} {'seconds':>8s}")
    for name, seconds in rows.items():
        print(f"{name:6s} {steps.get(name, '-')!s:>5s} {seconds:8.2f}")
    print(f"stage 64 with text work per step: {plain64:.2f} s ({100 * result['variants']['64_text_reuse_gain']:+.1f} "
          "% vs reuse)")
    print(f"wrote {args.out} in {result['total_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
