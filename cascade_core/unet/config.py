"""UNet configuration: a frozen dataclass read from a diffusers ``config.json``.

The fields mirror diffusers' ``UNet2DConditionModel`` names so that real IF checkpoints
(``unet/config.json``) map one to one. Values this implementation does not support raise a
``ValueError`` naming the field; unknown keys are logged and ignored, as diffusers does.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

logger = logging.getLogger(__name__)

RESNET_DOWN = "ResnetDownsampleBlock2D"
SIMPLE_ATTN_DOWN = "SimpleCrossAttnDownBlock2D"
RESNET_UP = "ResnetUpsampleBlock2D"
SIMPLE_ATTN_UP = "SimpleCrossAttnUpBlock2D"
SIMPLE_ATTN_MID = "UNetMidBlock2DSimpleCrossAttn"

DOWN_BLOCK_TYPES = (RESNET_DOWN, SIMPLE_ATTN_DOWN)
UP_BLOCK_TYPES = (RESNET_UP, SIMPLE_ATTN_UP)
MID_BLOCK_TYPES = (SIMPLE_ATTN_MID,)
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
    "num_attention_heads": (None,),
    "transformer_layers_per_block": (1,),
    "upcast_attention": (False, True),  # Simple attention always computes softmax in fp32
    "use_linear_projection": (False, True),  # not read by Simple* blocks
    "downsample_padding": (1,),
    "dropout": (0, 0.0),
}
# diffusers' defaults for fields a config.json may omit.
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "only_cross_attention": False, "layers_per_block": 2,
    "mid_block_scale_factor": 1.0, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 1280, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "attention_head_dim": 8, "class_embed_type": None, "addition_embed_type": None,
    "num_class_embeds": None, "resnet_time_scale_shift": "default", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "time_embedding_dim": None, "time_embedding_act_fn": None,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None, "addition_embed_type_num_heads": 64,
}
_IGNORED_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}


def _per_block(value: Any, n: int, name: str, kind: type) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"unet config: {name} has {len(value)} entries but there are {n} down blocks")
        return tuple(kind(v) for v in value)
    return (kind(value),) * n


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of an IF-style UNet (field names as in diffusers' ``config.json``).

    Per-block fields (``layers_per_block``, ``only_cross_attention``, ``attention_head_dim``) are
    normalised to one entry per down block; the up path uses them reversed, as diffusers does.
    """

    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    block_out_channels: tuple[int, ...]
    layers_per_block: tuple[int, ...]
    only_cross_attention: tuple[bool, ...]
    attention_head_dim: tuple[int, ...]
    cross_attention_dim: int
    sample_size: int | None = 64
    in_channels: int = 3
    out_channels: int = 6
    mid_block_type: str | None = SIMPLE_ATTN_MID
    mid_block_only_cross_attention: bool = False
    act_fn: str = "gelu"
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    encoder_hid_dim: int | None = None
    encoder_hid_dim_type: str | None = None
    addition_embed_type: str | None = None
    addition_embed_type_num_heads: int = 64
    class_embed_type: str | None = None
    num_class_embeds: int | None = None
    time_embedding_dim: int | None = None
    time_embedding_act_fn: str | None = None
    resnet_time_scale_shift: str = "scale_shift"
    resnet_skip_time_act: bool = False
    resnet_out_scale_factor: float = 1.0
    mid_block_scale_factor: float = 1.0
    cross_attention_norm: str | None = "group_norm"
    flip_sin_to_cos: bool = True
    freq_shift: int = 0

    def __post_init__(self) -> None:
        self._validate()

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
        """Height and width must be multiples of this (2 ** number of resolution changes)."""
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
        """Build from a diffusers ``UNet2DConditionModel`` config dict (missing keys take diffusers' defaults)."""
        cfg = dict(config)
        name = cfg.get("_class_name", "UNet2DConditionModel")
        if name != "UNet2DConditionModel":
            raise ValueError(f"unet config: _class_name is {name!r}; expected 'UNet2DConditionModel'")
        for key, allowed in _FIXED_VALUES.items():
            if key in cfg and cfg[key] not in allowed and not (key == "transformer_layers_per_block"
                                                               and _all_ones(cfg[key])):
                raise ValueError(f"unet config: unsupported value {key}={cfg[key]!r} (supported: {list(allowed)})")
        own = {f.name for f in fields(cls)}
        unknown = set(cfg) - own - set(_FIXED_VALUES) - _IGNORED_KEYS
        if unknown:
            logger.warning("unet config: ignoring unknown keys %s", sorted(unknown))
        values = {**_DIFFUSERS_DEFAULTS, **{k: v for k, v in cfg.items() if k in own}}
        if values["encoder_hid_dim"] is not None and values["encoder_hid_dim_type"] is None:
            values["encoder_hid_dim_type"] = "text_proj"  # old IF configs omit it; diffusers defaults it too
        n = len(values["down_block_types"])
        values["layers_per_block"] = _per_block(values["layers_per_block"], n, "layers_per_block", int)
        values["only_cross_attention"] = _per_block(values["only_cross_attention"], n, "only_cross_attention", bool)
        values["attention_head_dim"] = _per_block(values["attention_head_dim"], n, "attention_head_dim", int)
        if values["mid_block_only_cross_attention"] is None:
            oca = values["only_cross_attention"]
            values["mid_block_only_cross_attention"] = bool(oca[0]) if len(set(oca)) == 1 else False
        if isinstance(values["cross_attention_dim"], (list, tuple)):
            dims = set(values["cross_attention_dim"])
            if len(dims) != 1:
                raise ValueError("unet config: per-block cross_attention_dim values are not supported")
            values["cross_attention_dim"] = dims.pop()
        for key in ("down_block_types", "up_block_types", "block_out_channels"):
            values[key] = tuple(values[key])
        return cls(**values)

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
            if t not in DOWN_BLOCK_TYPES:
                raise ValueError(f"unet config: down_block_types contains unsupported {t!r} "
                                 f"(supported: {DOWN_BLOCK_TYPES})")
        for t in self.up_block_types:
            if t not in UP_BLOCK_TYPES:
                raise ValueError(f"unet config: up_block_types contains unsupported {t!r} "
                                 f"(supported: {UP_BLOCK_TYPES})")
        if self.mid_block_type not in MID_BLOCK_TYPES:
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
        for c, t, h in zip(self.block_out_channels, self.down_block_types, self.attention_head_dim):
            if t == SIMPLE_ATTN_DOWN and c % h:
                raise ValueError(f"unet config: {c} channels are not divisible by attention_head_dim={h}")
        if self.cross_attention_norm == "group_norm" and self.cross_attention_dim % 32:
            raise ValueError(
                f"unet config: cross_attention_dim={self.cross_attention_dim} must be divisible by 32 "
                "(cross_attention_norm='group_norm' uses 32 groups)")
        if self.addition_embed_type == "text" and self.text_dim % self.addition_embed_type_num_heads:
            raise ValueError(f"unet config: encoder_hid_dim={self.text_dim} is not divisible by "
                             f"addition_embed_type_num_heads={self.addition_embed_type_num_heads}")
        if any(n < 1 for n in self.layers_per_block):
            raise ValueError(f"unet config: layers_per_block={self.layers_per_block} must be >= 1 everywhere")


def _all_ones(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(v == 1 for v in value)
