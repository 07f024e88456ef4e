"""GroupNorm that keeps channels-last activations channels-last on the GPU.

PyTorch's CUDA GroupNorm kernel takes NCHW only: a channels-last input is copied to NCHW and the
output comes back NCHW, so the next convolution converts it again. For channels-last CUDA input this
module normalises in NHWC instead: per-(sample, group) statistics in float32, then one fused
scale-and-shift per (sample, channel). Same parameters and results as ``nn.GroupNorm``.

``set_group_norm_mode("native" | "nhwc" | "compiled")`` picks the implementation ("compiled" runs
the NHWC path through ``torch.compile``, falling back to "nhwc" where compilation is unavailable).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_MODES = ("native", "nhwc", "compiled")
_state = {"mode": "nhwc", "compiled": None}


def set_group_norm_mode(mode: str) -> None:
    """Choose how channels-last CUDA inputs are normalised (see module docstring)."""
    if mode not in _MODES:
        raise ValueError(f"group norm mode must be one of {_MODES}, got {mode!r}")
    _state["mode"] = mode


def group_norm_nhwc(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                    eps: float) -> torch.Tensor:
    """GroupNorm of a channels-last x [B, C, H, W] without leaving channels-last; stats in float32."""
    b, c, h, w = x.shape
    xg = x.permute(0, 2, 3, 1).reshape(b, h * w, groups, c // groups)
    var, mean = torch.var_mean(xg.float(), dim=(1, 3), keepdim=True, correction=0)  # [B, 1, G, 1]
    rstd = torch.rsqrt(var + eps)
    scale = rstd.expand(b, 1, groups, c // groups).reshape(b, 1, c)
    shift = (-mean * rstd).expand(b, 1, groups, c // groups).reshape(b, 1, c)
    if weight is not None:
        scale = scale * weight.float()
        shift = shift * weight.float() + bias.float()
    # float32 scale/shift: a low-precision shift would cancel catastrophically against x * scale
    y = torch.addcmul(shift, x.permute(0, 2, 3, 1).reshape(b, h * w, c), scale)
    return y.to(x.dtype).reshape(b, h, w, c).permute(0, 3, 1, 2)


def _compiled():
    if _state["compiled"] is None:
        try:
            _state["compiled"] = torch.compile(group_norm_nhwc, dynamic=True)
        except Exception as e:  # no compiler toolchain: stay eager
            logger.warning("torch.compile unavailable for GroupNorm (%s); using the eager NHWC path", e)
            _state["compiled"] = group_norm_nhwc
    return _state["compiled"]


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose channels-last CUDA path stays channels-last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = _state["mode"]
        if mode == "native" or not x.is_cuda or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        fn = _compiled() if mode == "compiled" else group_norm_nhwc
        return fn(x, self.num_groups, self.weight, self.bias, self.eps)
