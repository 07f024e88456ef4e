"""Tiny diffusers UNet configs that exercise every IF block path (from the IF spec), and builders."""
from __future__ import annotations

import torch

_IF_COMMON = dict(
    norm_num_groups=8, attention_head_dim=16, encoder_hid_dim=48, encoder_hid_dim_type="text_proj",
    addition_embed_type="text", addition_embed_type_num_heads=4, act_fn="gelu",
    resnet_time_scale_shift="scale_shift", mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    cross_attention_norm="group_norm",
)
TINY_IF_I = dict(
    _IF_COMMON, sample_size=16, in_channels=3, out_channels=6,
    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    block_out_channels=[32, 64, 96], layers_per_block=2, cross_attention_dim=64,
)
TINY_IF_II = dict(
    _IF_COMMON, sample_size=32, in_channels=6, out_channels=6,
    down_block_types=["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                      "SimpleCrossAttnDownBlock2D"],
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D",
                    "ResnetUpsampleBlock2D"],
    block_out_channels=[16, 32, 64, 96], layers_per_block=[1, 2, 2, 3], cross_attention_dim=96,
    class_embed_type="timestep", time_embedding_dim=96, time_embedding_act_fn="gelu", resnet_skip_time_act=True,
    resnet_out_scale_factor=1 / 0.7071, mid_block_scale_factor=1 / 0.7071,
)
TINY_IF_II_ONLYCROSS = dict(TINY_IF_II, only_cross_attention=True)
# "micro" sizes: fast enough for whole sampling loops on 2 CPU cores
MICRO_IF_I = dict(
    TINY_IF_I, sample_size=8, block_out_channels=[16, 32, 32], layers_per_block=1, norm_num_groups=4,
    attention_head_dim=8, cross_attention_dim=32, encoder_hid_dim=16, addition_embed_type_num_heads=2,
)
MICRO_IF_II = dict(
    TINY_IF_II, sample_size=16, block_out_channels=[8, 16, 32, 32], layers_per_block=[1, 2, 1, 1],
    norm_num_groups=4, attention_head_dim=8, cross_attention_dim=32, encoder_hid_dim=16,
    addition_embed_type_num_heads=2, time_embedding_dim=32,
)
CONFIGS = {"if_i": TINY_IF_I, "if_ii": TINY_IF_II, "if_ii_onlycross": TINY_IF_II_ONLYCROSS,
           "micro_if_i": MICRO_IF_I, "micro_if_ii": MICRO_IF_II}


def perturb_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Add N(0, std) to every parameter so norms, biases and embeddings are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def diffusers_unet(config: dict, seed: int = 0):
    """A randomly initialised (and perturbed) diffusers UNet2DConditionModel for ``config``."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return perturb_(UNet2DConditionModel(**config), seed)

# Single files carry no config: these follow IF's unwritten conventions (head size 64, 32 groups,
# one pooling head per 64 text channels), so inference from shapes alone must rebuild them exactly.
FILE_IF_I = dict(
    TINY_IF_I, block_out_channels=[32, 64, 128], layers_per_block=1, norm_num_groups=32, attention_head_dim=64,
    cross_attention_dim=64, encoder_hid_dim=64, addition_embed_type_num_heads=1, sample_size=8,
)
FILE_IF_II = dict(
    TINY_IF_II, block_out_channels=[32, 32, 64, 128], layers_per_block=[1, 2, 1, 1], norm_num_groups=32,
    attention_head_dim=64, cross_attention_dim=64, encoder_hid_dim=64, addition_embed_type_num_heads=1,
    time_embedding_dim=64, resnet_out_scale_factor=1.4142271248762552, mid_block_scale_factor=1.4142271248762552,
    sample_size=16,
)
FILE_IF_II_ONLYCROSS = dict(FILE_IF_II, only_cross_attention=True)

# SD x4 upscaler family (IF spec §4.1): DownBlock2D / CrossAttn* levels, Transformer2D with linear projection,
# per-level only-cross attention, nn.Embedding noise level. attention_head_dim is the head COUNT here.
TINY_X4 = dict(
    sample_size=16, in_channels=7, out_channels=4,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    block_out_channels=[32, 64, 64], layers_per_block=2, norm_num_groups=8, attention_head_dim=4,
    cross_attention_dim=32, num_class_embeds=1000, only_cross_attention=[True, True, False],
    use_linear_projection=True, act_fn="silu",
)
MICRO_X4 = dict(
    TINY_X4, sample_size=8, block_out_channels=[16, 32, 32], layers_per_block=1, norm_num_groups=4,
    attention_head_dim=2, cross_attention_dim=16,
)
# the other Transformer2D options diffusers honours: 1x1-conv projections, two layers, fp32 softmax
TINY_X4_CONV_PROJ = dict(
    MICRO_X4, use_linear_projection=False, transformer_layers_per_block=[1, 2, 2], upcast_attention=True,
    only_cross_attention=False, attention_head_dim=[2, 4, 2],
)
CONFIGS.update(x4=TINY_X4, micro_x4=MICRO_X4, x4_conv_proj=TINY_X4_CONV_PROJ)
