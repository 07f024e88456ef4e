"""The demo cascade in Python: load the demo models once per device, then T5 -> 64 -> 256 -> 1024 through a
:class:`~cascade_core.cascade.Cascade` (policy ``auto``: the demo models are small, so they stay resident)."""
from __future__ import annotations

import threading

import torch

from ..unet.loading import default_device_dtype
from .settings import NEGATIVE_PROMPT, STAGES

__all__ = ["generate", "upscale", "demo_models", "demo_cascade"]

STAGE_OF_SIZE = {64: "base64", 256: "sr256", 1024: "sr1024"}
_MODELS: dict[str, dict] = {}
_CASCADES: dict[str, object] = {}
_LOCK = threading.Lock()


def demo_models(device=None) -> dict:
    """``{"t5": TextEncoder, "base64": UNet, "sr256": UNet, "sr1024": UNet}`` on ``device`` (loaded once)."""
    from ..text import load_text_encoder
    from ..unet.loading import load_unet
    from . import DEMO_DIR

    device, dtype = default_device_dtype(device)
    key = str(device)
    with _LOCK:
        if key not in _MODELS:
            missing = [n for n in ("t5", *STAGES) if not (DEMO_DIR / n).is_dir()]
            if missing:
                raise FileNotFoundError(f"demo models missing in {DEMO_DIR}: {missing} (a broken checkout? they "
                                        "ship with the pack; retrain with python -m cascade_core.train "
                                        "cascade_core/demo/configs/<name>.json)")
            models = {"t5": load_text_encoder(DEMO_DIR / "t5", device=device, dtype=dtype)}
            for name in STAGES:
                models[name] = load_unet(DEMO_DIR / name, device=device, dtype=dtype)
            _MODELS[key] = models
        return _MODELS[key]


def _prompts(prompts) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("generate: give at least one prompt")
    return prompts


def demo_cascade(device=None):
    """The demo models as a :class:`~cascade_core.cascade.Cascade` on ``device`` (built once per device)."""
    from ..cascade import Cascade

    models = demo_models(device)
    key = str(default_device_dtype(device)[0])
    with _LOCK:
        if key not in _CASCADES:
            _CASCADES[key] = Cascade(models["t5"], models["base64"], models["sr256"], models["sr1024"],
                                     device=models["base64"].device, negative_prompt=NEGATIVE_PROMPT,
                                     stages={"base": STAGES["base64"], "sr": STAGES["sr256"],
                                             "upscaler": STAGES["sr1024"]})
        return _CASCADES[key]


def generate(prompts, *, seed: int = 0, guidance: float | None = None, steps=None, device=None,
             up_to: int = 1024, height: int = 64, width: int = 64) -> dict:
    """The cascade's outputs for the stages up to ``up_to`` (stage 64, 256 or 1024), keyed as
    :class:`~cascade_core.cascade.Cascade` keys them (each stage's shorter side): 64 x 64 gives ``{64: [B, 64, 64,
    3], 256: ..., 1024: ...}``; ``height=64, width=112`` gives ``{64: [B, 64, 112, 3], 256: [B, 256, 448, 3],
    1024: [B, 1024, 1792, 3]}`` (the demo models are trained at a 64 px base: keep the short side 64)."""
    if up_to not in STAGE_OF_SIZE:
        raise ValueError(f"up_to must be one of {sorted(STAGE_OF_SIZE)}, got {up_to!r}")
    prompts = _prompts(prompts)
    last = min(height, width) * 4 ** sorted(STAGE_OF_SIZE).index(up_to)
    return demo_cascade(device)(prompts, seed=seed, guidance=guidance, steps=steps, up_to=last, height=height,
                                width=width)


def upscale(images: torch.Tensor, prompts, stage: int, *, seed: int = 0, guidance: float | None = None, steps=None,
            device=None) -> torch.Tensor:
    """One demo SR stage on ``images`` [B, h, w, 3] in 0..1 -> [B, 4h, 4w, 3]: ``stage`` 256 (a 64 px short side ->
    256, e.g. 64x64 or 112x64) or 1024 (a 256 px short side -> 1024)."""
    if stage not in (256, 1024):
        raise ValueError(f"upscale: stage must be 256 or 1024, got {stage!r}")
    if min(images.shape[1], images.shape[2]) * 4 != stage:
        raise ValueError(f"upscale: stage {stage} takes images whose shorter side is {stage // 4} px (e.g. "
                         f"{stage // 4}x{stage // 4}), got {images.shape[2]}x{images.shape[1]}")
    return demo_cascade(device).upscale(images, _prompts(prompts), "sr" if stage == 256 else "upscaler", seed=seed,
                                        steps=steps, guidance=guidance)
