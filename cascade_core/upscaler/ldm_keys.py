"""The original single-file x4 checkpoint (``x4-upscaler-ema.safetensors``, LDM / SD 2 key names).

One file holds three models under prefixes: ``model.diffusion_model.`` (the UNet, LDM ``openaimodel``
names), ``first_stage_model.`` (the AutoencoderKL) and ``cond_stage_model.model.`` (the OpenCLIP ViT-H
text tower). Each stored name is mapped to our (diffusers) key; the architectures are read from tensor
shapes. What shapes cannot show follows the x4's published config: 8 heads per UNet attention, 32
GroupNorm groups, silu, self-attention where a level's width equals the text width, the penultimate
OpenCLIP layer (the last resblock is unused), scaling factor 0.08333. Nothing is converted on disk.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from ..unet.presets import SD_X4_UPSCALER
from ..weights import Source, TensorInfo

__all__ = ["UNET_PREFIX", "VAE_PREFIX", "CLIP_PREFIX", "is_ldm_checkpoint", "ldm_unet", "ldm_vae", "ldm_clip"]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.model."

_RESNET = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
           ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."),
           ("nin_shortcut.", "conv_shortcut."))
_UNET_TOP = {"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
             "input_blocks.0.0.": "conv_in.", "out.0.": "conv_norm_out.", "out.2.": "conv_out.",
             "label_emb.": "class_embedding.", "middle_block.0.": "mid_block.resnets.0.",
             "middle_block.1.": "mid_block.attentions.0.", "middle_block.2.": "mid_block.resnets.1."}
_VAE_ATTN = (("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0."))
_CLIP_LAYER = (("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
               ("mlp.c_proj.", "mlp.fc2."), ("attn.out_proj.", "self_attn.out_proj."))
_CLIP_TOP = {"token_embedding.weight": "embeddings.token_embedding.weight",
             "positional_embedding": "embeddings.position_embedding.weight",
             "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
_CLIP_UNUSED = ("text_projection", "logit_scale", "attn_mask")


def is_ldm_checkpoint(names: set[str]) -> bool:
    """Whether a file's tensor names use the original LDM layout (UNet under ``model.diffusion_model.``)."""
    return any(n.startswith(UNET_PREFIX) for n in names)


def _swap(rest: str, table) -> str:
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def _locate(index: int, sizes: list[int]) -> tuple[int, int]:
    """Level and position of the index-th entry when level i holds sizes[i] consecutive entries."""
    for level, size in enumerate(sizes):
        if index < size:
            return level, index
        index -= size
    raise IndexError(index)


def _unet_key(rest: str, down_sizes: list[int], up_sizes: list[int]) -> str:
    """diffusers key for an LDM UNet name (prefix removed); unknown names come back unchanged."""
    for old, new in _UNET_TOP.items():
        if rest.startswith(old):
            return new + _swap(rest[len(old):], _RESNET)
    m = re.match(r"(input|output)_blocks\.(\d+)\.(\d+)\.(.*)", rest)
    if not m:
        return rest
    side, k, sub, tail = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
    if side == "input":
        level, j = _locate(k - 1, down_sizes)
        if tail.startswith("op."):
            return f"down_blocks.{level}.downsamplers.0.conv.{tail[3:]}"
        part = "resnets" if sub == 0 else "attentions"
        return f"down_blocks.{level}.{part}.{j}.{_swap(tail, _RESNET)}"
    level, j = _locate(k, up_sizes)
    if tail.startswith("conv."):
        return f"up_blocks.{level}.upsamplers.0.{tail}"
    part = "resnets" if sub == 0 else "attentions"
    return f"up_blocks.{level}.{part}.{j}.{_swap(tail, _RESNET)}"


def _unet_levels(shapes: Mapping[str, tuple]) -> tuple[list[int], list[int], list[bool]]:
    """(resnets per down level, channels per level, attention per level) from the input blocks."""
    inputs = sorted({int(m.group(1)) for n in shapes if (m := re.match(r"input_blocks\.(\d+)\.", n))} - {0})
    layers, widths, attention, count = [], [], [], 0
    for k in inputs:
        if f"input_blocks.{k}.0.op.weight" in shapes:
            layers.append(count)
            count = 0
            continue
        if count == 0:
            widths.append(shapes[f"input_blocks.{k}.0.out_layers.3.weight"][0])
            attention.append(f"input_blocks.{k}.1.proj_in.weight" in shapes)
        count += 1
    layers.append(count)
    return layers, widths, attention


def _unet_config(shapes: Mapping[str, tuple]) -> dict:
    """A diffusers UNet config for the LDM UNet whose (prefix-free) tensor shapes are given."""
    layers, widths, attention = _unet_levels(shapes)
    context = next(s[1] for n, s in shapes.items() if n.endswith("attn2.to_k.weight"))
    only_cross = []
    for k, (w, a) in zip(_first_inputs(layers), zip(widths, attention)):
        to_k = shapes.get(f"input_blocks.{k}.1.transformer_blocks.0.attn1.to_k.weight")
        only_cross.append(bool(a and to_k is not None and to_k[1] != w))
    proj = next(s for n, s in shapes.items() if n.endswith(".proj_in.weight"))
    depth = len({n.split(".transformer_blocks.")[1].split(".")[0] for n in shapes
                 if n.startswith("middle_block.1.transformer_blocks.")})
    return dict(
        SD_X4_UPSCALER,
        in_channels=shapes["input_blocks.0.0.weight"][1], out_channels=shapes["out.2.weight"][0],
        block_out_channels=widths, layers_per_block=layers[0] if len(set(layers)) == 1 else layers,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        only_cross_attention=only_cross, cross_attention_dim=context, use_linear_projection=len(proj) == 2,
        num_class_embeds=shapes["label_emb.weight"][0] if "label_emb.weight" in shapes else None,
        transformer_layers_per_block=max(depth, 1),
    )


def _first_inputs(layers: list[int]) -> list[int]:
    """Index of each level's first input block (input_blocks.0 is conv_in; a downsampler ends each level)."""
    firsts, k = [], 1
    for n in layers:
        firsts.append(k)
        k += n + 1
    return firsts


def _strip(header: Mapping[str, TensorInfo], prefix: str) -> dict[str, tuple]:
    return {n[len(prefix):]: info.shape for n, info in header.items() if n.startswith(prefix)}


def ldm_unet(path: Path, header: Mapping[str, TensorInfo]) -> tuple[dict, dict[str, Source]]:
    """(diffusers UNet config, sources keyed by our UNet keys) for the ``model.diffusion_model.`` tensors."""
    shapes = _strip(header, UNET_PREFIX)
    config = _unet_config(shapes)
    down = [n + 1 for n in _unet_levels(shapes)[0]]
    down[-1] -= 1  # the deepest level has no downsampler
    up = [n + 1 for n in reversed(_unet_levels(shapes)[0])]
    sources = {_unet_key(n, down, up): Source(path, UNET_PREFIX + n) for n in shapes}
    return config, sources


def _vae_key(rest: str, levels: int) -> str | None:
    """diffusers decoder key for an LDM VAE name (prefix removed); None for encoder-side tensors."""
    if rest.startswith(("encoder.", "quant_conv.")):
        return None
    rest = rest.replace("decoder.norm_out.", "decoder.conv_norm_out.")
    if rest.startswith("decoder.mid.attn_1."):
        return "decoder.mid_block.attentions.0." + _swap(rest[len("decoder.mid.attn_1."):], _VAE_ATTN)
    m = re.match(r"decoder\.mid\.block_(\d)\.(.*)", rest)
    if m:
        return f"decoder.mid_block.resnets.{int(m.group(1)) - 1}.{_swap(m.group(2), _RESNET)}"
    m = re.match(r"decoder\.up\.(\d+)\.(block\.(\d+)|upsample)\.(.*)", rest)
    if m:
        block = levels - 1 - int(m.group(1))  # LDM counts up levels from the highest resolution
        if m.group(2) == "upsample":
            return f"decoder.up_blocks.{block}.upsamplers.0.{m.group(4)}"
        return f"decoder.up_blocks.{block}.resnets.{m.group(3)}.{_swap(m.group(4), _RESNET)}"
    return rest


def ldm_vae(path: Path, header: Mapping[str, TensorInfo]) -> tuple[dict, dict[str, Source]]:
    """(diffusers AutoencoderKL config, decoder sources) for the ``first_stage_model.`` tensors."""
    shapes = _strip(header, VAE_PREFIX)
    levels = len({m.group(1) for n in shapes if (m := re.match(r"decoder\.up\.(\d+)\.", n))})
    widths = [shapes[f"decoder.up.{i}.block.0.conv2.weight"][0] for i in range(levels)]
    config = dict(
        block_out_channels=widths, latent_channels=shapes["decoder.conv_in.weight"][1],
        out_channels=shapes["decoder.conv_out.weight"][0], norm_num_groups=32, act_fn="silu",
        layers_per_block=len({n.split(".")[4] for n in shapes if n.startswith("decoder.up.0.block.")}) - 1,
        use_post_quant_conv="post_quant_conv.weight" in shapes, scaling_factor=0.08333,
        mid_block_add_attention=any(n.startswith("decoder.mid.attn_1.") for n in shapes),
    )
    sources = {}
    for n in shapes:
        key = _vae_key(n, levels)
        if key is not None:
            sources[key] = Source(path, VAE_PREFIX + n)
    return config, sources


def ldm_clip(path: Path, header: Mapping[str, TensorInfo]) -> tuple[dict, dict[str, Source]] | None:
    """(transformers CLIPTextConfig dict, sources with bare CLIP keys) for the OpenCLIP text tower, or None
    when the file has none. The packed ``attn.in_proj_*`` rows [q; k; v] feed q_proj, k_proj and v_proj."""
    shapes = _strip(header, CLIP_PREFIX)
    if "token_embedding.weight" not in shapes:
        return None
    blocks = len({n.split(".")[2] for n in shapes if n.startswith("transformer.resblocks.")})
    vocab, hidden = shapes["token_embedding.weight"]
    config = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=blocks - 1, num_attention_heads=hidden // 64,
                  intermediate_size=shapes["transformer.resblocks.0.mlp.c_fc.weight"][0],
                  max_position_embeddings=shapes["positional_embedding"][0], hidden_act="gelu",
                  layer_norm_eps=1e-5, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0)
    sources = {}
    for n in shapes:
        src = Source(path, CLIP_PREFIX + n)
        m = re.match(r"transformer\.resblocks\.(\d+)\.(.*)", n)
        if n in _CLIP_TOP:
            sources[_CLIP_TOP[n]] = src
        elif m and int(m.group(1)) < blocks - 1:
            layer, rest = f"encoder.layers.{m.group(1)}.", m.group(2)
            packed = re.match(r"attn\.in_proj_(weight|bias)", rest)
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj") if packed else ()):
                sources[f"{layer}self_attn.{proj}.{packed.group(1)}"] = src._replace(part=(i, 3))
            if not packed:
                sources[layer + _swap(rest, _CLIP_LAYER)] = src
        elif not m and not n.startswith(_CLIP_UNUSED):
            sources[n] = src  # reported as unexpected
    return config, sources
