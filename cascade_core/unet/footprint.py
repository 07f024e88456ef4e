"""Rough working-memory estimate of one UNet forward, for asking a memory manager for room before sampling."""
from __future__ import annotations

import torch

from .config import UNetConfig

__all__ = ["activation_bytes"]


def activation_bytes(config: UNetConfig, batch: int, height: int, width: int, dtype: torch.dtype) -> int:
    """Bytes of activations one forward of a ``[batch, C, height, width]`` input keeps alive at its peak.

    Counted: every skip tensor the down path keeps for the up path, plus a working set of six tensors of the
    widest level (a resnet's norm, activation and convolution outputs beside its input). Attention scores are not
    counted: torch's fused attention (CUDA and CPU) never materialises them. An estimate to within a small factor,
    not a measurement: the nodes ask ComfyUI for this much room beside the weights and refuse up front what could
    never fit; the out-of-memory retry covers the rest.
    """
    size = torch.empty((), dtype=dtype).element_size()
    h, w, skips, widest = height, width, 0, 0
    for i, ch in enumerate(config.block_out_channels):
        level = batch * ch * h * w * size
        skips += level * (config.layers_per_block[i] + 1)
        widest = max(widest, level)
        if i < len(config.block_out_channels) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
    return int(skips + 6 * widest)
