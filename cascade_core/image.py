"""ComfyUI IMAGE batches ↔ model pixel batches, with the input checks every image consumer shares.

A ComfyUI ``IMAGE`` is a float tensor ``[B, H, W, C]`` with values in 0..1. What we accept and do:

* ``C == 3``: RGB, used as is.
* ``C == 1``: grayscale, replicated to RGB (what PIL's ``convert("RGB")`` and transformers' image
  processors do with an ``L`` image).
* ``C == 4``: RGBA with straight (non-premultiplied) alpha, composited onto **white**:
  ``rgb·a + (1 − a)``. This is what transformers' processors do with RGBA input and what an image
  viewer shows, so a transparent PNG is captioned/embedded as it looks. (ComfyUI's LoadImage already
  splits alpha into a MASK; a 4-channel IMAGE comes from nodes such as "Join Image with Alpha", whose
  4th channel is opacity.)
* anything else (2 channels, channel-first ``[B, C, H, W]``, 3-D tensors, an empty batch, a zero-sized
  image) raises :class:`ImageInputError` (a ``ValueError``) saying what was received and what to pass.
* values are clamped to 0..1 (ComfyUI nodes sometimes overshoot slightly).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "ImageInputError",
    "check_images",
    "to_rgb",
    "to_uint8_arrays",
    "images_to_pixels",
    "pixels_to_images",
    "preview",
]


class ImageInputError(ValueError):
    """An image batch that is not a usable ComfyUI IMAGE ``[B, H, W, C]`` (C = 1, 3 or 4) in 0..1."""


def check_images(images: torch.Tensor) -> None:
    """Raise :class:`ImageInputError` unless ``images`` is a non-empty float ``[B, H, W, C]``, C in {1, 3, 4}."""
    if not isinstance(images, torch.Tensor):
        raise ImageInputError(f"expected an IMAGE tensor [B, H, W, C], got {type(images).__name__}")
    shape = tuple(images.shape)
    if images.ndim != 4:
        hint = " (a single image? add a batch dimension: image[None])" if images.ndim == 3 else ""
        raise ImageInputError(f"expected an IMAGE batch [B, H, W, C] (4 dimensions), got shape {shape}{hint}")
    if shape[0] == 0:
        raise ImageInputError("the image batch is empty (0 images): connect at least one image")
    if shape[-1] not in (1, 3, 4):
        if shape[1] in (1, 3, 4):
            raise ImageInputError(
                f"got shape {shape}, which looks channel-first [B, C, H, W]; a ComfyUI IMAGE is [B, H, W, C] "
                "(use images.permute(0, 2, 3, 1))")
        raise ImageInputError(
            f"images must have 1 (gray), 3 (RGB) or 4 (RGBA) channels in the last dimension, got shape {shape}")
    if shape[1] == 0 or shape[2] == 0:
        raise ImageInputError(f"images have zero height or width: shape {shape}")
    if not images.is_floating_point():
        raise ImageInputError(f"expected float images with values in 0..1, got dtype {images.dtype}")


def to_rgb(images: torch.Tensor, *, device: torch.device | str | None = None) -> torch.Tensor:
    """``[B, H, W, C]`` in 0..1 (C = 1, 3, 4) → float32 RGB ``[B, 3, H, W]`` in 0..1, on ``device``.

    Gray is replicated, RGBA is composited onto white (see the module docstring).
    """
    check_images(images)
    x = images.to(device=device, dtype=torch.float32).clamp(0.0, 1.0)
    channels = x.shape[-1]
    if channels == 1:
        x = x.expand(-1, -1, -1, 3)
    elif channels == 4:
        alpha = x[..., 3:]
        x = x[..., :3] * alpha + (1.0 - alpha)
    return x.permute(0, 3, 1, 2).contiguous()


def to_uint8_arrays(images: torch.Tensor) -> list[np.ndarray]:
    """``[B, H, W, C]`` in 0..1 → ``B`` uint8 RGB arrays ``[H, W, 3]`` (rounded to nearest), for PIL-based code."""
    rgb = to_rgb(images, device="cpu")
    u8 = (rgb * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return [a for a in u8.numpy()]


def images_to_pixels(images: torch.Tensor, *, device: torch.device | str | None = None) -> torch.Tensor:
    """ComfyUI ``[B, H, W, C]`` in 0..1 → diffusion pixels ``[B, 3, H, W]`` in [-1, 1] (float32)."""
    return to_rgb(images, device=device) * 2.0 - 1.0


def pixels_to_images(pixels: torch.Tensor) -> torch.Tensor:
    """Diffusion pixels ``[B, 3, H, W]`` in about [-1, 1] → ComfyUI ``[B, H, W, 3]`` in 0..1 (float32, CPU).

    Values are clamped; the result is contiguous, as ComfyUI's image nodes expect.
    """
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ImageInputError(f"expected pixels [B, 3, H, W], got shape {tuple(pixels.shape)}")
    x = (pixels.detach().float() + 1.0) * 0.5
    return x.clamp_(0.0, 1.0).permute(0, 2, 3, 1).contiguous().cpu()


def preview(pixels: torch.Tensor, min_size: int = 256):
    """The first image of ``[B, 3, H, W]`` pixels in about [-1, 1] as a PIL image, nearest-upscaled so its long
    side is at least ``min_size`` (a 64 px sampling preview stays visible in the UI)."""
    from PIL import Image

    pil = Image.fromarray(to_uint8_arrays(pixels_to_images(pixels[:1]))[0])
    scale = max(1, -(-min_size // max(pil.size)))
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil
