"""Socket types of the pack, and the plain objects that travel on them between nodes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._comfy import io

T5 = io.Custom("PIXEL_CASCADE_T5")
UNET = io.Custom("PIXEL_CASCADE_UNET")
CONDITIONING = io.Custom("PIXEL_CASCADE_CONDITIONING")
GUIDER = io.Custom("PIXEL_CASCADE_GUIDER")
CAPTIONER = io.Custom("PIXEL_CASCADE_CAPTIONER")
EMBEDDER = io.Custom("PIXEL_CASCADE_EMBEDDER")
UPSCALER = io.Custom("PIXEL_CASCADE_UPSCALER")


@dataclass(frozen=True)
class ModelHandle:
    """A loaded model, its ComfyUI ``ModelPatcher`` (memory management) and where it came from."""

    model: Any  # cascade_core UNet or TextEncoder
    patcher: Any
    name: str
    dtype: torch.dtype
    partial: bool = False  # built from comfy.ops layers: ComfyUI may load it partially (low VRAM)

    @property
    def device(self) -> torch.device:
        """Where the model computes (its weights may be partly elsewhere under partial loading)."""
        return self.patcher.load_device


@dataclass(frozen=True)
class TextConditioning:
    """T5 embeddings [1, L, D] (CPU) of one prompt, with the prompt itself for messages, and the embedding of
    "" [77, D] that pads long prompts (L = 77 * chunks) to a common length for CFG."""

    embeds: torch.Tensor
    prompt: str
    encoder: str
    filler: torch.Tensor


@dataclass(frozen=True)
class GuiderSpec:
    """What a stage needs for classifier-free guidance; the sampler builds the core guider on its device."""

    unet: ModelHandle
    positive: TextConditioning
    negative: TextConditioning
    scale: float
    threshold_percentile: float
    threshold_max: float
