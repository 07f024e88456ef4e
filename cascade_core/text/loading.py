"""``load_text_encoder``: any supported checkpoint layout → a frozen :class:`TextEncoder`.

The model is built on the ``meta`` device (no memory), every expected tensor is checked against the file
headers before any data is read (missing layers and foreign files fail fast, with the names), then the
tensors are read one at a time, converted to their storage dtype on the target device and assigned. Peak
host memory is therefore about one tensor, not the checkpoint.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

import torch
from torch import nn

from ..weights import Source, iter_sources
from .cache import DEFAULT_CACHE, EmbeddingCache
from .encoder import TextEncoder
from .fp8 import Fp8Linear, dequantize, quantize_fp8
from .keys import TensorPlan, check_complete, infer_config, plan_tensors
from .layout import locate_checkpoint
from .precision import Precision, resolve_device, resolve_precision
from .tokenizer import find_tokenizer, load_tokenizer

__all__ = ["load_text_encoder", "build_t5_encoder"]

log = logging.getLogger(__name__)

_LINEAR = re.compile(r"\.(?:q|k|v|o|wi|wi_0|wi_1|wo)\.weight$")


def build_t5_encoder(config: dict[str, Any], device: str | torch.device = "meta") -> nn.Module:
    """A transformers ``T5EncoderModel`` for ``config`` (a ``config.json`` dict), on ``device``.

    On ``meta`` this allocates nothing; used to list the expected tensors and as the load target.
    """
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config.from_dict({**config, "is_encoder_decoder": False, "use_cache": False})
    with torch.device(device):
        return T5EncoderModel(cfg)


def _expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Model keys → shapes, without the tied ``encoder.embed_tokens.weight`` alias of ``shared.weight``."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    shapes.pop("encoder.embed_tokens.weight", None)
    return shapes


def _dense(tensor: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    if scale is None:
        return tensor.to(dtype)
    return dequantize(tensor, scale, torch.float32).to(dtype)


def _assign(model: nn.Module, key: str, tensor: torch.Tensor, scale: torch.Tensor | None, prec: Precision) -> None:
    """Put one tensor into the meta model: a frozen dense parameter, or an :class:`Fp8Linear`."""
    module_name, attr = key.rsplit(".", 1)
    fp8 = prec.fp8_storage(tensor.dtype) if _LINEAR.search(key) else None
    if fp8 is None:
        param = nn.Parameter(_dense(tensor, scale, prec.dense_dtype(key)), requires_grad=False)
        model.get_submodule(module_name)._parameters[attr] = param
        return
    if tensor.dtype != fp8:
        tensor, scale = quantize_fp8(_dense(tensor, scale, torch.float32), fp8)
    parent, child = module_name.rsplit(".", 1)
    setattr(model.get_submodule(parent), child, Fp8Linear(tensor, scale, prec.dense_dtype(key)))


def _materialize(model: nn.Module, plan: TensorPlan, expected, prec: Precision, device: torch.device) -> None:
    """Read every expected tensor (and its fp8 scale) through the pack's one weight reader and assign it."""
    scales = dict(iter_sources({k: Source(*v) for k, v in plan.scales.items()}, device=device))
    for key, tensor in iter_sources({k: Source(*plan.sources[k]) for k in expected}, device=device):
        _assign(model, key, tensor, scales.get(key), prec)
        del tensor
    model.encoder.embed_tokens = model.shared  # re-tie: assigning replaced shared's Parameter
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t is not None and t.is_meta]
    if left:
        raise RuntimeError(f"internal error: T5 tensors not loaded: {left[:5]}")


def load_text_encoder(
    path: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    weight_dtype: torch.dtype | None = None,
    cache: EmbeddingCache | None = DEFAULT_CACHE,
) -> TextEncoder:
    """Load a frozen T5 encoder from a DeepFloyd IF folder, a transformers folder or one safetensors file.

    ``tokenizer``: folder, ``spiece.model`` or ``tokenizer.json`` (see :mod:`.tokenizer` for the lookup
    when omitted). ``device``/``dtype``/``weight_dtype``: see :mod:`.precision` (defaults: CUDA + bf16,
    else CPU + fp32; fp8 files stay fp8). ``cache``: the embedding cache (``None`` disables caching).
    Raises ``WeightFileError``/``NotT5Error`` (both ``ValueError``) for bad files and
    ``TokenizerNotFoundError`` (a ``FileNotFoundError``) when no tokenizer is found.
    """
    device = resolve_device(device)
    prec = resolve_precision(device, dtype, weight_dtype)
    ckpt = locate_checkpoint(path, prefer_fp16=prec.compute != torch.float32)
    plan = plan_tensors(ckpt.weight_files)
    config = ckpt.config if ckpt.config is not None else infer_config(plan)
    model = build_t5_encoder(config)
    expected = _expected_shapes(model)
    check_complete(plan, expected)
    tok_path = find_tokenizer(tokenizer, ckpt.tokenizer_dirs)
    tok = load_tokenizer(tok_path)
    if len(tok) > model.config.vocab_size:
        raise ValueError(
            f"tokenizer at {tok_path} has {len(tok)} tokens but the T5 checkpoint embeds only "
            f"{model.config.vocab_size}: not the matching tokenizer"
        )
    _materialize(model, plan, expected, prec, device)
    model.eval().requires_grad_(False)
    encoder = TextEncoder(model, tok, identity=f"{ckpt.identity}|tok:{tok_path.resolve()}", layout=ckpt.layout,
                          dtype=prec.compute, cache=cache)
    log.info(
        "T5 encoder loaded from %s (%s layout, %d layers, d_model %d): %.3f GB of parameters, compute %s on %s",
        ckpt.path, ckpt.layout, model.config.num_layers, model.config.d_model, encoder.parameter_bytes / 1e9,
        str(prec.compute).removeprefix("torch."), device,
    )
    return encoder
