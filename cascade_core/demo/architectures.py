"""Architectures of the built-in demo cascade (diffusers ``config.json`` dicts), small enough for a CPU.

The same UNet class and block families as the published models: ``BASE64`` is an IF-I (stage I) UNet,
``SR256`` an IF-II (64 -> 256) UNet, ``SR1024`` a pixel-space 256 -> 1024 SR UNet in Imagen's "efficient"
spirit (convolutional levels at high resolution, text only through pooled embedding and cross-attention at
the lowest level, so it runs on full images after training on crops). ``T5`` is the tiny text encoder all
three are conditioned on (``d_model`` = ``TEXT_DIM``).
"""
from __future__ import annotations

TEXT_DIM = 128  # d_model of the demo T5 (a multiple of 64: IF's pooled-text head takes text_dim / 64 heads)

_IF = dict(
    act_fn="gelu", norm_num_groups=8, norm_eps=1e-5, encoder_hid_dim=TEXT_DIM, encoder_hid_dim_type="text_proj",
    addition_embed_type="text", addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift",
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_norm="group_norm", only_cross_attention=False,
    out_channels=6,
)
_SR = dict(
    _IF, in_channels=6, class_embed_type="timestep", time_embedding_act_fn="gelu", resnet_skip_time_act=True,
    resnet_out_scale_factor=1.4142271248762552, mid_block_scale_factor=1.4142271248762552,
)

BASE64 = dict(
    _IF, sample_size=64, in_channels=3,
    down_block_types=["ResnetDownsampleBlock2D"] * 2 + ["SimpleCrossAttnDownBlock2D"] * 2,
    up_block_types=["SimpleCrossAttnUpBlock2D"] * 2 + ["ResnetUpsampleBlock2D"] * 2,
    block_out_channels=[16, 48, 96, 128], layers_per_block=[1, 1, 1, 1], attention_head_dim=32,
    cross_attention_dim=128,
)
SR256 = dict(
    _SR, sample_size=256,
    down_block_types=["ResnetDownsampleBlock2D"] * 3 + ["SimpleCrossAttnDownBlock2D"],
    up_block_types=["SimpleCrossAttnUpBlock2D"] + ["ResnetUpsampleBlock2D"] * 3,
    block_out_channels=[16, 32, 64, 128], layers_per_block=[1, 1, 1, 2], attention_head_dim=32,
    cross_attention_dim=128, time_embedding_dim=128,
)
SR1024 = dict(
    _SR, sample_size=1024,
    down_block_types=["ResnetDownsampleBlock2D"] * 4 + ["SimpleCrossAttnDownBlock2D"],
    up_block_types=["SimpleCrossAttnUpBlock2D"] + ["ResnetUpsampleBlock2D"] * 4,
    block_out_channels=[8, 16, 32, 64, 128], layers_per_block=[1, 1, 1, 1, 2], attention_head_dim=32,
    only_cross_attention=True, cross_attention_dim=128, time_embedding_dim=128,
)

UNETS: dict[str, dict] = {"base64": BASE64, "sr256": SR256, "sr1024": SR1024}
