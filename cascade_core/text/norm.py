"""A T5 layer norm that computes where its input is, for memory managers that may leave its weight on the host.

transformers' ``T5LayerNorm`` multiplies by ``self.weight`` wherever it lives; when a partial load (ComfyUI's
low-VRAM mode) keeps that small weight in host memory while activations are on the GPU, the product fails. This
subclass moves the weight to the input's device for the call (a few KB) and is otherwise the same computation:
root-mean-square normalisation (no mean, no bias) accumulated in fp32, cast back to a half weight's dtype.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

__all__ = ["DeviceTolerantT5LayerNorm", "tolerate_host_norms"]


class DeviceTolerantT5LayerNorm(nn.Module):
    """Mixed into ``T5LayerNorm`` by :func:`tolerate_host_norms`: ``[..., d] -> [..., d]``."""

    weight: torch.Tensor
    variance_epsilon: float
    device_tolerant = True  # memory managers may leave the weight on another device (see the module docstring)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight.device != hidden_states.device:
            weight = weight.to(hidden_states.device, non_blocking=True)
        mean_square = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        out = hidden_states * torch.rsqrt(mean_square + self.variance_epsilon)
        if weight.dtype in (torch.float16, torch.bfloat16):
            out = out.to(weight.dtype)
        return weight * out


@functools.cache
def _classes() -> tuple[type, type]:
    """(transformers' ``T5LayerNorm``, its device-tolerant subclass), made once."""
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    return T5LayerNorm, type("DeviceTolerantT5LayerNorm", (DeviceTolerantT5LayerNorm, T5LayerNorm), {})


def tolerate_host_norms(model: nn.Module) -> int:
    """Give every ``T5LayerNorm`` of ``model`` the device-tolerant forward, in place; returns how many."""
    base, cls = _classes()
    n = 0
    for m in model.modules():
        if type(m) is base:
            m.__class__ = cls
            n += 1
    return n
