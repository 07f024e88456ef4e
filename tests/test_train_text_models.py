"""The demo text-model trainers (T5 span corruption, GIT captioner, CLIP embedder) at toy sizes.

Each trainer runs a few steps into ``tmp_path`` and the folder must load with the pack's own loader.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from cascade_core.train import clip_train, git_train, shapes, t5_pretrain
from cascade_core.train.caption_vocab import one_attribute_variants
from cascade_core.train.span_corruption import collate, corrupt, noise_mask
from cascade_core.train.text_common import all_phrasings, caption_words, scenes

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "cascade_core" / "demo" / "configs"
TINY_VISION = dict(steps=2, batch_size=4, train_scenes=12, image_size=32, patch_size=8, hidden_size=32,
                   vision_layers=1, text_layers=1, num_heads=2, intermediate_size=32, eval_scenes=2, log_every=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


def test_span_corruption_keeps_every_token_once():
    rng = np.random.default_rng(0)
    for length in (2, 3, 12, 40):
        ids = list(range(10, 10 + length))
        mask = noise_mask(length, 0.15, 3.0, rng)
        assert 0 < mask.sum() < length
        inputs, targets = corrupt(ids, [99, 98, 97, 96, 95], 1, 0.15, 3.0, rng)
        assert inputs[-1] == 1 and targets[-1] == 1
        kept = [t for t in inputs[:-1] if t < 90]
        spans = [t for t in targets[:-1] if t < 90]
        assert sorted(kept + spans) == ids
        assert [t for t in inputs if t >= 90] == [t for t in targets if t >= 90]  # same sentinels, same order
    batch = collate([([5, 6, 1], [99, 7, 1]), ([5, 1], [99, 1])], pad=0)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch["labels"].tolist() == [[99, 7, 1], [99, 1, -100]]


def test_t5_trainer_tiny_folder_loads(tmp_path):
    from cascade_core import load_text_encoder

    cfg = t5_pretrain.T5PretrainConfig(output_dir=str(tmp_path / "t5"), steps=3, batch_size=8, train_scenes=40,
                                       tokenizer_scenes=40, d_model=32, d_kv=8, num_heads=2, num_layers=1,
                                       num_decoder_layers=1, d_ff=32, log_every=1)
    folder = t5_pretrain.run(cfg)
    assert {"config.json", "model.safetensors", "spiece.model"} <= {p.name for p in folder.iterdir()}
    encoder = load_text_encoder(folder, device="cpu", cache=None)
    assert encoder.hidden_size == 32 and encoder.model.config.vocab_size % 8 == 0
    for word in [w for w in caption_words(c for s in scenes(40, 0) for c in all_phrasings(s)) if w.isalpha()]:
        assert len(encoder.tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    a = "a large red circle on the left, on a white background"
    emb, mask = encoder.encode([a, a.replace("red", "blue"), a.replace("left", "right")])
    assert emb.shape == (3, 77, 32) and int(mask[0].sum()) == 13  # 12 pieces + EOS
    assert (emb[0] - emb[1]).abs().max() > 1e-3 and (emb[0] - emb[2]).abs().max() > 1e-3
    info = json.loads((folder / "train_info.json").read_text())
    assert len(info["loss_history"]) == 3


def test_git_trainer_tiny_folder_loads(tmp_path):
    from cascade_core import load_captioner

    folder = git_train.run(git_train.GitTrainConfig(output_dir=str(tmp_path / "git"), **TINY_VISION))
    captioner = load_captioner(folder, device="cpu", dtype=torch.float32)
    image = shapes.render(scenes(1, 0)[0], 64).permute(1, 2, 0)[None]
    assert captioner.pixel_values(image).shape == (1, 3, 32, 32)
    (text,) = captioner.caption(image, max_new_tokens=5)
    assert isinstance(text, str)
    info = json.loads((folder / "train_info.json").read_text())
    assert 0.0 <= info["heldout"]["caption_acc"] <= 1.0


def test_clip_trainer_tiny_folder_loads(tmp_path):
    from transformers import CLIPTokenizer

    from cascade_core import load_embedder

    cfg = clip_train.ClipTrainConfig(output_dir=str(tmp_path / "clip"), hard_negatives=2, max_length=32,
                                     projection_dim=16, **TINY_VISION)
    folder = clip_train.run(cfg)
    tok = CLIPTokenizer.from_pretrained(str(folder))
    ids = tok("a large red circle on the left")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "large</w>", "red</w>", "circle</w>",
                                              "on</w>", "the</w>", "left</w>", "<|endoftext|>"]
    embedder = load_embedder(folder, device="cpu", dtype=torch.float32)
    images = torch.rand(2, 40, 40, 3)
    scores = embedder.similarity(images, ["a red circle", "a blue star at the top", "x"])
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()
    assert "retrieval_top1" in json.loads((folder / "train_info.json").read_text())["heldout"]


def test_one_attribute_variants_differ_in_exactly_one_attribute():
    rng = random.Random(0)
    names = ["color", "shape", "size", "position", "background", "outline", "stripes"]
    for scene in scenes(30, 3) + scenes(10, 3, "heldout"):
        variants = one_attribute_variants(scene, rng)
        assert len(set(variants) | {scene}) == 8
        for v in variants:
            assert sum(getattr(v, n) != getattr(scene, n) for n in names) == 1
            assert shapes.COLORS[v.color] != shapes.BACKGROUNDS[v.background]


@pytest.mark.parametrize("kind, module, cls", [("t5", t5_pretrain, "T5PretrainConfig"),
                                               ("git", git_train, "GitTrainConfig"),
                                               ("clip", clip_train, "ClipTrainConfig")])
def test_demo_configs_load_into_their_dataclass(kind, module, cls):
    data = json.loads((CONFIGS / f"{kind}.json").read_text())
    config = getattr(module, cls)(**data)
    assert config.kind == kind and config.threads == 1
    assert config.output_dir == f"cascade_core/demo/models/{kind}"
    assert set(data) == {f.name for f in fields(config)} and asdict(config) == data
