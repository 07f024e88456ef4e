"""``Cascade``: T5 -> 64 -> 256 -> 1024 in one call, with a :class:`~cascade_core.offload.ModelManager` owning
where each model's weights are.

Each stage ``use``s its model through the manager (``text_encoder``, ``base``, ``sr``, ``upscaler``; the SD x4
upscaler adds ``upscaler_vae`` and ``upscaler_text``) and runs the ordinary stage code (:mod:`cascade_core.stage`,
:mod:`cascade_core.upscaler.stage`) on the device the manager gives, so ``policy="block"`` (weights streamed from
the host) runs the same math as ``keep``. Seeds: the stage that outputs ``s`` px draws from a CPU generator seeded
``seed * 7919 + s`` (the demo cascade's rule), so a stage's result does not depend on the stages before it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ..cuda_graphs import GraphedDenoiser
from ..image import pixels_to_images
from ..offload import ModelManager
from ..stage import sample_stage, schedule_sigmas, unet_guider
from ..unet.loading import default_device_dtype
from ..unet.model import UNet
from ..upscaler.model import Upscaler
from .settings import IF_STAGES, PIXEL_SR_STAGE, StageSettings

__all__ = ["Cascade"]

PathLike = str | os.PathLike
Steps = int | Mapping[int, int] | None


def _is_x4_path(path: Path) -> bool:
    return (path.is_dir() and (path / "vae").is_dir()) or (path.is_file() and "x4" in path.name.lower())


class Cascade:
    """The DeepFloyd IF cascade as one object: ``Cascade(text_encoder=..., base=..., sr=..., upscaler=...)``.

    ``text_encoder``: a :class:`~cascade_core.text.encoder.TextEncoder` or a path for ``load_text_encoder``;
    ``base``: IF-I UNet or a path for ``load_unet``; ``sr``: IF-II UNet / path (optional); ``upscaler``: the SD x4
    upscaler (``load_upscaler``; a path to its repo folder or an ``*x4*`` file) or a pixel-space SR UNet such as
    the demo's ``sr1024`` (optional, needs ``sr``). Paths load to the host in ``dtype`` (bf16 with CUDA, else
    fp32), with ``weight_dtype`` (e.g. ``torch.float8_e4m3fn``: half of bf16's memory) as the storage of the
    UNets' and T5's large weights when given; the manager moves weights. ``policy`` / ``budget_gib`` /
    ``device_budgets`` / ``reserve_gib``: see
    :class:`~cascade_core.offload.ModelManager` (or pass your own ``manager``); ``device``: where the UNets run
    (default CUDA if present), ``text_device``: where T5 runs (default ``device``; e.g. ``"cpu"`` or
    ``"cuda:1"``). ``stages``: settings per role (``base`` / ``sr`` / ``upscaler``) over :data:`IF_STAGES`;
    ``upscaler_options``: extra ``sample_x4_stage`` arguments (``tile``, ``overlap``, ``vae_tile``, ...).
    ``cuda_graphs``: replay each IF stage's denoising step from a CUDA graph
    (:class:`~cascade_core.cuda_graphs.GraphedDenoiser`) when its model stays resident (not ``block``); off CUDA,
    or if capture fails, the stage runs eagerly. Off by default until measured on a GPU (bench/cascade_gpu.py).
    """

    def __init__(self, text_encoder, base, sr=None, upscaler=None, *, policy: str = "auto",
                 budget_gib: float | None = None, device: str | torch.device | None = None,
                 text_device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 stages: Mapping[str, StageSettings] | None = None, negative_prompt: str = "",
                 device_budgets: Mapping[str, int] | None = None, reserve_gib: float = 1.0,
                 manager: ModelManager | None = None, upscaler_options: Mapping | None = None,
                 weight_dtype: torch.dtype | None = None, cuda_graphs: bool = False):
        if upscaler is not None and sr is None:
            raise ValueError("Cascade: an upscaler (stage III) needs an sr model (stage II) before it")
        self.device, dtype = default_device_dtype(device, dtype)
        self.text_device = torch.device(text_device) if text_device is not None else self.device
        text_dtype = dtype
        if weight_dtype is not None and text_dtype == torch.float32 and self.text_device.type != "cpu":
            text_dtype = torch.bfloat16
        self.text_encoder = self._text(text_encoder, text_dtype, weight_dtype)
        self.base = self._unet(base, dtype, "base", super_resolution=False, weight_dtype=weight_dtype)
        self.sr = None if sr is None else self._unet(sr, dtype, "sr", super_resolution=True, weight_dtype=weight_dtype)
        self.upscaler = None if upscaler is None else self._stage3(upscaler, dtype, weight_dtype)
        self.negative_prompt = negative_prompt
        third = IF_STAGES["upscaler"] if isinstance(self.upscaler, Upscaler) else PIXEL_SR_STAGE
        self.stages = {**IF_STAGES, "upscaler": third, **(stages or {})}
        self.upscaler_options = dict(upscaler_options or {})
        self.cuda_graphs = bool(cuda_graphs)
        self.manager = manager if manager is not None else ModelManager(
            policy, budget_gib=budget_gib, device_budgets=device_budgets, reserve_gib=reserve_gib)
        self._register()

    # -- construction -----------------------------------------------------------------------------
    @staticmethod
    def _text(value, dtype: torch.dtype, weight_dtype: torch.dtype | None):
        if isinstance(value, (str, os.PathLike)):
            from ..text import load_text_encoder

            return load_text_encoder(value, device="cpu", dtype=dtype, weight_dtype=weight_dtype)
        if not (hasattr(value, "encode") and isinstance(getattr(value, "model", None), nn.Module)):
            raise TypeError(f"Cascade: text_encoder must be a TextEncoder (load_text_encoder) or a path, got "
                            f"{type(value).__name__}")
        return value

    @staticmethod
    def _unet(value, dtype: torch.dtype, role: str, *, super_resolution: bool,
              weight_dtype: torch.dtype | None = None) -> UNet:
        if isinstance(value, (str, os.PathLike)):
            from ..unet.loading import load_unet

            value = load_unet(value, device="cpu", dtype=dtype, weight_dtype=weight_dtype)
        if not isinstance(value, UNet):
            raise TypeError(f"Cascade: {role} must be a UNet (load_unet) or a path, got {type(value).__name__}")
        if value.config.is_super_resolution != super_resolution:
            want = "a super-resolution UNet (IF-II)" if super_resolution else "a base UNet (IF-I, no low-res input)"
            raise ValueError(f"Cascade: {role} must be {want}; the one given "
                             f"{'is' if value.config.is_super_resolution else 'is not'} a super-resolution model")
        return value

    def _stage3(self, value, dtype: torch.dtype, weight_dtype: torch.dtype | None):
        if isinstance(value, (str, os.PathLike)) and _is_x4_path(Path(value)):
            from ..upscaler.loading import load_upscaler

            return load_upscaler(value, device="cpu", dtype=dtype)  # the x4 (1.7 GB in bf16) keeps its dtype
        if isinstance(value, Upscaler):
            return value
        return self._unet(value, dtype, "upscaler", super_resolution=True, weight_dtype=weight_dtype)

    def close(self) -> None:
        """Unregister this cascade's models from the manager: their weights go back to host memory and their
        hooks are removed (another manager or cascade may then take them). Calling the cascade afterwards fails."""
        for name in self._names:
            if name in self.manager:
                self.manager.remove(name)

    def _register(self) -> None:
        m, dev = self.manager, self.device
        before = set(m.names())
        m.add("text_encoder", self.text_encoder.model, device=self.text_device)
        m.add("base", self.base, device=dev, keep_resident=[self.base.conv_in])
        if self.sr is not None:
            m.add("sr", self.sr, device=dev, keep_resident=[self.sr.conv_in])
        if isinstance(self.upscaler, Upscaler):
            up = self.upscaler
            m.add("upscaler", up.unet, device=dev, keep_resident=[up.unet.conv_in])
            m.add("upscaler_vae", up.vae, device=dev, keep_resident=[up.vae.decoder.conv_in])
            if up.text is not None:
                m.add("upscaler_text", up.text.model, device=dev)
        elif self.upscaler is not None:
            m.add("upscaler", self.upscaler, device=dev, keep_resident=[self.upscaler.conv_in])
        self._names = [n for n in m.names() if n not in before]

    # -- running ------------------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        """Output sizes of the stages for the default 64 px base: ``[64, 256, 1024]`` (fewer without sr/upscaler)."""
        return [64 * 4**i for i in range(1 + (self.sr is not None) + (self.upscaler is not None))]

    def report(self):
        """The manager's :class:`~cascade_core.offload.MemoryReport`."""
        return self.manager.report()

    def encode(self, prompts: Sequence[str], negative_prompt: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 embeddings ``(positive [B, 77, D], negative [B, 77, D])`` (the negative prompt broadcast)."""
        negative_prompt = self.negative_prompt if negative_prompt is None else negative_prompt
        with self.manager.using("text_encoder"):
            embeds, _ = self.text_encoder.encode(list(prompts) + [negative_prompt])
        positive = embeds[:-1]
        return positive, embeds[-1:].expand_as(positive)

    @torch.inference_mode()
    def __call__(self, prompts: str | Sequence[str], *, seed: int = 0, steps: Steps = None,
                 guidance: float | None = None, negative_prompt: str | None = None, size: int = 64,
                 height: int | None = None, width: int | None = None, up_to: int | None = None,
                 callback: Callable[[int, dict], None] | None = None) -> dict[int, torch.Tensor]:
        """Images ``{key: [B, H, W, 3]}`` in 0..1 (float32, CPU), one entry per stage.

        The base stage outputs ``height`` x ``width`` (each defaults to ``size``; multiples of the base UNet's
        size multiple, 8 for IF-I), each later stage 4x both sides. Keys are each stage's shorter side: ``{64,
        256, 1024}`` for 64 x 64 and for any aspect ratio with a 64 px short side (e.g. ``height=64, width=112``:
        ``{64: [B, 64, 112, 3], 256: [B, 256, 448, 3], 1024: [B, 1024, 1792, 3]}``). ``steps``: every stage's
        step count (int) or some (``{64: n, 256: n, 1024: n}``, by key); ``guidance``: every stage's CFG scale
        (None: the stage settings'); ``up_to``: stop after the stage of that key; ``callback(key, info)`` after
        every sampler step (raising interrupts)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("Cascade: give at least one prompt")
        base_hw = self._base_size(size if height is None else height, size if width is None else width)
        roles = ["base", "sr", "upscaler"][:len(self.sizes)]
        shapes = [(base_hw[0] * 4**i, base_hw[1] * 4**i) for i in range(len(roles))]
        keys = [min(hw) for hw in shapes]
        if up_to is not None:
            if up_to not in keys:
                raise ValueError(f"Cascade: up_to must be one of {keys} (each stage's shorter side), got {up_to!r}")
            roles, shapes, keys = (v[:keys.index(up_to) + 1] for v in (roles, shapes, keys))
        positive, negative = self.encode(prompts, negative_prompt)
        out, low = {}, None
        for role, out_hw, key in zip(roles, shapes, keys):
            step_cb = None if callback is None else (lambda info, k=key: callback(k, info))
            low = self._stage(role, out_hw, prompts, positive, negative, low, seed=seed, steps=steps,
                              guidance=guidance, callback=step_cb, negative_prompt=negative_prompt)
            out[key] = pixels_to_images(low)
        return out

    def _base_size(self, height: int, width: int) -> tuple[int, int]:
        """Check the base stage's output size against the base UNet; returns (height, width)."""
        m = self.base.config.size_multiple
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value % m:
                raise ValueError(f"Cascade: {name} (the base stage's output) must be a positive multiple of {m} for "
                                 f"this base UNet, got {value!r}")
        return height, width

    @torch.inference_mode()
    def upscale(self, images: torch.Tensor, prompts: str | Sequence[str], role: str, *, seed: int = 0,
                steps: Steps = None, guidance: float | None = None,
                negative_prompt: str | None = None) -> torch.Tensor:
        """One super-resolution stage alone (``role`` "sr" or "upscaler") on ComfyUI-style ``images`` [B, h, w, 3]
        in 0..1 -> [B, 4h, 4w, 3], with the same settings and seeds as that stage inside :meth:`__call__`."""
        from ..image import images_to_pixels

        if role not in ("sr", "upscaler") or getattr(self, role) is None:
            raise ValueError(f"Cascade.upscale: role must be a stage this cascade has ('sr' or 'upscaler'), got "
                             f"{role!r}")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if len(prompts) != images.shape[0]:
            raise ValueError(f"Cascade.upscale: {images.shape[0]} images but {len(prompts)} prompts")
        low = images_to_pixels(images, device=self.manager.device_of(role))
        positive, negative = self.encode(prompts, negative_prompt)
        out_hw = (4 * low.shape[-2], 4 * low.shape[-1])
        return pixels_to_images(self._stage(role, out_hw, prompts, positive, negative, low, seed=seed,
                                            steps=steps, guidance=guidance, negative_prompt=negative_prompt))

    def _stage(self, role: str, out_hw: tuple[int, int], prompts: list[str], positive: torch.Tensor,
               negative: torch.Tensor, low: torch.Tensor | None, *, seed: int, steps: Steps,
               guidance: float | None, callback=None, negative_prompt: str | None = None) -> torch.Tensor:
        """One stage with its settings, step count, guidance and seed: pixels [B, 3, *out_hw]. The seed and a
        ``steps`` mapping go by the stage's key, its output's shorter side (the square rule unchanged)."""
        key = min(out_hw)
        gen = torch.Generator().manual_seed(seed * 7919 + key)
        settings = self.stages[role]
        count = _steps_for(key, steps, settings)
        scale = settings.guidance if guidance is None else float(guidance)
        if role == "upscaler" and isinstance(self.upscaler, Upscaler):
            return self._x4(prompts, low, settings, count, scale, gen, callback, negative_prompt)
        return self._unet_stage(role, out_hw, positive, negative, low, settings, count, scale, gen, callback)

    def _unet_stage(self, role: str, out_hw: tuple[int, int], positive: torch.Tensor, negative: torch.Tensor,
                    low: torch.Tensor | None, settings: StageSettings, steps: int, scale: float,
                    generator: torch.Generator, callback) -> torch.Tensor:
        """One IF stage: pixels [B, 3, H, W] = [B, 3, *out_hw] in about [-1, 1] (SR: from ``low`` [B, 3, H/4, W/4])."""
        with self.manager.using(role) as unet:
            device = self.manager.device_of(role)
            guider = unet_guider(unet, positive.to(device), negative.to(device), scale,
                                 threshold_percentile=settings.threshold_percentile,
                                 threshold_max=settings.threshold_max)
            sigmas = schedule_sigmas(guider.denoiser, steps, settings.schedule)
            extra = {} if low is None else {"low_res": low, "noise_level": settings.noise_level}
            # a graph replays the weights' addresses at capture: only for a model resident for the whole stage
            model = GraphedDenoiser(guider) if self.cuda_graphs and self.manager.mode_of(role) != "block" else guider
            return sample_stage(model, sigmas, batch_size=positive.shape[0], height=out_hw[0], width=out_hw[1],
                                sampler=settings.sampler, generator=generator, device=device, callback=callback,
                                **extra)

    def _x4(self, prompts: list[str], low: torch.Tensor, settings: StageSettings, steps: int, scale: float,
            generator: torch.Generator, callback, negative_prompt: str | None) -> torch.Tensor:
        """Stage III with the SD x4 upscaler (its own CLIP prompt): [B, 3, 4h, 4w] in [-1, 1]."""
        from ..upscaler.stage import sample_x4_stage

        names = [n for n in ("upscaler", "upscaler_vae", "upscaler_text") if n in self.manager]
        negative = self.negative_prompt if negative_prompt is None else negative_prompt
        with self.manager.using(*names):
            return sample_x4_stage(self.upscaler, low.clamp(-1.0, 1.0), prompts, negative, steps=steps,
                                   guidance=scale, noise_level=settings.noise_level, sampler=settings.sampler,
                                   generator=generator, callback=callback, **self.upscaler_options)


def _steps_for(size: int, steps: Steps, settings: StageSettings) -> int:
    if steps is None:
        return settings.steps
    if isinstance(steps, Mapping):
        return int(steps.get(size, settings.steps))
    return int(steps)
