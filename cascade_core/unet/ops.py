"""The layer constructors UNet modules are built from; callers may inject others (e.g. ComfyUI's ``comfy.ops``).

``DEFAULT_OPS``: plain torch layers, weights in the compute dtype on the compute device.
``CAST_OPS``: the same layers, but each casts its weight and bias to the input's dtype and device at every call,
so weights may be stored in another dtype (fp8: ``float8_e4m3fn``, one byte per value) or on another device;
only one layer's weight exists in compute precision at a time. ``load_unet(weight_dtype=...)`` uses them.

``nn.GroupNorm`` is used as is: on the H200 with torch 2.11 its CUDA kernel keeps channels-last
tensors channels-last (no layout-conversion kernels in a profiled IF-I-XL forward), and a hand-written
NHWC GroupNorm was slower (52 ms vs 36 ms per forward, eager; 74 ms through torch.compile):
``bench/results/unet_speed_first_run.json``.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFAULT_OPS", "CAST_OPS", "cast_like", "store_weights_in"]

DEFAULT_OPS = SimpleNamespace(Linear=nn.Linear, Conv2d=nn.Conv2d, GroupNorm=nn.GroupNorm, LayerNorm=nn.LayerNorm,
                              Embedding=nn.Embedding)


def cast_like(tensor: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``tensor`` in ``x``'s dtype on ``x``'s device (itself when it already is; None stays None)."""
    if tensor is None or (tensor.dtype == x.dtype and tensor.device == x.device):
        return tensor
    return tensor.to(device=x.device, dtype=x.dtype, non_blocking=True)


class CastLinear(nn.Linear):
    """``nn.Linear`` whose weight [out, in] and bias are cast to the input's dtype/device per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, cast_like(self.weight, x), cast_like(self.bias, x))


class CastConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight [out, in, k, k] and bias are cast to the input's dtype/device per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, cast_like(self.weight, x), cast_like(self.bias, x))


class CastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` with its affine parameters cast to the input's dtype/device per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, cast_like(self.weight, x), cast_like(self.bias, x), self.eps)


class CastLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` with its affine parameters cast to the input's dtype/device per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, cast_like(self.weight, x), cast_like(self.bias, x), self.eps)


class CastEmbedding(nn.Embedding):
    """``nn.Embedding`` whose table moves to the ids' device per call (output in the table's dtype)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight.to(ids.device, non_blocking=True), self.padding_idx)


CAST_OPS = SimpleNamespace(Linear=CastLinear, Conv2d=CastConv2d, GroupNorm=CastGroupNorm, LayerNorm=CastLayerNorm,
                           Embedding=CastEmbedding)


def store_weights_in(model: nn.Module, weight_dtype: torch.dtype, compute_dtype: torch.dtype) -> nn.Module:
    """Convert a loaded model in place to ``weight_dtype`` storage of its Linear/Conv2d weights (e.g. fp8), with
    casting layers computing in ``compute_dtype`` — what ``load_unet(weight_dtype=...)`` gives when loading.
    Returns ``model``."""
    swaps = {nn.Linear: CastLinear, nn.Conv2d: CastConv2d}
    for m in model.modules():
        if type(m) in swaps:
            m.__class__ = swaps[type(m)]
        if isinstance(m, (CastLinear, CastConv2d)):  # other subclasses (e.g. ComfyUI's) keep their storage
            m.weight = nn.Parameter(m.weight.detach().to(weight_dtype), requires_grad=False)
    if hasattr(model, "compute_dtype"):
        model.compute_dtype = compute_dtype
    return model
