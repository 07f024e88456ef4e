"""Layout and range conversions between ComfyUI images and the cascade's pixel space.

ComfyUI ``IMAGE``: [B, H, W, C] float in 0..1. The IF stages: [B, 3, H, W] float in -1..1.
"""
from __future__ import annotations

import torch


def comfy_to_signed(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] in 0..1 -> [B, 3, H, W] float32 in -1..1 (greyscale is repeated, alpha dropped)."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"expected an image batch [B, H, W, C] with B >= 1, got shape {tuple(images.shape)}")
    channels = images.shape[-1]
    if channels == 1:
        images = images.expand(-1, -1, -1, 3)
    elif channels == 4:
        images = images[..., :3]
    elif channels != 3:
        raise ValueError(f"expected 1, 3 or 4 image channels, got {channels}")
    return images.permute(0, 3, 1, 2).float() * 2 - 1


def signed_to_comfy(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in about -1..1 -> [B, H, W, 3] float32 in 0..1 (clamped), contiguous, on the CPU."""
    return ((x.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu()


def preview(x: torch.Tensor, min_size: int = 256):
    """The first image of a [B, 3, H, W] batch in -1..1 as a PIL image, nearest-upscaled to >= min_size."""
    from PIL import Image

    img = signed_to_comfy(x[:1])[0]
    arr = (img * 255).round().to(torch.uint8).numpy()
    pil = Image.fromarray(arr)
    scale = max(1, -(-min_size // max(pil.size)))
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil
