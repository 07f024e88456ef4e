"""The demo cascade in Python: load the demo models once per device, then T5 -> 64 -> 256 -> 1024 through a
:class:`~cascade_core.cascade.Cascade` (policy ``auto``: the demo models are small, so they stay resident)."""
from __future__ import annotations

import threading

import torch

from ..image import images_to_pixels, pixels_to_images
from ..stage import sample_stage, schedule_sigmas, unet_guider
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


def _steps_for(size: int, steps) -> int:
    if steps is None:
        return STAGES[STAGE_OF_SIZE[size]].steps
    if isinstance(steps, dict):
        return int(steps.get(size, STAGES[STAGE_OF_SIZE[size]].steps))
    return int(steps)


def _run(models: dict, size: int, positive: torch.Tensor, negative: torch.Tensor, low_res: torch.Tensor | None,
         *, seed: int, guidance: float | None, steps) -> torch.Tensor:
    """One stage: pixels [B, 3, size, size] in [-1, 1] (SR stages upsample ``low_res`` [B, 3, size/4, size/4])."""
    settings = STAGES[STAGE_OF_SIZE[size]]
    unet = models[STAGE_OF_SIZE[size]]
    scale = settings.guidance if guidance is None else float(guidance)
    guider = unet_guider(unet, positive, negative, scale, threshold_percentile=settings.threshold_percentile,
                         threshold_max=settings.threshold_max)
    sigmas = schedule_sigmas(guider.denoiser, _steps_for(size, steps), settings.schedule)
    extra = {} if low_res is None else {"low_res": low_res, "noise_level": settings.noise_level}
    return sample_stage(guider, sigmas, batch_size=positive.shape[0], height=size, width=size, sampler=settings.sampler,
                        generator=torch.Generator().manual_seed(seed * 7919 + size), device=unet.device, **extra)


def _encode(models: dict, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    t5 = models["t5"]
    embeds, _ = t5.encode(prompts + [NEGATIVE_PROMPT])
    positive = embeds[:-1]
    return positive, embeds[-1:].expand_as(positive)


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
             up_to: int = 1024) -> dict:
    """The cascade's outputs ``{size: [B, size, size, 3]}`` for the stages up to ``up_to`` (64, 256 or 1024)."""
    if up_to not in STAGE_OF_SIZE:
        raise ValueError(f"up_to must be one of {sorted(STAGE_OF_SIZE)}, got {up_to!r}")
    prompts = _prompts(prompts)
    return demo_cascade(device)(prompts, seed=seed, guidance=guidance, steps=steps, up_to=up_to)


@torch.inference_mode()
def upscale(images: torch.Tensor, prompts, stage: int, *, seed: int = 0, guidance: float | None = None, steps=None,
            device=None) -> torch.Tensor:
    if stage not in (256, 1024):
        raise ValueError(f"upscale: stage must be 256 or 1024, got {stage!r}")
    prompts = _prompts(prompts)
    models = demo_models(device)
    if len(prompts) != images.shape[0]:
        raise ValueError(f"upscale: {images.shape[0]} images but {len(prompts)} prompts")
    low = images_to_pixels(images, device=models[STAGE_OF_SIZE[stage]].device)
    if low.shape[-1] * 4 != stage or low.shape[-2] * 4 != stage:
        raise ValueError(f"upscale: stage {stage} takes {stage // 4}x{stage // 4} images, got "
                         f"{low.shape[-1]}x{low.shape[-2]}")
    positive, negative = _encode(models, prompts)
    return pixels_to_images(_run(models, stage, positive, negative, low, seed=seed, guidance=guidance, steps=steps))
