"""Train the demo CLIP embedder: a tiny ``CLIPModel`` matching 64 px shapes renders with their captions.

Contrastive InfoNCE (Radford et al. 2021) on train-split renders against their captions in every phrasing,
plus hard negatives: for each image, ``hard_negatives`` captions of scenes that differ in exactly one
attribute (:func:`~.caption_vocab.one_attribute_variants`). The image→text softmax runs over all captions
of the batch and all hard negatives; the text→image softmax over the batch's images.

The folder holds a hub-style CLIP checkpoint — ``config.json``, ``model.safetensors`` (float16), a CLIP
BPE ``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json`` and ``preprocessor_config.json`` — which
:func:`cascade_core.load_embedder` reads unchanged; ``train_info.json`` records the run and the held-out
retrieval accuracy (true caption ranked first among 8 that differ in one attribute each).

Run: ``python -m cascade_core.train cascade_core/demo/configs/clip.json``.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import shapes
from .caption_vocab import CLIP_BOS, CLIP_EOS, one_attribute_variants, write_clip_bpe
from .git_train import normalise, preprocessor_config
from .text_common import (Progress, cosine_lr, finish_run, render_batch, scenes, sincos_positions, start_run,
                          write_json)

__all__ = ["ClipTrainConfig", "run", "retrieval_accuracy"]

log = logging.getLogger(__name__)


@dataclass
class ClipTrainConfig:
    """Everything one CLIP training run depends on (JSON-loadable: ``ClipTrainConfig(**fields)``)."""

    kind: str = "clip"
    output_dir: str = "cascade_core/demo/models/clip"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    hard_negatives: int = 3  # one-attribute-different captions per image, attributes drawn from:
    negative_attributes: str = "color,shape,size,position,background"  # without replacement (repeats allowed)
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    threads: int = 1
    train_scenes: int = 4000
    image_size: int = 64
    patch_size: int = 8
    sincos_init: bool = True  # 2-D sin-cos initial vision position embeddings (text_common.sincos_positions)
    hidden_size: int = 128
    vision_layers: int = 2
    text_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    projection_dim: int = 128
    max_length: int = 32
    eval_scenes: int = 100  # held-out scenes for the retrieval measurement (0: skip)
    log_every: int = 100


def _clip_config(cfg: ClipTrainConfig, vocab: dict[str, int]) -> Any:
    from transformers import CLIPConfig

    text = dict(vocab_size=len(vocab), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.num_heads,
                max_position_embeddings=cfg.max_length, projection_dim=cfg.projection_dim,
                bos_token_id=vocab[CLIP_BOS], eos_token_id=vocab[CLIP_EOS], pad_token_id=vocab[CLIP_EOS])
    vision = dict(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.num_heads,
                  image_size=cfg.image_size, patch_size=cfg.patch_size, projection_dim=cfg.projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim,
                      logit_scale_init_value=math.log(1 / 0.07))


def _features(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _TextIds:
    """Token ids of captions, encoded once each (``[L]`` tensors; BOS … EOS)."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.cache: dict[str, torch.Tensor] = {}
        self.pad = tokenizer.pad_token_id

    def batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` ``[N, L]`` padded to the longest, as the embedder tokenizes."""
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            enc = self.tokenizer(todo, truncation=True, max_length=self.max_length)["input_ids"]
            self.cache.update({t: torch.tensor(e) for t, e in zip(todo, enc)})
        rows = [self.cache[t] for t in texts]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}


def _loss(model: Any, pixels: torch.Tensor, texts: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
    """InfoNCE: the first ``batch`` texts are the images' own captions, the rest hard negatives."""
    img = F.normalize(_features(model.get_image_features(pixel_values=pixels)), dim=-1)
    txt = F.normalize(_features(model.get_text_features(**texts)), dim=-1)
    scale = model.logit_scale.clamp(max=math.log(100.0)).exp()
    logits = scale * img @ txt.T  # [B, B + B·k]
    target = torch.arange(batch)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :batch].T, target))


def retrieval_accuracy(folder: Path, count: int, seed: int, size: int) -> dict[str, Any]:
    """Rank the true caption (phrasing 0) among it and 7 one-attribute variants for ``count`` held-out renders.

    Uses ``load_embedder(folder).similarity``; returns the top-1 fraction (``retrieval_top1``).
    """
    from ..similarity import load_embedder

    embedder = load_embedder(folder, device="cpu", dtype=torch.float32)
    items = scenes(count, seed, "heldout")
    images = render_batch(items, size).permute(0, 2, 3, 1).float().div(255)
    rng = random.Random(seed)
    right, wrong = 0, []
    for i, scene in enumerate(items):
        texts = [shapes.caption(s, 0) for s in [scene, *one_attribute_variants(scene, rng)]]
        scores = embedder.similarity(images[i:i + 1], texts)[0]
        best = int(scores.argmax())
        right += best == 0
        if best != 0 and len(wrong) < 5:
            wrong.append([texts[0], texts[best]])
    return {"retrieval_top1": right / max(1, count), "scenes": count, "examples_wrong": wrong}


def run(config: ClipTrainConfig) -> Path:
    """Train the embedder, save it to ``config.output_dir`` (loadable by ``load_embedder``), return the path."""
    from transformers import AutoTokenizer, CLIPModel

    out, train, vocab_texts = start_run(config, "clip")
    vocab = write_clip_bpe(vocab_texts, out, max_length=config.max_length)
    write_json(out / "preprocessor_config.json", preprocessor_config(config.image_size, "CLIPProcessor"))
    texts = _TextIds(AutoTokenizer.from_pretrained(str(out), local_files_only=True), config.max_length)
    images = render_batch(train, config.image_size)  # uint8
    log.info("clip: %d train renders at %d px, BPE vocabulary %d", len(train), config.image_size, len(vocab))

    torch.manual_seed(config.seed)
    model = CLIPModel(_clip_config(config, vocab)).train()
    if config.sincos_init:
        sincos_positions(model.vision_model.embeddings)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    pyrng = random.Random(config.seed)
    progress = Progress("clip", config.steps, config.log_every)
    pool = [a.strip() for a in config.negative_attributes.split(",") if a.strip()]
    if len(pool) < config.hard_negatives:
        raise ValueError(f"hard_negatives={config.hard_negatives} needs at least as many negative_attributes, "
                         f"got {pool}")
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = config.lr * cosine_lr(step, config.steps, config.warmup)
        pick = rng.choice(len(train), size=config.batch_size, replace=False)
        batch = [train[i] for i in pick]
        captions = [shapes.caption(s, int(rng.integers(shapes.NUM_PHRASINGS))) for s in batch]
        negatives = []
        for s in batch:
            attrs = pyrng.sample(pool, config.hard_negatives)
            negatives += [shapes.caption(v, int(rng.integers(shapes.NUM_PHRASINGS)))
                          for v in one_attribute_variants(s, pyrng, attrs)]
        loss = _loss(model, normalise(images[torch.from_numpy(pick)]), texts.batch(captions + negatives),
                     len(batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        progress.update(step + 1, loss.item(), len(batch))

    return finish_run(model, out, config, progress,
                      lambda folder: retrieval_accuracy(folder, config.eval_scenes, config.seed, config.image_size),
                      logit_scale=model.logit_scale.exp().item())
