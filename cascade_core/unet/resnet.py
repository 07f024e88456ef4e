"""The residual block of every UNet level and of the VAE decoder (diffusers ``ResnetBlock2D``, IF ``ResBlock``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import DEFAULT_OPS

from .embeddings import activation


class ResnetBlock(nn.Module):
    """GN-act-[resample]-conv, FiLM by the conditioning vector, GN-act-conv, plus a skip; x: [B, Cin, H, W].

    ``resample`` is ``"down"`` (2x2 average pool) or ``"up"`` (nearest x2), applied to both branches
    after the first norm and activation, as in IF's ``resblock_updown``. ``time_scale_shift`` uses the
    projected embedding as (scale, shift) around ``norm2``; otherwise it is added before ``norm2``.
    The output is divided by ``output_scale_factor`` (IF-II: 1/0.7071). ``emb_dim=None`` builds the
    unconditioned variant of the VAE (no ``time_emb_proj``; called without ``emb``).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int | None, *, groups: int, eps: float, act_fn: str,
                 time_scale_shift: bool, skip_time_act: bool = False, output_scale_factor: float = 1.0,
                 resample: str | None = None, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.norm1 = ops.GroupNorm(groups, in_ch, eps=eps, **factory)
        self.conv1 = ops.Conv2d(in_ch, out_ch, 3, padding=1, **factory)
        self.time_emb_proj = (None if emb_dim is None else
                              ops.Linear(emb_dim, 2 * out_ch if time_scale_shift else out_ch, **factory))
        self.norm2 = ops.GroupNorm(groups, out_ch, eps=eps, **factory)
        self.conv2 = ops.Conv2d(out_ch, out_ch, 3, padding=1, **factory)
        self.conv_shortcut = ops.Conv2d(in_ch, out_ch, 1, **factory) if in_ch != out_ch else None
        self.act = activation(act_fn)
        self.time_scale_shift = time_scale_shift
        self.skip_time_act = skip_time_act
        self.output_scale_factor = output_scale_factor
        self.resample = resample

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.norm1(x))
        x = self._resample(x)
        h = self.conv1(self._resample(h))
        if self.time_emb_proj is None:
            return self._finish(x, self.norm2(h))
        e = self.time_emb_proj(emb if self.skip_time_act else self.act(emb))[:, :, None, None]
        if self.time_scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        else:
            h = self.norm2(h + e)
        return self._finish(x, h)

    def _finish(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """act -> conv2 on the normalised branch h, add the (projected) input x, divide by the output scale."""
        h = self.conv2(self.act(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        out = x + h
        return out if self.output_scale_factor == 1.0 else out / self.output_scale_factor
