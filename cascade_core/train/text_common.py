"""Shared pieces of the demo text-model trainers (T5, GIT, CLIP): seeding, captions, renders, progress, saving.

The three trainers (:mod:`.t5_pretrain`, :mod:`.git_train`, :mod:`.clip_train`) draw their data from the
procedural shapes dataset (:mod:`.shapes`): scene ``i`` of a split is ``random_scene(seed + i, split)``.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from . import shapes

__all__ = ["Progress", "seed_everything", "scenes", "all_phrasings", "render_batch", "save_half", "write_json",
           "caption_words", "cosine_lr", "sincos_positions", "HELDOUT_OFFSET"]

log = logging.getLogger(__name__)

HELDOUT_OFFSET = 10_000_000  # held-out scenes are drawn from seeds far from the training seeds


def seed_everything(seed: int, threads: int) -> None:
    """Seed Python, NumPy and torch, and use ``threads`` CPU threads (deterministic CPU training)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def scenes(count: int, seed: int, split: str = "train") -> list[shapes.Scene]:
    """``count`` scenes of ``split``: ``random_scene(seed + i, split)`` (held-out ones from far seeds)."""
    base = seed + (HELDOUT_OFFSET if split == "heldout" else 0)
    return [shapes.random_scene(base + i, split) for i in range(count)]


def all_phrasings(scene: shapes.Scene) -> list[str]:
    """Every phrasing of ``scene``'s caption (``NUM_PHRASINGS`` strings)."""
    return [shapes.caption(scene, p) for p in range(shapes.NUM_PHRASINGS)]


def caption_words(texts: Iterable[str]) -> list[str]:
    """The distinct lowercase words (punctuation split off) of ``texts``, sorted."""
    words: set[str] = set()
    for text in texts:
        for punct in ",.;:!?":
            text = text.replace(punct, f" {punct} ")
        words.update(text.lower().split())
    return sorted(words)


def render_batch(items: Sequence[shapes.Scene], size: int) -> torch.Tensor:
    """Renders of ``items`` as uint8 ``[N, 3, size, size]`` (compact to keep many in memory)."""
    out = torch.empty(len(items), 3, size, size, dtype=torch.uint8)
    for i, scene in enumerate(items):
        out[i] = (shapes.render(scene, size).clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def save_half(model: torch.nn.Module, folder: Path) -> None:
    """``save_pretrained`` with float16 weights (the pack's loaders cast to their compute dtype)."""
    model.half().save_pretrained(str(folder), safe_serialization=True)
    model.float()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


class Progress:
    """A plain progress line every ``every`` steps: step/total, loss (running mean), items/s, elapsed."""

    def __init__(self, name: str, total: int, every: int = 50):
        self.name, self.total, self.every = name, total, max(1, every)
        self.start = self.last = time.perf_counter()
        self.items = 0
        self.losses: list[float] = []
        self.history: list[tuple[int, float]] = []  # (step, mean loss of the window)

    def update(self, step: int, loss: float, items: int) -> None:
        """Record one step (1-based ``step``) of ``items`` examples with ``loss``; log every ``every`` steps."""
        self.losses.append(loss)
        self.items += items
        if step % self.every and step != self.total:
            return
        now = time.perf_counter()
        mean = sum(self.losses) / len(self.losses)
        self.history.append((step, mean))
        log.info("%s step %d/%d  loss %.4f  %.1f items/s  %.0f s", self.name, step, self.total, mean,
                 self.items / max(now - self.last, 1e-9), now - self.start)
        self.losses, self.items, self.last = [], 0, now

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 10 % at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, t)))


def sincos_positions(embeddings: torch.nn.Module, scale: float = 0.5) -> None:
    """Initialise a ViT ``embeddings.position_embedding`` (``[1 + g·g, D]``, class token first) as 2-D sin-cos.

    transformers initialises it with std 0.02, about 20× weaker than the patch contents, and a tiny model
    then takes thousands of steps to learn *where* things are (position words stay at chance). Fixed 2-D
    sin-cos codes (MAE, He et al. 2022) of amplitude ``scale`` make position readable from the start;
    they remain trainable.
    """
    weight = embeddings.position_embedding.weight
    count, dim = weight.shape
    grid = int(round((count - 1) ** 0.5))
    if grid * grid != count - 1 or dim % 4:
        raise ValueError(f"position embedding {tuple(weight.shape)} is not [1 + g*g, 4k]")
    freqs = 1.0 / (100.0 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4)))
    coords = torch.arange(grid, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (yy, xx) for f in (torch.sin, torch.cos)]
    with torch.no_grad():
        weight[0].zero_()
        weight[1:] = scale * torch.cat(parts, dim=1)


def start_run(config: Any, kind: str) -> tuple[Path, list[shapes.Scene], list[str]]:
    """Common start of the GIT / CLIP trainers: check ``config.kind``, seed, make the output folder.

    Returns (output folder, the train-split scenes, the texts the tokenizer vocabulary is built from: all
    phrasings of 2000 train scenes and 500 held-out ones; vocabulary only, never trained on)."""
    if config.kind != kind:
        raise ValueError(f"{type(config).__name__}.kind must be {kind!r}, got {config.kind!r}")
    seed_everything(config.seed, config.threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = scenes(config.train_scenes, config.seed)
    vocab_texts = [c for s in train[:2000] for c in all_phrasings(s)]
    vocab_texts += [c for s in scenes(500, config.seed, "heldout") for c in all_phrasings(s)]
    return out, train, vocab_texts


def finish_run(model: torch.nn.Module, out: Path, config: Any, progress: "Progress", evaluate, **facts: Any) -> Path:
    """Common end: save the model in float16, evaluate it on held-out scenes (``evaluate(out)`` -> dict, when
    ``config.eval_scenes``), write ``train_info.json``; returns ``out``."""
    from dataclasses import asdict

    wall = progress.elapsed
    save_half(model.eval(), out)
    info: dict[str, Any] = {"config": asdict(config), "wall_s": round(wall, 1), "loss_history": progress.history,
                            "threads": torch.get_num_threads(), **facts}
    if config.eval_scenes:
        info["heldout"] = evaluate(out)
        log.info("%s: held-out %s on %d scenes", config.kind,
                 {k: v for k, v in info["heldout"].items() if isinstance(v, float)}, config.eval_scenes)
    write_json(out / "train_info.json", info)
    log.info("%s: saved to %s (%.0f s of training)", config.kind, out, wall)
    return out
