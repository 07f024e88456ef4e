"""The procedural oracle: exact on clean renders, robust to noise and blur; and the SR gain figure."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cascade_core.demo.oracle import judge, measure, resize_images, sr_gain_db
from cascade_core.train.shapes import Scene, random_scene, render

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEYS = ("color", "shape", "position", "size")


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [H, W, 3] (replicate padding)."""
    r = int(3 * sigma) + 1
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-x**2 / (2 * sigma**2))
    k = k / k.sum()
    t = img.permute(2, 0, 1)[None]
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return t[0].permute(1, 2, 0)


def _accuracy(scenes, size, noise=0.0, sigma=0.0):
    g = torch.Generator().manual_seed(0)
    hits = {k: 0 for k in KEYS}
    for scene in scenes:
        img = render(scene, size).permute(1, 2, 0)
        if sigma:
            img = _blur(img, sigma)
        if noise:
            img = (img + noise * torch.randn(img.shape, generator=g)).clamp(0, 1)
        for key, ok in judge(img, scene).items():
            hits[key] += ok
    return {k: v / len(scenes) for k, v in hits.items()}


def test_exact_on_clean_64_px_renders():
    scenes = [random_scene(s, "train") for s in range(200)] + [random_scene(s, "heldout") for s in range(50)]
    assert _accuracy(scenes, 64) == {k: 1.0 for k in KEYS}


def test_exact_on_clean_1024_px_renders():
    scenes = [random_scene(s, "heldout") for s in range(24)]
    assert _accuracy(scenes, 1024) == {k: 1.0 for k in KEYS}


def test_robust_to_noise_and_blur():
    scenes = [random_scene(s, "heldout") for s in range(200)]
    acc = _accuracy(scenes, 64, noise=0.05, sigma=0.7)
    assert min(acc.values()) >= 0.95, acc


@pytest.mark.slow
def test_all_scenes_of_200_seeds_at_1024_clean_and_degraded():
    scenes = [random_scene(s, split) for s in range(200) for split in ("train", "heldout")]
    assert _accuracy(scenes, 1024) == {k: 1.0 for k in KEYS}
    assert min(_accuracy(scenes, 1024, noise=0.05, sigma=4.0).values()) >= 0.95


def test_measurement_fields_and_inputs():
    scene = Scene("red", "circle", "large", "left", "white")
    img = render(scene, 64).permute(1, 2, 0)
    m = measure(img.numpy().astype(np.float64))  # numpy input works too
    assert (m.background, m.color, m.shape, m.position, m.size) == ("white", "red", "circle", "left", "large")
    assert abs(m.centroid[0] - 0.25) < 0.02 and abs(m.centroid[1] - 0.5) < 0.02
    assert abs(m.bbox_side - 0.4) < 0.03 and abs(m.fill - np.pi / 4) < 0.05
    assert measure(img, background="white").color == "red"
    empty = measure(torch.full((64, 64, 3), 128 / 255))
    assert empty.background == "gray" and empty.color is None and empty.shape is None
    assert judge(torch.full((64, 64, 3), 128 / 255), scene) == {k: False for k in KEYS}
    with pytest.raises(ValueError, match="H, W, 3"):
        measure(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="background"):
        measure(img, background="pink")


def test_judge_flags_the_wrong_attribute():
    scene = Scene("blue", "square", "small", "top", "beige")
    img = render(Scene("blue", "triangle", "small", "bottom", "beige"), 64).permute(1, 2, 0)
    assert judge(img, scene) == {"color": True, "shape": False, "position": False, "size": True}


def test_sr_gain_db():
    scenes = [random_scene(s) for s in range(3)]
    truth = torch.stack([render(s, 256) for s in scenes]).permute(0, 2, 3, 1)
    low = torch.stack([render(s, 64) for s in scenes]).permute(0, 2, 3, 1)
    bicubic = resize_images(low, 256)
    assert abs(sr_gain_db(bicubic, truth, low)) < 1e-6
    assert sr_gain_db(truth, truth, low) > 20  # identical images are capped at 100 dB
    assert sr_gain_db((truth + bicubic) / 2, truth, low) == pytest.approx(20 * np.log10(2), abs=1e-3)
    blurry = resize_images(resize_images(low, 32), 256)
    assert sr_gain_db(blurry, truth, low) < 0
    with pytest.raises(ValueError, match="differ"):
        sr_gain_db(low, truth, low)
