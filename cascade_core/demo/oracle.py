"""A procedural oracle for shapes-dataset images: measures colour, shape, position and size with no trained model.

``measure(image)`` works at 64 px (larger images are area-averaged down, which also averages thin stripes): it
finds the background from the border pixels (median, nearest named background), lightly blurs the image when the
border shows noise, keeps the largest connected blob of pixels clearly away from the background and reads off
 - colour: the vote of the blob's interior pixels for their nearest named colour (or, for unsaturated pixels, the
   colour whose background -> colour segment passes closest);
 - position: the named position nearest the blob's centroid;
 - size: small/large, whichever of 0.2/0.4 is nearer the larger side of its bounding box;
 - shape: features of the blob's mask upsampled 4x (fill ratio of its bounding box: circle pi/4, square 1,
   triangle 1/2, star ~0.35; solidity, area / convex-hull area: ~0.5 for a star, ~1 otherwise; vertical centroid:
   1/2, 2/3 for a triangle, ~0.55 for a star; height of the widest rows: bottom for a triangle, upper arms for a
   star) matched to the nearest of four templates.

``sr_gain_db`` is the super-resolution figure: PSNR of an SR output against the true render minus the PSNR of a
bicubic upsampling of the same low-res input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cascade_core.train.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, Scene

WORK_SIZE = 64  # larger images are area-averaged down to this before measuring (stripes average out)
UPSAMPLE = 4  # the blob's coverage is upsampled this much (bilinear) for sub-pixel shape features

# shape templates over the features (fill, solidity, centroid_y, widest_row), see _shape_features
_TEMPLATES = {  # typical values between clean renders and blurred (Gaussian sigma 0.7 px at 64) ones
    "circle": (0.78, 0.975, 0.5, 0.5),
    "square": (0.97, 0.985, 0.5, 0.5),
    "triangle": (0.57, 0.96, 0.635, 0.9),
    "star": (0.48, 0.7, 0.545, 0.41),
}
_FEATURE_SCALE = (0.06, 0.1, 0.015, 0.04)  # how much each feature may vary before it counts as one unit


@dataclass(frozen=True)
class Measurement:
    """What the oracle read from one image; attributes are None when no foreground blob was found."""

    background: str
    color: str | None
    shape: str | None
    position: str | None
    size: str | None
    centroid: tuple[float, float] | None = None  # (x, y) fractions of the side
    bbox_side: float | None = None  # larger side of the blob's bounding box / image side
    fill: float | None = None  # blob area / bounding-box area


def _palette(table: dict[str, tuple[int, int, int]]) -> tuple[list[str], torch.Tensor]:
    return list(table), torch.tensor(list(table.values()), dtype=torch.float32) / 255


def _to_work(image: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] (tensor or array, 0..1) -> float32 [3, h, w] at most WORK_SIZE px on the long side."""
    img = torch.as_tensor(image, dtype=torch.float32)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"oracle image: expected [H, W, 3] floats in 0..1, got shape {tuple(img.shape)}")
    img = img.permute(2, 0, 1)
    h, w = img.shape[1:]
    if max(h, w) > WORK_SIZE:
        scale = WORK_SIZE / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if h % size[0] == 0 and w % size[1] == 0:
            img = F.avg_pool2d(img[None], (h // size[0], w // size[1]))[0]
        else:
            img = F.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return img.clamp(0, 1)


def _smooth(img: torch.Tensor) -> torch.Tensor:
    """A 3x3 binomial blur of [3, h, w] (replicate padding): knocks per-pixel noise down about 2.5x."""
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
    return F.conv2d(F.pad(img[None], (1, 1, 1, 1), mode="replicate"), k, groups=3)[0]


def _frame(img: torch.Tensor) -> torch.Tensor:
    """The pixels of a border frame (4 % of the side, at least 1 px) of [3, h, w] -> [3, N]."""
    b = max(1, round(0.04 * min(img.shape[1:])))
    return torch.cat([img[:, :b].reshape(3, -1), img[:, -b:].reshape(3, -1),
                      img[:, :, :b].reshape(3, -1), img[:, :, -b:].reshape(3, -1)], 1)


def _background(img: torch.Tensor) -> str:
    """Nearest named background to the median colour of the border frame."""
    names, rgb = _palette(BACKGROUNDS)
    return names[int((rgb - _frame(img).median(1).values).norm(dim=1).argmin())]


def _run_max(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Give every horizontal run of mask pixels in [h, w] its largest label (one pass, any run length)."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    run = starts.flatten().cumsum(0) - 1  # run index of every pixel (garbage off the mask)
    flat, on = labels.flatten(), mask.flatten()
    best = torch.zeros(int(starts.sum()), dtype=labels.dtype).scatter_reduce(0, run[on], flat[on], "amax")
    return torch.where(mask, best[run.clamp_min(0)].view_as(labels), labels)


def _largest_blob(mask: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected component of a bool mask [h, w] (label propagation: run-wise maxima along rows
    and columns, plus 3x3 max-pooling for diagonal steps, until nothing changes)."""
    if not mask.any():
        return mask
    h, w = mask.shape
    labels = torch.where(mask, torch.arange(1, h * w + 1, dtype=torch.float32).view(h, w), torch.zeros(h, w))
    for _ in range(h * w):
        grown = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * mask
        grown = _run_max(grown, mask)
        grown = _run_max(grown.T.contiguous(), mask.T.contiguous()).T
        if torch.equal(grown, labels):
            break
        labels = grown
    ids, counts = labels[mask].unique(return_counts=True)
    return labels == ids[counts.argmax()]


def _hull_area(mask: torch.Tensor) -> float:
    """Area of the convex hull of a bool mask's pixel squares (monotone chain over each row's end corners)."""
    on = mask.any(1)
    w = mask.shape[1]
    first = mask.float().argmax(1)[on].tolist()  # leftmost pixel of each non-empty row
    last = (w - 1 - mask.flip(1).float().argmax(1))[on].tolist()
    pts = set()
    for y, x0, x1 in zip(on.nonzero()[:, 0].tolist(), first, last):
        pts.update({(x0, y), (x0, y + 1), (x1 + 1, y), (x1 + 1, y + 1)})
    pts = sorted(pts)

    def half(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
        chain: list[tuple[int, int]] = []
        for p in points:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    hull = half(pts) + half(pts[::-1])
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1]))) / 2


def _shape_features(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """(fill, solidity, centroid_y, widest_row) of a bool blob mask: area / bounding-box area, area / convex-hull
    area, the vertical centroid in bbox units (0 top, 1 bottom) and the relative height of the widest rows."""
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    top, left = int(rows.min()), int(cols.min())
    box = mask[top:int(rows.max()) + 1, left:int(cols.max()) + 1].float()
    bh = box.shape[0]
    area = float(box.sum())
    ys = (torch.arange(bh, dtype=torch.float32) + 0.5) / bh
    widths = box.sum(1)
    smooth = F.avg_pool1d(widths[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    widest = float(ys[smooth >= 0.97 * smooth.max()].mean())
    return (area / box.numel(), area / max(_hull_area(mask), 1.0), float((widths * ys).sum() / area), widest)


def _classify_shape(features: tuple[float, float, float, float]) -> str:
    def dist(name: str) -> float:
        return sum(((f - t) / s) ** 2 for f, t, s in zip(features, _TEMPLATES[name], _FEATURE_SCALE))

    return min(SHAPES, key=dist)


def _noise_level(img: torch.Tensor) -> float:
    """Robust per-channel noise std of the border frame (median absolute deviation x 1.4826)."""
    frame = _frame(img)
    return float((frame - frame.median(1, keepdim=True).values).abs().median() * 1.4826)


def measure(image: torch.Tensor, background: str | None = None) -> Measurement:
    """Measure one image float [H, W, 3] in 0..1 (tensor or numpy array).

    background: the named background if known; otherwise the nearest named one to the border pixels.
    """
    img = _to_work(image)
    if background is None:
        background = _background(img)
    elif background not in BACKGROUNDS:
        raise ValueError(f"measure background={background!r} is not one of {sorted(BACKGROUNDS)}")
    bg = torch.tensor(BACKGROUNDS[background], dtype=torch.float32).view(3, 1, 1) / 255
    names, rgb = _palette(COLORS)
    keep = [i for i in range(len(names)) if float((rgb[i] - bg.view(3)).norm()) > 0.1]  # never the bg colour
    names, rgb = [names[i] for i in keep], rgb[keep]
    smooth = _smooth(img) if _noise_level(img) > 0.01 else img
    # the blob: the largest region clearly away from the background (farther than half the way to the nearest
    # named colour, so outlines and stripes in any named colour belong to it)
    threshold = 0.5 * float((rgb - bg.view(1, 3)).norm(dim=1).min())
    away = (smooth - bg).norm(dim=0)
    blob = _largest_blob(away > threshold)
    if int(blob.sum()) < 3:
        return Measurement(background, None, None, None, None)
    # colour: the interior pixels (1 px in from the blob's edge, or all of a blob too thin for one) vote. A pixel
    # close to a named colour (under 45 % of the way from it to the background) votes for it; a less saturated
    # one (blurred, anti-aliased) votes, weighted by how far it is from the background, for the colour whose
    # background -> colour segment passes closest to it.
    interior = -F.max_pool2d(-blob.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0.5
    pixels = (smooth - bg)[:, interior if int(interior.sum()) >= 3 else blob].T  # [N, 3]
    axes = rgb - bg.view(1, 3)  # [C, 3]
    dist = (pixels[:, None] - axes[None]).norm(dim=2)  # [N, C]
    near = dist.argmin(1)
    saturated = dist.gather(1, near[:, None])[:, 0] < 0.45 * axes.norm(dim=1)[near]
    alpha = (pixels @ axes.T / axes.pow(2).sum(1)).clamp(0, 1)  # [N, C]
    best = (pixels[:, None] - alpha[..., None] * axes[None]).norm(dim=2).argmin(1)
    choice = torch.where(saturated, near, best)
    weight = torch.where(saturated, torch.ones_like(alpha[:, 0]), alpha.gather(1, best[:, None])[:, 0])
    votes = torch.zeros(len(names)).index_add_(0, choice, weight)
    color = names[int(votes.argmax())]
    h, w = blob.shape
    ys, xs = blob.nonzero(as_tuple=True)
    cx, cy = float((xs.float() + 0.5).mean() / w), float((ys.float() + 0.5).mean() / h)
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    # 3) shape and size on the blob's coverage (other blobs and noise zeroed) upsampled for sub-pixel detail
    near = F.max_pool2d(blob.float()[None, None], 5, stride=1, padding=2)[0, 0] > 0
    t, b = max(int(ys.min()) - 2, 0), min(int(ys.max()) + 3, h)
    l, r = max(int(xs.min()) - 2, 0), min(int(xs.max()) + 3, w)
    patch = (away * near)[t:b, l:r]
    fine = F.interpolate(patch[None, None], scale_factor=UPSAMPLE, mode="bilinear", align_corners=False)[0, 0]
    keep = F.interpolate(near[t:b, l:r].float()[None, None], scale_factor=UPSAMPLE, mode="nearest")[0, 0] > 0
    fine = (fine > threshold) & keep
    if not fine.any():
        fine = blob[t:b, l:r].repeat_interleave(UPSAMPLE, 0).repeat_interleave(UPSAMPLE, 1)
    features = _shape_features(fine)
    rows, cols = fine.any(1).nonzero()[:, 0], fine.any(0).nonzero()[:, 0]
    side = max((int(rows.max()) - int(rows.min()) + 1) / (UPSAMPLE * h),
               (int(cols.max()) - int(cols.min()) + 1) / (UPSAMPLE * w))
    size = min(SIZES, key=lambda s: abs(SIZES[s] - side))
    return Measurement(background, color, _classify_shape(features), position, size, (cx, cy), side, features[0])


def judge(image: torch.Tensor, scene: Scene) -> dict[str, bool]:
    """Whether the image [H, W, 3] shows the scene's colour, shape, position and size (background measured)."""
    m = measure(image)
    return {key: getattr(m, key) == getattr(scene, key) for key in ("color", "shape", "position", "size")}


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, H, W, 3] -> [B, size, size, 3]: antialiased bilinear down, bicubic up, clamped to 0..1."""
    x = images.permute(0, 3, 1, 2).float()
    if size < x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    elif size > x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [B, H, W, 3] images in 0..1 -> [B] (capped at 100 dB for identical images)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).clamp(max=100.0)


def sr_gain_db(output: torch.Tensor, truth: torch.Tensor, low_res: torch.Tensor) -> float:
    """Mean over the batch of PSNR(output, truth) - PSNR(bicubic(low_res), truth); images [B, H, W, 3] in 0..1
    (low_res [B, h, w, 3] with h dividing H)."""
    if output.shape != truth.shape:
        raise ValueError(f"sr_gain_db: output {tuple(output.shape)} and truth {tuple(truth.shape)} differ")
    bicubic = resize_images(low_res, truth.shape[1])
    return float((psnr(output, truth) - psnr(bicubic, truth)).mean())
