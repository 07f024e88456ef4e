"""Stage III: 256 -> 1024 super-resolution with the SD x4 upscaler (``sample_x4_stage``).

Same loop as diffusers' ``StableDiffusionUpscalePipeline``: CLIP prompt and negative prompt, the low-res
image noise-augmented once at ``noise_level`` with the scaled-linear schedule, 4-channel latents of the
low-res image's size, v-prediction CFG (uncond, cond) over the 7-channel UNet, DDIM on diffusers'
``leading`` timesteps whose last step lands on alphas_cumprod[0] (``set_alpha_to_one=False``), then
latents / 0.08333 through the float32 VAE decoder. Random draws follow the pipeline's order from one
generator: augmentation noise first, then the initial latents. The other samplers of the pack run through
the same denoiser adapter; optional tiling bounds the UNet's and the VAE's memory.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..guidance import CFGGuider
from ..inpaint import composite, match_batches, require_start_image, start_state, strength_sigmas
from ..schedules import sigmas_for_timesteps, sigmas_from_alphas_cumprod
from ..spacing import spaced_timesteps
from ..stage import gaussian_source, noise_augment, run_sampler, unet_denoiser
from .model import Upscaler
from .tiling import TiledDenoiser

__all__ = ["x4_sigmas", "sample_x4_stage"]

Prompt = str | Sequence[str] | Tensor


def x4_sigmas(upscaler: Upscaler, steps: int) -> Tensor:
    """Sigmas [steps+1] of diffusers' DDIM for this model: leading spacing with ``steps_offset`` (75 steps:
    t = 963, 950, ..., 1), ending at sigma(t=0) (``set_alpha_to_one=False``) or 0."""
    ac = upscaler.alphas_cumprod
    timesteps = spaced_timesteps(steps, "leading", num_train_timesteps=len(ac), steps_offset=upscaler.steps_offset)
    last = torch.zeros(1) if upscaler.set_alpha_to_one else sigmas_from_alphas_cumprod(ac)[:1]
    return torch.cat([sigmas_for_timesteps(ac, timesteps)[:-1], last])


def _embeddings(upscaler: Upscaler, prompt: Prompt, batch: int, name: str) -> Tensor:
    """[1 or B, 77, D] CLIP states for a prompt given as text(s) or as embeddings."""
    if isinstance(prompt, Tensor):
        embeds = prompt
    else:
        embeds = upscaler.encode_prompt(prompt)
    width = upscaler.unet.config.cross_attention_dim
    if embeds.dim() != 3 or embeds.shape[-1] != width:
        raise ValueError(f"{name} embeddings must be CLIP states [B, 77, {width}] from the upscaler's own text "
                         f"encoder (T5 embeddings of the IF stages do not apply), got {tuple(embeds.shape)}")
    if embeds.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch {embeds.shape[0]} but the image batch is {batch} (give 1 or {batch})")
    return embeds.to(device=upscaler.device, dtype=upscaler.unet.dtype)


def _check_inputs(upscaler: Upscaler, image: Tensor, noise_level: int, steps: int) -> None:
    if not isinstance(upscaler, Upscaler):
        what = ("a DeepFloyd IF UNet (stage I or II)" if hasattr(upscaler, "config") else type(upscaler).__name__)
        raise ValueError(f"stage III needs the SD x4 upscaler from load_upscaler(...), got {what}")
    if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be a batch [B, 3, h, w] in [-1, 1], got "
                         f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
    h, w = image.shape[-2:]
    if h % 4 or w % 4:
        raise ValueError(f"image size {h}x{w} is not a multiple of 4 (resize or crop the low-res image first)")
    if not bool(torch.isfinite(image).all()) or image.abs().max() > 1.0 + 1e-3:
        raise ValueError("image must hold finite values in [-1, 1] (convert ComfyUI's [0, 1] images with x*2-1)")
    if not isinstance(noise_level, int) or not 0 <= noise_level <= upscaler.max_noise_level:
        raise ValueError(f"noise_level must be an integer in [0, {upscaler.max_noise_level}], got {noise_level!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def untiled_working_bytes(upscaler: Upscaler, batch: int, height: int, width: int) -> int:
    """Rough working memory of an untiled x4 stage on ``[batch, 3, height, width]`` low-res images: the UNet's
    activations at the latent (= input) size under CFG, plus the VAE decoder's widest activations, three fp32
    tensors of its first width at the 4x output size. An estimate to refuse what can never fit, not a measurement."""
    from ..unet.footprint import activation_bytes

    decode = batch * 16 * height * width * upscaler.vae.config.block_out_channels[0] * 4 * 3
    return activation_bytes(upscaler.unet.config, 2 * batch, height, width, upscaler.unet.dtype) + decode


def sample_x4_stage(upscaler: Upscaler, image: Tensor, prompt: Prompt = "", negative_prompt: Prompt = "", *,
                    steps: int = 75, guidance: float = 9.0, noise_level: int = 100, sampler: str | Callable = "ddim",
                    generator: torch.Generator | None = None, callback: Callable[[dict], None] | None = None,
                    tile: int | None = None, overlap: int = 16, vae_tile: int | None = None, vae_overlap: int = 8,
                    sampler_options: dict | None = None, init_image: Tensor | None = None, strength: float = 1.0,
                    mask: Tensor | None = None) -> Tensor:
    """Upscale image [B, 3, h, w] in [-1, 1] (h, w multiples of 4) to [B, 3, 4h, 4w] in [-1, 1] (float32).

    ``prompt``/``negative_prompt``: strings (encoded with the upscaler's CLIP) or CLIP states [1 or B, 77, D].
    ``noise_level``: low-res augmentation level in [0, 350] (100 as in the IF docs; diffusers' default is 20).
    ``tile``/``overlap``: UNet tiles in latent (= low-res) pixels, denoised predictions blended every step;
    ``vae_tile``/``vae_overlap``: VAE decoder tiles in latent pixels, feather-blended. None = untiled.
    ``callback`` gets the sampler's per-step dict plus ``total``; raising from it interrupts.

    Image-to-image / inpainting in latent space: ``init_image`` [1 or B, 3, 4h, 4w] in [-1, 1] is VAE-encoded
    (posterior mean) and noised to the first step ``strength`` keeps; ``mask`` [1 or B, 1, 4h, 4w] (binary, 1 =
    repaint) is taken to the latent grid so that a latent pixel is repainted when any of its 4x4 pixels is
    (max-pool), the masked denoiser keeps the encoded original elsewhere, and the decoded output is composited
    with ``init_image`` outside the pixel mask, so unmasked pixels equal it exactly (the VAE round trip does not
    reach them). Random draws: augmentation noise, then the start noise.
    """
    _check_inputs(upscaler, image, noise_level, steps)
    require_start_image(init_image, mask, strength)
    if init_image is not None:
        init_image, mask, batch = match_batches(image.shape[0], init_image, mask)
        image = image.expand(batch, *image.shape[1:]) if image.shape[0] != batch else image
        _check_start(upscaler, init_image, mask, image.shape[-2:])
    batch, (h, w), device = image.shape[0], image.shape[-2:], upscaler.device
    positive = _embeddings(upscaler, prompt, batch, "prompt")
    negative = _embeddings(upscaler, negative_prompt, batch, "negative_prompt")
    denoiser = unet_denoiser(upscaler.unet, alphas_cumprod=upscaler.alphas_cumprod, prediction=upscaler.prediction)
    model = CFGGuider(denoiser, positive, negative, guidance)
    if tile is not None:
        model = TiledDenoiser(model, tile, overlap)
    sigmas = x4_sigmas(upscaler, steps)
    randn = gaussian_source(generator, device)
    image = image.to(device=device, dtype=torch.float32)
    low_res = noise_augment(image, noise_level, upscaler.noise_alphas_cumprod, randn(tuple(image.shape)))
    shape = (batch, upscaler.latent_channels, h, w)
    if init_image is None:
        x = randn(shape) * math.sqrt(1.0 + float(sigmas[0]) ** 2)
    else:
        sigmas = strength_sigmas(sigmas, strength)
        original = upscaler.encode(init_image.to(torch.float32))
        latent_mask = None if mask is None else \
            (F.max_pool2d(mask.float(), upscaler.upscale_factor) >= 0.5).float().to(device)
        model, x = start_state(model, original, latent_mask, sigmas[0], randn(shape))
    extra = {"low_res": low_res, "noise_level": torch.full((batch,), noise_level, device=device, dtype=torch.long)}
    latents = run_sampler(model, x, sigmas, extra=extra, sampler=sampler, randn=randn, callback=callback,
                          sampler_options=sampler_options)
    decoded = upscaler.decode(latents / upscaler.scaling_factor, tile=vae_tile, overlap=vae_overlap)
    decoded = decoded.clamp(-1.0, 1.0)
    if mask is not None:
        decoded = composite(decoded, init_image.to(decoded.device), mask.to(decoded.device))
    return decoded


def _check_start(upscaler: Upscaler, init_image: Tensor, mask: Tensor | None, size) -> None:
    out = tuple(upscaler.upscale_factor * s for s in size)
    if init_image.dim() != 4 or init_image.shape[1] != 3 or tuple(init_image.shape[-2:]) != out:
        raise ValueError(f"init_image must be [B, 3, {out[0]}, {out[1]}] (the output size) in [-1, 1], got "
                         f"{tuple(init_image.shape)}: resize it first (cascade_core.inpaint.resize_pixels)")
    if mask is not None:
        if mask.dim() != 4 or tuple(mask.shape[1:]) != (1, *out):
            raise ValueError(f"mask must be [B, 1, {out[0]}, {out[1]}] (cascade_core.inpaint.prepare_mask), got "
                             f"{tuple(mask.shape)}")
        if not bool((mask >= 0.5).any()):
            raise ValueError("mask is all zeros: nothing to repaint (1 = repaint)")
