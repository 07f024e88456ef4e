"""Global conditioning of the UNet: timestep / noise-level sinusoids and the pooled text vector."""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from .ops import DEFAULT_OPS


def activation(name: str) -> nn.Module:
    """The module for a diffusers ``act_fn`` name (``gelu`` is the exact erf GELU)."""
    return {"gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish}[name]()


def sinusoidal_embedding(t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool = True,
                         freq_shift: float = 0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps (DDPM, Ho et al. 2020). t: [B] -> [B, dim] float32, [cos, sin] when flipped."""
    half = dim // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    angles = t[:, None].float() * freqs[None, :]
    emb = torch.cat([angles.cos(), angles.sin()] if flip_sin_to_cos else [angles.sin(), angles.cos()], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepMLP(nn.Module):
    """linear_1 -> act -> linear_2 on a sinusoidal embedding ([B, in_dim] -> [B, out_dim])."""

    def __init__(self, in_dim: int, out_dim: int, act_fn: str, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.linear_1 = ops.Linear(in_dim, out_dim, **factory)
        self.act = activation(act_fn)
        self.linear_2 = ops.Linear(out_dim, out_dim, **factory)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(emb)))


class AttentionPool(nn.Module):
    """Attention pooling of text tokens into one vector (the IF ``encoder_pooling``): [B, L, D] -> [B, D].

    The query is the mean token plus a learned positional embedding; keys and values are
    [query token; all tokens]. Heads split channels as head * (D / heads) + j.
    """

    device_tolerant = True  # its own parameter moves to the input's device per call (see forward)

    def __init__(self, dim: int, num_heads: int, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.num_heads = num_heads
        self.positional_embedding = nn.Parameter(torch.randn(1, dim, **factory) / dim**0.5)
        self.k_proj = ops.Linear(dim, dim, **factory)
        self.q_proj = ops.Linear(dim, dim, **factory)
        self.v_proj = ops.Linear(dim, dim, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, d = x.shape
        # .to(device=...): under partial loading (ComfyUI low-VRAM) this non-leaf parameter may stay on the host
        cls = x.mean(dim=1, keepdim=True) + self.positional_embedding.to(device=x.device, dtype=x.dtype)
        seq = torch.cat([cls, x], dim=1)

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, -1, self.num_heads, d // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(cls)), heads(self.k_proj(seq)), heads(self.v_proj(seq)))
        return out.transpose(1, 2).reshape(b, d)


class TextPoolEmbedding(nn.Module):
    """``add_embedding``: LayerNorm -> attention pool -> Linear -> LayerNorm. T5 states [B, L, D] -> [B, Dt]."""

    def __init__(self, text_dim: int, time_embed_dim: int, num_heads: int, ops=DEFAULT_OPS, **factory):
        super().__init__()
        self.norm1 = ops.LayerNorm(text_dim, **factory)
        self.pool = AttentionPool(text_dim, num_heads, ops, **factory)
        self.proj = ops.Linear(text_dim, time_embed_dim, **factory)
        self.norm2 = ops.LayerNorm(time_embed_dim, **factory)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.proj(self.pool(self.norm1(text))))
