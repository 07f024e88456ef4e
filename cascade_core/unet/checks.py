"""Input validation for :class:`UNet`: every mistake becomes a ``ValueError`` that names the problem."""
from __future__ import annotations

import contextlib
import contextvars

import torch

from .config import UNetConfig

_check_finite = contextvars.ContextVar("pixel_cascade_check_finite", default=True)


@contextlib.contextmanager
def finite_checks(enabled: bool):
    """Turn the per-call NaN/inf checks on or off (each costs a GPU sync); sampling loops check once instead."""
    token = _check_finite.set(enabled)
    try:
        yield
    finally:
        _check_finite.reset(token)


def _finite(name: str, value: torch.Tensor) -> None:
    if _check_finite.get() and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"unet input {name} contains NaN or infinite values")


def check_unet_inputs(c: UNetConfig, x: torch.Tensor, t, text: torch.Tensor, noise_level) -> tuple:
    """Validate shapes, batch sizes and values; return (t [B], noise_level [B] or None) as tensors."""
    if x.dim() != 4:
        raise ValueError(f"unet input x must be [B, C, H, W], got shape {tuple(x.shape)}")
    b, ch, h, w = x.shape
    if ch != c.in_channels:
        hint = (" (super-resolution models take the noisy image and the upscaled low-res image, concatenated)"
                if c.is_super_resolution else "")
        raise ValueError(f"unet input x has {ch} channels; this model takes {c.in_channels}{hint}")
    m = c.size_multiple
    if h % m or w % m:
        raise ValueError(f"unet input size {h}x{w} is not a multiple of {m}; this model needs height and width "
                         f"divisible by {m}")
    if text.dim() != 3 or text.shape[-1] != c.text_dim:
        raise ValueError(f"text_embeds must be [B, L, {c.text_dim}], got shape {tuple(text.shape)}")
    if text.shape[0] != b:
        raise ValueError(f"text_embeds batch {text.shape[0]} does not match the image batch {b}")
    t = torch.as_tensor(t, device=x.device)
    if t.numel() not in (1, b):
        raise ValueError(f"timestep t must be a scalar or have {b} entries, got {t.numel()}")
    t = t.reshape(-1).expand(b)
    if c.is_super_resolution:
        if noise_level is None:
            raise ValueError("this is a super-resolution model: noise_level (the augmentation level) is required")
        noise_level = torch.as_tensor(noise_level, device=x.device).reshape(-1)
        if noise_level.numel() not in (1, b):
            raise ValueError(f"noise_level must be a scalar or have {b} entries, got {noise_level.numel()}")
        noise_level = noise_level.expand(b)
    elif noise_level is not None:
        raise ValueError("this is a base (non super-resolution) model: it takes no noise_level")
    _finite("x", x)
    _finite("text_embeds", text)
    return t, noise_level
