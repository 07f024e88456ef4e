"""Image–text similarity with CLIP (Radford et al. 2021) or SigLIP (Zhai et al. 2023) embeddings.

``load_embedder(folder)`` loads a transformers ``CLIPModel`` / ``SiglipModel`` folder with its processor
files. :class:`Embedder` gives L2-normalised float32 embeddings ``[B, D]`` of ComfyUI images and of
texts, and their cosine similarity ``[B_images, B_texts]``, optionally scaled as the model's own logits
(``exp(logit_scale) · cos``, ``+ logit_bias`` for SigLIP) or turned into probabilities over the texts.
:func:`rank` and :func:`best_matches` are pure helpers over a score matrix.

Texts are tokenized as each family was trained: CLIP pads to the longest text of the batch, SigLIP to
its fixed length (64); longer texts are truncated to the model's length, with a warning.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .hf_folder import FrozenModel, check_processor_files, load_model, read_config
from .image import check_images
from .preprocess import Preprocessor, load_image_processor
from .unet.loading import default_device_dtype

__all__ = ["Embedder", "TextInputError", "best_matches", "load_embedder", "rank"]

log = logging.getLogger(__name__)

_WHAT = "the image-text similarity embedder"


class TextInputError(ValueError):
    """Texts that cannot be embedded: an empty list or entries that are not strings."""


@dataclass(frozen=True)
class _Family:
    name: str
    model_class: str
    padding: str  # tokenizer padding: "longest" (CLIP) or "max_length" (SigLIP)
    tokenizer_files: tuple[tuple[str, ...], ...]


_FAMILIES = {
    "clip": _Family("CLIP (CLIPModel, e.g. openai/clip-vit-large-patch14)", "CLIPModel", "longest",
                    (("tokenizer.json",), ("vocab.json", "merges.txt"))),
    "siglip": _Family("SigLIP (SiglipModel, e.g. google/siglip-base-patch16-224)", "SiglipModel", "max_length",
                      (("tokenizer.json",), ("spiece.model",))),
}


def _features(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose ``pooler_output`` it is (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class Embedder(FrozenModel):
    """A frozen CLIP or SigLIP model with tokenizer and image preprocessing (build it with :func:`load_embedder`)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, preprocessor: Preprocessor, *, family: str,
                 max_length: int, name: str = "clip"):
        self.model = model
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.family = family
        self.max_length = max_length
        self.name = name

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale)``: the factor turning cosines into the model's logits (≈ 100 for CLIP)."""
        return float(self.model.logit_scale.detach().float().exp())

    @property
    def logit_bias(self) -> float:
        """SigLIP's learned logit bias; 0 for CLIP."""
        bias = getattr(self.model, "logit_bias", None)
        return float(bias.detach().float()) if bias is not None else 0.0

    def __repr__(self) -> str:
        return (f"Embedder({self.name}, {self.family}, dtype={self.dtype}, device={self.device}, "
                f"{self.parameter_bytes / 1e9:.3f} GB)")

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """ComfyUI ``images [B, H, W, C]`` in 0..1 → the model's ``pixel_values [B, 3, h, w]`` (device, dtype)."""
        with torch.inference_mode():
            return self.preprocessor(images, device=self.device, dtype=self.dtype)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token tensors ``[B, L]`` for ``texts`` as the family expects (see the module docstring), on the device."""
        enc = self.tokenizer(_check_texts(texts), padding=_FAMILIES[self.family].padding, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _warn_truncated(self, texts: list[str]) -> None:
        for i, ids in enumerate(self.tokenizer(texts, verbose=False)["input_ids"]):
            if len(ids) > self.max_length:
                log.warning("text %d is %d tokens long; %s reads only the first %d: %r", i, len(ids), self.name,
                            self.max_length, texts[i][:60])

    def embed_images(self, images: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
        """``images [B, H, W, C]`` in 0..1 → L2-normalised float32 embeddings ``[B, D]`` (on the device).

        ``batch_size`` images are preprocessed and run through the vision tower at a time, so the memory
        used beside the model follows ``batch_size``, not ``B``."""
        _check_batch_size(batch_size)
        check_images(images)
        out = []
        for i in range(0, images.shape[0], batch_size):
            pixels = self.pixel_values(images[i:i + batch_size])
            with torch.inference_mode():
                out.append(_features(self.model.get_image_features(pixel_values=pixels)).float())
        return F.normalize(torch.cat(out), dim=-1)

    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """``B`` texts → L2-normalised float32 embeddings ``[B, D]`` (on the device)."""
        _check_batch_size(batch_size)
        texts = _check_texts(texts)
        self._warn_truncated(texts)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                out.append(_features(self.model.get_text_features(**self.tokenize(texts[i:i + batch_size]))))
        return F.normalize(torch.cat(out).float(), dim=-1)

    def scores(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, *, scale: bool = False,
               softmax: bool = False) -> torch.Tensor:
        """Scores ``[Bi, Bt]`` from normalised ``image_embeds [Bi, D]`` and ``text_embeds [Bt, D]``.

        Cosine similarity by default; ``scale``: the model's logits (``exp(logit_scale)·cos + logit_bias``,
        i.e. ``logits_per_image``); ``softmax``: probabilities over the texts of each image, computed from
        the scaled logits (``scale`` is implied). For SigLIP, ``torch.sigmoid`` of the scaled scores gives its
        per-pair probabilities instead.
        """
        cos = image_embeds.float() @ text_embeds.float().T
        if not (scale or softmax):
            return cos
        logits = cos * self.logit_scale + self.logit_bias
        return logits.softmax(dim=-1) if softmax else logits

    def similarity(self, images: torch.Tensor, texts: Sequence[str], *, scale: bool = False,
                   softmax: bool = False, batch_size: int = 32) -> torch.Tensor:
        """``[B_images, B_texts]`` scores of ``images [B, H, W, C]`` against ``texts`` (see :meth:`scores`);
        ``batch_size`` images (and texts) are embedded at a time."""
        return self.scores(self.embed_images(images, batch_size=batch_size),
                           self.embed_texts(texts, batch_size=batch_size), scale=scale, softmax=softmax)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise TextInputError("no texts to embed: give at least one text (an empty string is allowed)")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TextInputError(f"texts must be strings; entries {bad[:5]} are {type(texts[bad[0]]).__name__}")
    return texts


def rank(scores: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Indices that sort ``scores`` in descending order along ``dim`` (ties keep their order).

    For ``scores [Bi, Bt]``: ``rank(scores)[i]`` lists texts from best to worst for image ``i``;
    ``rank(scores, dim=0)[:, t]`` lists images for text ``t``.
    """
    return torch.sort(scores, dim=dim, descending=True, stable=True).indices


def best_matches(scores: torch.Tensor, labels: Sequence[str], *, k: int = 1) -> list[list[tuple[int, str, float]]]:
    """For each row of ``scores [Bi, Bt]``, its ``k`` best columns as ``(index, labels[index], score)``."""
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must be [rows, {len(labels)}] for {len(labels)} labels, got {tuple(scores.shape)}")
    k = max(1, min(k, scores.shape[1]))
    order = rank(scores)[:, :k].tolist()
    values = scores.detach().float().cpu().tolist()
    return [[(j, labels[j], values[i][j]) for j in row] for i, row in enumerate(order)]


def load_embedder(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    preprocess: str = "torch",
) -> Embedder:
    """Load a CLIP or SigLIP model folder (config.json, model.safetensors, tokenizer, processor config).

    ``device``/``dtype`` default to CUDA + bf16 when available, else CPU + fp32; ``preprocess`` as in
    :func:`~cascade_core.captioning.load_captioner`. Raises ``ModelFolderError``/``WrongModelError``
    (``ValueError``) for missing, incomplete or other-model folders.
    """
    folder, config = read_config(path, {k: f.name for k, f in _FAMILIES.items()}, _WHAT)
    family = _FAMILIES[config["model_type"]]
    check_processor_files(folder, family.tokenizer_files, _WHAT)
    device, dtype = default_device_dtype(device, dtype)
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    preprocessor = Preprocessor(load_image_processor(folder), preprocess)
    model = load_model(getattr(transformers, family.model_class), folder, device=device, dtype=dtype)
    max_length = int(model.config.text_config.max_position_embeddings)
    embedder = Embedder(model, tokenizer, preprocessor, family=config["model_type"], max_length=max_length,
                        name=folder.name)
    log.info("loaded %r (preprocess=%s)", embedder, preprocessor.mode)
    return embedder
