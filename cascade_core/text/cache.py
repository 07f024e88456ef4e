"""An LRU cache of T5 embeddings, bounded by entry count and by bytes.

Keys are ``(model identity, dtype, device type, mode, preprocessed prompt)`` tuples built by
:class:`~cascade_core.text.encoder.TextEncoder`; values are one prompt's ``(embeds [L, D], mask [L])``,
stored **on the CPU** (so the cache never holds accelerator memory and survives the encoder being moved
or offloaded). Re-queuing a ComfyUI graph with the same prompt is then a dictionary lookup.

One process-wide instance, :data:`DEFAULT_CACHE`, is shared by all encoders (it outlives a reloaded
encoder with the same files); :func:`clear_embedding_cache` empties it.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Hashable

import torch

__all__ = ["EmbeddingCache", "DEFAULT_CACHE", "clear_embedding_cache"]

log = logging.getLogger(__name__)


def _nbytes(embeds: torch.Tensor, mask: torch.Tensor) -> int:
    return embeds.numel() * embeds.element_size() + mask.numel() * mask.element_size()


class EmbeddingCache:
    """LRU map ``key -> (embeds [L, D], mask [L])`` holding at most ``max_entries`` and ``max_bytes``.

    An entry larger than ``max_bytes`` by itself is not stored. ``hits`` and ``misses`` count lookups.
    Thread-safe.
    """

    def __init__(self, max_entries: int = 256, max_bytes: int = 256 * 2**20):
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("cache bounds must be >= 0")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return self._bytes

    def get(self, key: Hashable) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached ``(embeds, mask)`` (CPU tensors; do not modify them) or ``None``."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, embeds: torch.Tensor, mask: torch.Tensor) -> None:
        """Store CPU copies of ``embeds [L, D]`` and ``mask [L]``, evicting least recently used entries."""
        size = _nbytes(embeds, mask)
        if size > self.max_bytes or self.max_entries == 0:
            log.debug("embedding of %d bytes not cached (limit %d bytes)", size, self.max_bytes)
            return
        value = (embeds.detach().to("cpu", copy=True), mask.detach().to("cpu", copy=True))
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= _nbytes(*old)
            self._data[key] = value
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= _nbytes(*evicted)

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = self.misses = 0


# 64 entries / 64 MiB: at T5-XXL's 77 x 4096 that still holds 50-100 prompts; inside ComfyUI (whose own cache keeps
# only the last graph's outputs) it served 91 % of T5 Encode runs in the soak (bench/results/soak.json), where a miss
# costs 20-48 ms on an H200 and 9-26 s with T5 on a CPU
DEFAULT_CACHE = EmbeddingCache(max_entries=64, max_bytes=64 * 2**20)


def clear_embedding_cache() -> None:
    """Empty the process-wide :data:`DEFAULT_CACHE`."""
    DEFAULT_CACHE.clear()
