"""Training data for one stage: (caption, image) samples, as a fixed, seeded list that epochs reshuffle.

Two sources: the procedural shapes scenes (:mod:`.shapes`, rendered on the fly, only the crop that is
needed) and a folder of images with same-name ``.txt`` captions. A batch for a super-resolution stage also
holds the low-resolution input (the image at 1/4 size, area-downsampled as a lower stage would see it),
upsampled bilinearly (``align_corners=True``, as the inference stage runner does) and cropped with the target.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Batch", "ShapesSource", "ImageFolderSource", "make_source", "epoch_order"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Batch:
    """images [B, 3, H, W] in [-1, 1]; low_res [B, 3, H, W] in [-1, 1] (upsampled input of SR stages) or None."""

    captions: list[str]
    images: torch.Tensor
    low_res: torch.Tensor | None


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: a permutation [N] fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=g)


def _crop_box(size: int, crop: int, generator: torch.Generator, multiple: int) -> tuple[int, int, int]:
    """(top, left, side) of a random crop of a size x size image, aligned to ``multiple`` pixels."""
    if crop <= 0 or crop >= size:
        return 0, 0, size
    slots = (size - crop) // multiple + 1
    top, left = (torch.randint(0, slots, (2,), generator=generator) * multiple).tolist()
    return top, left, crop


def _upsampled(low: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(low[None], (size, size), mode="bilinear", align_corners=True)[0]


class ShapesSource:
    """``num_samples`` procedural scenes (train split), scene ``i`` from seed ``seed * 10**7 + i``."""

    def __init__(self, num_samples: int, seed: int):
        from . import shapes

        self.shapes = shapes
        self.scenes = [shapes.random_scene(seed * 10**7 + i, split="train") for i in range(num_samples)]
        self.captions = [shapes.caption(s, phrasing=i) for i, s in enumerate(self.scenes)]

    def __len__(self) -> int:
        return len(self.scenes)

    def sample(self, index: int, resolution: int, crop: int, sr: bool, generator: torch.Generator):
        """(image [3, c, c] in 0..1, upsampled low-res [3, c, c] in 0..1 or None) for sample ``index``."""
        scene = self.scenes[index]
        top, left, side = _crop_box(resolution, crop, generator, multiple=4)
        image = self.shapes.render(scene, resolution, crop=(top, left, side, side))
        if not sr:
            return image, None
        low = self.shapes.render(scene, resolution // 4)
        return image, _upsampled(low, resolution)[:, top:top + side, left:left + side]


class ImageFolderSource:
    """Images with same-name ``.txt`` captions in ``folder`` (sorted; resized to ``resolution`` square)."""

    def __init__(self, folder: str | os.PathLike, num_samples: int | None = None):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"training data folder not found: {folder}")
        self.items = []
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                txt = path.with_suffix(".txt")
                if txt.is_file():
                    self.items.append((path, txt.read_text(encoding="utf-8").strip()))
                else:
                    log.warning("training data: %s has no caption file %s; skipped", path.name, txt.name)
        if not self.items:
            raise ValueError(f"training data folder {folder} holds no images with same-name .txt captions")
        if num_samples:
            self.items = self.items[:num_samples]
        self.captions = [c for _, c in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int, resolution: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.items[index][0]) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        image = torch.from_numpy(rgb).permute(2, 0, 1)
        side = min(image.shape[1:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        image = image[:, top:top + side, left:left + side]
        if side != resolution:
            image = F.interpolate(image[None], (resolution, resolution), mode="bicubic", antialias=True)[0]
        return image.clamp(0, 1)

    def sample(self, index: int, resolution: int, crop: int, sr: bool, generator: torch.Generator):
        image = self._load(index, resolution)
        top, left, side = _crop_box(resolution, crop, generator, multiple=4)
        target = image[:, top:top + side, left:left + side]
        if not sr:
            return target, None
        low = F.interpolate(image[None], scale_factor=0.25, mode="area")[0]
        return target, _upsampled(low, resolution)[:, top:top + side, left:left + side]


def make_source(data: str, num_samples: int, seed: int):
    """``"shapes"`` -> :class:`ShapesSource`, anything else is an image folder."""
    if data == "shapes":
        return ShapesSource(num_samples, seed)
    return ImageFolderSource(data, num_samples)


def collate(source, indices: list[int], *, resolution: int, crop: int, sr: bool,
            generators: list[torch.Generator]) -> Batch:
    """Assemble the samples ``indices`` into a :class:`Batch` (images scaled to [-1, 1]); sample j draws its
    crop from ``generators[j]``."""
    pairs = [source.sample(i, resolution, crop, sr, g) for i, g in zip(indices, generators)]
    images = torch.stack([p[0] for p in pairs]) * 2 - 1
    low = torch.stack([p[1] for p in pairs]) * 2 - 1 if sr else None
    return Batch([source.captions[i] for i in indices], images, low)
