#!/usr/bin/env python3
"""GPU check of stage III at real sizes (random weights): the SD x4 upscaler UNet and VAE decoder vs diffusers.

Rows: UNet fp32 parity (TF32 off) on a 64x64 latent; UNet bf16 forward time at the 256x256 latent with the CFG
batch (2), ours vs diffusers; VAE decode 256 -> 1024 in fp32: diffusers, ours untiled, ours tiled (64/8), with
time, peak memory and the difference to diffusers. Writes JSON, prints a table.

    python bench/x4_gpu.py --out bench/results/x4_gpu.json        (--smoke: tiny configs on the CPU)
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
from cascade_core.unet.presets import SD_X4_UPSCALER  # noqa: E402
from cascade_core.upscaler.vae import VAEConfig, VAEDecoder  # noqa: E402

X4_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, down_block_types=["DownEncoderBlock2D"] * 3,
              up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[128, 256, 512], layers_per_block=2,
              norm_num_groups=32, act_fn="silu", sample_size=256, scaling_factor=0.08333)
DEV = "cuda"


def timed(fn, warmup: int = 2, reps: int = 5) -> float:
    return median_time(fn, device=DEV, warmup=warmup, reps=reps)


def peak(fn) -> tuple[torch.Tensor, float]:
    if DEV != "cuda":
        return fn(), float("nan")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    sync(DEV)
    return out, torch.cuda.max_memory_allocated() / 2**30


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def unet_rows(cfg: dict, latent: int, big: int, rows: list) -> None:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device(DEV):
        ref = UNet2DConditionModel(**cfg).eval()
    with torch.device("meta"):
        ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config)))
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    ours = ours.to(memory_format=torch.channels_last).eval()
    g = torch.Generator(DEV).manual_seed(1)
    ctx = torch.randn(2, 77, cfg["cross_attention_dim"], device=DEV, generator=g) * 0.3
    t, nl = torch.tensor([900, 50], device=DEV), torch.tensor([100, 20], device=DEV)
    with torch.inference_mode():
        x = torch.randn(2, 7, latent, latent, device=DEV, generator=g)
        a, b = ref(x, t, encoder_hidden_states=ctx, class_labels=nl).sample, ours(x, t, ctx, nl)
        rows.append(dict(name=f"x4_unet_fp32_parity_{latent}lat", rel_l2=rel(b, a), max_abs=(a - b).abs().max().item()))
        ref.to(torch.bfloat16)
        ours.to(torch.bfloat16)
        xb, cb = torch.randn(2, 7, big, big, device=DEV, generator=g, dtype=torch.bfloat16), ctx.bfloat16()
        t_ref = timed(lambda: ref(xb, t, encoder_hidden_states=cb, class_labels=nl).sample)
        t_ours = timed(lambda: ours(xb, t, cb, nl))
    rows.append(dict(name=f"x4_unet_fwd_b2_{big}lat_bf16", diffusers_s=t_ref, ours_s=t_ours, speedup=t_ref / t_ours))


def vae_rows(cfg: dict, latent: int, tile: int, rows: list) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    with torch.device(DEV):
        ref = AutoencoderKL(**cfg).eval()
        ours = VAEDecoder(VAEConfig.from_diffusers_config(dict(ref.config))).eval()
    state = {k: v for k, v in ref.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    ours.load_state_dict(state, strict=True)
    z = torch.randn(1, 4, latent, latent, device=DEV, generator=torch.Generator(DEV).manual_seed(2))
    from cascade_core.upscaler.tiling import tiled_map

    with torch.inference_mode():
        a, mem_ref = peak(lambda: ref.decode(z).sample)
        b, mem_ours = peak(lambda: ours(z))
        c, mem_tiled = peak(lambda: tiled_map(lambda part, _: ours(part), z, tile, tile // 8, scale=4))
        t_ref, t_ours = timed(lambda: ref.decode(z).sample, 1, 3), timed(lambda: ours(z), 1, 3)
        t_tiled = timed(lambda: tiled_map(lambda part, _: ours(part), z, tile, tile // 8, scale=4), 1, 3)
    rows.append(dict(name=f"x4_vae_decode_{latent * 4}px_fp32", diffusers_s=t_ref, ours_s=t_ours, ours_tiled_s=t_tiled,
                     peak_gib_diffusers=mem_ref, peak_gib_ours=mem_ours, peak_gib_ours_tiled=mem_tiled,
                     max_abs_ours_vs_diffusers=(a - b).abs().max().item(),
                     mean_abs_tiled_vs_untiled=(c - b).abs().mean().item(), tile=tile))


def main() -> None:
    global DEV
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/x4_gpu.json")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    rows: list = []
    if args.smoke:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_unets import MICRO_X4
        from tiny_x4 import MICRO_VAE

        DEV = "cpu"
        unet_rows(MICRO_X4, 8, 16, rows)
        vae_rows(MICRO_VAE, 16, 8, rows)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        unet_rows(SD_X4_UPSCALER, 64, 256, rows)
        vae_rows(X4_VAE, 256, 64, rows)
    for r in rows:
        print(json.dumps(r), flush=True)
    device = torch.cuda.get_device_name() if DEV == "cuda" else "cpu (smoke)"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(device=device, torch=torch.__version__, rows=rows), indent=2))


if __name__ == "__main__":
    main()
