"""The procedural shapes dataset: seeds, splits, captions and the analytic renderer."""
import time
from collections import Counter
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from cascade_core.train.shapes import (
    BACKGROUNDS,
    COLORS,
    HELD_OUT,
    NUM_PHRASINGS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    caption,
    is_held_out,
    random_scene,
    render,
    scene_from_caption,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rgb(name, table):
    return torch.tensor(table[name], dtype=torch.float32) / 255


def test_seed_determines_scene_and_render():
    for seed in range(20):
        a, b = random_scene(seed), random_scene(seed)
        assert a == b and a.jitter == b.jitter
        assert torch.equal(render(a, 64), render(b, 64))
    assert len({random_scene(s) for s in range(200)}) > 100


def test_flat_regions_are_exact_colours():
    for color in COLORS:
        bg = "gray"
        scene = Scene(color, "square", "large", "center", bg)
        img = render(scene, 128)
        assert torch.allclose(img[:, 64, 64], _rgb(color, COLORS), atol=1e-6)
        assert torch.allclose(img[:, 2, 2], _rgb(bg, BACKGROUNDS), atol=1e-6)
        assert torch.allclose(img[:, 125, 64], _rgb(bg, BACKGROUNDS), atol=1e-6)
    assert img.dtype == torch.float32 and img.shape == (3, 128, 128)
    assert img.min() >= 0 and img.max() <= 1


def test_background_and_detail_differ_from_shape_colour():
    kinds = Counter()
    for split in ("train", "heldout"):
        for seed in range(1500):
            s = random_scene(seed, split)
            assert BACKGROUNDS[s.background] != COLORS[s.color]
            detail = s.outline or s.stripes
            kinds["outline" if s.outline else "stripes" if s.stripes else "none"] += 1
            if detail is not None:
                assert COLORS[detail] not in (COLORS[s.color], BACKGROUNDS[s.background])
    for kind in ("outline", "stripes", "none"):
        assert 0.28 < kinds[kind] / 3000 < 0.39


def test_held_out_split():
    assert len(HELD_OUT) >= 16 and len(HELD_OUT) >= 0.1 * len(COLORS) * len(SHAPES) * len(POSITIONS)
    assert {c for c, _, _ in HELD_OUT} == set(COLORS)
    assert {s for _, s, _ in HELD_OUT} == set(SHAPES)
    assert {p for _, _, p in HELD_OUT} == set(POSITIONS)
    for seed in range(3000):
        assert not is_held_out(random_scene(seed, "train"))
    held = {(s.color, s.shape, s.position) for s in (random_scene(seed, "heldout") for seed in range(1000))}
    assert held == set(HELD_OUT)
    with pytest.raises(ValueError, match="split"):
        random_scene(0, "test")


def test_caption_round_trip_every_phrasing():
    assert NUM_PHRASINGS >= 3
    s = Scene("red", "circle", "large", "left", "white")
    assert caption(s) == "a large red circle on the left, on a white background"
    assert caption(s, 1) == "a white picture with a big red circle at the left"
    assert caption(s, 2) == "on a white background, a large red circle, left"
    s2 = Scene("blue", "star", "small", "top", "beige", outline="white")
    assert caption(s2) == "a small blue star at the top with a thin white outline, on a beige background"
    assert "with thin yellow stripes" in caption(replace(s2, outline=None, stripes="yellow"), 2)
    for seed in range(300):
        scene = random_scene(seed, "train" if seed % 2 else "heldout")
        for p in range(NUM_PHRASINGS):
            text = caption(scene, p)
            assert scene_from_caption(text) == scene, text
        assert caption(scene, NUM_PHRASINGS) == caption(scene, 0)
    assert scene_from_caption("a cat on a sofa") is None
    assert scene_from_caption("a big grey picture") is None


def test_crop_equals_window_of_full_render():
    scenes = [Scene("red", "star", "large", "center", "white", stripes="blue"),
              Scene("green", "triangle", "large", "left", "black", outline="yellow"), random_scene(7)]
    for scene in scenes:
        full = render(scene, 1024)
        for top, left, h, w in [(300, 400, 256, 256), (0, 0, 64, 1024), (1000, 900, 24, 124)]:
            crop = render(scene, 1024, crop=(top, left, h, w))
            assert crop.shape == (3, h, w)
            assert torch.allclose(crop, full[:, top:top + h, left:left + w], atol=1e-5)
        # the 64 px render is the 1024 render's area average (up to the outline's sub-pixel rounding)
        small = F.avg_pool2d(full[None], 16)[0]
        assert (small - render(scene, 64)).abs().mean() < 0.01
    with pytest.raises(ValueError, match="crop"):
        render(scenes[0], 64, crop=(60, 0, 10, 10))


@pytest.mark.parametrize("shape", SHAPES)
def test_bounding_box_matches_size(shape):
    n = 256
    for size, frac in SIZES.items():
        for jitter in (0, 12345):
            scene = Scene("blue", shape, size, "center", "white", jitter=jitter)
            img = render(scene, n)
            mask = (img - _rgb("white", BACKGROUNDS).view(3, 1, 1)).abs().amax(0) > 0.3
            rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
            side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1).item() / n
            tol = 0.01 if jitter == 0 else 0.03
            assert abs(side - frac) < tol, (shape, size, side)
            cy, cx = (rows.min() + rows.max() + 1).item() / 2 / n, (cols.min() + cols.max() + 1).item() / 2 / n
            assert abs(cx - 0.5) < 0.03 and abs(cy - 0.5) < 0.03


def test_stripes_visible_at_256_averaged_at_64():
    scene = Scene("purple", "square", "large", "center", "gray", stripes="yellow")
    inside = lambda img, n: img[:, int(0.35 * n):int(0.65 * n), int(0.35 * n):int(0.65 * n)]  # noqa: E731
    assert inside(render(scene, 256), 256).std(dim=(1, 2)).max() > 0.1
    assert inside(render(scene, 64), 64).std(dim=(1, 2)).max() < 1e-4


def test_render_speed():
    scene = Scene("red", "star", "large", "center", "white", stripes="blue")
    for n, limit in ((64, 0.002), (1024, 0.3)):
        render(scene, n)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            render(scene, n)
            best = min(best, time.perf_counter() - t)
        assert best < limit, (n, best)
