"""Image checks and conversions (cascade_core.image) and torch preprocessing against transformers' processors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _vision_models import CLIP_PREPROCESSOR, GIT_PREPROCESSOR, SIGLIP_PREPROCESSOR, make_images, uint8_arrays

from cascade_core.image import ImageInputError, images_to_pixels, pixels_to_images, to_rgb, to_uint8_arrays
from cascade_core.preprocess import ImageSpec, Preprocessor

# Pillow resizes 8-bit images in two 8-bit passes; our float resize differs by that rounding (module docstring
# of cascade_core.preprocess). Bounds in 0..1 pixel units, before normalisation; measured: max 1.08/255.
MAX_DIFF, MEAN_DIFF = 1.25 / 255, 0.4 / 255


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pil_processor(config: dict):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    cls = SiglipImageProcessorPil if "Siglip" in config.get("image_processor_type", "") else CLIPImageProcessorPil
    return cls(**{k: v for k, v in config.items() if not k.endswith("_type") and k != "processor_class"})


def reference(processor, images: torch.Tensor) -> torch.Tensor:
    return processor(images=uint8_arrays(images), return_tensors="pt")["pixel_values"]


def ours(processor, images: torch.Tensor, mode: str = "torch") -> torch.Tensor:
    return Preprocessor(processor, mode)(images, device=torch.device("cpu"), dtype=torch.float32)


def pixel_diff(a: torch.Tensor, b: torch.Tensor, std) -> torch.Tensor:
    """|a - b| in 0..1 pixel units (undo the normalisation's division by std)."""
    return (a - b).abs() * torch.tensor(std).view(1, 3, 1, 1)


# -- cascade_core.image ----------------------------------------------------------------------------------
def test_bad_batches_are_refused_with_what_to_do():
    cases = [
        (torch.rand(0, 32, 32, 3), "empty"),
        (torch.rand(2, 32, 32, 2), "1 \\(gray\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels"),
        (torch.rand(2, 3, 32, 32), "channel-first.*permute"),
        (torch.rand(32, 32, 3), "add a batch dimension"),
        (torch.zeros(1, 32, 32, 3, dtype=torch.uint8), "float images"),
        (torch.rand(1, 0, 32, 3), "zero height or width"),
    ]
    for images, message in cases:
        with pytest.raises(ImageInputError, match=message):
            to_rgb(images)
    with pytest.raises(ValueError):  # ImageInputError is a ValueError
        to_rgb(np.zeros((1, 8, 8, 3)))


def test_gray_and_rgba_match_transformers_convert_to_rgb():
    from transformers.image_transforms import convert_to_rgb

    gray = make_images(2, 9, 7, channels=1, seed=1)
    assert torch.equal(to_rgb(gray), gray.expand(-1, -1, -1, 3).permute(0, 3, 1, 2))
    rgba = make_images(2, 9, 7, channels=4, seed=2)
    expected = np.stack([convert_to_rgb(a, return_numpy=True, input_data_format="channels_last")
                         for a in uint8_arrays(rgba)])
    got = to_rgb(rgba).permute(0, 2, 3, 1) * 255
    assert (got - torch.from_numpy(expected).float()).abs().max() <= 0.5 + 1e-4  # theirs is rounded to uint8
    transparent = torch.zeros(1, 4, 4, 4)
    assert torch.equal(to_rgb(transparent), torch.ones(1, 3, 4, 4))  # composited onto white
    assert torch.equal(to_rgb(torch.full((1, 2, 2, 3), 1.5)), torch.ones(1, 3, 2, 2))  # clamped


def test_uint8_and_diffusion_pixel_round_trips():
    images = make_images(2, 5, 6, seed=3)
    arrays = to_uint8_arrays(images)
    assert arrays[0].dtype == np.uint8 and arrays[0].shape == (5, 6, 3)
    assert np.array_equal(np.stack(arrays), np.stack(uint8_arrays(images)))
    pixels = images_to_pixels(images)
    assert pixels.shape == (2, 3, 5, 6) and pixels.min() >= -1 and pixels.max() <= 1
    assert torch.allclose(pixels_to_images(pixels), images, atol=1e-6)
    with pytest.raises(ImageInputError, match=r"\[B, 3, H, W\]"):
        pixels_to_images(torch.zeros(1, 5, 6, 3))


# -- cascade_core.preprocess -----------------------------------------------------------------------------
@pytest.mark.parametrize("config", [GIT_PREPROCESSOR, CLIP_PREPROCESSOR, SIGLIP_PREPROCESSOR],
                         ids=["git-base-coco", "clip-old-style", "siglip"])
@pytest.mark.parametrize("size", [(96, 80), (20, 27), (33, 120), (64, 64), (7, 9)])
@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "noise"])
def test_torch_preprocessing_matches_processor(config, size, smooth):
    processor = pil_processor(config)
    images = make_images(2, *size, smooth=smooth, seed=sum(size))
    expected, got = reference(processor, images), ours(processor, images)
    assert got.shape == expected.shape and got.dtype == torch.float32
    diff = pixel_diff(got, expected, config["image_std"])
    assert diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF, (diff.max() * 255, diff.mean() * 255)


def test_native_size_is_exact_and_processor_mode_is_bit_identical():
    processor = pil_processor(GIT_PREPROCESSOR)
    images = make_images(3, 32, 32, smooth=False, seed=4)
    assert (ours(processor, images) - reference(processor, images)).abs().max() <= 1e-6
    images = make_images(3, 50, 37, smooth=False, seed=5)
    assert torch.equal(ours(processor, images, "processor"), reference(processor, images))
    rgba = make_images(1, 50, 37, channels=4, seed=6)
    expected = processor(images=[to_uint8_arrays(rgba)[0]], return_tensors="pt")["pixel_values"]
    assert torch.equal(ours(processor, rgba, "processor"), expected)


@pytest.mark.parametrize("change", [
    {"resample": 2},  # bilinear
    {"crop_size": {"height": 40, "width": 36}},  # crop larger than the resized image: zero padding
    {"size": {"height": 24, "width": 40}, "do_center_crop": False},
    {"do_normalize": False, "do_rescale": False},
], ids=["bilinear", "pad", "fixed-size", "raw-0-255"])
def test_other_processor_settings(change):
    config = {**GIT_PREPROCESSOR, **change}
    processor = pil_processor(config)
    images = make_images(2, 45, 31, seed=7)
    expected, got = reference(processor, images), ours(processor, images)
    assert Preprocessor(processor).mode == "torch" and got.shape == expected.shape
    scale = 255.0 if not config["do_rescale"] else 1.0
    std = [s * scale for s in config["image_std"]] if config["do_normalize"] else [1 / scale] * 3
    diff = pixel_diff(got, expected, std)
    assert diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF


def test_unsupported_settings_fall_back_to_the_processor():
    processor = pil_processor({**GIT_PREPROCESSOR, "resample": 1})  # Lanczos
    with pytest.raises(ValueError, match="resampling filter"):
        ImageSpec.from_processor(processor)
    pre = Preprocessor(processor)
    assert pre.mode == "processor"
    images = make_images(2, 45, 31, seed=8)
    assert torch.equal(pre(images, device=torch.device("cpu"), dtype=torch.float32), reference(processor, images))
    with pytest.raises(ValueError, match="preprocess must be one of"):
        Preprocessor(processor, "pil")


def test_importing_the_modules_does_not_import_transformers():
    code = ("import sys, cascade_core.captioning, cascade_core.similarity, cascade_core.preprocess; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"
