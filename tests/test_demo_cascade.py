"""The shipped demo cascade end to end on the CPU (few SR steps), judged by the procedural oracle."""
from __future__ import annotations

import pytest
import torch

from _demo_models import require_demo

# in-distribution and held-out attribute combinations (see cascade_core.train.shapes.HELD_OUT)
PROMPTS = [
    "a large red circle on the left, on a white background",   # held out: never trained on
    "a large blue square on the right, on a white background",
    "a large yellow star at the bottom, on a black background",
    "a large green circle at the top, on a beige background",
]


@pytest.fixture(scope="module", autouse=True)
def demo_models():
    require_demo("t5", "base64", "sr256", "sr1024")


@pytest.fixture(scope="module")
def cascade(demo_models):
    from cascade_core.demo import generate

    return generate(PROMPTS, seed=0, steps={256: 2, 1024: 1})


def test_stages_have_the_cascade_sizes(cascade):
    for size in (64, 256, 1024):
        images = cascade[size]
        assert images.shape == (len(PROMPTS), size, size, 3)
        assert images.dtype == torch.float32 and 0 <= float(images.min()) and float(images.max()) <= 1


@pytest.mark.xfail(strict=False, reason="the shipped demo base model is undertrained (1100 steps on a 2-core CPU): it "
                   "follows backgrounds but not yet shape colour and position; see bench/results/demo_quality.json")
def test_the_oracle_finds_the_prompted_colour_and_position(cascade):
    from cascade_core.demo.oracle import judge
    from cascade_core.train.shapes import scene_from_caption

    verdicts = [judge(image, scene_from_caption(p)) for image, p in zip(cascade[64], PROMPTS)]
    colour = sum(v["color"] for v in verdicts)
    position = sum(v["position"] for v in verdicts)
    assert colour >= len(PROMPTS) - 1, verdicts
    assert position >= len(PROMPTS) - 1, verdicts


def test_seeds_reproduce_and_differ():
    from cascade_core.demo import generate

    steps = {64: 5, 256: 1, 1024: 1}
    first, again = (generate(PROMPTS[:1], seed=0, steps=steps) for _ in range(2))
    assert all(torch.equal(first[s], again[s]) for s in (64, 256, 1024))
    other = generate(PROMPTS[:1], seed=1, steps=steps)
    assert not torch.equal(other[64], first[64])
