"""The UNet trainer's configuration: one JSON file (or dataclass) per stage, one set of defaults.

``kind`` in the JSON picks the trainer (``unet`` here; ``t5``, ``git`` and ``clip`` train the demo's text
encoder, captioner and embedder). Paths in a config file are relative to the current directory.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["UNetTrainConfig", "read_config_file"]


@dataclass
class UNetTrainConfig:
    """Everything one stage's training run needs.

    ``architecture``: a diffusers UNet ``config.json`` dict, or the name of a demo architecture
    (``base64``, ``sr256``, ``sr1024`` in :mod:`cascade_core.demo.architectures`); ignored with ``init_from``
    (fine-tuning keeps the checkpoint's architecture). ``data``: ``"shapes"`` (the procedural scenes) or a
    folder of images with same-name ``.txt`` captions. ``resolution``: the stage's output size (64 base,
    256 / 1024 SR); SR stages see ``resolution // 4`` inputs and train on ``crop``-pixel crops (0: full image).
    ``noise_aug_max``: SR noise-conditioning augmentation, a level drawn uniformly in [0, noise_aug_max) per
    sample. ``loss``: ``learned_variance`` (IF's hybrid objective) or ``epsilon`` (plain MSE); ``prediction``:
    what the network predicts, ``epsilon`` (IF) or ``v_prediction`` (default: epsilon, or ``init_from``'s own).
    ``precision``: ``fp32``, ``bf16`` or ``fp16`` autocast (GPU; the CPU always trains in fp32).
    """

    output_dir: str = "runs/stage"
    architecture: Any = "base64"
    init_from: str | None = None
    text_encoder: str = "demo:t5"
    data: str = "shapes"
    num_samples: int = 20000
    resolution: int = 64
    crop: int = 0
    noise_aug_max: int = 500
    cfg_dropout: float = 0.1
    loss: str = "learned_variance"
    prediction: str | None = None
    schedule: str = "cosine"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "bf16"
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    sample_prompts: list[str] = field(default_factory=list)
    sample_steps: int = 25
    cache_dir: str | None = None
    save_dtype: str = "float16"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("learned_variance", "epsilon"):
            raise ValueError(f"config 'loss' must be 'learned_variance' or 'epsilon', got {self.loss!r}")
        if self.prediction not in (None, "epsilon", "v_prediction"):
            raise ValueError(f"config 'prediction' must be 'epsilon' or 'v_prediction', got {self.prediction!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"config 'precision' must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.save_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"config 'save_dtype' must be float16, bfloat16 or float32, got {self.save_dtype!r}")
        for name in ("steps", "batch_size", "resolution", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"config {name!r} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ValueError(f"config 'cfg_dropout' must be in [0, 1), got {self.cfg_dropout}")

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def cache_path(self) -> Path:
        """Where text embeddings are cached: ``cache_dir``, else ``<output_dir>/../.embedding_cache``."""
        return Path(self.cache_dir) if self.cache_dir else self.output_path.parent / ".embedding_cache"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "UNetTrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown UNet training config keys {unknown} (known: {sorted(known)})")
        return cls(**values)


def read_config_file(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(kind, fields) of a training config JSON file; ``kind`` defaults to ``unet``."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read training config {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"training config {path} must hold a JSON object")
    kind = values.pop("kind", "unet")
    values.pop("comment", None)
    return kind, values
