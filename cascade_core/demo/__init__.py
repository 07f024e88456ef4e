"""The built-in demo cascade: tiny models trained with :mod:`cascade_core.train` on the procedural shapes data.

``DEMO_DIR`` holds ordinary model folders (``t5/ base64/ sr256/ sr1024/ git/ clip/``) that the pack's loaders
read unchanged. ``generate(prompts)`` runs T5 -> 64 -> 256 -> 1024 with the demo's default settings
(:mod:`.settings`); ``upscale`` runs one super-resolution stage on given images.
"""
from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent / "models"  # t5/ base64/ sr256/ sr1024/ git/ clip/: ordinary model folders

__all__ = ["DEMO_DIR", "generate", "upscale"]


def generate(prompts, seed: int = 0, guidance: float | None = None, steps=None, device=None, height: int = 64,
             width: int = 64):
    """Run the demo cascade on ``prompts`` (a string or a list).

    Returns ``{64: images, 256: images, 1024: images}``, each float ``[B, H, W, 3]`` in 0..1 (CPU): the base
    stage ``height`` x ``width`` (multiples of 8; keep the short side 64, e.g. 64 x 112 for 16:9), then 4x, 16x;
    keys are each stage's shorter side (so 64, 256, 1024 for any image with a 64 px short side).
    ``guidance`` overrides every stage's CFG scale (1.0 = no CFG); ``steps`` overrides every stage's step
    count (an int) or some of them (``{64: n, 256: n, 1024: n}``); ``device`` defaults to CUDA when present.
    """
    from .pipeline import generate as _generate

    return _generate(prompts, seed=seed, guidance=guidance, steps=steps, device=device, height=height,
                     width=width)


def upscale(images, prompts, stage: int, seed: int = 0, guidance: float | None = None, steps=None, device=None):
    """4x super-resolution of ``images`` (float ``[B, H, W, 3]`` in 0..1) with the demo's ``stage`` (256 or 1024
    model) conditioned on ``prompts``; returns ``[B, 4H, 4W, 3]`` in 0..1."""
    from .pipeline import upscale as _upscale

    return _upscale(images, prompts, stage, seed=seed, guidance=guidance, steps=steps, device=device)
