"""Image preprocessing for CLIP-style vision towers (GIT, CLIP, SigLIP), in torch, from the checkpoint's config.

The settings come from the folder's image processor config (``preprocessor_config.json``, or the
``image_processor`` entry of ``processor_config.json``), read through transformers'
``AutoImageProcessor`` with its PIL backend, so class defaults (e.g. ``CLIPImageProcessor``'s
``shortest_edge`` 224) and old-style configs (``"size": 224``) resolve exactly as transformers resolves them.

Two modes, both turning a ComfyUI IMAGE ``[B, H, W, C]`` in 0..1 into ``pixel_values [B, 3, h, w]``:

* ``"torch"`` (default): resize, center-crop, rescale and normalise on the model's device, in float32,
  with no uint8 round trip. The resize is separable like Pillow's (horizontal pass, clamp to 0..1,
  vertical pass, clamp) with ``antialias=True`` kernels, which are Pillow's (bicubic a = −0.5, bilinear).
  Against the PIL processor on the same 8-bit image the difference is Pillow's own 8-bit rounding:
  at most about 1/255 per pixel before normalisation (≈ 0.3/255 on average); tests bound it by
  1.25/255 (≈ 0.019 in normalised CLIP units). Images already at the target size are bit-identical
  (up to float32 rounding of the normalisation).
* ``"processor"``: round to uint8 and run transformers' PIL image processor itself (CPU): bit-identical to
  ``processor(images=...)`` on those uint8 images. Also used automatically when a config asks for
  something the torch path does not implement (e.g. a resampling filter other than bicubic/bilinear).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .image import to_rgb, to_uint8_arrays

__all__ = ["ImageSpec", "Preprocessor", "load_image_processor", "resize_like_pil", "center_crop"]

log = logging.getLogger(__name__)

_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values
MODES = ("torch", "processor")


def load_image_processor(folder: str | os.PathLike) -> Any:
    """transformers' image processor of ``folder`` with the PIL backend (the reference checkpoints use)."""
    import transformers
    from transformers import AutoImageProcessor

    if int(transformers.__version__.split(".")[0]) >= 5:
        return AutoImageProcessor.from_pretrained(str(folder), backend="pil", local_files_only=True)
    return AutoImageProcessor.from_pretrained(str(folder), use_fast=False, local_files_only=True)


def _field(size: Any, key: str) -> int | None:
    """``size[key]`` for a dict or transformers ``SizeDict``; ``None`` when absent."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value is not None else None


@dataclass(frozen=True)
class ImageSpec:
    """The resize/crop/normalise recipe of one image processor, in torch terms.

    ``shortest_edge`` or ``(height, width)`` selects the resize rule; ``crop`` is ``(h, w)`` or ``None``;
    ``scale`` maps 0..1 floats to the processor's rescaled range (``255 · rescale_factor``, 1 for CLIP).
    """

    shortest_edge: int | None
    height: int | None
    width: int | None
    resample: str
    crop: tuple[int, int] | None
    scale: float
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_processor(cls, proc: Any) -> ImageSpec:
        """Read a transformers image processor; ``ValueError`` for settings the torch path cannot reproduce."""
        size = proc.size if proc.do_resize else None
        edge = _field(size, "shortest_edge") if size is not None else None
        height = _field(size, "height") if size is not None else None
        width = _field(size, "width") if size is not None else None
        if size is not None and _field(size, "longest_edge") is not None:
            raise ValueError(f"resize rule {size} (longest_edge) is not implemented in torch")
        if size is not None and edge is None and (height is None or width is None):
            raise ValueError(f"resize rule {size} is not implemented in torch")
        filter_id = int(proc.resample) if proc.resample is not None else 2  # transformers' PIL default: bilinear
        resample = _RESAMPLE.get(filter_id) if size is not None else "bicubic"
        if resample is None:
            raise ValueError(f"resampling filter {proc.resample!r} is not implemented in torch")
        crop = None
        if getattr(proc, "do_center_crop", False):
            crop = (_field(proc.crop_size, "height"), _field(proc.crop_size, "width"))
        if getattr(proc, "do_pad", False):
            raise ValueError("padding (do_pad) is not implemented in torch")
        scale = 255.0 * float(proc.rescale_factor) if proc.do_rescale else 255.0
        mean = std = None
        if proc.do_normalize:
            mean, std = _triple(proc.image_mean), _triple(proc.image_std)
        return cls(edge, height, width, resample, crop, scale, mean, std)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size after the resize step, as transformers computes it (``int`` truncation of the long side)."""
        if self.shortest_edge is not None:
            short, long = min(height, width), max(height, width)
            new_long = int(self.shortest_edge * long / short)
            return (self.shortest_edge, new_long) if height <= width else (new_long, self.shortest_edge)
        if self.height is not None and self.width is not None:
            return self.height, self.width
        return height, width


def _triple(values: Any) -> tuple[float, ...]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return tuple(values * 3) if len(values) == 1 else tuple(values)


def resize_like_pil(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` (0..1) to ``size`` the way Pillow does: width pass, clamp, height pass, clamp.

    Antialiased kernels (as Pillow's filters: support scales with the reduction factor). Unchanged
    dimensions are skipped, so an image already at ``size`` is returned as is.
    """
    height, width = x.shape[-2:]
    if width != size[1]:
        x = F.interpolate(x, size=(height, size[1]), mode=mode, antialias=True, align_corners=False).clamp_(0, 1)
    if height != size[0]:
        x = F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False).clamp_(0, 1)
    return x


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Center-crop ``[..., H, W]`` to ``size``; zero-pads first when smaller (transformers' ``center_crop``)."""
    height, width = x.shape[-2:]
    ch, cw = size
    pad_top, pad_left = max(0, math.ceil((ch - height) / 2)), max(0, math.ceil((cw - width) / 2))
    if pad_top or pad_left:
        pad_bottom = max(0, max(ch, height) - height - pad_top)
        pad_right = max(0, max(cw, width) - width - pad_left)
        x = F.pad(x, (pad_left, pad_right, pad_top, pad_bottom))
    top = (height - ch) // 2 + pad_top
    left = (width - cw) // 2 + pad_left
    return x[..., max(0, top):top + ch, max(0, left):left + cw]


class Preprocessor:
    """ComfyUI IMAGE ``[B, H, W, C]`` in 0..1 → ``pixel_values [B, 3, h, w]`` for one checkpoint."""

    def __init__(self, processor: Any, mode: str = "torch"):
        if mode not in MODES:
            raise ValueError(f"preprocess must be one of {MODES}, got {mode!r}")
        self.processor = processor
        self.spec: ImageSpec | None = None
        if mode == "torch":
            try:
                self.spec = ImageSpec.from_processor(processor)
            except ValueError as e:
                log.info("using transformers' image processor instead of the torch path: %s", e)
                mode = "processor"
        self.mode = mode

    def __call__(self, images: torch.Tensor, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``images [B, H, W, C]`` → ``pixel_values [B, 3, h, w]`` on ``device`` in ``dtype``."""
        if self.spec is None:
            pixels = self.processor(images=to_uint8_arrays(images), return_tensors="pt")["pixel_values"]
            return pixels.to(device=device, dtype=dtype)
        return self._torch(to_rgb(images, device=device), self.spec).to(dtype)

    @staticmethod
    def _torch(x: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
        """RGB ``[B, 3, H, W]`` float32 0..1 → normalised ``[B, 3, h, w]`` float32."""
        x = resize_like_pil(x, spec.output_size(*x.shape[-2:]), spec.resample)
        if spec.crop is not None:
            x = center_crop(x, spec.crop)
        x = x * spec.scale
        if spec.mean is not None:
            mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x
