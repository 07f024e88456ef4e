"""Attention primitives: multi-head SDPA on token sequences, and IF's "simple" cross-attention block.

IF's block (diffusers ``Attention`` + ``AttnAddedKVProcessor``; IF ``AttentionBlock`` with ``encoder_kv``)
is self-attention over image tokens with the text tokens' keys/values prepended.
Layout: image activations stay channels-last; [B, C, H, W] <-> [B, N, C] are views, never copies,
when the input is in ``torch.channels_last`` memory format.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import DEFAULT_OPS
from .text_context import TextContext, as_text_context


# Off CUDA, above this many attention scores per call (B * heads * Nq * Nk), queries are processed in
# chunks, so a backend without a fused kernel (the math fallback) never materialises more than ~1 GiB of
# fp32 scores. The result is exact: softmax normalises over keys, which every chunk sees whole. On CUDA,
# SDPA's fused kernels never materialise the scores, so one call (H200, x4 UNet forward at a 256 latent:
# 51.3 ms chunked vs 51.8 ms in one call, i.e. no cost either way; bench/results/x4_gpu*.json).
MAX_SCORES_PER_CALL = 2**28


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, *,
                        upcast: bool = False) -> torch.Tensor:
    """Scaled dot-product attention with ``heads`` heads splitting the channels (head h = channels
    h*d .. (h+1)*d): q [B, Nq, C], k and v [B, Nk, C] -> [B, Nq, C]. ``upcast`` runs half inputs in fp32."""
    b, nq, c = q.shape
    dtype = q.dtype
    if upcast and dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, t.shape[1], heads, c // heads).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    chunk = max(1, MAX_SCORES_PER_CALL // (b * heads * k.shape[2]))
    if q.is_cuda or nq <= chunk:
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        out = torch.cat([F.scaled_dot_product_attention(q[:, :, i:i + chunk], k, v) for i in range(0, nq, chunk)],
                        dim=2)
    return out.transpose(1, 2).reshape(b, nq, c).to(dtype)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H*W, C] (a view for channels-last input)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def from_tokens(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, H*W, C] -> [B, C, H, W] in channels-last memory format (a view)."""
    b, _, c = t.shape
    return t.reshape(b, h, w, c).permute(0, 3, 1, 2)


class SimpleCrossAttention(nn.Module):
    """Multi-head attention of image tokens over [text tokens; image tokens]; x: [B, C, H, W], ctx: [B, L, Dc].

    ``head_dim`` is the size of each head (heads = C / head_dim). With ``only_cross`` the image tokens
    attend to the text alone (no ``to_k``/``to_v``). The text is group-normed with 32 groups over its
    channels (statistics over all L tokens) before its key/value projections. Output adds the input.
    """

    def __init__(self, channels: int, context_dim: int, head_dim: int, *, groups: int, eps: float,
                 only_cross: bool = False, norm_cross: bool = True, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.heads = channels // head_dim
        self.only_cross = only_cross
        self.group_norm = ops.GroupNorm(groups, channels, eps=eps, **factory)
        self.norm_cross = ops.GroupNorm(32, context_dim, eps=1e-5, **factory) if norm_cross else None
        self.to_q = ops.Linear(channels, channels, **factory)
        if not only_cross:
            self.to_k = ops.Linear(channels, channels, **factory)
            self.to_v = ops.Linear(channels, channels, **factory)
        self.add_k_proj = ops.Linear(context_dim, channels, **factory)
        self.add_v_proj = ops.Linear(context_dim, channels, **factory)
        self.to_out = nn.ModuleList([ops.Linear(channels, channels, **factory)])

    def text_keys_values(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The text tokens' keys and values [B, L, C] each (after the text group norm): no image involved."""
        if self.norm_cross is not None:
            ctx = self.norm_cross(ctx.transpose(1, 2)).transpose(1, 2)
        return self.add_k_proj(ctx), self.add_v_proj(ctx)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | TextContext) -> torch.Tensor:
        _, _, h, w = x.shape
        tokens = to_tokens(self.group_norm(x))
        k, v = as_text_context(ctx).keys_values(self, self.text_keys_values)
        if not self.only_cross:
            k = torch.cat([k, self.to_k(tokens)], dim=1)
            v = torch.cat([v, self.to_v(tokens)], dim=1)
        out = self.to_out[0](multihead_attention(self.to_q(tokens), k, v, self.heads))
        return from_tokens(out, h, w) + x
