#!/usr/bin/env python3
"""GPU benchmark: our IF UNets and stage loops against diffusers, same weights, same run.

Random weights at the real IF-I-XL and IF-II-L sizes (no downloads). For each model: one forward at
the CFG batch (2) in bf16 for diffusers as users run it (NCHW), diffusers converted to channels-last,
and ours (channels-last end to end); the bf16 output difference to diffusers; the share of GPU time
spent in layout-conversion kernels (from the profiler); peak memory. Then whole stage loops (DDPM,
CFG, dynamic thresholding) through ``sample_stage`` vs diffusers' IF pipelines with the same seed.

    python bench/unet_speed.py --out bench/results/unet_speed.json [--stages I,II] [--steps 100,50]

Needs a CUDA GPU and diffusers importable. Prints a table; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_time, sync  # noqa: E402
from cascade_core.unet.config import UNetConfig  # noqa: E402
from cascade_core.unet.model import UNet  # noqa: E402
from cascade_core.unet.presets import PRESETS  # noqa: E402

DEV = "cuda"
SMOKE_CONFIGS: dict = {}  # --smoke: tiny configs on the CPU, to check this script before spending GPU time


def config_of(name: str) -> dict:
    return SMOKE_CONFIGS.get(name) or PRESETS[name]
LAYOUT_KERNELS = ("nchwToNhwc", "nhwcToNchw", "convert_layout", "transpose_readWrite", "nchw2nhwc", "nhwc2nchw")


def cuda_time(fn, warmup: int = 3, reps: int = 10) -> float:
    """Median wall time of fn() in seconds, synchronised."""
    return median_time(fn, device=DEV, warmup=warmup, reps=reps)


def layout_share(fn) -> float:
    """Fraction of CUDA kernel time spent in NCHW<->NHWC conversion kernels during one call."""
    from torch.profiler import ProfilerActivity, profile

    if DEV != "cuda":
        return float("nan")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync(DEV)
    total = conv = 0.0
    for evt in prof.key_averages():
        t = evt.device_time_total if hasattr(evt, "device_time_total") else evt.cuda_time_total
        total += t
        if any(k.lower() in evt.key.lower() for k in LAYOUT_KERNELS):
            conv += t
    return conv / total if total else float("nan")


def build_pair(name: str, dtype: torch.dtype):
    """(diffusers model, our model) sharing one set of random weights on the GPU."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device(DEV):
        ref = UNet2DConditionModel(**config_of(name)).to(dtype).eval()
    with torch.device("meta"):
        ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config)))
    ours.load_state_dict({k: v.clone() for k, v in ref.state_dict().items()}, strict=True, assign=True)
    ours = ours.to(memory_format=torch.channels_last).eval().requires_grad_(False)
    return ref, ours


def bench_unet(name: str, size: int, rows: list, dtype=torch.bfloat16) -> None:
    ref, ours = build_pair(name, dtype)
    c = ours.config
    g = torch.Generator(DEV).manual_seed(1)
    x = torch.randn(2, c.in_channels, size, size, device=DEV, generator=g, dtype=dtype)
    text = torch.randn(2, 77, c.text_dim, device=DEV, generator=g, dtype=dtype) * 0.1
    t = torch.tensor([500, 500], device=DEV)
    nl = torch.tensor([250, 250], device=DEV) if c.is_super_resolution else None
    with torch.inference_mode():
        run_ref = lambda: ref(x, t, encoder_hidden_states=text, class_labels=nl).sample  # noqa: E731
        run_ours = lambda: ours(x, t, text, nl)  # noqa: E731
        expected, got = run_ref().float(), run_ours().float()
        rel = ((got - expected).norm() / expected.norm()).item()
        if DEV == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_ref = cuda_time(run_ref)
        share_ref = layout_share(run_ref)
        t_ours = cuda_time(run_ours)
        share_ours = layout_share(run_ours)
        peak = torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else float("nan")
        ref_cl = ref.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        t_ref_cl = cuda_time(lambda: ref_cl(x_cl, t, encoder_hidden_states=text, class_labels=nl).sample)
    rows.append(dict(name=f"{name}_unet_fwd_b2_{size}px_bf16", diffusers_s=t_ref, diffusers_channels_last_s=t_ref_cl,
                     ours_s=t_ours, speedup_vs_diffusers=t_ref / t_ours, layout_share_diffusers=share_ref,
                     layout_share_ours=share_ours, rel_l2_diff_vs_diffusers=rel, peak_gib=peak))


def bench_stage(name: str, steps: int, size: int, rows: list, dtype=torch.bfloat16) -> None:
    """Whole stage loop: diffusers IF pipeline vs sample_stage (DDPM, CFG, dynamic thresholding)."""
    from diffusers import DDPMScheduler, IFPipeline, IFSuperResolutionPipeline

    from cascade_core.guidance import CFGGuider, DynamicThreshold
    from cascade_core.stage import sample_stage, stage_sigmas, unet_denoiser

    ref, ours = build_pair(name, dtype)
    sr = ours.config.is_super_resolution
    g = torch.Generator(DEV).manual_seed(2)
    emb = torch.randn(1, 77, 4096, device=DEV, generator=g, dtype=dtype) * 0.1
    neg = torch.randn(1, 77, 4096, device=DEV, generator=g, dtype=dtype) * 0.1
    low = (torch.rand(1, 3, size // 4, size // 4, device=DEV, generator=g) * 2 - 1) if sr else None
    max_value, scale = (1.0, 4.0) if sr else (1.5, 7.0)
    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
                          dynamic_thresholding_ratio=0.95, sample_max_value=max_value)
    common = dict(tokenizer=None, text_encoder=None, unet=ref, scheduler=sched, safety_checker=None,
                  feature_extractor=None, watermarker=None, requires_safety_checker=False)
    if sr:
        noising = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
        pipe = IFSuperResolutionPipeline(**common, image_noising_scheduler=noising)
    else:
        pipe = IFPipeline(**common)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(image=low.to(dtype), noise_level=250) if sr else {}
    run_ref = lambda: pipe(prompt_embeds=emb, negative_prompt_embeds=neg, num_inference_steps=steps,  # noqa: E731
                           guidance_scale=scale, output_type="pt", height=size, width=size,
                           generator=torch.Generator(DEV).manual_seed(0),
                           **kw).images
    den = unet_denoiser(ours)
    guider = CFGGuider(den, emb, neg, scale, post_cfg=[DynamicThreshold(0.95, max_value)])
    sigmas = stage_sigmas(den, steps)
    run_ours = lambda: sample_stage(guider, sigmas, height=size, width=size, low_res=low, noise_level=250,  # noqa: E731
                                    generator=torch.Generator(DEV).manual_seed(0), device=DEV)
    with torch.inference_mode():
        a, b = run_ref().float(), run_ours().float()
        t_ref = cuda_time(run_ref, warmup=1, reps=3)
        t_ours = cuda_time(run_ours, warmup=1, reps=3)
    rows.append(dict(name=f"{name}_stage_{steps}steps_bf16", diffusers_s=t_ref, ours_s=t_ours,
                     speedup_vs_diffusers=t_ref / t_ours, mean_abs_diff_vs_diffusers=(a - b).abs().mean().item()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/unet_speed.json")
    ap.add_argument("--stages", default="I,II")
    ap.add_argument("--steps", default="100,50")
    ap.add_argument("--skip-loops", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script only)")
    args = ap.parse_args()
    global DEV
    if args.smoke:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_unets import FILE_IF_I, FILE_IF_II

        DEV = "cpu"
        SMOKE_CONFIGS.update({"IF-I-XL": dict(FILE_IF_I, encoder_hid_dim=4096, addition_embed_type_num_heads=64),
                              "IF-II-L": dict(FILE_IF_II, encoder_hid_dim=4096, addition_embed_type_num_heads=64)})
    torch.backends.cudnn.benchmark = True
    import diffusers

    steps = dict(zip(("I", "II"), (int(s) for s in args.steps.split(","))))
    rows: list = []
    jobs = {"I": ("IF-I-XL", 64), "II": ("IF-II-L", 256)} if not args.smoke else {"I": ("IF-I-XL", 16),
                                                                                   "II": ("IF-II-L", 32)}
    for stage in args.stages.split(","):
        name, size = jobs[stage]
        bench_unet(name, size, rows)
        torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)
        if not args.skip_loops:
            bench_stage(name, steps[stage], size, rows)
            torch.cuda.empty_cache()
            print(json.dumps(rows[-1]), flush=True)
    device = torch.cuda.get_device_name() if DEV == "cuda" else "cpu (smoke)"
    result = dict(device=device, torch=torch.__version__, diffusers=diffusers.__version__,
                  rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{'row':42s} {'diffusers s':>12s} {'ours s':>10s} {'speedup':>8s}")
    for r in rows:
        print(f"{r['name']:42s} {r['diffusers_s']:12.4f} {r['ours_s']:10.4f} {r['speedup_vs_diffusers']:8.2f}")


if __name__ == "__main__":
    main()
