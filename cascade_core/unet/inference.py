"""Infer an IF UNet architecture from a single safetensors file's tensor names and shapes.

Weights fix every width and block count. What weights cannot show (attention head size, GroupNorm
groups, activation choices, residual scaling) follows the IF conventions: head size 64, 32 groups,
exact GELU, and for super-resolution models (those with a noise-level ``class_embedding``) IF-II's
gelu-after-sum / skip-time-act / 1/0.7071 residual scaling. A config stored in the file's metadata
(key ``config``, as :func:`save_single_file` writes) takes precedence over inference.
"""
from __future__ import annotations

import json
import re
from typing import Mapping

from ..weights import TensorInfo
from .presets import IF_II_SCALE, preset_name

_HEAD_DIM = 64
_FOREIGN_LAYOUTS = (
    ("model.diffusion_model.", "a Stable Diffusion / LDM checkpoint, not a DeepFloyd IF UNet (for "
                               "x4-upscaler-ema.safetensors use load_upscaler)"),
    ("input_blocks.", "an original DeepFloyd/LDM UNet checkpoint (input_blocks.*); load the diffusers unet/ "
                      "folder of the same model instead"),
    ("encoder.block.", "a T5 text encoder; load it with the text-encoder loader"),
    ("shared.weight", "a T5 text encoder; load it with the text-encoder loader"),
    ("transformer_blocks.", "a Stable-Diffusion-style UNet (transformer blocks), not a DeepFloyd IF UNet; the x4 "
                            "upscaler loads from its repo folder with load_upscaler"),
)


def _count(names, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for n in names if (m := rx.match(n))})


def _refuse_foreign(names: set[str]) -> None:
    for marker, what in _FOREIGN_LAYOUTS:
        if any(n.startswith(marker) or f".{marker}" in n for n in names):
            raise ValueError(f"this file looks like {what}")
    required = {"conv_in.weight", "conv_out.weight", "time_embedding.linear_1.weight",
                "down_blocks.0.resnets.0.conv1.weight"}
    if not required <= names:
        missing = sorted(required - names)
        raise ValueError(f"not a DeepFloyd IF UNet checkpoint in diffusers layout (missing {missing})")


def _levels(names: set[str], shapes: Mapping[str, tuple]) -> dict:
    n = _count(names, r"down_blocks\.(\d+)\.")
    widths = [shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(n)]
    layers = [_count(names, rf"down_blocks\.{i}\.resnets\.(\d+)\.") for i in range(n)]
    down_attn = [f"down_blocks.{i}.attentions.0.to_q.weight" in names for i in range(n)]
    up_attn = [f"up_blocks.{i}.attentions.0.to_q.weight" in names for i in range(n)]
    cross_only = [bool(a) and f"down_blocks.{i}.attentions.0.to_k.weight" not in names for i, a in enumerate(down_attn)]
    return dict(
        down_block_types=["SimpleCrossAttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in down_attn],
        up_block_types=["SimpleCrossAttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in up_attn],
        block_out_channels=widths,
        layers_per_block=layers[0] if len(set(layers)) == 1 else layers,
        only_cross_attention=cross_only[0] if len(set(cross_only)) == 1 else cross_only,
        mid_block_only_cross_attention="mid_block.attentions.0.to_k.weight" not in names,
    )


def infer_unet_config(header: Mapping[str, TensorInfo], metadata: Mapping[str, str] | None = None) -> dict:
    """A diffusers-style config dict for the UNet whose tensors ``header`` describes."""
    if metadata and "config" in metadata:
        return json.loads(metadata["config"])
    names = set(header)
    _refuse_foreign(names)
    shapes = {k: v.shape for k, v in header.items()}
    cfg = dict(_levels(names, shapes), act_fn="gelu", norm_num_groups=32, norm_eps=1e-5,
               attention_head_dim=_HEAD_DIM, resnet_time_scale_shift="scale_shift",
               mid_block_type="UNetMidBlock2DSimpleCrossAttn",
               in_channels=shapes["conv_in.weight"][1], out_channels=shapes["conv_out.weight"][0])
    width0, emb_dim = cfg["block_out_channels"][0], shapes["time_embedding.linear_1.weight"][0]
    cfg["time_embedding_dim"] = None if emb_dim == 4 * width0 else emb_dim
    if "encoder_hid_proj.weight" in names:
        cfg["cross_attention_dim"], cfg["encoder_hid_dim"] = shapes["encoder_hid_proj.weight"]
        cfg["encoder_hid_dim_type"] = "text_proj"
    else:
        cfg["cross_attention_dim"] = shapes["mid_block.attentions.0.add_k_proj.weight"][1]
    has_norm_cross = any(".norm_cross." in n for n in names)
    cfg["cross_attention_norm"] = "group_norm" if has_norm_cross else None
    if "add_embedding.proj.weight" in names:
        text_dim = shapes["add_embedding.proj.weight"][1]
        cfg.update(addition_embed_type="text", addition_embed_type_num_heads=max(1, text_dim // _HEAD_DIM))
    if "class_embedding.linear_1.weight" in names:  # IF-II: noise-level embedding and its conventions
        cfg.update(class_embed_type="timestep", time_embedding_act_fn="gelu", resnet_skip_time_act=True,
                   resnet_out_scale_factor=IF_II_SCALE, mid_block_scale_factor=IF_II_SCALE, sample_size=256)
    else:
        cfg["sample_size"] = 64
    return cfg


def describe(config: Mapping) -> str:
    """A human name for a config: the published model it matches, or its stage and widths."""
    name = preset_name(dict(config))
    if name:
        return name
    if config.get("num_class_embeds") is not None:
        stage = "SD-x4-like latent upscaler"
    else:
        stage = "IF-II-like super-resolution" if config.get("class_embed_type") else "IF-I-like base"
    return f"{stage} UNet (block_out_channels={list(config['block_out_channels'])})"
