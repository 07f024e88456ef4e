"""The AutoencoderKL **encoder** of the SD x4 upscaler (pixels -> latents), for image-to-image and inpainting at
stage III. Built from the same ``vae/config.json`` as :class:`~.vae.VAEDecoder`, with diffusers' key names
(``encoder.*``, ``quant_conv``): conv_in -> down blocks (resnets, then a stride-2 convolution after a (0, 1, 0, 1)
zero pad, except the last) -> mid (resnet, attention, resnet) -> GN, act, conv_out (mean and log-variance) ->
quant_conv. :class:`VAEEncoder` returns the posterior **mean** (diffusers' ``latent_dist.mode()``), unscaled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..unet.embeddings import activation
from ..unet.ops import DEFAULT_OPS
from .vae import _EPS, _LEGACY_ATTENTION, VAEConfig, _Stage

__all__ = ["VAEEncoder", "encoder_key"]


def encoder_key(name: str) -> str | None:
    """Model key for a stored diffusers VAE tensor name: the encoder side only (None for the decoder's), legacy
    attention names renamed as :func:`~.vae.vae_key` does."""
    if not name.startswith(("encoder.", "quant_conv.")):
        return None
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] in _LEGACY_ATTENTION and ".attentions." in name:
        parts[-2] = _LEGACY_ATTENTION[parts[-2]]
    return ".".join(parts)


class _Downsample(nn.Module):
    """diffusers' Downsample2D with padding 0: zero-pad right and bottom by 1, 3x3 stride-2 convolution."""

    def __init__(self, channels: int, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, stride=2, padding=0, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _DownStage(_Stage):
    """A ``DownEncoderBlock2D``: resnets, then an optional downsampler: [B, Cin, H, W] -> [B, Cout, H', W']."""

    def __init__(self, channels: list[int], c: VAEConfig, *, downsample: bool, ops=DEFAULT_OPS, **factory):
        super().__init__(channels, c, ops=ops, **factory)
        if downsample:
            self.downsamplers = nn.ModuleList([_Downsample(channels[-1], ops, **factory)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = super().forward(h)
        return self.downsamplers[0](h) if hasattr(self, "downsamplers") else h


class _Encoder(nn.Module):
    def __init__(self, c: VAEConfig, ops=DEFAULT_OPS, **factory):
        super().__init__()
        widths = list(c.block_out_channels)
        self.conv_in = ops.Conv2d(c.out_channels, widths[0], 3, padding=1, **factory)
        self.down_blocks = nn.ModuleList(
            _DownStage([widths[max(i - 1, 0)]] + [w] * c.layers_per_block, c, downsample=i < len(widths) - 1,
                       ops=ops, **factory) for i, w in enumerate(widths))
        self.mid_block = _Stage([widths[-1]] * 3, c, attention=c.mid_block_add_attention, ops=ops, **factory)
        self.conv_norm_out = ops.GroupNorm(c.norm_num_groups, widths[-1], eps=_EPS, **factory)
        self.conv_act = activation(c.act_fn)
        self.conv_out = ops.Conv2d(widths[-1], 2 * c.latent_channels, 3, padding=1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        return self.conv_out(self.conv_act(self.conv_norm_out(self.mid_block(h))))


class VAEEncoder(nn.Module):
    """Images [B, 3, f*h, f*w] in [-1, 1] -> posterior mean latents [B, latent_channels, h, w] (NOT yet multiplied
    by ``scaling_factor``), f = ``config.upscale_factor``. Run in float32 like the decoder."""

    def __init__(self, config: VAEConfig, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, operations=DEFAULT_OPS, quant_conv: bool = True):
        super().__init__()
        self.config = config
        factory = {"dtype": dtype, "device": device}
        self.encoder = _Encoder(config, operations, **factory)
        if quant_conv:
            self.quant_conv = operations.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.config.upscale_factor
        if x.dim() != 4 or x.shape[1] != self.config.out_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"VAE encoder input must be images [B, {self.config.out_channels}, H, W] with H and W "
                             f"multiples of {f}, got shape {tuple(x.shape)}")
        weight = self.encoder.conv_in.weight
        moments = self.encoder(x.to(device=weight.device, dtype=weight.dtype))
        if hasattr(self, "quant_conv"):
            moments = self.quant_conv(moments)
        return moments[:, : self.config.latent_channels]
