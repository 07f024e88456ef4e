#!/usr/bin/env python3
"""GPU check at the real sizes: our UNet vs diffusers with the same random weights.

fp32 (TF32 off): relative L2 difference of the outputs (should be ~1e-6). bf16: the error of each
implementation's bf16 output against diffusers' fp32 output, so ours can be compared with diffusers'
own bf16 error. Writes JSON; prints one line per model.

    python bench/unet_parity_gpu.py --out bench/results/unet_parity_gpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cascade_core.unet.config import UNetConfig  # noqa: E402
from cascade_core.unet.model import UNet  # noqa: E402
from cascade_core.unet.presets import PRESETS  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def check(name: str, size: int) -> dict:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device("cuda"):
        ref = UNet2DConditionModel(**PRESETS[name]).eval()
    with torch.device("meta"):
        ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config)))
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    ours = ours.to(memory_format=torch.channels_last).eval()
    c = ours.config
    g = torch.Generator("cuda").manual_seed(1)
    x = torch.randn(2, c.in_channels, size, size, device="cuda", generator=g)
    text = torch.randn(2, 77, c.text_dim, device="cuda", generator=g) * 0.1
    t = torch.tensor([999, 50], device="cuda")
    nl = torch.tensor([250, 100], device="cuda") if c.is_super_resolution else None
    with torch.inference_mode():
        ref32 = ref(x, t, encoder_hidden_states=text, class_labels=nl).sample
        ours32 = ours(x, t, text, nl)
        ref.to(torch.bfloat16)
        ours.to(torch.bfloat16)
        xb, tb = x.bfloat16(), text.bfloat16()
        ref16 = ref(xb, t, encoder_hidden_states=tb, class_labels=nl).sample
        ours16 = ours(xb, t, tb, nl)
    return dict(name=name, size=size, fp32_rel_l2_ours_vs_diffusers=rel(ours32, ref32),
                fp32_max_abs_diff=(ours32 - ref32).abs().max().item(),
                bf16_rel_l2_vs_fp32_diffusers=rel(ref16, ref32), bf16_rel_l2_vs_fp32_ours=rel(ours16, ref32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/unet_parity_gpu.json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    for name, size in (("IF-II-L", 256), ("IF-I-XL", 64)):
        rows.append(check(name, size))
        print(json.dumps(rows[-1]), flush=True)
        torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                                              rows=rows), indent=2))


if __name__ == "__main__":
    main()
