"""Known UNet architectures (diffusers ``config.json`` contents), used to name what a file holds.

IF-I-XL, IF-II-L and the SD x4 upscaler are the published hub configs; the IF L/M variants follow the
same pattern with a smaller base width (IF spec §1.3/§1.5: inferred from parameter counts). Loaders
always prefer a checkpoint's own ``config.json``; these tables label files and build test models.
"""
from __future__ import annotations

_IF_COMMON = dict(
    act_fn="gelu", norm_num_groups=32, norm_eps=1e-5, attention_head_dim=64, encoder_hid_dim=4096,
    encoder_hid_dim_type="text_proj", addition_embed_type="text", addition_embed_type_num_heads=64,
    resnet_time_scale_shift="scale_shift", mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    cross_attention_norm="group_norm", only_cross_attention=False, out_channels=6,
)
# the IF-II "efficient" conventions (convert_if.py): gelu on the summed embedding, no per-resnet act,
# residuals divided by 1/0.7071 (not sqrt(2))
IF_II_SCALE = 1.4142271248762552
_IF_II_COMMON = dict(
    _IF_COMMON, in_channels=6, class_embed_type="timestep", time_embedding_act_fn="gelu",
    resnet_skip_time_act=True, resnet_out_scale_factor=IF_II_SCALE, mid_block_scale_factor=IF_II_SCALE,
)


def if_i_config(width: int) -> dict:
    """IF stage I (64x64 base) with base width ``width`` (704 XL, 320 L, 192 M)."""
    return dict(
        _IF_COMMON, sample_size=64, in_channels=3,
        down_block_types=["ResnetDownsampleBlock2D"] + ["SimpleCrossAttnDownBlock2D"] * 3,
        up_block_types=["SimpleCrossAttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"],
        block_out_channels=[width * m for m in (1, 2, 3, 4)], layers_per_block=3, cross_attention_dim=4 * width,
    )


def if_ii_config(width: int) -> dict:
    """IF stage II (64 -> 256 super-resolution) with base width ``width`` (160 L, 96 M)."""
    return dict(
        _IF_II_COMMON, sample_size=256,
        down_block_types=["ResnetDownsampleBlock2D"] * 3 + ["SimpleCrossAttnDownBlock2D"] * 2,
        up_block_types=["SimpleCrossAttnUpBlock2D"] * 2 + ["ResnetUpsampleBlock2D"] * 3,
        block_out_channels=[width * m for m in (1, 2, 4, 6, 8)], layers_per_block=[2, 2, 3, 5, 5],
        cross_attention_dim=8 * width, time_embedding_dim=8 * width,
    )


# stabilityai/stable-diffusion-x4-upscaler unet/config.json (IF spec §1.7); absent fields take diffusers' defaults
SD_X4_UPSCALER = dict(
    sample_size=128, in_channels=7, out_channels=4, act_fn="silu",
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    block_out_channels=[256, 512, 512, 1024], layers_per_block=2, attention_head_dim=8, cross_attention_dim=1024,
    num_class_embeds=1000, only_cross_attention=[True, True, True, False], use_linear_projection=True,
    norm_num_groups=32, norm_eps=1e-5, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
    mid_block_scale_factor=1,
)

PRESETS: dict[str, dict] = {
    "IF-I-XL": if_i_config(704),
    "IF-I-L": if_i_config(320),
    "IF-I-M": if_i_config(192),
    "IF-II-L": if_ii_config(160),
    "IF-II-M": if_ii_config(96),
    "SD-x4-upscaler": SD_X4_UPSCALER,
}


def preset_name(config: dict) -> str | None:
    """The published model a config dict equals in architecture, or None."""
    keys = ("in_channels", "block_out_channels", "layers_per_block", "down_block_types", "cross_attention_dim")
    for name, preset in PRESETS.items():
        if all(_norm(config.get(k)) == _norm(preset[k]) for k in keys):
            return name
    return None


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v
