"""The x4 upscaler's own text encoder: transformers ``CLIPTextModel`` + ``CLIPTokenizer``, frozen.

The model is built on the meta device from its ``config.json`` (or a config inferred from an original
OpenCLIP checkpoint) and filled strictly from safetensors (never pickles); no hub access. Prompts are
tokenised to the tokenizer's ``model_max_length`` (77) with padding and truncation, as diffusers'
``StableDiffusionUpscalePipeline.encode_prompt`` does, and encoded to ``last_hidden_state`` [B, 77, D].
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..weights import Source, WeightFileError, load_sources

Sources = dict[str, Source]

logger = logging.getLogger(__name__)

__all__ = ["ClipTextEncoder", "build_clip_text_model", "clip_key", "load_clip_text", "load_clip_tokenizer"]


class ClipTextEncoder:
    """Prompts -> CLIP ``last_hidden_state`` [B, max_length, hidden] (float, on the model's device)."""

    def __init__(self, model: nn.Module, tokenizer: Any):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = int(min(tokenizer.model_max_length, model.config.max_position_embeddings))

    @property
    def width(self) -> int:
        """Hidden size D of the states (1024 for the x4 upscaler's OpenCLIP ViT-H tower)."""
        return int(self.model.config.hidden_size)

    def tokenize(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Token ids [B, max_length], padded with the tokenizer's pad token and truncated (logged)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a string or a non-empty list of strings")
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt").input_ids
        full = self.tokenizer(prompts, padding="longest", return_tensors="pt").input_ids
        if full.shape[-1] > ids.shape[-1]:
            logger.warning("CLIP takes %d tokens; the rest of the prompt was dropped", self.max_length)
        return ids

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """[B, max_length, hidden] ``last_hidden_state`` (after the final LayerNorm) for B prompts."""
        ids = self.tokenize(prompts).to(self.model.device)
        return self.model(input_ids=ids).last_hidden_state


def build_clip_text_model(config: dict[str, Any], device: str | torch.device = "meta") -> nn.Module:
    """A transformers ``CLIPTextModel`` for a ``config.json`` dict, on ``device`` (meta allocates nothing)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device(device):
        return CLIPTextModel(CLIPTextConfig.from_dict(dict(config)))


def clip_key(name: str) -> str | None:
    """Bare key (no ``text_model.``) for a stored transformers CLIP text tensor: older files prefix
    ``text_model.`` (transformers 5 does not) and carry the ``position_ids`` buffer, which is rebuilt."""
    if name.endswith("position_ids"):
        return None
    return name.removeprefix("text_model.")


def load_clip_tokenizer(folder: str | os.PathLike, *, pad_token: str | None = None) -> Any:
    """``CLIPTokenizer`` from a folder with ``vocab.json`` + ``merges.txt`` (or ``tokenizer.json``), local only.

    ``pad_token`` overrides the folder's pad token (OpenCLIP pads with id 0, ``"!"``)."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    if not ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()) \
            and not (folder / "tokenizer.json").is_file():
        raise WeightFileError(f"no CLIP tokenizer in {folder} (need vocab.json and merges.txt, or tokenizer.json)")
    kwargs = {} if pad_token is None else {"pad_token": pad_token}
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
    if tokenizer.model_max_length > 10_000:  # no tokenizer_config.json: CLIP's context is 77 tokens
        tokenizer.model_max_length = 77
    return tokenizer


def load_clip_text(config: dict[str, Any], sources: Sources, tokenizer: Any, *, device: torch.device,
                   dtype: torch.dtype, what: str) -> ClipTextEncoder:
    """Build the text model from ``config`` on meta, load ``sources`` (bare keys, see :func:`clip_key`)
    strictly, rebuild its buffers. Works with transformers 4 (``text_model.`` submodule) and 5."""
    model = build_clip_text_model(config)
    tower = getattr(model, "text_model", model)
    prefix = "text_model." if tower is not model else ""
    load_sources(model, {prefix + k: v for k, v in sources.items()}, device=device, dtype=dtype, what=what)
    embeddings = tower.embeddings
    positions = torch.arange(embeddings.position_embedding.num_embeddings, device=device).expand(1, -1)
    embeddings.register_buffer("position_ids", positions, persistent=False)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise WeightFileError(f"{what}: tensors left unset after loading: {leftover[:5]}")
    return ClipTextEncoder(model, tokenizer)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON config file as a dict, with a :class:`WeightFileError` naming the file on failure."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WeightFileError(f"cannot read {path}: {e}") from None
