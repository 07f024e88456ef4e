"""T5's span-corruption objective (Raffel et al. 2020, §3.1.4): noise masks, sentinel inputs and targets.

A token sequence ``x`` (no EOS) is split into alternating clean and noise spans; about ``noise_density`` of
the tokens are noise, in spans of mean length ``mean_span``. Each noise span is replaced in the input by
one sentinel (``<extra_id_0>``, ``<extra_id_1>``, …) and the target lists each sentinel followed by the
span it replaced. Example (density 0.15, one span): ``a small red star`` → input ``a small <X0> star </s>``,
target ``<X0> red </s>``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["noise_mask", "corrupt", "collate"]


def _segment(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``parts`` positive integers summing to ``total``, uniformly at random (T5's ``_random_segmentation``)."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) if parts > 1 else np.array([])
    bounds = np.concatenate([[0], cuts, [total]]).astype(int)
    return np.diff(bounds)


def noise_mask(length: int, noise_density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``[length]`` mask (True = noise) with T5's span statistics; never all noise or all clean.

    Needs ``length >= 2``. Like seqio's ``random_roll=True``, the mask is rolled by a random offset: T5's
    original mask always starts clean and, with one span (short captions), would always end with noise.
    """
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    num_noise = int(min(max(round(length * noise_density), 1), length - 1))
    num_spans = int(min(max(round(num_noise / mean_span), 1), num_noise, length - num_noise))
    noise = _segment(num_noise, num_spans, rng)
    clean = _segment(length - num_noise, num_spans, rng)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for c, n in zip(clean, noise):
        pos += c
        mask[pos:pos + n] = True
        pos += n
    return np.roll(mask, int(rng.integers(length)))


def corrupt(ids: Sequence[int], sentinels: Sequence[int], eos: int, noise_density: float, mean_span: float,
            rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """``(input_ids, target_ids)`` of one sequence (both end with ``eos``); ``sentinels[k]`` is ``<extra_id_k>``."""
    mask = noise_mask(len(ids), noise_density, mean_span, rng)
    inputs: list[int] = []
    targets: list[int] = []
    span = -1
    for i, (tok, noisy) in enumerate(zip(ids, mask)):
        starts = noisy and (i == 0 or not mask[i - 1])
        if starts:
            span += 1
            inputs.append(sentinels[span])
            targets.append(sentinels[span])
        if noisy:
            targets.append(tok)
        else:
            inputs.append(tok)
    return inputs + [eos], targets + [eos]


def collate(pairs: Sequence[tuple[list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    """Pad a batch: ``input_ids``/``attention_mask`` ``[B, Li]`` and ``labels`` ``[B, Lt]`` (padding = -100)."""
    li = max(len(p[0]) for p in pairs)
    lt = max(len(p[1]) for p in pairs)
    input_ids = torch.full((len(pairs), li), pad, dtype=torch.long)
    labels = torch.full((len(pairs), lt), -100, dtype=torch.long)
    for b, (x, y) in enumerate(pairs):
        input_ids[b, :len(x)] = torch.tensor(x)
        labels[b, :len(y)] = torch.tensor(y)
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad).long(), "labels": labels}
