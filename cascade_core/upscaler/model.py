"""The loaded stage-III model: x4 UNet, VAE decoder, CLIP text encoder and their schedules, as one object."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..unet.model import UNet
from .clip import ClipTextEncoder
from .tiling import tiled_map
from .vae import VAEDecoder
from .vae_encoder import VAEEncoder

__all__ = ["Upscaler"]


class Upscaler:
    """What :func:`~cascade_core.upscaler.loading.load_upscaler` returns.

    * ``unet(x [B, 7, h, w], t, text_embeds [B, 77, 1024], noise_level [B]) -> v [B, 4, h, w]`` (the same
      contract as ``load_unet`` models; equal to diffusers' ``UNet2DConditionModel(...).sample``);
    * :meth:`decode` (VAE, float32), :meth:`encode` (VAE encoder, float32; ``encoder`` is None when the files
      had none) and :meth:`encode_prompt` (CLIP ``last_hidden_state``);
    * ``alphas_cumprod`` [1000] of the sampling schedule (scaled-linear), ``prediction`` ("v_prediction"),
      ``noise_alphas_cumprod`` [1000] of the low-res augmentation, ``max_noise_level`` (350),
      ``scaling_factor`` (0.08333), ``upscale_factor`` (4), ``set_alpha_to_one``, ``steps_offset``.
    """

    def __init__(self, unet: UNet, vae: VAEDecoder, text: ClipTextEncoder | None, *, alphas_cumprod: Tensor,
                 noise_alphas_cumprod: Tensor, prediction: str = "v_prediction", max_noise_level: int = 350,
                 set_alpha_to_one: bool = False, steps_offset: int = 1, text_hint: str = "",
                 encoder: VAEEncoder | None = None):
        self.unet, self.vae, self.text, self.encoder = unet, vae, text, encoder
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.noise_alphas_cumprod = torch.as_tensor(noise_alphas_cumprod, dtype=torch.float32)
        self.prediction = prediction
        self.max_noise_level = int(max_noise_level)
        self.set_alpha_to_one = bool(set_alpha_to_one)
        self.steps_offset = int(steps_offset)
        self._text_hint = text_hint

    @property
    def scaling_factor(self) -> float:
        """Latents are divided by this before decoding (0.08333 for the x4 upscaler)."""
        return float(self.vae.config.scaling_factor)

    @property
    def upscale_factor(self) -> int:
        """Output pixels per latent (= low-res input) pixel along each axis: 4."""
        return self.vae.config.upscale_factor

    @property
    def latent_channels(self) -> int:
        """Channels of the latents the UNet denoises and the VAE decodes (4)."""
        return self.vae.config.latent_channels

    @property
    def device(self) -> torch.device:
        """Where the UNet (and the sampling state) lives."""
        return self.unet.device

    @torch.no_grad()
    def decode(self, z: Tensor, *, tile: int | None = None, overlap: int = 8) -> Tensor:
        """VAE decode in float32: z [B, 4, h, w] (already divided by ``scaling_factor``) -> [B, 3, 4h, 4w].

        ``tile`` (latent pixels) decodes overlapping tiles of that size and feather-blends them over
        ``overlap`` latent pixels (x4 in the output), so peak memory follows the tile, not the image.
        """
        vae_device = self.vae.decoder.conv_in.weight.device
        z = z.to(device=vae_device, dtype=torch.float32)
        if tile is None:
            return self.vae(z)
        if tile < 4 or not 0 <= overlap < tile:
            raise ValueError(f"VAE tiles must be >= 4 latent pixels with 0 <= overlap < tile, got {tile}, {overlap}")
        return tiled_map(lambda part, _: self.vae(part), z, tile, overlap, scale=self.upscale_factor)

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        """VAE encode in float32: images [B, 3, 4h, 4w] in [-1, 1] -> sampling latents [B, 4, h, w] (the posterior
        mean times ``scaling_factor``, the space :meth:`decode` inverts); needs the VAE encoder (repo folders)."""
        if self.encoder is None:
            raise ValueError("this x4 upscaler was loaded without its VAE encoder (single files are loaded "
                             "decoder-only), so it cannot start from an image: load the "
                             "stable-diffusion-x4-upscaler repo folder (its vae/ holds the encoder)")
        return self.encoder(pixels.float()).to(self.device, torch.float32) * self.scaling_factor

    @torch.no_grad()
    def preview(self, latents: Tensor, max_latent: int = 32) -> Tensor:
        """A cheap look at sampling latents [B, 4, h, w] (not yet divided by ``scaling_factor``): average-pooled
        to at most ``max_latent`` latent pixels per side, then decoded -> [B, 3, <= 4*max_latent, ...] in [-1, 1]."""
        factor = max(1, -(-max(latents.shape[-2:]) // max_latent))
        small = torch.nn.functional.avg_pool2d(latents.float(), factor) if factor > 1 else latents
        return self.decode(small / self.scaling_factor).clamp(-1.0, 1.0)

    def encode_prompt(self, prompts: str | Sequence[str]) -> Tensor:
        """CLIP ``last_hidden_state`` [B, 77, 1024] for B prompts (the x4 model's own text encoder; T5
        embeddings of the IF stages do not apply to it)."""
        if self.text is None:
            raise ValueError("this upscaler was loaded without its text encoder: " + self._text_hint)
        return self.text.encode(prompts).to(self.unet.dtype)
