"""Tiny training setups for the trainer tests: a random tiny T5 repo folder and micro UNet configs for it."""
from __future__ import annotations

from pathlib import Path

from _text_models import TINY_CONFIG, reference_model, save_if_repo, train_spiece
from tiny_unets import MICRO_IF_I, MICRO_IF_II

T5_DIM = TINY_CONFIG["d_model"]
TRAIN_BASE = dict(MICRO_IF_I, encoder_hid_dim=T5_DIM, addition_embed_type_num_heads=2)
TRAIN_SR = dict(MICRO_IF_II, encoder_hid_dim=T5_DIM, addition_embed_type_num_heads=2)


def tiny_t5_repo(root: Path) -> Path:
    """A tiny random T5 in an IF-style repo folder (text_encoder/ + tokenizer/)."""
    spiece = train_spiece(root / "_spiece")
    return save_if_repo(reference_model(seed=0), spiece, root / "t5")


def train_config(tmp: Path, t5: Path, name: str = "run", sr: bool = False, **overrides):
    from cascade_core.train.config import UNetTrainConfig

    values = dict(output_dir=str(tmp / name), architecture=TRAIN_SR if sr else TRAIN_BASE, text_encoder=str(t5),
                  num_samples=8, resolution=64 if sr else 16, crop=32 if sr else 0, steps=4, batch_size=4,
                  checkpoint_every=0, sample_every=0, threads=1, cache_dir=str(tmp / "cache"), warmup_steps=2)
    values.update(overrides)
    return UNetTrainConfig(**values)
