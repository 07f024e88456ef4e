"""The layer constructors UNet modules are built from; callers may inject others (e.g. ComfyUI's casting ops).

``nn.GroupNorm`` is used as is: on the H200 with torch 2.11 its CUDA kernel keeps channels-last
tensors channels-last (no layout-conversion kernels in a profiled IF-I-XL forward), and a hand-written
NHWC GroupNorm was slower (52 ms vs 36 ms per forward, eager; 74 ms through torch.compile):
``bench/results/unet_speed_first_run.json``.
"""
from types import SimpleNamespace

from torch import nn

DEFAULT_OPS = SimpleNamespace(Linear=nn.Linear, Conv2d=nn.Conv2d, GroupNorm=nn.GroupNorm, LayerNorm=nn.LayerNorm,
                              Embedding=nn.Embedding)
