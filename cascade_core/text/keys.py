"""Which stored tensor feeds which T5 encoder parameter; config inference and completeness checks.

Key conventions handled (all from the transformers ``T5EncoderModel`` state dict):

* an optional common prefix (e.g. ``text_encoders.t5xxl.transformer.``) is stripped; it is found from
  the ``encoder.block.N.layer.0.SelfAttention.q.weight`` / ``encoder.final_layer_norm.weight`` anchors;
* the token embedding may be stored as ``shared.weight``, ``encoder.embed_tokens.weight`` or both
  (they are tied; ``shared.weight`` wins);
* fp8 scales ``<layer>.scale_weight`` / ``<layer>.weight_scale`` attach to ``<layer>.weight``; the
  ``scaled_fp8`` marker and ``scale_input`` / ``input_scale`` entries are dropped;
* ``decoder.*`` and ``lm_head.*`` (full encoder-decoder checkpoints) are ignored.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..weights import TensorInfo, read_header

__all__ = ["TensorPlan", "NotT5Error", "plan_tensors", "infer_config", "check_complete", "LINEAR_NAMES"]

log = logging.getLogger(__name__)

LINEAR_NAMES = ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo")
_ANCHORS = re.compile(
    r"^((?:.*\.)?)encoder\.(?:block\.\d+\.layer\.0\.SelfAttention\.q\.weight|final_layer_norm\.weight)$"
)
_SCALE = (".scale_weight", ".weight_scale")
_DROPPED = (".scale_input", ".input_scale")
_IGNORED_PREFIXES = ("decoder.", "lm_head.")
_EMBED = ("shared.weight", "encoder.embed_tokens.weight")
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
_T5_EXAMPLES = "'encoder.block.0.layer.0.SelfAttention.q.weight', 'encoder.final_layer_norm.weight'"


class NotT5Error(ValueError):
    """The weights are not a T5 encoder (or not a complete one)."""


@dataclass
class TensorPlan:
    """For each model parameter key: the file and stored name to read, its stored dtype and shape.

    ``scales`` maps a weight key to the (file, name) of its fp8 scale.
    """

    sources: dict[str, tuple[Path, str]] = field(default_factory=dict)
    infos: dict[str, TensorInfo] = field(default_factory=dict)
    scales: dict[str, tuple[Path, str]] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def shape(self, key: str) -> tuple[int, ...]:
        """Stored shape of the tensor for model key ``key``."""
        return self.infos[key].shape

    @property
    def where(self) -> str:
        """The file, or the folder of the shards, for messages."""
        return _describe(self.files)


def _describe(files: tuple[Path, ...]) -> str:
    if not files:
        return "the checkpoint"
    return str(files[0]) if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"


def _find_prefix(names: list[str], files: tuple[Path, ...]) -> str:
    prefixes: dict[str, int] = {}
    for name in names:
        m = _ANCHORS.match(name)
        if m:
            prefixes[m.group(1)] = prefixes.get(m.group(1), 0) + 1
    if not prefixes:
        sample = ", ".join(repr(n) for n in names[:4]) or "no tensors at all"
        raise NotT5Error(
            f"{_describe(files)} is not a T5 text encoder checkpoint: expected transformers T5 keys such as "
            f"{_T5_EXAMPLES}, found {sample}"
        )
    return max(prefixes, key=prefixes.get)


def _classify(plan: TensorPlan, key: str, path: Path, info: TensorInfo) -> None:
    """Put one prefix-stripped stored tensor into the plan."""
    if key.startswith(_IGNORED_PREFIXES) or key == "scaled_fp8" or key.endswith(_DROPPED):
        return
    for suffix in _SCALE:
        if key.endswith(suffix):
            plan.scales[key[: -len(suffix)] + ".weight"] = (path, info.name)
            return
    if key in _EMBED:
        if key == "encoder.embed_tokens.weight" and "shared.weight" in plan.sources:
            return
        key = "shared.weight"
    plan.sources[key] = (path, info.name)
    plan.infos[key] = info


def plan_tensors(files: tuple[Path, ...]) -> TensorPlan:
    """Read the headers of ``files`` (no tensor data) and map stored tensors to model keys."""
    headers = [(f, read_header(f)) for f in files]
    names = [n for _, h in headers for n in h]
    prefix = _find_prefix(names, files)
    plan = TensorPlan(files=files)
    ordered = sorted(
        ((f, info) for f, h in headers for info in h.values()),
        key=lambda fi: fi[1].name.endswith("encoder.embed_tokens.weight"),  # shared.weight first
    )
    for path, info in ordered:
        if info.name.startswith(prefix):
            _classify(plan, info.name[len(prefix):], path, info)
    if prefix:
        log.info("T5 checkpoint keys carry the prefix %r (stripped)", prefix)
    return plan


def _block_count(keys) -> int:
    blocks = [int(m.group(1)) for k in keys if (m := re.match(r"encoder\.block\.(\d+)\.", k))]
    return max(blocks) + 1 if blocks else 0


def infer_config(plan: TensorPlan) -> dict:
    """T5 config fields from tensor shapes (for single files without ``config.json``).

    ``relative_attention_max_distance`` (128) and ``layer_norm_epsilon`` (1e-6) cannot be read from
    shapes; the T5 v1.1 values are used. A gated feed-forward (``wi_0``/``wi_1``) means T5 v1.1
    (``gated-gelu``), a single ``wi`` means the original T5 (``relu``).
    """
    need = ["shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    check_complete(plan, {k: None for k in need}, warn_extra=False)
    vocab, d_model = plan.shape("shared.weight")
    inner = plan.shape(need[1])[0]
    buckets, heads = plan.shape(need[2])
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in plan.sources
    wi = "encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"
    check_complete(plan, {wi: None}, warn_extra=False)
    return {
        "model_type": "t5", "vocab_size": vocab, "d_model": d_model, "num_heads": heads,
        "d_kv": inner // heads, "d_ff": plan.shape(wi)[0], "num_layers": _block_count(plan.sources),
        "relative_attention_num_buckets": buckets, "relative_attention_max_distance": 128,
        "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu" if gated else "relu",
        "tie_word_embeddings": False, "is_encoder_decoder": False, "use_cache": False,
    }


def _listing(items: list[str], n: int = 5) -> str:
    more = f", … ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_complete(
    plan: TensorPlan, expected: dict[str, tuple[int, ...] | None], *, warn_extra: bool = True
) -> None:
    """Raise :class:`NotT5Error` naming missing keys (first few + count), wrong shapes or dtypes.

    ``expected`` maps model keys to their shapes (``None``: any shape). With ``warn_extra``, stored
    tensors the model does not have are logged as a warning (they are not loaded).
    """
    where = plan.where
    missing = [k for k in expected if k not in plan.sources]
    if missing:
        raise NotT5Error(
            f"{where} is missing {len(missing)} of the T5 encoder's {len(expected)} tensors: "
            f"{_listing(missing)} (an incomplete download or a different model?)"
        )
    wrong = [f"{k} {list(plan.shape(k))} (expected {list(s)})"
             for k, s in expected.items() if s is not None and tuple(plan.shape(k)) != tuple(s)]
    if wrong:
        raise NotT5Error(f"{where}: {len(wrong)} tensors have shapes that do not fit the config: {_listing(wrong, 3)}")
    odd = [f"{k} ({plan.infos[k].dtype})" for k in expected if plan.infos[k].dtype not in _FLOAT_DTYPES]
    if odd:
        raise NotT5Error(
            f"{where}: unsupported weight dtypes {_listing(odd, 3)}; 8-bit (bitsandbytes) files cannot be "
            "loaded, use the fp16/bf16/fp32 or fp8 (float8_e4m3fn) safetensors of the same model"
        )
    if warn_extra:
        extra = sorted(set(plan.sources) - set(expected))
        if extra:
            log.warning("ignoring %d unexpected tensors in %s: %s", len(extra), where, _listing(extra))
