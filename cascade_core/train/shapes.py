"""Procedural shapes dataset: one coloured shape on a plain background, rendered at any resolution from a seed.

The attributes are fixed (an independent checker, ``cascade_core.demo.oracle``, relies on them): eight colours,
four shapes, two sizes, five positions and four backgrounds. About a third of the scenes carry a thin outline and
a third thin stripes in another named colour: detail only the super-resolution stages can resolve (the outline is
1/100 of the side wide, the stripes have a period of 1/16 of the side and are averaged away at 64 px).

Rendering is analytic anti-aliasing from signed distances: coverage = clamp(0.5 - sdf / pixel_size, 0, 1),
evaluated at pixel centres, only inside the shape's bounding box (the rest is background), so any crop of a large
render is exactly the same window of the full render.

``HELD_OUT`` lists 20 of the 160 (colour, shape, position) combinations (12.5 %); ``random_scene(seed, "train")``
never produces them and ``random_scene(seed, "heldout")`` produces only them.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

import torch

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "blue": (40, 80, 220), "purple": (140, 60, 180), "white": (245, 245, 245), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES: dict[str, float] = {"small": 0.2, "large": 0.4}  # bounding-box side / image side
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "center": (0.5, 0.5),
}  # (x, y) of the bounding-box centre, fractions of the side
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128), "beige": (235, 225, 200),
}

OUTLINE_WIDTH = 0.01  # fraction of the side
STRIPE_PERIOD = 1 / 16  # fraction of the side
STRIPE_DUTY = 0.25  # stripe width / period
POSITION_JITTER = 0.025  # max |offset| of the centre, fraction of the side
SIZE_JITTER = 0.02  # max |change| of the bounding-box side, fraction of the side

# (colour, shape, position) combos never trained on: i -> (COLOR i % 8, SHAPE (i + i // 8) % 4, POSITION i % 5)
# for i in 0..19, so every colour appears 2-3 times, every shape 5 times and every position 4 times.
HELD_OUT: frozenset[tuple[str, str, str]] = frozenset({
    ("red", "circle", "left"), ("orange", "square", "right"), ("yellow", "triangle", "top"),
    ("green", "star", "bottom"), ("blue", "circle", "center"), ("purple", "square", "left"),
    ("white", "triangle", "right"), ("black", "star", "top"), ("red", "square", "bottom"),
    ("orange", "triangle", "center"), ("yellow", "star", "left"), ("green", "circle", "right"),
    ("blue", "square", "top"), ("purple", "triangle", "bottom"), ("white", "star", "center"),
    ("black", "circle", "left"), ("red", "triangle", "right"), ("orange", "star", "top"),
    ("yellow", "circle", "bottom"), ("green", "square", "center"),
})


@dataclass(frozen=True)
class Scene:
    """One shape on a background. ``jitter`` seeds a small position/size offset (0: none, the canonical
    render); it takes no part in equality, so a scene parsed back from its caption equals the original."""

    color: str
    shape: str
    size: str
    position: str
    background: str
    outline: str | None = None  # thin outline in another named colour, or None
    stripes: str | None = None  # thin stripes inside the shape in another named colour, or None
    jitter: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        checks = [("color", self.color, COLORS), ("shape", self.shape, SHAPES), ("size", self.size, SIZES),
                  ("position", self.position, POSITIONS), ("background", self.background, BACKGROUNDS)]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"Scene {name}={value!r} is not one of {sorted(allowed)}")
        for name, value in (("outline", self.outline), ("stripes", self.stripes)):
            if value is not None and value not in COLORS:
                raise ValueError(f"Scene {name}={value!r} is not None or one of {sorted(COLORS)}")
        if self.outline is not None and self.stripes is not None:
            raise ValueError("Scene takes an outline or stripes, not both")


def is_held_out(scene: Scene) -> bool:
    """Whether the scene's (colour, shape, position) combination is in ``HELD_OUT``."""
    return (scene.color, scene.shape, scene.position) in HELD_OUT


def random_scene(seed: int, split: str = "train") -> Scene:
    """The scene of ``seed``: ``split="train"`` never yields a held-out combo, ``"heldout"`` only those."""
    if split not in ("train", "heldout"):
        raise ValueError(f"random_scene split={split!r}: use 'train' or 'heldout'")
    rng = random.Random(f"shapes-{seed}")
    if split == "heldout":
        color, shape, position = rng.choice(sorted(HELD_OUT))
    else:
        while True:
            color, shape, position = rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice(list(POSITIONS))
            if (color, shape, position) not in HELD_OUT:
                break
    size = rng.choice(list(SIZES))
    background = rng.choice([b for b, rgb in BACKGROUNDS.items() if rgb != COLORS[color]])
    detail_colors = [c for c, rgb in COLORS.items() if rgb not in (COLORS[color], BACKGROUNDS[background])]
    kind, detail = rng.randrange(3), rng.choice(detail_colors)
    return Scene(color, shape, size, position, background, outline=detail if kind == 1 else None,
                 stripes=detail if kind == 2 else None, jitter=rng.randrange(1, 2**31))


# ---------------------------------------------------------------------------------------------- captions

_SIZE_WORDS = {"small": ("small", "small"), "large": ("large", "big")}
_POSITION_PHRASES = {
    "left": ("on the left", "at the left", "left"), "right": ("on the right", "at the right", "right"),
    "top": ("at the top", "at the top", "top"), "bottom": ("at the bottom", "at the bottom", "bottom"),
    "center": ("in the center", "in the middle", "center"),
}


def _detail(scene: Scene) -> str:
    if scene.outline is not None:
        return f" with a thin {scene.outline} outline"
    if scene.stripes is not None:
        return f" with thin {scene.stripes} stripes"
    return ""


def _phrase0(s: Scene) -> str:
    where = _POSITION_PHRASES[s.position][0]
    return f"a {s.size} {s.color} {s.shape} {where}{_detail(s)}, on a {s.background} background"


def _phrase1(s: Scene) -> str:
    return (f"a {s.background} picture with a {_SIZE_WORDS[s.size][1]} {s.color} {s.shape} "
            f"{_POSITION_PHRASES[s.position][1]}{_detail(s)}")


def _phrase2(s: Scene) -> str:
    return f"on a {s.background} background, a {s.size} {s.color} {s.shape}, {_POSITION_PHRASES[s.position][2]}" + (
        "," + _detail(s) if _detail(s) else "")


def _phrase3(s: Scene) -> str:
    return (f"a picture of a {_SIZE_WORDS[s.size][1]} {s.color} {s.shape} {_POSITION_PHRASES[s.position][0]}"
            f"{_detail(s)} against a {s.background} background")


_PHRASINGS = (_phrase0, _phrase1, _phrase2, _phrase3)
NUM_PHRASINGS: int = len(_PHRASINGS)


def caption(scene: Scene, phrasing: int = 0) -> str:
    """The scene described in phrasing ``phrasing % NUM_PHRASINGS``, e.g.
    "a large red circle on the left, on a white background"."""
    return _PHRASINGS[phrasing % NUM_PHRASINGS](scene)


_SIZE_SYNONYMS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
_POSITION_SYNONYMS = {"left": "left", "right": "right", "top": "top", "bottom": "bottom", "center": "center",
                      "centre": "center", "middle": "center"}


def scene_from_caption(text: str) -> Scene | None:
    """Parse a caption (any phrasing, or similar free wording) back into its Scene; None when an attribute is
    missing or unknown. The background is the word before "background"/"picture", the shape's colour and size
    the words before the shape name, the detail colour the word before "outline"/"stripes"."""
    words = re.findall(r"[a-z]+", text.lower().replace("grey", "gray"))

    def word_before(*keys: str, vocab: dict | None = None) -> str | None:
        for key in keys:  # in order of preference
            for i, w in enumerate(words):
                if w == key and i > 0 and (vocab is None or words[i - 1] in vocab):
                    return words[i - 1]
        return None

    shape_idx = next((i for i, w in enumerate(words) if w in SHAPES or w.rstrip("s") in SHAPES), None)
    if shape_idx is None or shape_idx < 2:
        return None
    shape = words[shape_idx] if words[shape_idx] in SHAPES else words[shape_idx].rstrip("s")
    color, size = words[shape_idx - 1], _SIZE_SYNONYMS.get(words[shape_idx - 2])
    background = word_before("background", "picture", "image", vocab=BACKGROUNDS)
    position = next((_POSITION_SYNONYMS[w] for w in words if w in _POSITION_SYNONYMS), None)
    outline, stripes = word_before("outline"), word_before("stripes")
    if color not in COLORS or size is None or background not in BACKGROUNDS or position is None:
        return None
    if (outline is not None and outline not in COLORS) or (stripes is not None and stripes not in COLORS):
        return None
    if outline is not None and stripes is not None:
        return None
    return Scene(color, shape, size, position, background, outline=outline, stripes=stripes)


# ---------------------------------------------------------------------------------------------- rendering

def _geometry(scene: Scene) -> tuple[float, float, float]:
    """(cx, cy, side) of the shape's bounding box in fractions of the image side, jitter applied."""
    cx, cy = POSITIONS[scene.position]
    side = SIZES[scene.size]
    if scene.jitter:
        rng = random.Random(f"jitter-{scene.jitter}")
        cx += rng.uniform(-POSITION_JITTER, POSITION_JITTER)
        cy += rng.uniform(-POSITION_JITTER, POSITION_JITTER)
        side += rng.uniform(-SIZE_JITTER, SIZE_JITTER)
    return cx, cy, side


def _polygon(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]]:
    """Vertices (x, y; y down) of the square, up-pointing triangle or 5-point star whose bounding box has
    centre (cx, cy) and largest side ``side``."""
    h = side / 2
    if shape == "square":
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    # star: outer radius R, inner radius R * sin(18°) / sin(54°); bbox width 2 R sin 72°, height R (1 + cos 36°)
    radius = side / (2 * math.sin(math.radians(72)))
    inner = radius * math.sin(math.radians(18)) / math.sin(math.radians(54))
    sy = cy - h + radius  # star centre: top point on the bbox's top edge
    height = radius * (1 + math.cos(math.radians(36)))
    sy += (side - height) / 2  # centre the (slightly less tall than wide) star vertically in its bbox
    pts = []
    for k in range(10):
        r, a = (radius, inner)[k % 2], math.radians(-90 + 36 * k)
        pts.append((cx + r * math.cos(a), sy + r * math.sin(a)))
    return pts


def _polygon_sdf(x: torch.Tensor, y: torch.Tensor, verts: list[tuple[float, float]]) -> torch.Tensor:
    """Signed distance (negative inside) of points x [1, W], y [H, 1] to a simple polygon -> [H, W]."""
    v = torch.tensor(verts, dtype=torch.float32)  # [E, 2]
    e = torch.roll(v, 1, 0) - v  # edge i runs from vertex i to vertex i - 1
    vx, vy, ex, ey = (t.view(-1, 1, 1) for t in (v[:, 0], v[:, 1], e[:, 0], e[:, 1]))
    wx, wy = x.unsqueeze(0) - vx, y.unsqueeze(0) - vy  # [E, 1, W], [E, H, 1]
    t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0, 1)  # [E, H, W]
    bx, by = wx - ex * t, wy - ey * t
    dist = (bx * bx + by * by).amin(0).sqrt()
    # even-odd crossing test of a horizontal ray to +x (horizontal edges never straddle)
    lo, hi = torch.minimum(vy, vy + ey), torch.maximum(vy, vy + ey)
    straddle = (y >= lo) & (y < hi)  # [E, H, 1]
    slope = torch.where(ey == 0, torch.zeros_like(ex), ex / torch.where(ey == 0, torch.ones_like(ey), ey))
    crossing = straddle & (x < vx + wy * slope)  # [E, H, W]
    inside = crossing.sum(0) % 2 == 1
    return torch.where(inside, -dist, dist)


def _shape_sdf(shape: str, x: torch.Tensor, y: torch.Tensor, cx: float, cy: float, side: float) -> torch.Tensor:
    if shape == "circle":
        return ((x - cx) ** 2 + (y - cy) ** 2).sqrt() - side / 2
    return _polygon_sdf(x, y, _polygon(shape, cx, cy, side))


_RGB_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def _rgb(name: str, table: dict[str, tuple[int, int, int]]) -> torch.Tensor:
    """The named colour as float32 [3, 1, 1] in 0..1."""
    key = table[name]
    if key not in _RGB_CACHE:
        _RGB_CACHE[key] = torch.tensor(key, dtype=torch.float32).div(255).view(3, 1, 1)
    return _RGB_CACHE[key]


def render(scene: Scene, size: int, crop: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Render ``scene`` at ``size`` x ``size`` -> float32 [3, H, W] in 0..1 (H = W = size, or the crop's).

    crop: (top, left, height, width) in pixels of the full image; only that window is computed and it equals
    the same window of the full render.
    """
    if size < 1:
        raise ValueError(f"render size={size}: must be >= 1")
    top, left, height, width = crop if crop is not None else (0, 0, size, size)
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > size or left + width > size:
        raise ValueError(f"render crop={crop}: must be (top, left, height, width) inside the {size}x{size} image")
    bg = _rgb(scene.background, BACKGROUNDS)
    out = bg.expand(3, height, width).clone()
    cx, cy, side = _geometry(scene)
    px = 1.0 / size
    # pixel window of the shape's bounding box plus a 2 px margin (outside it, coverage is exactly 0)
    r0 = max(top, math.floor((cy - side / 2) * size) - 2)
    r1 = min(top + height, math.ceil((cy + side / 2) * size) + 2)
    c0 = max(left, math.floor((cx - side / 2) * size) - 2)
    c1 = min(left + width, math.ceil((cx + side / 2) * size) + 2)
    if r0 >= r1 or c0 >= c1:
        return out
    y = (torch.arange(r0, r1, dtype=torch.float32) + 0.5).mul(px).view(-1, 1)
    x = (torch.arange(c0, c1, dtype=torch.float32) + 0.5).mul(px).view(1, -1)
    sdf = _shape_sdf(scene.shape, x, y, cx, cy, side)
    cover = (0.5 - sdf / px).clamp(0, 1)  # [h, w]
    fill = _rgb(scene.color, COLORS)
    if scene.stripes is not None:
        # diagonal stripes; below 8 px per period they fade into their mean (a 64 px render shows the average)
        u = (x + y) / (math.sqrt(2) * STRIPE_PERIOD)
        band = (u - torch.floor(u + 0.5)).abs() * STRIPE_PERIOD - STRIPE_DUTY * STRIPE_PERIOD / 2
        stripe = (0.5 - band / px).clamp(0, 1)
        fade = min(max((STRIPE_PERIOD * size - 4) / 4, 0.0), 1.0)
        stripe = fade * stripe + (1 - fade) * STRIPE_DUTY
        fill = fill + (_rgb(scene.stripes, COLORS) - fill) * stripe
    if scene.outline is not None:
        inner = (0.5 - (sdf + OUTLINE_WIDTH) / px).clamp(0, 1)
        region = bg * (1 - cover) + _rgb(scene.outline, COLORS) * (cover - inner) + fill * inner
    else:
        region = bg * (1 - cover) + fill * cover
    out[:, r0 - top:r1 - top, c0 - left:c1 - left] = region
    return out


def render_batch(scenes: list[Scene], size: int) -> torch.Tensor:
    """Render several scenes -> float32 [B, 3, size, size] in 0..1."""
    return torch.stack([render(s, size) for s in scenes])
