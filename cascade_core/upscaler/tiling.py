"""Overlapping tiles with linear (feathered) blending, for the x4 UNet and VAE decoder at low memory.

A function is applied to overlapping windows of a [B, C, H, W] tensor; each window's output is weighted
by a ramp that rises over the overlap on every side that meets another window (weight 1 elsewhere and
at the image border), and the weighted outputs are divided by the summed weights, so the weights form a
partition of unity and a constant output stays exactly constant. With one window covering the whole
input, the function is simply called once (bit-identical to untiled use).

Why tiles differ at all: GroupNorm statistics and attention are global in both models, so a tile sees
slightly different normalisation and context than the whole image; the blend hides the seams.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor

__all__ = ["tile_starts", "tile_weights", "tiled_map", "TiledDenoiser"]


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of windows of length ``tile`` covering [0, size) with at least ``overlap`` shared
    between neighbours; starts are multiples of ``align`` where possible, the last window ends at ``size``."""
    if tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile={tile}), got {overlap}")
    for n in range(math.ceil((size - overlap) / (tile - overlap)), size - tile + 2):
        starts = sorted({min(size - tile, align * round(i * (size - tile) / ((n - 1) * align))) for i in range(n)})
        if starts[-1] == size - tile and all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
            return starts
    return tile_starts(size, tile, overlap)  # alignment cannot keep the overlap: drop it


def _ramp(start: int, length: int, size: int, feather: int) -> Tensor:
    """1-D weights [length] of a window at ``start``: linear ramps of ``feather`` samples on inner sides."""
    pos = torch.arange(length, dtype=torch.float32) + 0.5
    w = torch.ones(length)
    if feather > 0 and start > 0:
        w = torch.minimum(w, pos / feather)
    if feather > 0 and start + length < size:
        w = torch.minimum(w, (length - pos) / feather)
    return w


def tile_weights(y: int, x: int, th: int, tw: int, h: int, w: int, feather: int) -> Tensor:
    """Blend weights [th, tw] of the window at (y, x) in an image of size (h, w)."""
    return _ramp(y, th, h, feather)[:, None] * _ramp(x, tw, w, feather)[None, :]


def tiled_map(fn: Callable[[Tensor, dict], Tensor], x: Tensor, tile: int, overlap: int, *, scale: int = 1,
              align: int = 1, spatial: Mapping[str, Tensor] | None = None) -> Tensor:
    """Blend ``fn(x_window, spatial_windows)`` over overlapping windows: x [B, C, H, W] -> [B, C', sH, sW].

    ``tile``/``overlap`` are in input pixels; ``scale`` is fn's spatial up-scaling (4 for the x4 VAE);
    ``spatial`` tensors [B, *, H, W] are cut to the same windows and passed to fn by name.
    """
    spatial = dict(spatial or {})
    h, w = x.shape[-2:]
    rows, cols = tile_starts(h, tile, overlap, align), tile_starts(w, tile, overlap, align)
    if len(rows) == len(cols) == 1:
        return fn(x, spatial)
    th, tw = min(tile, h), min(tile, w)
    out = weight_sum = None
    for y in rows:
        for x0 in cols:
            window = (..., slice(y, y + th), slice(x0, x0 + tw))
            part = fn(x[window], {k: v[window] for k, v in spatial.items()})
            if out is None:
                out = part.new_zeros(*part.shape[:2], h * scale, w * scale)
                weight_sum = part.new_zeros(h * scale, w * scale)
            wt = tile_weights(y * scale, x0 * scale, th * scale, tw * scale, h * scale, w * scale,
                              overlap * scale).to(part)
            box = (slice(y * scale, (y + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            out[(..., *box)] += part * wt
            weight_sum[box] += wt
    return out / weight_sum


class TiledDenoiser:
    """A denoiser run on overlapping latent tiles with the denoised predictions blended at every step.

    Wraps any ``denoiser(x, sigma, **extra) -> x0`` (normally the CFG guider); 4-D ``extra`` tensors of the
    latent's size (the low-res image) are tiled alongside. Blending x0 each step keeps one coherent state
    for the sampler (a per-tile full loop would let neighbouring tiles drift apart and could not blend
    stochastic samplers' noise), at the cost of seams being smoothed rather than avoided.
    """

    def __init__(self, denoiser: Callable[..., Tensor], tile: int, overlap: int, align: int = 8):
        if tile < 8 or not 0 <= overlap < tile:
            raise ValueError(f"UNet tiles must be >= 8 latent pixels with 0 <= overlap < tile, got tile={tile}, "
                             f"overlap={overlap}")
        self.denoiser, self.tile, self.overlap, self.align = denoiser, tile, overlap, align

    def __call__(self, x: Tensor, sigma: Tensor, **extra) -> Tensor:
        """x [B, C, H, W], sigma [B] -> blended x0 [B, C, H, W] (no learned variance: the DDPM sampler then uses
        the fixed posterior variance)."""
        size = x.shape[-2:]
        spatial = {k: v for k, v in extra.items() if isinstance(v, Tensor) and v.dim() == 4 and v.shape[-2:] == size}
        rest = {k: v for k, v in extra.items() if k not in spatial}

        def denoise(x_tile: Tensor, tiles: dict) -> Tensor:
            return self.denoiser(x_tile, sigma, **rest, **tiles)

        return tiled_map(denoise, x, self.tile, self.overlap, align=self.align, spatial=spatial)
