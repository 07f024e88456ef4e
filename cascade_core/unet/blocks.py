"""UNet levels: down blocks, the middle block and up blocks of the IF family.

One class per role; whether a level has attention is a constructor flag, so ``ResnetDownsampleBlock2D``
and ``SimpleCrossAttnDownBlock2D`` (and the up variants) share code while keeping diffusers' key names
(``resnets.j``, ``attentions.j``, ``downsamplers.0``, ``upsamplers.0``).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from .attention import SimpleCrossAttention
from .resnet import ResnetBlock


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

    def resnet(self, in_ch: int, out_ch: int, scale: float, ops, factory: dict, resample=None):
        return ResnetBlock(in_ch, out_ch, self.emb_dim, groups=self.groups, eps=self.eps, act_fn=self.act_fn,
                           time_scale_shift=self.time_scale_shift, skip_time_act=self.skip_time_act,
                           output_scale_factor=scale, resample=resample, ops=ops, **factory)

    def attention(self, ch: int, head_dim: int, only_cross: bool, ops, factory: dict):
        return SimpleCrossAttention(ch, self.context_dim, head_dim, groups=self.groups, eps=self.eps,
                                    only_cross=only_cross, norm_cross=self.norm_cross, ops=ops, **factory)


class DownBlock(nn.Module):
    """``num_layers`` resnets (each optionally followed by attention), then an optional resnet downsampler.

    forward(x [B, Cin, H, W]) -> (h [B, Cout, H', W'], skips): one skip per resnet and one for the downsampler.
    """

    def __init__(self, in_ch: int, out_ch: int, num_layers: int, opts: LevelOptions, *, attention: bool,
                 head_dim: int, only_cross: bool, downsample: bool, scale: float, ops, factory: dict):
        super().__init__()
        self.resnets = nn.ModuleList(
            opts.resnet(in_ch if i == 0 else out_ch, out_ch, scale, ops, factory) for i in range(num_layers))
        if attention:
            self.attentions = nn.ModuleList(
                opts.attention(out_ch, head_dim, only_cross, ops, factory) for _ in range(num_layers))
        self.has_attention = attention
        if downsample:
            self.downsamplers = nn.ModuleList([opts.resnet(out_ch, out_ch, scale, ops, factory, resample="down")])
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
    """resnet -> attention -> resnet at the deepest level (``UNetMidBlock2DSimpleCrossAttn``)."""

    def __init__(self, ch: int, opts: LevelOptions, *, head_dim: int, only_cross: bool, scale: float,
                 ops, factory: dict):
        super().__init__()
        self.resnets = nn.ModuleList(opts.resnet(ch, ch, scale, ops, factory) for _ in range(2))
        self.attentions = nn.ModuleList([opts.attention(ch, head_dim, only_cross, ops, factory)])

    def forward(self, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.resnets[0](h, emb)
        h = self.attentions[0](h, ctx)
        return self.resnets[1](h, emb)


class UpBlock(nn.Module):
    """``num_layers`` resnets on [h; skip] concatenations (each optionally followed by attention), then an
    optional resnet upsampler. ``skip_channels`` lists the channel count of each skip consumed, in order.
    """

    def __init__(self, prev_ch: int, out_ch: int, skip_channels: list[int], opts: LevelOptions, *,
                 attention: bool, head_dim: int, only_cross: bool, upsample: bool, scale: float,
                 ops, factory: dict):
        super().__init__()
        ins = [(prev_ch if i == 0 else out_ch) + s for i, s in enumerate(skip_channels)]
        self.resnets = nn.ModuleList(opts.resnet(c, out_ch, scale, ops, factory) for c in ins)
        if attention:
            self.attentions = nn.ModuleList(
                opts.attention(out_ch, head_dim, only_cross, ops, factory) for _ in skip_channels)
        self.has_attention = attention
        if upsample:
            self.upsamplers = nn.ModuleList([opts.resnet(out_ch, out_ch, scale, ops, factory, resample="up")])
        self.has_upsampler = upsample

    def forward(self, h: torch.Tensor, skips: list, emb: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if self.has_attention:
                h = self.attentions[i](h, ctx)
        if self.has_upsampler:
            h = self.upsamplers[0](h, emb)
        return h
