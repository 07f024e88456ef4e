"""One cascade stage: noise -> sampler loop over a (guided) denoiser -> image in [-1, 1].

The base stage starts from Gaussian noise at the requested size. A super-resolution stage also
upsamples the low-res image (bilinear, ``align_corners=True`` as IF does), noise-augments it once at
``noise_level`` with the augmentation schedule (IF-II: cosine), and conditions every model call on it
through the ``low_res`` / ``noise_level`` extra arguments. Random draws follow diffusers' order
(initial noise, then augmentation noise, then per-step noise) from one seeded generator, so a seed
reproduces the reference pipelines.

Image-to-image and inpainting are options of the same runner (``init_image``, ``strength``, ``mask``; see
:mod:`cascade_core.inpaint`): the schedule starts part-way and the start image is noised to that step with the
initial noise draw (diffusers' IF img2img / inpainting pipelines draw in the same order).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .denoisers import DiscreteVPDenoiser
from .guidance import CFGGuider, DynamicThreshold
from .inpaint import match_batches, require_start_image, start_state, strength_sigmas
from .samplers import get_sampler
from .schedules import ALPHA_SCHEDULES, sigmas_for_timesteps
from .spacing import IF_STEP_STRINGS, lambda_clipped_timesteps, timesteps_from_spec
from .unet.checks import finite_checks
from .unet.text_context import reuse_text_context

__all__ = ["SuperResolutionInput", "unet_denoiser", "unet_guider", "stage_sigmas", "schedule_sigmas", "noise_augment",
           "gaussian_source", "run_sampler", "sample_stage"]


class SuperResolutionInput(nn.Module):
    """Feeds an SR UNet [x_t; low_res] on channels: (x_t [B,C,H,W], t, text_embeds, noise_level, low_res) -> out.

    C is 3 for IF-II (pixels) and 4 for the x4 upscaler (latents); low_res is [B, 3, H, W] either way."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_embeds: torch.Tensor, *, noise_level: torch.Tensor,
                low_res: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([x, low_res.to(x.dtype)], dim=1), t, text_embeds, noise_level)


def unet_denoiser(unet: nn.Module, *, schedule: str = "cosine", num_train_timesteps: int = 1000,
                  prediction: str | None = None, alphas_cumprod: torch.Tensor | None = None) -> DiscreteVPDenoiser:
    """Wrap a UNet as a sigma-space denoiser (learned variance when it outputs 2x the image channels).

    SR UNets take the 3-channel low-res image concatenated to x; ``alphas_cumprod`` overrides ``schedule``;
    ``prediction`` defaults to the UNet's ``prediction_type`` (epsilon for IF)."""
    if prediction is None:
        prediction = getattr(unet, "prediction_type", "epsilon")
    config = unet.config
    image_channels = config.in_channels - 3 if config.is_super_resolution else config.in_channels
    model = SuperResolutionInput(unet) if config.is_super_resolution else unet
    if alphas_cumprod is None:
        alphas_cumprod = ALPHA_SCHEDULES[schedule](num_train_timesteps)
    return DiscreteVPDenoiser(model, alphas_cumprod, prediction=prediction,
                              learned_variance=config.out_channels == 2 * image_channels)


def unet_guider(unet: nn.Module, positive: torch.Tensor, negative: torch.Tensor, scale: float, *,
                threshold_percentile: float = 0.95, threshold_max: float = 1.5, **denoiser_options) -> CFGGuider:
    """CFG with IF's dynamic thresholding around :func:`unet_denoiser` (``guider.denoiser`` is that denoiser);
    positive / negative: text embeddings [B, L, D] (or [1, L, D] broadcast)."""
    return CFGGuider(unet_denoiser(unet, **denoiser_options), positive, negative, scale,
                     post_cfg=[DynamicThreshold(threshold_percentile, threshold_max)])


def stage_sigmas(denoiser: DiscreteVPDenoiser, steps: int | str | list[int], *,
                 spacing: str = "leading") -> torch.Tensor:
    """Sigmas [n+1] (ending in 0) for ``steps``: a count with diffusers ``spacing``, an IF step string such
    as ``smart100``, or an explicit descending list of integer timesteps."""
    ac = denoiser.alphas_cumprod
    if isinstance(steps, (list, tuple)):
        timesteps = [int(t) for t in steps]
        if not timesteps or any(b >= a for a, b in zip(timesteps, timesteps[1:])) or not 0 <= timesteps[-1] \
                or timesteps[0] >= len(ac):
            raise ValueError(f"timesteps must be strictly decreasing integers in [0, {len(ac) - 1}]")
    else:
        timesteps = timesteps_from_spec(steps, spacing=spacing, num_train_timesteps=len(ac))
    return sigmas_for_timesteps(ac, timesteps)


def schedule_sigmas(denoiser: DiscreteVPDenoiser, steps: int, schedule: str) -> torch.Tensor:
    """Sigmas for a UI-style choice: ``schedule`` is a diffusers spacing (leading / trailing / linspace, using
    ``steps``), ``dpm`` (DPM-Solver's lambda-clipped linspace for IF's cosine schedule, using ``steps``; see
    :func:`~cascade_core.spacing.lambda_clipped_timesteps`) or an IF step string (``smart100`` ..., which fixes
    its own step count and ignores ``steps``)."""
    if schedule == "dpm":
        return stage_sigmas(denoiser, lambda_clipped_timesteps(steps, denoiser.alphas_cumprod))
    if schedule in IF_STEP_STRINGS:
        return stage_sigmas(denoiser, schedule)
    return stage_sigmas(denoiser, steps, spacing=schedule)


def noise_augment(image: torch.Tensor, noise_level: int | torch.Tensor, alphas_cumprod: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
    """q(x_n | x_0) at integer level n (one for all, or [B] levels, one per image): sqrt(abar_n) * image +
    sqrt(1 - abar_n) * noise; image [B,C,H,W]."""
    abar = alphas_cumprod[noise_level].to(image.device)
    if abar.ndim:
        abar = abar.reshape(-1, *([1] * (image.ndim - 1)))
    return abar**0.5 * image + (1 - abar) ** 0.5 * noise


def _check_stage_inputs(height: int, width: int, batch_size: int, low_res: torch.Tensor | None,
                        noise_level: int, aug_alphas: torch.Tensor) -> None:
    if height <= 0 or width <= 0 or batch_size <= 0:
        raise ValueError(f"height, width and batch_size must be positive (got {height}, {width}, {batch_size})")
    if low_res is None:
        return
    if low_res.dim() != 4 or low_res.shape[1] != 3:
        raise ValueError(f"low_res must be an image batch [B, 3, h, w] in [-1, 1], got shape {tuple(low_res.shape)}")
    if low_res.shape[0] != batch_size:
        raise ValueError(f"low_res has batch {low_res.shape[0]} but batch_size is {batch_size}")
    if not bool(torch.isfinite(low_res).all()):
        raise ValueError("low_res contains NaN or infinite values")
    if not 0 <= noise_level < len(aug_alphas):
        raise ValueError(f"noise_level must be in [0, {len(aug_alphas) - 1}], got {noise_level}")


def _check_init(init_image: torch.Tensor, mask: torch.Tensor | None, channels: int, height: int,
                width: int) -> None:
    if init_image.dim() != 4 or tuple(init_image.shape[1:]) != (channels, height, width):
        raise ValueError(f"init_image must be [B, {channels}, {height}, {width}] (the output size) in [-1, 1], got "
                         f"{tuple(init_image.shape)}: resize it first (cascade_core.inpaint.resize_pixels)")
    if not bool(torch.isfinite(init_image).all()):
        raise ValueError("init_image contains NaN or infinite values")
    if mask is not None:
        if mask.dim() != 4 or tuple(mask.shape[1:]) != (1, height, width):
            raise ValueError(f"mask must be [B, 1, {height}, {width}] here (cascade_core.inpaint.prepare_mask "
                             f"resizes and binarises), got {tuple(mask.shape)}")
        if not bool((mask >= 0.5).any()):
            raise ValueError("mask is all zeros: nothing to repaint (1 = repaint); paint the region to change, "
                             "or leave the mask out for image-to-image of the whole image")


def sample_stage(
    denoiser: Callable,
    sigmas: torch.Tensor,
    *,
    batch_size: int = 1,
    height: int = 64,
    width: int = 64,
    channels: int = 3,
    sampler: str | Callable = "ddpm",
    generator: torch.Generator | None = None,
    low_res: torch.Tensor | None = None,
    noise_level: int = 250,
    aug_schedule: str = "cosine",
    callback: Callable[[dict], None] | None = None,
    sampler_options: dict | None = None,
    device: torch.device | str | None = None,
    init_image: torch.Tensor | None = None,
    strength: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run one stage and return images [B, channels, height, width] in about [-1, 1] (float32).

    ``denoiser`` is a sigma-space denoiser, normally a ``CFGGuider`` over :func:`unet_denoiser`.
    ``low_res`` ([B, 3, h, w] in [-1, 1]) makes this a super-resolution stage. ``callback`` gets the
    sampler's dict plus ``total`` (number of steps) after every step; raising from it interrupts.

    Image-to-image: ``init_image`` [1 or B, channels, height, width] in [-1, 1] (at the output size) is noised
    to the first of the steps that ``strength`` (0..1) keeps (:func:`~cascade_core.inpaint.strength_sigmas`;
    1.0 runs them all, still starting from the noised image). Inpainting: ``mask`` [1 or B, 1, height, width]
    (binary, 1 = repaint; see :func:`~cascade_core.inpaint.prepare_mask`) with ``init_image`` keeps the
    original outside the mask at every step (:class:`~cascade_core.inpaint.MaskedDenoiser`): with a final
    sigma of 0 the output equals ``init_image`` there exactly.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    aug_alphas = ALPHA_SCHEDULES[aug_schedule](1000)
    if low_res is not None and batch_size == 1:
        batch_size = low_res.shape[0]
    require_start_image(init_image, mask, strength)
    if init_image is not None:
        _check_init(init_image, mask, channels, height, width)
        init_image, mask, batch_size = match_batches(batch_size, init_image, mask)
        if low_res is not None and low_res.shape[0] == 1:
            low_res = low_res.expand(batch_size, *low_res.shape[1:])  # one low-res image for a batch of masks
        sigmas = strength_sigmas(sigmas, strength)
    _check_stage_inputs(height, width, batch_size, low_res, noise_level, aug_alphas)
    device = torch.device(device) if device is not None else (low_res.device if low_res is not None else
                                                                torch.device("cpu"))
    randn = gaussian_source(generator, device)
    shape = (batch_size, channels, height, width)
    if init_image is None:
        x = randn(shape) * math.sqrt(1.0 + float(sigmas[0]) ** 2)  # x_T ~ N(0, I) in DDPM space
    else:
        init_image = init_image.to(device=device, dtype=torch.float32)
        denoiser, x = start_state(denoiser, init_image, None if mask is None else mask.to(device), sigmas[0],
                                  randn(shape))
    extra = {}
    if low_res is not None:
        upscaled = F.interpolate(low_res.float().to(device), (height, width), mode="bilinear", align_corners=True)
        extra["low_res"] = noise_augment(upscaled, noise_level, aug_alphas, randn(upscaled.shape))
        extra["noise_level"] = torch.full((batch_size,), noise_level, device=device, dtype=torch.long)
    return run_sampler(denoiser, x, sigmas, extra=extra, sampler=sampler, randn=randn, callback=callback,
                       sampler_options=sampler_options)


def gaussian_source(generator: torch.Generator | None, device: torch.device) -> Callable[[tuple], torch.Tensor]:
    """randn(shape) -> float32 N(0, I) drawn from ``generator`` on its own device, then moved to ``device``
    (so a CPU generator reproduces diffusers' CPU-seeded draws on any device)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")

    def randn(shape) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)

    return randn


def run_sampler(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, extra: dict,
                sampler: str | Callable = "ddpm", randn: Callable[[tuple], torch.Tensor],
                callback: Callable[[dict], None] | None = None, sampler_options: dict | None = None) -> torch.Tensor:
    """Run the sampler loop from x [B, C, H, W] (sigma space, at sigmas[0]) and return the DDPM-space state
    at sigmas[-1] (x0 when it is 0). Per-step noise comes from ``randn``; ``callback`` also gets ``total``."""
    total = len(sigmas) - 1
    step_callback = None if callback is None else (lambda info: callback({**info, "total": total}))
    sample = get_sampler(sampler) if isinstance(sampler, str) else sampler
    shape = tuple(x.shape)
    # inputs were checked once (per-step checks would sync the GPU every call); the weights are fixed for the loop,
    # so each UNet does its text work (projections, pooling, per-layer text k/v) once, not once per step
    with finite_checks(False), reuse_text_context():
        x = sample(denoiser, x, sigmas, extra_args=extra, callback=step_callback, disable=True,
                   noise_sampler=lambda sigma, sigma_next: randn(shape), **(sampler_options or {}))
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError("the stage produced NaN or infinite values (numerical overflow: run the model in "
                                 "bfloat16 or float32 rather than float16, or lower the guidance scale)")
    return x / math.sqrt(1.0 + float(sigmas[-1]) ** 2)
