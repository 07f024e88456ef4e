"""UNetConfig: real IF configs build with exactly the published keys/shapes; bad values are named."""
import logging
from pathlib import Path

import pytest
import torch

from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from cascade_core.unet.presets import PRESETS
from tiny_unets import TINY_IF_I

DATA = Path(__file__).parent / "data"  # key lists dumped from diffusers for the published configs


def _reference_keys(path):
    import ast
    out = {}
    with open(path) as f:
        for line in f:
            name, shape = line.rstrip("\n").split("\t")
            out[name] = tuple(ast.literal_eval(shape))
    return out


def _meta_model(config: dict) -> UNet:
    with torch.device("meta"):
        return UNet(UNetConfig.from_diffusers_config(config))


@pytest.mark.parametrize("name,params", [("IF-I-XL", 4_304_695_110), ("IF-II-L", 1_243_277_190)])
def test_real_configs_match_published_key_lists(name, params):
    model = _meta_model(PRESETS[name])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == _reference_keys(DATA / f"keys_{name}.txt")
    assert sum(p.numel() for p in model.parameters()) == params


def test_inferred_variant_sizes_match_spec():
    counts = {n: sum(p.numel() for p in _meta_model(PRESETS[n]).parameters()) for n in ("IF-I-L", "IF-I-M", "IF-II-M")}
    assert counts == {"IF-I-L": 935_365_830, "IF-I-M": 371_605_830, "IF-II-M": 482_483_334}


@pytest.mark.parametrize("field,value", [
    ("down_block_types", ["ResnetDownsampleBlock2D", "AttnDownBlock2D", "SimpleCrossAttnDownBlock2D"]),
    ("up_block_types", ["SimpleCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"]),
    ("mid_block_type", "UNetMidBlock2D"),
    ("transformer_layers_per_block", [[1, 2], 1, 1]),
    ("num_attention_heads", 8),
    ("act_fn", "relu"),
    ("resnet_time_scale_shift", "ada_group"),
    ("addition_embed_type", "text_time"),
    ("class_embed_type", "projection"),
    ("time_embedding_type", "fourier"),
    ("conv_in_kernel", 1),
    ("encoder_hid_dim_type", "image_proj"),
    ("dual_cross_attention", True),
])
def test_unsupported_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        UNetConfig.from_diffusers_config(dict(TINY_IF_I, **{field: value}))


def test_inconsistent_sizes_rejected():
    with pytest.raises(ValueError, match="norm_num_groups"):
        UNetConfig.from_diffusers_config(dict(TINY_IF_I, block_out_channels=[30, 64, 96]))
    with pytest.raises(ValueError, match="layers_per_block"):
        UNetConfig.from_diffusers_config(dict(TINY_IF_I, layers_per_block=[1, 2]))
    with pytest.raises(ValueError, match="_class_name"):
        UNetConfig.from_diffusers_config(dict(TINY_IF_I, _class_name="UNet2DModel"))


def test_defaults_and_unknown_keys(caplog):
    cfg = {k: v for k, v in TINY_IF_I.items() if k != "encoder_hid_dim_type"}
    with caplog.at_level(logging.WARNING):
        c = UNetConfig.from_diffusers_config(dict(cfg, some_future_key=3))
    assert c.encoder_hid_dim_type == "text_proj"  # old IF-II-M configs omit it
    assert "some_future_key" in caplog.text
    assert c.layers_per_block == (2, 2, 2) and c.only_cross_attention == (False,) * 3


def test_config_roundtrip():
    c = UNetConfig.from_diffusers_config(PRESETS["IF-II-L"])
    assert UNetConfig.from_diffusers_config(c.to_dict()) == c
