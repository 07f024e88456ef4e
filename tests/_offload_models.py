"""Small modules with known weight sizes for the ModelManager tests (float32: 4 bytes per element)."""
from __future__ import annotations

import torch
from torch import nn


class Stack(nn.Module):
    """x [B, width] -> [B, width] through ``depth`` linear blocks (a ModuleList, streamed one block at a time)."""

    def __init__(self, width: int = 16, depth: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(width, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
                                    for _ in range(depth))
        self.register_buffer("scale", torch.full((width,), 0.5))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return h * self.scale


def stack_bytes(width: int = 16, depth: int = 4) -> int:
    linear = (width * width + width) * 4
    return linear + depth * (linear + 2 * width * 4) + width * 4
