"""Image-to-image and inpainting as options of a stage: a strength-trimmed schedule and a masked denoiser wrapper.

Semantics follow diffusers' IF img2img / inpainting pipelines:

* ``strength`` s of an n-step schedule keeps the last ``min(int(n * s), n)`` steps (:func:`strength_sigmas`); the
  start image is noised to the first kept step (q(x_t | x_0), in sigma space ``x = image + sigma * noise``).
* inpainting (``mask`` 1 = repaint, binarised at 0.5) keeps the unmasked region at the **clean** original in the
  state at every step. :class:`MaskedDenoiser` does this as a denoiser wrapper: before each model call it puts the
  original (scaled to sigma space) into the unmasked region of the state, and it returns x0 with the original there.
  Any sampler whose last sigma is 0 then ends exactly on the original outside the mask.

Why this is diffusers' state blending ``x <- (1 - m) * previous + m * new`` for the DDPM sampler: there the state
outside the mask is the clean original at every step (the start blend and each step keep it), so the UNet sees
x_t = original there, which is what :meth:`MaskedDenoiser.blend_state` feeds it (x_t = x / sqrt(1 + sigma^2)).
Inside the mask both run the same model input, CFG, dynamic thresholding (over the whole image, in the guider,
as diffusers' scheduler does), posterior step and full-size noise draw; what either keeps outside the mask
between steps is discarded at the next call. The last DDPM step (sigma_next = 0) returns x0, in which the
wrapper has put the original outside the mask, so the output equals it there bit for bit.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .denoisers import denoise_with_variance

__all__ = ["MaskedDenoiser", "require_start_image", "start_state", "strength_sigmas", "strength_steps", "prepare_mask",
           "resize_pixels", "match_batches", "composite", "StartImage", "start_image"]


def strength_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` run at ``strength`` (diffusers' ``get_timesteps``): min(int(steps * strength), steps)."""
    if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0 or math.isnan(float(strength)):
        raise ValueError(f"strength (denoise) must be a number in 0..1, got {strength!r}")
    return min(int(steps * float(strength)), steps)


def strength_sigmas(sigmas: Tensor, strength: float) -> Tensor:
    """The tail of ``sigmas`` [n+1] (descending, ending at the final sigma) that ``strength`` keeps: [k+1] with
    k = ``strength_steps(n, strength)``; ValueError when that leaves no step (raise strength or steps)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    n = len(sigmas) - 1
    kept = strength_steps(n, strength)
    if kept < 1:
        need = 1.0 / n if n else 1.0
        raise ValueError(f"strength (denoise) {strength} of {n} steps runs no step (int({n} * {strength}) = 0): "
                         f"use a strength of at least {need:.3g} or more steps")
    return sigmas[n - kept:]


def prepare_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """A mask [B, H', W'] or [B, 1, H', W'] (float, 1 = repaint) -> binary float32 [B, 1, height, width].

    Resize rule: area-weighted (bilinear with antialiasing when shrinking, bilinear when enlarging), then
    binarised at 0.5 as diffusers does: an output pixel is repainted when at least half of what covers it is."""
    if not isinstance(mask, Tensor) or mask.ndim not in (3, 4) or (mask.ndim == 4 and mask.shape[1] != 1):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be [B, H, W] (a ComfyUI MASK) or [B, 1, H, W], got {shape}")
    if mask.shape[0] == 0 or mask.shape[-1] == 0 or mask.shape[-2] == 0:
        raise ValueError(f"mask is empty: shape {tuple(mask.shape)}")
    m = mask.to(torch.float32)
    m = m[:, None] if m.ndim == 3 else m
    if not bool(torch.isfinite(m).all()):
        raise ValueError("mask contains NaN or infinite values")
    if tuple(m.shape[-2:]) != (height, width):
        shrink = height < m.shape[-2] or width < m.shape[-1]
        m = F.interpolate(m, (height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return (m >= 0.5).to(torch.float32)


def resize_pixels(pixels: Tensor, height: int, width: int) -> Tensor:
    """Pixels [B, C, h, w] -> [B, C, height, width]: unchanged at that size, else bilinear (antialiased when
    shrinking), clamped to [-1, 1]. The start image of a stage is brought to the stage's output size with this."""
    if tuple(pixels.shape[-2:]) == (height, width):
        return pixels
    shrink = height < pixels.shape[-2] or width < pixels.shape[-1]
    out = F.interpolate(pixels.float(), (height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp(-1.0, 1.0)


def match_batches(batch_size: int, image: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None, int]:
    """Broadcast a start image [1 or B, C, H, W] and a mask [1 or B, 1, H, W] to one batch:
    ``(image [B, ...], mask [B, ...] or None, B)``; B is the largest of ``batch_size`` and the batches given.
    Each batch must be 1 or B; anything else is a ValueError naming both sizes."""
    sizes = {"start image": image.shape[0], **({"mask": mask.shape[0]} if mask is not None else {})}
    batch = max([batch_size, *sizes.values()])
    if batch_size not in (1, batch) or any(size not in (1, batch) for size in sizes.values()):
        given = ", ".join(f"{k} {v}" for k, v in {**sizes, "batch_size": batch_size}.items())
        raise ValueError(f"batch sizes do not match ({given}): each must be 1 or the common batch {batch} (one "
                         "image or mask for all, or one per image)")
    image = image.expand(batch, *image.shape[1:]) if image.shape[0] != batch else image
    if mask is not None and mask.shape[0] != batch:
        mask = mask.expand(batch, *mask.shape[1:])
    return image, mask, batch


def composite(generated: Tensor, original: Tensor, mask: Tensor) -> Tensor:
    """``generated`` inside the mask, ``original`` outside it, exactly (no arithmetic on either): all
    [B, C, H, W] or ComfyUI [B, H, W, C] alike, mask broadcastable to them (1 = repaint)."""
    return torch.where(mask >= 0.5, generated, original.to(generated.dtype))


class MaskedDenoiser:
    """Inpainting around a denoiser: x [B, C, H, W] in sigma space, ``original`` [B, C, H, W] (clean, in the
    model's space), ``mask`` [B, 1, H, W] binary (1 = repaint). Itself a denoiser (``__call__`` and
    :meth:`denoise_with_variance`), so it wraps a ``CFGGuider`` and runs under any sampler."""

    def __init__(self, denoiser: Callable[..., Tensor], original: Tensor, mask: Tensor) -> None:
        if original.ndim != 4 or mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != original.shape[0] or \
                mask.shape[-2:] != original.shape[-2:]:
            raise ValueError(f"MaskedDenoiser: original [B, C, H, W] and mask [B, 1, H, W] must agree, got "
                             f"{tuple(original.shape)} and {tuple(mask.shape)}")
        self.denoiser = denoiser
        self.original = original.to(torch.float32)
        self.mask = mask.to(device=original.device, dtype=torch.float32)
        self._repaint = self.mask >= 0.5

    def blend_state(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The state with the clean original (scaled to sigma space: ``original * sqrt(1 + sigma^2)``, i.e. x_t =
        original) outside the mask; sigma [B] or scalar."""
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        return torch.where(self._repaint, x, (self.original * torch.sqrt(1.0 + s**2)).to(x.dtype))

    def _keep(self, denoised: Tensor) -> Tensor:
        return torch.where(self._repaint, denoised, self.original.to(denoised.dtype))

    def __call__(self, x: Tensor, sigma: Tensor, **extra) -> Tensor:
        """x0 with the original outside the mask: x [B, C, H, W], sigma [B] -> [B, C, H, W]."""
        return self._keep(self.denoiser(self.blend_state(x, sigma), sigma, **extra))

    def denoise_with_variance(self, x: Tensor, sigma: Tensor, **extra) -> tuple[Tensor, Tensor | None]:
        """``(x0 with the original outside the mask, the inner denoiser's learned-range fraction or None)``."""
        denoised, variance = denoise_with_variance(self.denoiser, self.blend_state(x, sigma), sigma, extra)
        return self._keep(denoised), variance


def require_start_image(init_image: Tensor | None, mask: Tensor | None, strength: float) -> None:
    """A stage runner's check: ``mask`` and a ``strength`` below 1 only mean something with a start image."""
    if init_image is None and (mask is not None or strength != 1.0):
        raise ValueError("mask and strength (denoise) need a start image (init_image): without one the stage "
                         "generates from pure noise")


def start_state(denoiser: Callable[..., Tensor], original: Tensor, mask: Tensor | None, sigma: Tensor,
                noise: Tensor) -> tuple[Callable[..., Tensor], Tensor]:
    """Where a stage that starts from ``original`` [B, C, H, W] begins at ``sigma`` (the first kept step):
    ``(denoiser, x)`` with x = original + sigma * noise (q(x_t | x_0) in sigma space); with a ``mask`` [B, 1, H, W]
    the denoiser wrapped in :class:`MaskedDenoiser` and the unmasked region of x the clean original."""
    x = original + float(sigma) * noise
    if mask is None:
        return denoiser, x
    masked = MaskedDenoiser(denoiser, original, mask)
    return masked, masked.blend_state(x, sigma)


@dataclass(frozen=True)
class StartImage:
    """A stage's start image from ComfyUI inputs, at the stage's output size: ``pixels`` [B, 3, H, W] in [-1, 1]
    (what the sampler starts from), ``images`` [B, H, W, 3] in 0..1 (the same picture in ComfyUI's layout, what
    :meth:`finish` puts back outside the mask) and ``mask`` [B, 1, H, W] binary (1 = repaint) or None."""

    pixels: Tensor
    images: Tensor
    mask: Tensor | None

    def finish(self, generated: Tensor) -> Tensor:
        """ComfyUI images [B, H, W, 3] from the stage -> the same with the start image's exact pixels outside the
        mask (unchanged without a mask): the float round trip through [-1, 1] cannot move a kept pixel."""
        if self.mask is None:
            return generated
        return composite(generated, self.images.to(generated.device), self.mask.permute(0, 2, 3, 1).cpu())


def start_image(images: Tensor, height: int, width: int, mask: Tensor | None = None) -> StartImage:
    """ComfyUI ``images`` [B, h, w, C] (0..1; C = 1, 3, 4 as :func:`cascade_core.image.to_rgb`) and an optional
    ``mask`` [B, h', w'] (0..1, 1 = repaint) -> :class:`StartImage` at height x width. The image is stretched to
    that size if it differs (bilinear, antialiased when shrinking); the mask follows :func:`prepare_mask`."""
    from .image import to_rgb

    rgb = to_rgb(images, device="cpu")
    if tuple(rgb.shape[-2:]) != (height, width):
        shrink = height < rgb.shape[-2] or width < rgb.shape[-1]
        rgb = F.interpolate(rgb, (height, width), mode="bilinear", align_corners=False, antialias=shrink).clamp(0, 1)
    binary = None if mask is None else prepare_mask(mask, height, width)
    return StartImage(rgb * 2.0 - 1.0, rgb.permute(0, 2, 3, 1).contiguous(), binary)
