"""Periodic sample grids during training: the EMA model samples a few fixed prompts (base) or upsamples a
few fixed low-res training inputs (SR; at the training crop size), written as one PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..stage import sample_stage, stage_sigmas, unet_guider
from ..unet.model import UNet
from .data import collate

__all__ = ["write_sample_grid", "ema_unet", "save_grid"]


def ema_unet(trainer) -> UNet:
    """A frozen eval copy of the trainer's UNet holding the EMA weights (float32, CPU)."""
    with torch.device("meta"):
        model = UNet(trainer.unet.config)
    model.load_state_dict({k: v.float().cpu() for k, v in trainer.ema.state_dict().items()}, assign=True)
    model.prediction_type = trainer.unet.prediction_type
    return model.eval().requires_grad_(False)


def save_grid(images: torch.Tensor, path: Path, columns: int = 4) -> Path:
    """images [B, 3, H, W] in [-1, 1] -> one PNG grid."""
    from PIL import Image

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    b, h, w, _ = x.shape
    cols = min(columns, b)
    rows = -(-b // cols)
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(x):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


@torch.no_grad()
def write_sample_grid(trainer, path: Path, count: int = 4, guidance: float = 4.0) -> Path:
    c = trainer.config
    model = ema_unet(trainer)
    if trainer.sr:
        side = c.crop or c.resolution
        gens = [torch.Generator().manual_seed(i) for i in range(count)]
        batch = collate(trainer.source, list(range(count)), resolution=c.resolution, crop=c.crop, sr=True,
                        generators=gens)
        captions, low = batch.captions, torch.nn.functional.interpolate(batch.low_res, scale_factor=0.25,
                                                                         mode="area")
    else:
        side, low = c.resolution, None
        captions = (list(c.sample_prompts) or list(trainer.source.captions))[:count]
    text = trainer.store.get(captions)
    guider = unet_guider(model, text, trainer.empty.expand_as(text), guidance, schedule=c.schedule)
    extra = {"low_res": low, "noise_level": 100} if low is not None else {}
    out = sample_stage(guider, stage_sigmas(guider.denoiser, c.sample_steps), batch_size=len(captions), height=side,
                       width=side, generator=torch.Generator().manual_seed(c.seed), **extra)
    if low is not None:
        out = torch.cat([batch.images, out])
    return save_grid(out, path)
