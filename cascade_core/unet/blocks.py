"""UNet levels: down blocks, the middle block and up blocks, for both the IF and the SD block families.

One class per role; what a level is made of comes from its :class:`~cascade_core.unet.config.BlockKind`
(attention: none / IF "simple" / SD Transformer2D; resampling: resnet or conv), so the eight diffusers
block types share code while keeping diffusers' key names (``resnets.j``, ``attentions.j``,
``downsamplers.0``, ``upsamplers.0``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .attention import SimpleCrossAttention
from .config import BlockKind
from .resample import Downsample, Upsample
from .resnet import ResnetBlock
from .transformer import Transformer2D


@dataclass(frozen=True)
class LevelAttention:
    """Attention settings of one level: ``head`` is the head size ("simple") or head count ("transformer")."""

    head: int
    only_cross: bool = False
    layers: int = 1


@dataclass(frozen=True)
class LevelOptions:
    """What every resnet and attention of a UNet shares (read from :class:`UNetConfig`)."""

    emb_dim: int
    context_dim: int
    groups: int
    eps: float
    act_fn: str
    time_scale_shift: bool
    skip_time_act: bool
    norm_cross: bool
    linear_projection: bool = False
    upcast_attention: bool = False

    def for_kind(self, kind: BlockKind) -> "LevelOptions":
        """diffusers gives SD (conv-resampling) blocks' resnets neither ``skip_time_act`` nor an output scale."""
        return self if kind.resample == "resnet" else replace(self, skip_time_act=False)

    def resnet(self, in_ch: int, out_ch: int, scale: float, ops, factory: dict, resample=None) -> ResnetBlock:
        return ResnetBlock(in_ch, out_ch, self.emb_dim, groups=self.groups, eps=self.eps, act_fn=self.act_fn,
                           time_scale_shift=self.time_scale_shift, skip_time_act=self.skip_time_act,
                           output_scale_factor=scale, resample=resample, ops=ops, **factory)

    def attention(self, kind: str, ch: int, level: LevelAttention, ops, factory: dict) -> nn.Module:
        """An attention module of ``kind`` ("simple" or "transformer") on ``ch`` channels."""
        if kind == "simple":
            return SimpleCrossAttention(ch, self.context_dim, level.head, groups=self.groups, eps=self.eps,
                                        only_cross=level.only_cross, norm_cross=self.norm_cross, ops=ops, **factory)
        return Transformer2D(ch, self.context_dim, level.head, layers=level.layers, groups=self.groups,
                             only_cross=level.only_cross, linear_projection=self.linear_projection,
                             upcast=self.upcast_attention, ops=ops, **factory)

    def resampler(self, kind: BlockKind, direction: str, ch: int, scale: float, ops, factory: dict) -> nn.Module:
        """IF: a resnet that pools / upsamples; SD: a strided conv / nearest + conv."""
        if kind.resample == "resnet":
            return self.resnet(ch, ch, scale, ops, factory, resample=direction)
        return (Downsample if direction == "down" else Upsample)(ch, ops=ops, **factory)


class DownBlock(nn.Module):
    """``num_layers`` resnets (each optionally followed by attention), then an optional downsampler.

    forward(x [B, Cin, H, W]) -> (h [B, Cout, H', W'], skips): one skip per resnet and one for the downsampler.
    """

    def __init__(self, in_ch: int, out_ch: int, num_layers: int, opts: LevelOptions, *, kind: BlockKind,
                 level: LevelAttention, downsample: bool, scale: float, ops, factory: dict):
        super().__init__()
        opts = opts.for_kind(kind)
        self.resnets = nn.ModuleList(
            opts.resnet(in_ch if i == 0 else out_ch, out_ch, scale, ops, factory) for i in range(num_layers))
        if kind.attention:
            self.attentions = nn.ModuleList(
                opts.attention(kind.attention, out_ch, level, ops, factory) for _ in range(num_layers))
        self.has_attention = kind.attention is not None
        if downsample:
            self.downsamplers = nn.ModuleList([opts.resampler(kind, "down", out_ch, scale, ops, factory)])
        self.has_downsampler = downsample

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, list]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, emb)
            if self.has_attention:
                h = self.attentions[i](h, ctx)
            skips.append(h)
        if self.has_downsampler:
            h = self.downsamplers[0](h, emb)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    """resnet -> attention -> resnet at the deepest level (``UNetMidBlock2DSimpleCrossAttn`` when ``kind`` is
    "simple", ``UNetMidBlock2DCrossAttn`` when it is "transformer")."""

    def __init__(self, ch: int, opts: LevelOptions, *, kind: str, level: LevelAttention, scale: float,
                 ops, factory: dict):
        super().__init__()
        if kind == "transformer":
            opts = replace(opts, skip_time_act=False)
        self.resnets = nn.ModuleList(opts.resnet(ch, ch, scale, ops, factory) for _ in range(2))
        self.attentions = nn.ModuleList([opts.attention(kind, ch, level, ops, factory)])

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.resnets[0](h, emb)
        h = self.attentions[0](h, ctx)
        return self.resnets[1](h, emb)


class UpBlock(nn.Module):
    """``num_layers`` resnets on [h; skip] concatenations (each optionally followed by attention), then an
    optional upsampler. ``skip_channels`` lists the channel count of each skip consumed, in order.
    """

    def __init__(self, prev_ch: int, out_ch: int, skip_channels: list[int], opts: LevelOptions, *,
                 kind: BlockKind, level: LevelAttention, upsample: bool, scale: float, ops, factory: dict):
        super().__init__()
        opts = opts.for_kind(kind)
        ins = [(prev_ch if i == 0 else out_ch) + s for i, s in enumerate(skip_channels)]
        self.resnets = nn.ModuleList(opts.resnet(c, out_ch, scale, ops, factory) for c in ins)
        if kind.attention:
            self.attentions = nn.ModuleList(
                opts.attention(kind.attention, out_ch, level, ops, factory) for _ in skip_channels)
        self.has_attention = kind.attention is not None
        if upsample:
            self.upsamplers = nn.ModuleList([opts.resampler(kind, "up", out_ch, scale, ops, factory)])
        self.has_upsampler = upsample
        self.resnet_resample = kind.resample == "resnet"

    def forward(self, h: torch.Tensor, skips: list, emb: torch.Tensor, ctx: torch.Tensor,
                match_skip_size: bool = False) -> torch.Tensor:
        """Consumes this level's skips from the end of ``skips``. With ``match_skip_size`` a conv upsampler
        resizes to the next skip's size (odd input sizes, as diffusers' ``upsample_size``); IF's resnet
        upsamplers always double, as diffusers' do."""
        for i, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if self.has_attention:
                h = self.attentions[i](h, ctx)
        if not self.has_upsampler:
            return h
        if self.resnet_resample:
            return self.upsamplers[0](h, emb)
        return self.upsamplers[0](h, skips[-1].shape[-2:] if match_skip_size else None)
