"""UNet configuration: a frozen dataclass read from a diffusers ``config.json``.

The fields mirror diffusers' ``UNet2DConditionModel`` names so that real IF checkpoints and the SD x4
upscaler (``unet/config.json``) map one to one. Values this implementation does not support raise a
``ValueError`` naming the field; unknown keys are logged and ignored, as diffusers does.

Two block families share the model: IF's (resnet resamplers, "simple" attention where
``attention_head_dim`` is the head *size*) and Stable Diffusion's (conv resamplers, Transformer2D
attention where ``attention_head_dim`` is the head *count*, a diffusers naming quirk).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

logger = logging.getLogger(__name__)

SIMPLE_ATTN_MID = "UNetMidBlock2DSimpleCrossAttn"
CROSS_ATTN_MID = "UNetMidBlock2DCrossAttn"


@dataclass(frozen=True)
class BlockKind:
    """What a diffusers block type is made of.

    ``attention``: None, ``"simple"`` (IF: image tokens attend to [text; image], ``attention_head_dim`` is
    the head size) or ``"transformer"`` (SD: Transformer2D, ``attention_head_dim`` is the number of heads).
    ``resample``: ``"resnet"`` (IF: a resnet that average-pools / nearest-upsamples, residuals scaled by
    ``resnet_out_scale_factor``) or ``"conv"`` (SD: strided conv / nearest + conv, residual scale 1).
    """

    attention: str | None
    resample: str


# The registry of supported block types (diffusers names); the UNet builds levels from these entries.
DOWN_BLOCKS: dict[str, BlockKind] = {
    "ResnetDownsampleBlock2D": BlockKind(None, "resnet"),
    "SimpleCrossAttnDownBlock2D": BlockKind("simple", "resnet"),
    "DownBlock2D": BlockKind(None, "conv"),
    "CrossAttnDownBlock2D": BlockKind("transformer", "conv"),
}
UP_BLOCKS: dict[str, BlockKind] = {
    "ResnetUpsampleBlock2D": BlockKind(None, "resnet"),
    "SimpleCrossAttnUpBlock2D": BlockKind("simple", "resnet"),
    "UpBlock2D": BlockKind(None, "conv"),
    "CrossAttnUpBlock2D": BlockKind("transformer", "conv"),
}
MID_BLOCKS: dict[str, str] = {SIMPLE_ATTN_MID: "simple", CROSS_ATTN_MID: "transformer"}

DOWN_BLOCK_TYPES = tuple(DOWN_BLOCKS)
UP_BLOCK_TYPES = tuple(UP_BLOCKS)
MID_BLOCK_TYPES = tuple(MID_BLOCKS)
ACTIVATIONS = ("gelu", "silu", "swish", "mish")

# diffusers fields whose value must be one of these (paths other checkpoints use, not IF).
_FIXED_VALUES: dict[str, tuple[Any, ...]] = {
    "center_input_sample": (False,),
    "time_embedding_type": ("positional",),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "dual_cross_attention": (False,),
    "class_embeddings_concat": (False,),
    "attention_type": ("default",),
    "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,),
    "addition_time_embed_dim": (None,),
    "projection_class_embeddings_input_dim": (None,),
    "reverse_transformer_layers_per_block": (None,),
    "num_attention_heads": (None,),  # diffusers itself refuses it for UNet2DConditionModel
    "downsample_padding": (1,),
    "dropout": (0, 0.0),
}
_IGNORED_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}


def check_diffusers_config(cfg: Mapping[str, Any], class_name: str, known: set[str], what: str) -> None:
    """Refuse a config of another diffusers class (``_class_name``); log keys outside ``known`` (ignored,
    as diffusers ignores them)."""
    name = cfg.get("_class_name", class_name)
    if name != class_name:
        raise ValueError(f"{what} config: _class_name is {name!r}; expected {class_name!r}")
    unknown = set(cfg) - known - _IGNORED_KEYS
    if unknown:
        logger.warning("%s config: ignoring unknown keys %s", what, sorted(unknown))


def _per_block(value: Any, n: int, name: str, kind: type) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"unet config: {name} has {len(value)} entries but there are {n} down blocks")
        return tuple(kind(v) for v in value)
    return (kind(value),) * n


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of an IF-style UNet (field names as in diffusers' ``config.json``).

    Per-block fields (``layers_per_block``, ``only_cross_attention``, ``attention_head_dim``,
    ``transformer_layers_per_block``) are normalised to one entry per down block; the up path uses them
    reversed, as diffusers does. ``use_linear_projection``, ``upcast_attention`` and
    ``transformer_layers_per_block`` shape the Transformer2D levels (SD blocks) only; IF's simple
    attention does not read them (it always runs its softmax in fp32 on half inputs via SDPA).
    The defaults are diffusers' ``UNet2DConditionModel`` defaults (the one set: a ``config.json`` that omits a
    key means the same here as in diffusers); the IF presets live in :mod:`.presets`.
    """

    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: tuple[int, ...] | int = 2
    only_cross_attention: tuple[bool, ...] | bool = False
    attention_head_dim: tuple[int, ...] | int = 8
    cross_attention_dim: int = 1280
    sample_size: int | None = None
    in_channels: int = 4
    out_channels: int = 4
    mid_block_type: str | None = CROSS_ATTN_MID
    mid_block_only_cross_attention: bool | None = None  # None: follows only_cross_attention when uniform
    act_fn: str = "silu"
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    encoder_hid_dim: int | None = None
    encoder_hid_dim_type: str | None = None  # None with an encoder_hid_dim means "text_proj" (old IF configs)
    addition_embed_type: str | None = None
    addition_embed_type_num_heads: int = 64
    class_embed_type: str | None = None
    num_class_embeds: int | None = None
    time_embedding_dim: int | None = None
    time_embedding_act_fn: str | None = None
    resnet_time_scale_shift: str = "default"
    resnet_skip_time_act: bool = False
    resnet_out_scale_factor: float = 1.0
    mid_block_scale_factor: float = 1.0
    cross_attention_norm: str | None = None
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    use_linear_projection: bool = False
    upcast_attention: bool = False
    transformer_layers_per_block: tuple[int, ...] | int = 1

    def __post_init__(self) -> None:
        self._normalise()
        self._validate()

    def _normalise(self) -> None:
        """One entry per down block for the per-block fields; tuples for the block lists; derived defaults."""
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        for key in ("down_block_types", "up_block_types", "block_out_channels"):
            put(key, tuple(getattr(self, key)))
        n = len(self.down_block_types)
        layers = self.transformer_layers_per_block
        if isinstance(layers, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in layers):
            raise ValueError(f"unet config: nested transformer_layers_per_block={layers!r} (per-layer counts) "
                             "is not supported; give one count per block")
        for key, kind in (("layers_per_block", int), ("only_cross_attention", bool), ("attention_head_dim", int),
                          ("transformer_layers_per_block", int)):
            put(key, _per_block(getattr(self, key), n, key, kind))
        if self.encoder_hid_dim is not None and self.encoder_hid_dim_type is None:
            put("encoder_hid_dim_type", "text_proj")  # old IF configs omit it; diffusers defaults it too
        if self.mid_block_only_cross_attention is None:
            oca = self.only_cross_attention
            put("mid_block_only_cross_attention", bool(oca[0]) if len(set(oca)) == 1 else False)
        if isinstance(self.cross_attention_dim, (list, tuple)):
            dims = set(self.cross_attention_dim)
            if len(dims) != 1:
                raise ValueError("unet config: per-block cross_attention_dim values are not supported")
            put("cross_attention_dim", dims.pop())

    # -- derived sizes ---------------------------------------------------------------------------
    @property
    def time_embed_dim(self) -> int:
        """Width of the global conditioning vector (time + noise level + pooled text)."""
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    @property
    def text_dim(self) -> int:
        """Width of the raw text embeddings the model takes (T5 d_model for IF)."""
        return self.encoder_hid_dim or self.cross_attention_dim

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 2 ** number of resolution changes for IF's resnet
        resamplers; 1 when every block resamples by conv (odd sizes then round up on the way back, as in
        diffusers, which forwards the skip sizes to the upsamplers)."""
        kinds = [DOWN_BLOCKS[t] for t in self.down_block_types] + [UP_BLOCKS[t] for t in self.up_block_types]
        if all(k.resample == "conv" for k in kinds):
            return 1
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def is_super_resolution(self) -> bool:
        """SR models take a noise-level class label and a low-res image concatenated to the input."""
        return self.class_embed_type is not None or self.num_class_embeds is not None

    def to_dict(self) -> dict[str, Any]:
        """A diffusers-compatible ``config.json`` dictionary."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        d["_class_name"] = "UNet2DConditionModel"
        return d

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any]) -> "UNetConfig":
        """Build from a diffusers ``UNet2DConditionModel`` config dict; missing keys take this class's defaults,
        which are diffusers' own."""
        cfg = dict(config)
        own = {f.name for f in fields(cls)}
        check_diffusers_config(cfg, "UNet2DConditionModel", own | set(_FIXED_VALUES), "unet")
        for key, allowed in _FIXED_VALUES.items():
            if key in cfg and cfg[key] not in allowed:
                raise ValueError(f"unet config: unsupported value {key}={cfg[key]!r} (supported: {list(allowed)})")
        return cls(**{k: v for k, v in cfg.items() if k in own})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "UNetConfig":
        """Read a diffusers ``config.json``."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read unet config {path}: {e}") from None
        return cls.from_diffusers_config(data)

    # -- validation ------------------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"unet config: {field}={getattr(self, field)!r} {msg}")

        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise bad("down_block_types", f"and up_block_types must both have {n} entries (one per block_out_channels)")
        for t in self.down_block_types:
            if t not in DOWN_BLOCKS:
                raise ValueError(f"unet config: down_block_types contains unsupported {t!r} "
                                 f"(supported: {DOWN_BLOCK_TYPES})")
        for t in self.up_block_types:
            if t not in UP_BLOCKS:
                raise ValueError(f"unet config: up_block_types contains unsupported {t!r} "
                                 f"(supported: {UP_BLOCK_TYPES})")
        if self.mid_block_type not in MID_BLOCKS:
            raise bad("mid_block_type", f"is not supported (supported: {MID_BLOCK_TYPES})")
        if self.act_fn not in ACTIVATIONS:
            raise bad("act_fn", f"is not supported (supported: {ACTIVATIONS})")
        if self.time_embedding_act_fn not in (None, *ACTIVATIONS):
            raise bad("time_embedding_act_fn", f"is not supported (supported: None, {ACTIVATIONS})")
        if self.resnet_time_scale_shift not in ("scale_shift", "default"):
            raise bad("resnet_time_scale_shift", "is not supported (supported: 'scale_shift', 'default')")
        if self.encoder_hid_dim_type not in (None, "text_proj"):
            raise bad("encoder_hid_dim_type", "is not supported (supported: None, 'text_proj')")
        if self.addition_embed_type not in (None, "text"):
            raise bad("addition_embed_type", "is not supported (supported: None, 'text')")
        if self.class_embed_type not in (None, "timestep"):
            raise bad("class_embed_type", "is not supported (supported: None, 'timestep')")
        if self.cross_attention_norm not in (None, "group_norm"):
            raise bad("cross_attention_norm", "is not supported (supported: None, 'group_norm')")
        self._validate_sizes()

    def _validate_sizes(self) -> None:
        g = self.norm_num_groups
        for c in self.block_out_channels:
            if c % g:
                raise ValueError(f"unet config: block_out_channels entry {c} is not divisible by norm_num_groups={g}")
        levels = zip(self.block_out_channels, self.down_block_types, self.attention_head_dim)
        for c, t, h in [*levels, (self.block_out_channels[-1], self.mid_block_type, self.attention_head_dim[-1])]:
            kind = MID_BLOCKS.get(t) or DOWN_BLOCKS[t].attention
            if kind and (h < 1 or c % h):
                what = "head size" if kind == "simple" else "number of heads, for Transformer2D blocks"
                raise ValueError(f"unet config: {c} channels ({t}) are not divisible by attention_head_dim={h} "
                                 f"(the {what})")
        if any(n < 1 for n in self.transformer_layers_per_block):
            raise ValueError(f"unet config: transformer_layers_per_block={self.transformer_layers_per_block} "
                             "must be >= 1 everywhere")
        if self.cross_attention_norm == "group_norm" and self.cross_attention_dim % 32:
            raise ValueError(
                f"unet config: cross_attention_dim={self.cross_attention_dim} must be divisible by 32 "
                "(cross_attention_norm='group_norm' uses 32 groups)")
        if self.addition_embed_type == "text" and self.text_dim % self.addition_embed_type_num_heads:
            raise ValueError(f"unet config: encoder_hid_dim={self.text_dim} is not divisible by "
                             f"addition_embed_type_num_heads={self.addition_embed_type_num_heads}")
        if any(n < 1 for n in self.layers_per_block):
            raise ValueError(f"unet config: layers_per_block={self.layers_per_block} must be >= 1 everywhere")

