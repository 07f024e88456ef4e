"""IF's attention block: self-attention over image tokens with the text tokens' keys/values prepended.

(diffusers ``Attention`` + ``AttnAddedKVProcessor``; IF ``AttentionBlock`` with ``encoder_kv``.)
Layout: image activations stay channels-last; [B, C, H, W] <-> [B, N, C] are views, never copies,
when the input is in ``torch.channels_last`` memory format.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import DEFAULT_OPS


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

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        tokens = to_tokens(self.group_norm(x))
        if self.norm_cross is not None:
            ctx = self.norm_cross(ctx.transpose(1, 2)).transpose(1, 2)
        k, v = self.add_k_proj(ctx), self.add_v_proj(ctx)
        if not self.only_cross:
            k = torch.cat([k, self.to_k(tokens)], dim=1)
            v = torch.cat([v, self.to_v(tokens)], dim=1)
        out = F.scaled_dot_product_attention(self._split(self.to_q(tokens)), self._split(k), self._split(v))
        out = self.to_out[0](out.transpose(1, 2).flatten(2))
        return from_tokens(out, h, w) + x
