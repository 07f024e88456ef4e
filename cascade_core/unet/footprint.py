"""Rough working-memory estimate of one UNet forward, for asking a memory manager for room before sampling."""
from __future__ import annotations

import torch

from .config import MID_BLOCKS, UNetConfig, DOWN_BLOCKS

__all__ = ["activation_bytes"]


def activation_bytes(config: UNetConfig, batch: int, height: int, width: int, dtype: torch.dtype) -> int:
    """Bytes of activations one forward of a ``[batch, C, height, width]`` input keeps alive at its peak.

    Counted: every skip tensor the down path keeps for the up path, plus a working set of four tensors of the
    widest level and, at attention levels, one fp32 score matrix per head block (SDPA's math path; the fused
    kernels need less). An estimate to within a small factor, not a measurement: the nodes ask ComfyUI for this
    much room beside the weights, and the out-of-memory retry covers the rest.
    """
    size = torch.empty((), dtype=dtype).element_size()
    h, w, skips, widest, scores = height, width, 0, 0, 0
    for i, (name, ch) in enumerate(zip(config.down_block_types, config.block_out_channels)):
        level = batch * ch * h * w * size
        skips += level * (config.layers_per_block[i] + 1)
        widest = max(widest, level)
        if DOWN_BLOCKS[name].attention:
            heads = max(ch // config.attention_head_dim[i], 1) if DOWN_BLOCKS[name].attention == "simple" else \
                config.attention_head_dim[i]
            scores = max(scores, batch * heads * (h * w) * (h * w + 77) * 4)
        if i < len(config.block_out_channels) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
    if MID_BLOCKS.get(config.mid_block_type):
        ch = config.block_out_channels[-1]
        scores = max(scores, batch * max(ch // config.attention_head_dim[-1], 1) * (h * w) * (h * w + 77) * 4)
    return int(skips + 4 * widest + scores)
