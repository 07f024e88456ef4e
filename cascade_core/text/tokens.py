"""Turning token ids into fixed 77-token T5 sequences: truncation and long-prompt chunking.

T5 has no BOS token: a sequence is ``tokens + [EOS]`` padded with ``PAD`` (id 0) to ``max_length``, and
the attention mask is 1 on the tokens and the EOS, 0 on padding. This is exactly what
``tokenizer(text, padding="max_length", max_length=77, truncation=True)`` produces.

* Truncation (the default) keeps the first ``max_length - 1`` (76) tokens and the EOS.
* Long-prompt chunking cuts the tokens into pieces of at most 76, preferring to cut just before a word
  start (a ``▁`` piece) within the last :data:`WORD_LOOKBACK` tokens of a window; each piece gets its own
  EOS and its own padding, so every chunk is an ordinary 77-token T5 input. A prompt that fits in 76
  tokens gives exactly one chunk, identical to the truncated sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["Packed", "pack_truncated", "pack_chunks", "pad_chunks", "WORD_LOOKBACK"]

WORD_LOOKBACK = 16


@dataclass(frozen=True)
class Packed:
    """``ids`` and ``mask``: ``k`` sequences of ``max_length`` each; ``dropped``: tokens cut off."""

    ids: list[list[int]]
    mask: list[list[int]]
    dropped: int = 0


def _pad(tokens: Sequence[int], eos: int, pad: int, max_length: int) -> tuple[list[int], list[int]]:
    seq = list(tokens) + [eos]
    n = len(seq)
    return seq + [pad] * (max_length - n), [1] * n + [0] * (max_length - n)


def pack_truncated(tokens: Sequence[int], *, eos: int, pad: int, max_length: int = 77) -> Packed:
    """One sequence: the first ``max_length - 1`` tokens + EOS, padded; ``dropped`` counts the rest."""
    width = max_length - 1
    ids, mask = _pad(tokens[:width], eos, pad, max_length)
    return Packed([ids], [mask], dropped=max(0, len(tokens) - width))


def _cut(tokens: Sequence[int], start: int, width: int, word_start: Sequence[bool]) -> int:
    """End index (exclusive) of the chunk that begins at ``start``."""
    end = start + width
    if end >= len(tokens):
        return len(tokens)
    for j in range(end, max(start + 1, end - WORD_LOOKBACK), -1):
        if word_start[j]:
            return j
    return end


def pack_chunks(
    tokens: Sequence[int],
    *,
    eos: int,
    pad: int,
    word_start: Sequence[bool] | None = None,
    max_length: int = 77,
) -> Packed:
    """All tokens, in ``k = ceil-ish(len / (max_length - 1))`` sequences of ``max_length`` each.

    ``word_start[i]`` says whether token ``i`` begins a word (cuts prefer those places); ``None`` cuts
    every ``max_length - 1`` tokens. An empty prompt gives one chunk (``[EOS, PAD, …]``).
    """
    width = max_length - 1
    word_start = word_start if word_start is not None else [False] * len(tokens)
    ids, mask, start = [], [], 0
    while True:
        end = _cut(tokens, start, width, word_start)
        seq, m = _pad(tokens[start:end], eos, pad, max_length)
        ids.append(seq)
        mask.append(m)
        start = end
        if start >= len(tokens):
            return Packed(ids, mask)


def pad_chunks(embeds: torch.Tensor, chunks: int, filler: torch.Tensor) -> torch.Tensor:
    """Pad long-prompt embeddings [B, 77*k, D] to [B, 77*chunks, D] with ``filler`` chunks [77, D] (the
    embedding of ``""``), as :meth:`TextEncoder.encode` does within one call, so a positive and a negative
    prompt encoded separately can share one CFG batch."""
    size = filler.shape[0]
    have = embeds.shape[1] // size
    if embeds.shape[1] % size or have > chunks:
        raise ValueError(f"cannot pad embeddings of {embeds.shape[1]} tokens to {chunks} chunks of {size}")
    if have == chunks:
        return embeds
    pad = filler.to(embeds).expand(embeds.shape[0], -1, -1).repeat(1, chunks - have, 1)
    return torch.cat([embeds, pad], dim=1)
