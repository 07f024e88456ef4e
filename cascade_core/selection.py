"""Best-of-N: score a batch of candidate images against the prompt and keep the best K (before upscaling).

A 64 px candidate costs a small fraction of its two upscaling stages, so generating N and upscaling only the
best K of them spends little. The score of an image is its cosine similarity to the text in the embedder's
space (CLIP / SigLIP, :class:`~cascade_core.similarity.Embedder`); with several texts it is the **mean** cosine
over the texts (each text weighs the same). Images are ranked by descending score; ties keep the lower index
first (a stable sort), so the result is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .similarity import Embedder, rank

__all__ = ["Selection", "SelectionError", "best_of_n", "image_scores", "select_best"]


class SelectionError(ValueError):
    """A best-of-N request that cannot be met (keep < 1, fewer images than keep, score shape wrong)."""


@dataclass(frozen=True)
class Selection:
    """The outcome of a best-of-N pick.

    ``indices``: the kept images' positions in the input batch, best first (``len == keep``);
    ``scores``: their scores, in the same (descending) order; ``all_scores``: every input image's score, in
    input order (``len == N``).
    """

    indices: list[int]
    scores: list[float]
    all_scores: list[float]

    def summary(self) -> str:
        """One line per kept image, e.g. ``#1: image[5] 0.3121``, then the unkept images' scores."""
        lines = [f"#{r + 1}: image[{i}] {s:.4f}" for r, (i, s) in enumerate(zip(self.indices, self.scores))]
        kept = set(self.indices)
        rest = [f"image[{i}] {s:.4f}" for i, s in enumerate(self.all_scores) if i not in kept]
        return "\n".join(lines + ([f"not kept: {', '.join(rest)}"] if rest else []))


def image_scores(similarity: torch.Tensor) -> torch.Tensor:
    """Per-image score ``[N]`` from a similarity matrix ``[N, T]`` (images x texts): the mean over the texts."""
    if similarity.ndim != 2 or similarity.shape[1] < 1:
        raise SelectionError(f"similarity must be [images, texts] with at least one text, got "
                             f"{tuple(similarity.shape)}")
    return similarity.float().mean(dim=1)


def select_best(scores: torch.Tensor | Sequence[float], keep: int) -> Selection:
    """The ``keep`` best of ``scores [N]`` (descending; ties: lower index first).

    Raises :class:`SelectionError` when ``keep < 1`` or ``N < keep`` (nothing is silently clamped).
    """
    scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu()
    if scores.ndim != 1:
        raise SelectionError(f"scores must be one value per image ([N]), got shape {tuple(scores.shape)}")
    if keep < 1:
        raise SelectionError(f"keep must be at least 1, got {keep}")
    n = scores.shape[0]
    if n < keep:
        raise SelectionError(f"keep is {keep} but only {n} image{'s' if n != 1 else ''} came in: lower keep to "
                             f"{max(n, 1)} or generate at least {keep} images (the sampler's batch_size)")
    if torch.isnan(scores).any():
        raise SelectionError(f"scores hold NaN at images {torch.nonzero(scores.isnan()).flatten().tolist()[:8]}")
    order = rank(scores)[:keep].tolist()
    values = scores.tolist()
    return Selection(indices=order, scores=[values[i] for i in order], all_scores=values)


def best_of_n(embedder: Embedder, images: torch.Tensor, texts: Sequence[str], keep: int, *,
              batch_size: int = 16) -> tuple[torch.Tensor, Selection]:
    """Score ``images [N, H, W, C]`` (0..1) against ``texts`` and return the best ``keep`` images
    ``[keep, H, W, C]`` (best first, on ``images``' device) with the :class:`Selection`.

    ``batch_size`` images go through the vision tower at a time (memory scales with it, not with N).
    """
    if images.ndim != 4:
        raise SelectionError(f"images must be a batch [N, H, W, C], got shape {tuple(images.shape)}")
    if images.shape[0] < keep:  # before any model work: the cheap check first
        select_best(torch.zeros(images.shape[0]), keep)
    similarity = embedder.similarity(images, texts, batch_size=batch_size)
    selection = select_best(image_scores(similarity), keep)
    chosen = torch.tensor(selection.indices, dtype=torch.long, device=images.device)
    return images.index_select(0, chosen), selection
