"""Train the demo GIT captioner: a tiny ``GitForCausalLM`` that captions 64 px shapes renders.

The model sees train-split renders (``render(scene, image_size)``) and learns their canonical caption
(``caption(scene, 0)``, e.g. "a large red circle on the left, on a white background") with GIT's causal
language-model loss. The folder holds what a hub GIT checkpoint holds — ``config.json``,
``model.safetensors`` (float16), a WordPiece ``vocab.txt`` + ``tokenizer_config.json`` and a CLIP-style
``preprocessor_config.json`` — so :func:`cascade_core.load_captioner` reads it unchanged, plus
``train_info.json`` (config, loss history, wall time, held-out accuracy).

Run: ``python -m cascade_core.train cascade_core/demo/configs/git.json``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import shapes
from .caption_vocab import write_wordpiece_vocab
from .text_common import (Progress, cosine_lr, finish_run, render_batch, scenes, sincos_positions, start_run,
                          write_json)

__all__ = ["GitTrainConfig", "run", "caption_accuracy", "preprocessor_config", "CLIP_MEAN", "CLIP_STD"]

log = logging.getLogger(__name__)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass
class GitTrainConfig:
    """Everything one GIT training run depends on (JSON-loadable: ``GitTrainConfig(**fields)``)."""

    kind: str = "git"
    output_dir: str = "cascade_core/demo/models/git"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    threads: int = 1
    train_scenes: int = 4000  # distinct train-split scenes rendered once and cycled through
    image_size: int = 64
    patch_size: int = 8
    sincos_init: bool = False  # 2-D sin-cos initial vision position embeddings (text_common.sincos_positions)
    hidden_size: int = 128
    vision_layers: int = 2
    text_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_length: int = 40  # caption tokens, [CLS] and [SEP] included
    eval_scenes: int = 100  # held-out scenes captioned after training (0: skip)
    log_every: int = 100


def preprocessor_config(size: int, processor_class: str | None) -> dict[str, Any]:
    """A CLIP-style ``preprocessor_config.json`` for ``size`` px inputs (resize shortest edge, centre crop)."""
    config = {
        "crop_size": {"height": size, "width": size}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "resample": 3,
        "rescale_factor": 1 / 255, "size": {"shortest_edge": size},
    }
    if processor_class:
        config["processor_class"] = processor_class
    return config


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` renders → ``pixel_values`` as the saved preprocessor config makes them.

    At the model's own size the processor's resize and crop are the identity, so this is
    ``(x / 255 - mean) / std`` (what :class:`cascade_core.preprocess.Preprocessor` computes).
    """
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def _git_config(cfg: GitTrainConfig, vocab: list[str]) -> Any:
    from transformers import GitConfig

    return GitConfig(
        vocab_size=-(-len(vocab) // 8) * 8, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length + 8, bos_token_id=vocab.index("[CLS]"),
        eos_token_id=vocab.index("[SEP]"), pad_token_id=vocab.index("[PAD]"), initializer_range=0.02,
        vision_config=dict(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                           num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.num_heads,
                           image_size=cfg.image_size, patch_size=cfg.patch_size),
    )


def _encode_captions(tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    """``[N, max_length]`` ids ``[CLS] caption [SEP] [PAD]…``; fails if a caption is too long."""
    enc = tokenizer(texts, padding="max_length", max_length=max_length, truncation=False, return_tensors="pt")
    if enc["input_ids"].shape[1] > max_length:
        raise ValueError(f"a caption has more than max_length={max_length} tokens; raise max_length")
    return enc["input_ids"]


def caption_accuracy(folder: Path, count: int, seed: int, size: int) -> dict[str, Any]:
    """Caption ``count`` held-out renders with ``load_captioner(folder)``; fraction naming colour and shape.

    A caption is right when it contains "<colour> <shape>" of the scene (the grammar puts them together).
    """
    from ..captioning import load_captioner

    captioner = load_captioner(folder, device="cpu", dtype=torch.float32)
    items = scenes(count, seed, "heldout")
    images = render_batch(items, size).permute(0, 2, 3, 1).float().div(255)
    texts = captioner.caption(images, batch_size=50)
    right = [f" {s.color} {s.shape}" in " " + t for s, t in zip(items, texts)]
    wrong = [(shapes.caption(s), t) for s, t, ok in zip(items, texts, right) if not ok]
    return {"caption_acc": sum(right) / max(1, len(right)), "scenes": count, "examples_wrong": wrong[:5],
            "examples": [[shapes.caption(s), t] for s, t in list(zip(items, texts))[:3]]}


def run(config: GitTrainConfig) -> Path:
    """Train the captioner, save it to ``config.output_dir`` (loadable by ``load_captioner``), return the path."""
    from transformers import AutoTokenizer, GitForCausalLM

    out, train, vocab_texts = start_run(config, "git")
    vocab = write_wordpiece_vocab(vocab_texts, out, max_length=config.max_length)
    write_json(out / "preprocessor_config.json", preprocessor_config(config.image_size, "GitProcessor"))
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    ids = _encode_captions(tokenizer, [shapes.caption(s, 0) for s in train], config.max_length)
    images = render_batch(train, config.image_size)  # uint8
    log.info("git: %d train renders at %d px, vocabulary %d, captions up to %d tokens", len(train),
             config.image_size, len(vocab), int((ids != tokenizer.pad_token_id).sum(1).max()))

    torch.manual_seed(config.seed)
    model = GitForCausalLM(_git_config(config, vocab)).train()
    if config.sincos_init:
        sincos_positions(model.git.image_encoder.vision_model.embeddings)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    progress = Progress("git", config.steps, config.log_every)
    order = rng.permutation(len(train))
    pos = 0
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = config.lr * cosine_lr(step, config.steps, config.warmup)
        if pos + config.batch_size > len(order):
            order, pos = rng.permutation(len(train)), 0
        pick = torch.from_numpy(order[pos:pos + config.batch_size])
        pos += config.batch_size
        batch_ids = ids[pick]
        length = int((batch_ids != tokenizer.pad_token_id).sum(1).max())
        batch_ids = batch_ids[:, :length]
        mask = (batch_ids != tokenizer.pad_token_id).long()
        labels = batch_ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=batch_ids, attention_mask=mask, pixel_values=normalise(images[pick]),
                     labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        progress.update(step + 1, loss.item(), len(pick))

    return finish_run(model, out, config, progress,
                      lambda folder: caption_accuracy(folder, config.eval_scenes, config.seed, config.image_size))
