#!/usr/bin/env python3
"""End-to-end speed of the whole cascade, ours vs diffusers, on the same card in one run (issue 12).

Random weights at the real sizes (bench/memory_models.py: T5-v1.1-XXL, IF-I-XL, IF-II-L, the SD x4 upscaler with
its CLIP text tower and VAE; bf16, VAE fp32), every model resident on the GPU ("models loaded"), one prompt with
CFG, IF's published settings at equal steps and samplers on both sides: stage I 100 DDPM steps, stage II 50 DDPM
steps, stage III 75 DDIM steps + VAE decode. diffusers runs its IFPipeline -> IFSuperResolutionPipeline ->
StableDiffusionUpscalePipeline on the very same weight tensors (its own GPU copy), in bf16 like ours.

Per stage (t5, 64, 256, 1024) and for the total: ``ours_s``, ``diffusers_s``, ``ratio`` (ours / diffusers),
``flops`` (torch's FlopCounterMode over one call, times the steps), achieved ``ours_tflops`` / ``diffusers_tflops``,
``ours_peak_gib`` / ``diffusers_peak_gib`` (max allocated during the stage, resident weights included); top level
``ratio_total`` (our ``Cascade.__call__`` end to end vs the sum of diffusers' four calls) and
``matmul_ceiling_tflops`` (a bf16 8192^3 matmul measured in the same run). ``variants``: ours with one change
switched off or on (text work per step; DPM-Solver++ at the 50/25/25 preset; CUDA graphs), each with its
seconds.

    python bench/cascade_gpu.py                 # CUDA: bench/results/gpu_<card>.json (+ .md table), ~4-6 min
    python bench/cascade_gpu.py --dry-run --out /tmp/g.json   # tiny models on the CPU, same code, seconds

The device machine lacks diffusers: carry its wheel as bench/gpu_memory_run.sh's header says.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory_models import build_models, diffusers_pipelines  # noqa: E402
from cascade_core.cascade import Cascade, StageSettings  # noqa: E402
from cascade_core.cascade.settings import IF_STAGES  # noqa: E402
from cascade_core.stage import sample_stage, schedule_sigmas, unet_guider  # noqa: E402
from cascade_core.unet.checks import finite_checks  # noqa: E402
from cascade_core.unet.text_context import text_work_per_step  # noqa: E402
from cascade_core.upscaler.stage import sample_x4_stage  # noqa: E402

GIB = 2**30
PROMPT = "a photograph of a red fox in the snow, highly detailed"
STAGE_NAMES = ("t5", "64", "256", "1024")
FAST = {"base": (50, "dpmpp_2m", "dpm"), "sr": (25, "dpmpp_2m", "dpm"), "upscaler": (25, "ddim", "leading")}


class Clock:
    """Synchronised wall time, peak memory and FLOPs on one device."""

    def __init__(self, device: str):
        self.device = device
        self.cuda = device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, fn, reps: int = 1) -> tuple[float, float | None, object]:
        """(median seconds over ``reps``, peak GiB during the runs or None, fn's last result)."""
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats()
        times, out = [], None
        for _ in range(reps):
            self.sync()
            t0 = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() / GIB if self.cuda else None
        return statistics.median(times), peak, out

    @staticmethod
    def flops(fn) -> int:
        with FlopCounterMode(display=False) as counter, finite_checks(False):
            fn()
        return int(counter.get_total_flops())

    def matmul_ceiling(self) -> float | None:
        """bf16 TFLOP/s of an 8192^3 matmul (the card's practical ceiling); None on the CPU."""
        if not self.cuda:
            return None
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn_like(a)
        for _ in range(3):
            a @ b
        seconds, _, _ = self.timed(lambda: [a @ b for _ in range(20)])
        return 2 * 8192**3 * 20 / seconds / 1e12


class Ours:
    """Our stages as the Cascade runs them (the public stage functions), models resident on ``device``."""

    def __init__(self, models, device: str, steps: dict[str, int], size: int):
        self.m, self.device, self.steps, self.size = models, device, steps, size
        for module in (models.t5.model, models.base, models.sr, models.upscaler.unet, models.upscaler.vae,
                       models.upscaler.text.model):
            module.to(device)

    def encode(self):
        embeds, _ = self.m.t5.encode([PROMPT, ""])
        return embeds[:1].to(self.device), embeds[1:].to(self.device)

    def stage(self, role: str, text, low=None, *, steps=None, sampler=None, schedule=None):
        s = IF_STAGES[role]
        steps, sampler, schedule = steps or self.steps[role], sampler or s.sampler, schedule or s.schedule
        if role == "upscaler":
            return sample_x4_stage(self.m.upscaler, low.clamp(-1, 1), PROMPT, "", steps=steps, guidance=s.guidance,
                                   noise_level=s.noise_level, sampler=sampler,
                                   generator=torch.Generator().manual_seed(3))
        unet = self.m.base if role == "base" else self.m.sr
        guider = unet_guider(unet, text[0], text[1], s.guidance, threshold_percentile=s.threshold_percentile,
                             threshold_max=s.threshold_max)
        sigmas = schedule_sigmas(guider.denoiser, steps, schedule)
        size = self.size if role == "base" else 4 * low.shape[-1]
        extra = {} if low is None else {"low_res": low, "noise_level": s.noise_level}
        return sample_stage(guider, sigmas, height=size, width=size, sampler=sampler, device=self.device,
                            generator=torch.Generator().manual_seed(1 if role == "base" else 2), **extra)

    def cascade(self, **options) -> Cascade:
        stages = {r: StageSettings(**{**IF_STAGES[r].__dict__, "steps": self.steps[r]}) for r in IF_STAGES}
        m = self.m
        return Cascade(m.t5, m.base, m.sr, m.upscaler, policy="keep", device=self.device, stages=stages,
                       dtype=next(m.base.parameters()).dtype, **options)

    def stage_flops(self, clock: Clock, role: str, text, low=None) -> tuple[int, int]:
        """(FLOPs per step: one guided call, CFG batch of 2; FLOPs once per stage: the x4 CLIP and VAE decode),
        from counts of a 1-step and a 2-step run."""
        one, two = (clock.flops(lambda n=n: self.stage(role, text, low, steps=n)) for n in (1, 2))
        return two - one, 2 * one - two


class Theirs:
    """diffusers' three pipelines on the same weights, moved to ``device`` (their own copy)."""

    def __init__(self, models, dry_run: bool, device: str, steps: dict[str, int], size: int):
        self.first, self.second, self.third = diffusers_pipelines(models, dry_run)
        for pipe in (self.first, self.second, self.third):
            pipe.to(device)
        self.steps, self.size = steps, size

    def encode(self):
        return self.first.encode_prompt(PROMPT, clean_caption=False)

    def stage(self, role: str, text, low=None):
        g = torch.Generator("cpu").manual_seed(0)
        kw = dict(num_inference_steps=self.steps[role], output_type="pt", generator=g)
        if role == "base":
            return self.first(prompt_embeds=text[0], negative_prompt_embeds=text[1], height=self.size,
                              width=self.size, **kw).images
        if role == "sr":
            return self.second(image=low, prompt_embeds=text[0], negative_prompt_embeds=text[1], noise_level=250,
                               **kw).images
        return self.third(prompt=PROMPT, image=low.clamp(-1, 1), noise_level=100, guidance_scale=9.0, **kw).images


def measure(clock: Clock, side, reps: int) -> dict[str, dict]:
    """Seconds and peak per stage, each stage fed the previous one's output of the same side."""
    rows, text, low = {}, None, None
    for name, role in zip(STAGE_NAMES, (None, "base", "sr", "upscaler")):
        fn = side.encode if role is None else functools.partial(side.stage, role, text, low)  # this stage's inputs
        seconds, peak, out = clock.timed(fn, reps)
        rows[name] = {"s": seconds, "peak_gib": peak}
        if role is None:
            text = out
        else:
            low = out.float()
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/gpu_<card>.json)")
    ap.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, same code")
    ap.add_argument("--steps", default=None, help="steps of stages I,II,III (default 100,50,75; dry run 2,2,2)")
    ap.add_argument("--reps", type=int, default=None, help="timed runs per stage, median (default 2; dry run 1)")
    ap.add_argument("--no-diffusers", action="store_true")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("bench/cascade_gpu.py needs a CUDA GPU (use --dry-run to check the script on the CPU)")
    device, dtype = ("cpu", torch.float32) if args.dry_run else ("cuda", torch.bfloat16)
    counts = [int(s) for s in (args.steps or ("2,2,2" if args.dry_run else "100,50,75")).split(",")]
    steps = dict(zip(("base", "sr", "upscaler"), counts))
    reps = args.reps or (1 if args.dry_run else 2)
    size = 8 if args.dry_run else 64
    torch.set_num_threads(1 if args.dry_run else torch.get_num_threads())
    clock, t0 = Clock(device), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        models = build_models(args.dry_run, Path(tmp), build_device=device, dtype=dtype)
        ours = Ours(models, device, steps, size)
        warm = Ours(models, device, {r: 1 for r in steps}, size)
        measure(clock, warm, 1)  # warm-up: kernels, allocator, cuDNN choices
        ceiling = clock.matmul_ceiling()
        text = ours.encode()
        low64 = ours.stage("base", text, steps=1).float()
        low256 = ours.stage("sr", text, low64, steps=1).float()
        counted = {"64": ours.stage_flops(clock, "base", text), "256": ours.stage_flops(clock, "sr", text, low64),
                   "1024": ours.stage_flops(clock, "upscaler", text, low256)}
        per_call = {name: c[0] for name, c in counted.items()}
        flops = {"t5": clock.flops(ours.encode)}
        for name, role in (("64", "base"), ("256", "sr"), ("1024", "upscaler")):
            flops[name] = counted[name][0] * steps[role] + counted[name][1]
        mine = measure(clock, ours, reps)
        variants = {  # before any Cascade: a closed Cascade hands its models back to host memory
            "text_work_per_step_64": clock.timed(lambda: _per_step(lambda: ours.stage("base", text)), reps)[0],
            "preset_50_25_25_total": clock.timed(lambda: _fast_cascade(ours, text), reps)[0],
        }
        cascade = ours.cascade()
        total_ours, total_peak, _ = clock.timed(lambda: cascade(PROMPT, seed=0, size=size), reps)
        cascade.close()
        graphed = ours.cascade(cuda_graphs=True)
        graphed(PROMPT, seed=0, size=size, steps=1)  # back to the GPU (close() sent the weights to the host)
        variants["cuda_graphs_total"] = clock.timed(lambda: graphed(PROMPT, seed=0, size=size), reps)[0]
        graphed.close()
        theirs, vae = None, None
        if not args.no_diffusers:
            their_side = Theirs(models, args.dry_run, device, steps, size)
            measure(clock, Theirs(models, args.dry_run, device, {r: 1 for r in steps}, size), 1)
            theirs = measure(clock, their_side, reps)
            models.upscaler.vae.to(device)
            vae = vae_profile(models, their_side.third.vae, device, 4 * size)
    rows = {}
    for name in STAGE_NAMES:
        d = theirs[name]["s"] if theirs else None
        rows[name] = dict(ours_s=mine[name]["s"], diffusers_s=d, ratio=None if d is None else mine[name]["s"] / d,
                          flops=flops[name], ours_tflops=flops[name] / mine[name]["s"] / 1e12,
                          diffusers_tflops=None if d is None else flops[name] / d / 1e12,
                          ours_peak_gib=mine[name]["peak_gib"],
                          diffusers_peak_gib=theirs[name]["peak_gib"] if theirs else None)
    diffusers_total = sum(theirs[n]["s"] for n in STAGE_NAMES) if theirs else None
    total_flops = sum(flops.values())
    rows["total"] = dict(ours_s=total_ours, diffusers_s=diffusers_total, ours_tflops=total_flops / total_ours / 1e12,
                         ratio=None if diffusers_total is None else total_ours / diffusers_total, flops=total_flops,
                         ours_peak_gib=total_peak)
    for name, role in (("64", "base"), ("256", "sr"), ("1024", "upscaler")):
        step_s = mine[name]["s"] / steps[role]
        rows[name]["flops_per_step"] = per_call[name]
        rows[name]["ours_step_fraction_of_ceiling"] = None if ceiling is None else \
            per_call[name] / step_s / 1e12 / ceiling  # the x4 stage's time includes the VAE decode
    import diffusers

    card = "cpu (dry run, tiny models)" if args.dry_run else torch.cuda.get_device_name()
    result = dict(device=card, torch=torch.__version__, diffusers=diffusers.__version__, dtype=str(dtype)[6:],
                  steps={"64": steps["base"], "256": steps["sr"], "1024": steps["upscaler"]}, reps=reps,
                  dry_run=args.dry_run, matmul_ceiling_tflops=ceiling, stages=rows,
                  ratio_total=rows["total"]["ratio"], variants=variants, vae_decode_profile=vae,
                  total_seconds=time.perf_counter() - t0,
                  note="random weights at the real sizes, bf16 (VAE fp32), one prompt with CFG, models resident; "
                       "stage 1024 includes the VAE decode; total = our Cascade call vs the sum of diffusers' calls")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"gpu_{_card_slug()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    table = markdown_table(result)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {out} (+ .md) in {result['total_seconds']:.0f} s")
    return result


def vae_profile(models, their_vae, device: str, latent: int) -> dict:
    """Why our untiled x4 VAE decode peaks higher than diffusers': for each, the peak, the ops that allocate most
    device memory themselves and how many layout copies (aten::copy_ / contiguous / clone) run, from
    torch.profiler over one decode of a [1, 4, latent, latent] latent (fp32)."""
    z = torch.randn(1, 4, latent, latent, device=device)
    out = {}
    for name, decode in (("ours", lambda: models.upscaler.vae(z)), ("diffusers", lambda: their_vae.decode(z))):
        decode()
        activities = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device == "cuda" else [])
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
            decode()
        peak = torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None
        events = prof.key_averages()
        mem = "self_device_memory_usage" if device == "cuda" else "self_cpu_memory_usage"
        top = sorted(events, key=lambda e: -getattr(e, mem, 0))[:8]
        out[name] = dict(peak_gib=peak, top_ops=[(e.key, e.count, getattr(e, mem, 0) / GIB) for e in top],
                         layout_copies={e.key: e.count for e in events
                                        if e.key in ("aten::copy_", "aten::contiguous", "aten::clone")})
    return out


def _per_step(fn):
    with text_work_per_step():
        return fn()


def _fast_cascade(ours: Ours, text):
    """The 50 / 25 / 25 preset (DPM-Solver++ for the IF stages, DDIM for x4)."""
    low = ours.stage("base", text, steps=FAST["base"][0], sampler=FAST["base"][1], schedule=FAST["base"][2])
    low = ours.stage("sr", text, low.float(), steps=FAST["sr"][0], sampler=FAST["sr"][1], schedule=FAST["sr"][2])
    return ours.stage("upscaler", text, low.float(), steps=FAST["upscaler"][0], sampler=FAST["upscaler"][1])


def _card_slug() -> str:
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_")


def markdown_table(result: dict) -> str:
    """The per-stage table bench/README.md carries."""
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"{result['device']}, {result['dtype']}, steps {result['steps']}, bf16 matmul ceiling "
             f"{f(result['matmul_ceiling_tflops'], '.0f')} TFLOP/s", "",
             "| stage | ours s | diffusers s | ratio | ours TFLOP/s | diffusers TFLOP/s | ours peak GiB | "
             "diffusers peak GiB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["stages"].items():
        lines.append(f"| {name} | {f(r['ours_s'], '.3f')} | {f(r['diffusers_s'], '.3f')} | {f(r['ratio'], '.2f')} | "
                     f"{f(r['ours_tflops'], '.1f')} | {f(r.get('diffusers_tflops'), '.1f')} | "
                     f"{f(r['ours_peak_gib'], '.1f')} | {f(r.get('diffusers_peak_gib'), '.1f')} |")
    lines.append("")
    lines.append("variants (ours, seconds): " + ", ".join(f"{k} {v:.3f}" for k, v in result["variants"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
