"""Stage III nodes (x4 upscaler loader, SR Upsampler 1024), in-process against ComfyUI's modules."""
from __future__ import annotations

import pytest
import torch


def _upscaler(pack):
    from pixel_cascade.nodes.upscale import UpscalerLoader

    return UpscalerLoader.execute(upscaler_name="tiny-x4-upscaler/", dtype="default").result[0]


def test_loader_lists_and_validates(pack, model_dirs):
    from pixel_cascade.nodes.upscale import UpscalerLoader, upscaler_choices

    assert upscaler_choices() == ["tiny-x4-upscaler/"]
    assert UpscalerLoader.validate_inputs(upscaler_name="tiny-x4-upscaler/") is True
    assert "upscaler_name" in UpscalerLoader.validate_inputs(upscaler_name="x4-upscaler-ema.safetensors")


def test_sr1024_equals_core_and_reports_progress(pack, model_dirs):
    import comfy.utils

    from cascade_core.image import images_to_pixels, pixels_to_images
    from cascade_core.upscaler.stage import sample_x4_stage
    from pixel_cascade.nodes.upscale import SRUpsampler1024

    handle = _upscaler(pack)
    image = torch.rand(1, 8, 12, 3, generator=torch.Generator().manual_seed(0))
    calls = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda v, t, p, node_id=None: calls.append((v, t, p)))
    try:
        out = SRUpsampler1024.execute(upscaler=handle, image=image, prompt="a cat", negative_prompt="", steps=3,
                                      guidance=9.0, noise_level=100, seed=5, sampler="ddim", tiling=False,
                                      tile_size=64).result[0]
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    direct = sample_x4_stage(handle.model, images_to_pixels(image), "a cat", "", steps=3, guidance=9.0,
                             noise_level=100, generator=torch.Generator().manual_seed(5))
    assert out.shape == (1, 32, 48, 3) and torch.allclose(out, pixels_to_images(direct), atol=1e-6)
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(c[2][0] == "JPEG" and max(c[2][1].size) >= 256 for c in calls)  # decoded previews, upscaled
    tiled = SRUpsampler1024.execute(upscaler=handle, image=image, prompt="a cat", negative_prompt="", steps=2,
                                    guidance=9.0, noise_level=100, seed=5, sampler="ddim", tiling=True,
                                    tile_size=16).result[0]
    assert tiled.shape == (1, 32, 48, 3)


def test_sr1024_bad_size(pack, model_dirs):
    from pixel_cascade.nodes.upscale import SRUpsampler1024

    with pytest.raises(ValueError, match="SR Upsampler 1024: input 'image' is 10x7.*multiples of 4"):
        SRUpsampler1024.execute(upscaler=_upscaler(pack), image=torch.rand(1, 7, 10, 3), prompt="", negative_prompt="",
                                steps=2, guidance=9.0, noise_level=100, seed=0, sampler="ddim", tiling=False,
                                tile_size=64)
