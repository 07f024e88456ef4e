"""The layer constructors UNet modules are built from; callers may inject others (e.g. ComfyUI's casting ops)."""
from types import SimpleNamespace

from torch import nn

from .norm import GroupNorm

DEFAULT_OPS = SimpleNamespace(Linear=nn.Linear, Conv2d=nn.Conv2d, GroupNorm=GroupNorm, LayerNorm=nn.LayerNorm,
                              Embedding=nn.Embedding)
