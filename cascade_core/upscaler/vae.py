"""The AutoencoderKL **decoder** of the SD x4 upscaler (latents -> pixels), built from ``vae/config.json``.

Only what decoding needs is built: ``post_quant_conv`` and ``decoder.*`` under diffusers' key names
(encoder and ``quant_conv`` tensors in a file are skipped on load). Old files name the mid-block
attention ``query/key/value/proj_attn``; :func:`vae_key` renames them. ``VAEDecoder(z)`` equals
diffusers' ``vae.decode(z).sample``: the caller divides latents by ``scaling_factor`` first.
Run it in float32: the x4 decoder overflows in float16 (its config sets ``force_upcast``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from ..unet.attention import from_tokens, to_tokens
from ..unet.config import check_diffusers_config
from ..unet.embeddings import activation
from ..unet.ops import DEFAULT_OPS
from ..unet.resample import Upsample
from ..unet.resnet import ResnetBlock
from ..unet.transformer import Attention

__all__ = ["VAEConfig", "VAEDecoder", "vae_key"]

_EPS = 1e-6  # every GroupNorm of the diffusers / LDM VAE
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# encoder-side and pipeline-side fields, not read by the decoder
_UNUSED = {"in_channels", "down_block_types", "sample_size", "latents_mean", "latents_std", "use_quant_conv"}


@dataclass(frozen=True)
class VAEConfig:
    """Decoder architecture and latent scaling of a diffusers ``AutoencoderKL`` (field names as in its config)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    out_channels: int = 3
    norm_num_groups: int = 32
    act_fn: str = "silu"
    scaling_factor: float = 0.08333
    shift_factor: float | None = None
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    force_upcast: bool = True
    up_block_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.block_out_channels)
        if not self.up_block_types:
            object.__setattr__(self, "up_block_types", ("UpDecoderBlock2D",) * n)
        if set(self.up_block_types) != {"UpDecoderBlock2D"} or len(self.up_block_types) != n:
            raise ValueError(f"vae config: up_block_types={list(self.up_block_types)} not supported (need {n} x "
                             "'UpDecoderBlock2D')")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"vae config: block_out_channels {list(self.block_out_channels)} are not divisible by "
                             f"norm_num_groups={self.norm_num_groups}")
        activation(self.act_fn)  # KeyError -> caught by from_diffusers_config for a clear message

    @property
    def upscale_factor(self) -> int:
        """Output pixels per latent pixel along each axis (2 ** number of upsamplers; 4 for the x4 VAE)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any]) -> "VAEConfig":
        """Build from a diffusers ``AutoencoderKL`` config dict; unknown keys are logged and ignored."""
        cfg = dict(config)
        own = {f.name for f in fields(cls)}
        check_diffusers_config(cfg, "AutoencoderKL", own | _UNUSED, "vae")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in own}
        try:
            return cls(**values)
        except KeyError as e:
            raise ValueError(f"vae config: act_fn={cfg.get('act_fn')!r} is not supported ({e})") from None


def vae_key(name: str) -> str | None:
    """Model key for a stored diffusers VAE tensor name: None for encoder-side tensors, legacy attention
    names (``query``, ``key``, ``value``, ``proj_attn``) renamed to ``to_q``, ``to_k``, ``to_v``, ``to_out.0``."""
    if name.startswith(("encoder.", "quant_conv.")):
        return None
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] in _LEGACY_ATTENTION and ".attentions." in name:
        parts[-2] = _LEGACY_ATTENTION[parts[-2]]
    return ".".join(parts)


class SpatialSelfAttention(Attention):
    """Single-head self-attention over all pixels with a GroupNorm in front and a residual:
    x [B, C, H, W] -> [B, C, H, W] (keys ``group_norm``, ``to_q/k/v`` with bias, ``to_out.0``)."""

    def __init__(self, channels: int, groups: int, ops=DEFAULT_OPS, **factory):
        super().__init__(channels, heads=1, qkv_bias=True, upcast=True, ops=ops, **factory)
        self.group_norm = ops.GroupNorm(groups, channels, eps=_EPS, **factory)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        _, _, h, w = x.shape
        return from_tokens(super().forward(to_tokens(self.group_norm(x))), h, w) + x


class _Stage(nn.Module):
    """A list of unconditioned resnets with an optional attention after the first (the mid block) or an
    optional upsampler after all of them (an ``UpDecoderBlock2D``): [B, Cin, H, W] -> [B, Cout, H', W']."""

    def __init__(self, channels: list[int], c: VAEConfig, *, attention: bool = False, upsample: bool = False,
                 ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(cin, cout, None, groups=c.norm_num_groups, eps=_EPS, act_fn=c.act_fn, time_scale_shift=False,
                        ops=ops, **factory) for cin, cout in zip(channels, channels[1:]))
        if attention:
            self.attentions = nn.ModuleList([SpatialSelfAttention(channels[-1], c.norm_num_groups, ops, **factory)])
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample(channels[-1], ops, **factory)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            h = resnet(h)
            if i == 0 and hasattr(self, "attentions"):
                h = self.attentions[0](h)
        return self.upsamplers[0](h) if hasattr(self, "upsamplers") else h


class _Decoder(nn.Module):
    """conv_in -> mid (resnet, attention, resnet) -> up blocks (reversed widths) -> GN, act, conv_out."""

    def __init__(self, c: VAEConfig, ops=DEFAULT_OPS, **factory):
        super().__init__()
        widths = list(reversed(c.block_out_channels))
        self.conv_in = ops.Conv2d(c.latent_channels, widths[0], 3, padding=1, **factory)
        self.mid_block = _Stage([widths[0]] * 3, c, attention=c.mid_block_add_attention, ops=ops, **factory)
        n = c.layers_per_block + 1
        self.up_blocks = nn.ModuleList(
            _Stage([widths[max(i - 1, 0)]] + [w] * n, c, upsample=i < len(widths) - 1, ops=ops, **factory)
            for i, w in enumerate(widths))
        self.conv_norm_out = ops.GroupNorm(c.norm_num_groups, widths[-1], eps=_EPS, **factory)
        self.conv_act = activation(c.act_fn)
        self.conv_out = ops.Conv2d(widths[-1], c.out_channels, 3, padding=1, **factory)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


class VAEDecoder(nn.Module):
    """Latents z [B, latent_channels, h, w] (already divided by ``scaling_factor``) -> images
    [B, out_channels, f*h, f*w] in about [-1, 1], f = ``config.upscale_factor``. Channels-last throughout."""

    def __init__(self, config: VAEConfig, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, operations=DEFAULT_OPS):
        super().__init__()
        self.config = config
        factory = {"dtype": dtype, "device": device}
        if config.use_post_quant_conv:
            self.post_quant_conv = operations.Conv2d(config.latent_channels, config.latent_channels, 1, **factory)
        self.decoder = _Decoder(config, operations, **factory)
        self.to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"VAE decoder input must be [B, {self.config.latent_channels}, h, w] latents, got shape "
                             f"{tuple(z.shape)}")
        weight = self.decoder.conv_in.weight
        z = z.to(weight.dtype).contiguous(memory_format=torch.channels_last)
        if self.config.use_post_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder(z)
