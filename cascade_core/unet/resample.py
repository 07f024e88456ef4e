"""Convolutional resamplers of Stable Diffusion UNets and VAEs (diffusers ``Downsample2D`` / ``Upsample2D``).

IF resamples inside resnets instead (:class:`~cascade_core.unet.resnet.ResnetBlock` with ``resample``).
The learned layer is ``conv`` in both, matching the key names ``downsamplers.0.conv`` / ``upsamplers.0.conv``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import DEFAULT_OPS


class Downsample(nn.Module):
    """3x3 convolution with stride 2 and padding 1: [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]."""

    def __init__(self, channels: int, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, stride=2, padding=1, **factory)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``emb`` is unused: every downsampler is called like a resnet, (h, emb)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 (or to ``size``, when the skip it meets has an odd size), then a 3x3 convolution.

    x: [B, C, H, W] -> [B, C, 2H, 2W] or [B, C, *size].
    """

    def __init__(self, channels: int, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, padding=1, **factory)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x)
