"""Stable Diffusion's spatial transformer (diffusers ``Transformer2DModel`` + ``BasicTransformerBlock``).

Used by the SD-family levels (``CrossAttnDownBlock2D`` / ``CrossAttnUpBlock2D`` / ``UNetMidBlock2DCrossAttn``)
of the SD x4 upscaler. Image tokens are views of the channels-last activation; all attention goes
through :func:`multihead_attention` (``F.scaled_dot_product_attention``). Parameter names equal
diffusers' keys (``norm``, ``proj_in``, ``transformer_blocks.j.{norm1,attn1,norm2,attn2,norm3,ff}``,
``proj_out``), which are also the original LDM ``SpatialTransformer`` names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import from_tokens, multihead_attention, to_tokens
from .ops import DEFAULT_OPS
from .text_context import TextContext, as_text_context


class Attention(nn.Module):
    """Multi-head attention of tokens x [B, N, C] over ``ctx`` [B, L, Dc] (or over x itself when ctx is None).

    ``to_q``/``to_k``/``to_v`` have no bias in SD transformers (``qkv_bias=False``) and a bias in the VAE's
    attention; ``to_out.0`` always has one. Head size is C / heads. Returns [B, N, C] (no residual).
    """

    def __init__(self, dim: int, context_dim: int | None = None, heads: int = 1, *, qkv_bias: bool = False,
                 upcast: bool = False, ops=DEFAULT_OPS, **factory):
        super().__init__()
        kv_dim = context_dim or dim
        self.heads = heads
        self.upcast = upcast
        self.to_q = ops.Linear(dim, dim, bias=qkv_bias, **factory)
        self.to_k = ops.Linear(kv_dim, dim, bias=qkv_bias, **factory)
        self.to_v = ops.Linear(kv_dim, dim, bias=qkv_bias, **factory)
        self.to_out = nn.ModuleList([ops.Linear(dim, dim, **factory)])

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, L, C] of ``source`` tokens [B, L, kv_dim]."""
        return self.to_k(source), self.to_v(source)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | TextContext | None = None) -> torch.Tensor:
        """x [B, N, C] attends to itself (ctx None) or to the text (its k/v reused through a TextContext)."""
        k, v = self.keys_values(x) if ctx is None else as_text_context(ctx).keys_values(self, self.keys_values)
        out = multihead_attention(self.to_q(x), k, v, self.heads, upcast=self.upcast)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """Gated GELU projection (Shazeer 2020): [.., C] -> [.., inner]; ``proj`` gives (value, gate) halves."""

    def __init__(self, dim: int, inner: int, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.proj = ops.Linear(dim, 2 * inner, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU C -> 4C, then Linear 4C -> C (keys ``net.0.proj``, ``net.2``; ``net.1`` is diffusers' dropout)."""

    def __init__(self, dim: int, mult: int = 4, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, mult * dim, ops, **factory), nn.Identity(),
                                  ops.Linear(mult * dim, dim, **factory)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm block on tokens [B, N, C]: attn1, attn2 (cross), GEGLU feed-forward, each residual.

    ``only_cross``: attn1 also attends to the text (its k/v read ``context_dim`` features), so the block
    has no self-attention at all (the x4 upscaler's 512-channel levels).
    """

    def __init__(self, dim: int, context_dim: int, heads: int, *, only_cross: bool = False, upcast: bool = False,
                 ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.only_cross = only_cross
        self.norm1 = ops.LayerNorm(dim, **factory)
        self.attn1 = Attention(dim, context_dim if only_cross else None, heads, upcast=upcast, ops=ops, **factory)
        self.norm2 = ops.LayerNorm(dim, **factory)
        self.attn2 = Attention(dim, context_dim, heads, upcast=upcast, ops=ops, **factory)
        self.norm3 = ops.LayerNorm(dim, **factory)
        self.ff = FeedForward(dim, ops=ops, **factory)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x), ctx if self.only_cross else None) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    """GroupNorm (eps 1e-6) -> proj_in -> ``layers`` transformer blocks -> proj_out, plus the input.

    x: [B, C, H, W] (channels-last), ctx: [B, L, Dc] -> [B, C, H, W]. ``linear_projection`` makes
    proj_in/proj_out Linear layers on tokens (SD 2 / x4); otherwise they are 1x1 convolutions on the image.
    """

    def __init__(self, channels: int, context_dim: int, heads: int, *, layers: int = 1, groups: int = 32,
                 only_cross: bool = False, linear_projection: bool = True, upcast: bool = False,
                 ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.linear_projection = linear_projection
        self.norm = ops.GroupNorm(groups, channels, eps=1e-6, **factory)
        if linear_projection:
            self.proj_in = ops.Linear(channels, channels, **factory)
            self.proj_out = ops.Linear(channels, channels, **factory)
        else:
            self.proj_in = ops.Conv2d(channels, channels, 1, **factory)
            self.proj_out = ops.Conv2d(channels, channels, 1, **factory)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(channels, context_dim, heads, only_cross=only_cross, upcast=upcast, ops=ops,
                                  **factory) for _ in range(layers))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        y = self.norm(x)
        tokens = self.proj_in(to_tokens(y)) if self.linear_projection else to_tokens(self.proj_in(y))
        for block in self.transformer_blocks:
            tokens = block(tokens, ctx)
        if self.linear_projection:
            return from_tokens(self.proj_out(tokens), h, w) + x
        return self.proj_out(from_tokens(tokens, h, w)) + x
