"""Text embeddings computed once per (encoder, caption) and kept on disk, so training never runs T5 per step.

Layout: ``<cache_dir>/<encoder key>/shard-<time>-<pid>.safetensors ...``; each shard maps ``sha1(caption)`` to the
caption's ``embeds [L, D]`` (float16; L = 77 for the IF encoders). The encoder key is a hash of the
encoder's identity (its files, sizes and mtimes), so a retrained encoder never reads stale embeddings.
Captions are encoded in a fixed order and batch size, so the stored values do not depend on which run
(or which resumed run) computed them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["EmbeddingStore", "caption_key"]

log = logging.getLogger(__name__)


def caption_key(caption: str) -> str:
    return hashlib.sha1(caption.encode("utf-8")).hexdigest()


class EmbeddingStore:
    """Disk-backed map caption -> embeds [L, D] for one text encoder (``encoder.encode(list) -> (embeds, mask)``).

    ``hits`` / ``misses`` count captions found / encoded since construction.
    """

    def __init__(self, cache_dir: str | os.PathLike, encoder, *, batch_size: int = 256):
        self.encoder = encoder
        identity = getattr(encoder, "identity", type(encoder).__name__)
        self.folder = Path(cache_dir) / hashlib.sha1(str(identity).encode()).hexdigest()[:16]
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0
        self._table: dict[str, torch.Tensor] = {}
        self._load()

    def _load(self) -> None:
        from safetensors.torch import load_file

        if not self.folder.is_dir():
            return
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            try:
                self._table.update(load_file(str(shard)))
            except Exception as e:  # a torn shard from an interrupted run: drop it, it is recomputed
                log.warning("embedding cache: ignoring unreadable %s (%s)", shard, e)

    def __len__(self) -> int:
        return len(self._table)

    def ensure(self, captions: Sequence[str]) -> None:
        """Encode every caption not stored yet (in sorted order, fixed batches) and write them as a new shard."""
        unique = sorted(set(captions))
        missing = [c for c in unique if caption_key(c) not in self._table]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if not missing:
            return
        log.info("embedding cache: encoding %d new captions (%d stored) into %s", len(missing), len(self), self.folder)
        new: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                embeds, _ = self.encoder.encode(chunk, use_cache=False)
                for caption, e in zip(chunk, embeds):
                    new[caption_key(caption)] = e.to("cpu", torch.float16).clone()
        self._write(new)
        self._table.update(new)

    def _write(self, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        # a unique name per writer: concurrent runs (or DDP ranks) sharing a cache never overwrite each other
        final = self.folder / f"shard-{time.time_ns():020d}-{os.getpid()}.safetensors"
        tmp = final.with_suffix(".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, final)  # a shard is complete or absent, never torn

    def get(self, captions: Sequence[str]) -> torch.Tensor:
        """Embeddings [B, L, D] (float32, CPU) of captions already passed to :meth:`ensure`."""
        try:
            return torch.stack([self._table[caption_key(c)] for c in captions]).float()
        except KeyError:
            missing = [c for c in captions if caption_key(c) not in self._table]
            raise KeyError(f"captions not in the embedding cache (call ensure first): {missing[:3]}") from None
