"""Inpainting on the demo cascade through a real server: LoadImage (the rendered "large red circle on the left, on
a white background", its alpha masking the circle) -> Base 64 Sampler with a new prompt (a blue square) -> SR
Upsampler 256, judged by the procedural oracle. Outside the mask the old picture (white background) must survive
exactly (up to the PNG's 8-bit round trip); inside, the red circle must be gone. Whether the new colour is blue is
measured too, but the shipped demo base model is undertrained on colours (bench/results/demo_quality.json: colour
accuracy 12.5 %), so that check is an expected failure with the measured figure."""
from __future__ import annotations

import io

import numpy as np
import pytest
from _demo_models import require_demo
from _inputs import DEMO_SOURCE, demo_source

pytestmark = pytest.mark.server

PROMPT = "a large blue square on the left, on a white background"
BATCH, SR_STEPS = 4, 2


def _graph() -> dict:
    from cascade_core.demo.settings import STAGES

    base, sr = STAGES["base64"], STAGES["sr256"]
    guider = lambda unet, s: {"class_type": "PixelCascadeCFGGuider",  # noqa: E731
                              "inputs": {"unet": [unet, 0], "positive": ["2", 0], "negative": ["3", 0],
                                         "cfg": s.guidance, "threshold_percentile": s.threshold_percentile,
                                         "threshold_max": s.threshold_max}}
    return {
        "1": {"class_type": "PixelCascadeT5Loader", "inputs": {"t5_name": "demo/t5", "device": "default",
                                                                "dtype": "default"}},
        "2": {"class_type": "PixelCascadeT5Encode", "inputs": {"t5": ["1", 0], "text": PROMPT, "clean_caption": False}},
        "3": {"class_type": "PixelCascadeT5Encode", "inputs": {"t5": ["1", 0], "text": "", "clean_caption": False}},
        "4": {"class_type": "PixelCascadeUNetLoader", "inputs": {"unet_name": "demo/base64", "dtype": "default"}},
        "5": guider("4", base),
        "12": {"class_type": "LoadImage", "inputs": {"image": DEMO_SOURCE}},
        "6": {"class_type": "PixelCascadeBase64Sampler",
              "inputs": {"guider": ["5", 0], "seed": 0, "steps": base.steps, "schedule": base.schedule,
                         "sampler": base.sampler, "width": 64, "height": 64, "batch_size": BATCH,
                         "start_image": ["12", 0], "mask": ["12", 1], "denoise": 1.0}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "tests/inpaint_demo_64"}},
        "8": {"class_type": "PixelCascadeUNetLoader", "inputs": {"unet_name": "demo/sr256", "dtype": "default"}},
        "9": guider("8", sr),
        "10": {"class_type": "PixelCascadeSRUpsampler256",
               "inputs": {"guider": ["9", 0], "image": ["6", 0], "noise_level": sr.noise_level, "seed": 0,
                          "steps": SR_STEPS, "schedule": sr.schedule, "sampler": sr.sampler, "start_image": ["12", 0],
                          "mask": ["12", 1], "denoise": 1.0}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "tests/inpaint_demo_256"}},
    }


def _pngs(comfy, run, node_id: str) -> list[np.ndarray]:
    from urllib.parse import urlencode

    from PIL import Image

    out = []
    for image in run.history["outputs"][node_id]["images"]:
        status, raw = comfy.request("GET", "/view?" + urlencode({k: image[k] for k in ("filename", "subfolder",
                                                                                         "type")}))
        assert status == 200
        with Image.open(io.BytesIO(raw)) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


@pytest.fixture(scope="module")
def inpainted(comfy):
    require_demo("t5", "base64", "sr256")
    run = comfy.run(_graph(), timeout=600)
    assert run.status == "success", f"{run.of_type('execution_error')}\n{comfy.log_tail()}"
    return _pngs(comfy, run, "7"), _pngs(comfy, run, "11")


def _inside_colours(image: np.ndarray, box) -> dict[str, float]:
    """Share of the mask box's pixels nearest each named colour (64 px image)."""
    import torch
    from cascade_core.train.shapes import COLORS

    top, left, bottom, right = box
    names, palette = list(COLORS), torch.tensor(list(COLORS.values()), dtype=torch.float32)
    pixels = torch.as_tensor(image[top:bottom, left:right].reshape(-1, 3), dtype=torch.float32)
    nearest = torch.cdist(pixels, palette).argmin(1)
    return {n: float((nearest == i).float().mean()) for i, n in enumerate(names)}


def test_outside_the_mask_is_kept_and_the_red_circle_is_gone(inpainted):
    from cascade_core.demo.oracle import measure

    small, large = inpainted
    source, box = demo_source()
    top, left, bottom, right = box
    keep = np.ones((64, 64), dtype=bool)
    keep[top:bottom, left:right] = False
    assert len(small) == BATCH and len(large) == BATCH
    assert _inside_colours(source, box)["red"] > 0.4  # the circle fills the box before
    for image in small:
        assert image.shape == (64, 64, 3)
        assert np.abs(image[keep].astype(int) - source[keep].astype(int)).max() <= 1  # exact up to 8-bit rounding
        assert measure(image / 255.0).background == "white"
        assert _inside_colours(image, box)["red"] < 0.05, _inside_colours(image, box)
    keep_large = np.kron(keep, np.ones((4, 4), dtype=bool))
    source_large = np.kron(source, np.ones((4, 4, 1), dtype=np.uint8))  # LoadImage's 64 px picture, stretched
    for image in large:
        assert image.shape == (256, 256, 3)
        inner = keep_large.copy()  # away from the mask's edge, where bilinear resizing blends the two
        inner[max(0, 4 * top - 4):4 * bottom + 4, max(0, 4 * left - 4):4 * right + 4] = False
        assert np.abs(image[inner].astype(int) - source_large[inner].astype(int)).max() <= 2


@pytest.mark.xfail(strict=False, reason="the demo base model does not follow colour words (colour accuracy 12.5 %, "
                   "bench/results/demo_quality.json); measured: 0 of 8 inpainted squares blue (4 green, 3 yellow, "
                   "1 orange), the red circle replaced in all")
def test_the_oracle_sees_the_new_colour_inside_the_mask(inpainted):
    from cascade_core.demo.oracle import measure

    small, _ = inpainted
    colours = [measure(image / 255.0).color for image in small]
    assert colours.count("blue") >= BATCH // 2, colours
