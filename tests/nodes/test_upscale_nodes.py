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


@pytest.fixture(scope="module")
def sr_guider(pack, model_dirs):
    """A Cascade CFG Guider over the tiny IF-II UNet (a pixel-space SR model, as the demo's stage III is)."""
    from pixel_cascade.nodes.guidance import CFGGuider
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader
    from pixel_cascade.nodes.text import T5Encode

    t5 = T5Loader.execute(t5_name="tiny-IF-I/", device="default", dtype="default").result[0]
    pos, neg = (T5Encode.execute(t5=t5, text=text, clean_caption=False).result[0] for text in ("a red fox", ""))
    unet = UNetLoader.execute(unet_name="tiny-IF-II/", dtype="default").result[0]
    return CFGGuider.execute(unet=unet, positive=pos, negative=neg, cfg=4.0, threshold_percentile=0.95,
                             threshold_max=1.0).result[0]


X4_ONLY = dict(prompt="ignored", negative_prompt="ignored", guidance=9.0, tiling=True, tile_size=16)


def test_sr1024_with_a_guider_is_the_sr256_stage(pack, sr_guider):
    """The guider path runs the same pixel-space SR stage as SR Upsampler 256 (leading spacing); the x4-only
    inputs change nothing; progress is reported per step."""
    import comfy.utils

    from pixel_cascade.nodes.sampling import SRUpsampler256
    from pixel_cascade.nodes.upscale import SRUpsampler1024

    image = torch.rand(1, 8, 12, 3, generator=torch.Generator().manual_seed(1))
    calls = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda v, t, p, node_id=None: calls.append((v, t)))
    try:
        out = SRUpsampler1024.execute(guider=sr_guider, image=image, steps=3, noise_level=100, seed=7,
                                      sampler="ddpm", **X4_ONLY).result[0]
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    ref = SRUpsampler256.execute(guider=sr_guider, image=image, noise_level=100, seed=7, steps=3,
                                 schedule="leading", sampler="ddpm").result[0]
    assert out.shape == (1, 32, 48, 3) and torch.equal(out, ref)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    plain = SRUpsampler1024.execute(guider=sr_guider, image=image, steps=3, noise_level=100, seed=7, sampler="ddpm",
                                    **dict(X4_ONLY, prompt="", tiling=False)).result[0]
    assert torch.equal(plain, out)


def test_sr1024_needs_exactly_one_of_upscaler_and_guider(pack, sr_guider):
    from pixel_cascade.nodes.upscale import SRUpsampler1024

    image = torch.rand(1, 8, 8, 3)
    common = dict(image=image, steps=1, noise_level=100, seed=0, sampler="ddim", **X4_ONLY)
    for kwargs, got in (({}, "neither is connected"),
                        (dict(upscaler=_upscaler(pack), guider=sr_guider), "both are connected")):
        with pytest.raises(ValueError, match=f"SR Upsampler 1024: inputs 'upscaler' and 'guider': {got}.*"
                                             "x4 Upscaler Loader.*Cascade CFG Guider.*demo/sr1024"):
            SRUpsampler1024.execute(**common, **kwargs)
    # at validation time linked inputs arrive as None and unconnected optional ones not at all
    assert SRUpsampler1024.validate_inputs(image=None, upscaler=None) is True
    assert SRUpsampler1024.validate_inputs(image=None, guider=None) is True
    assert "neither" in SRUpsampler1024.validate_inputs(image=None)
    assert "both" in SRUpsampler1024.validate_inputs(image=None, upscaler=None, guider=None)


def test_sr1024_guider_must_hold_an_sr_model(pack, model_dirs, sr_guider):
    from dataclasses import replace

    from pixel_cascade.nodes.loaders import UNetLoader
    from pixel_cascade.nodes.upscale import SRUpsampler1024

    base = replace(sr_guider, unet=UNetLoader.execute(unet_name="tiny-IF-I/", dtype="default").result[0])
    with pytest.raises(ValueError, match="SR Upsampler 1024: input 'guider' .* base .* super-resolution model"):
        SRUpsampler1024.execute(guider=base, image=torch.rand(1, 8, 8, 3), steps=1, noise_level=100, seed=0,
                                sampler="ddpm", **X4_ONLY)


def test_sr1024_x4_inpaints_in_latent_space_and_keeps_unmasked_pixels(pack, model_dirs):
    from pixel_cascade.nodes.upscale import SRUpsampler1024

    handle = _upscaler(pack)
    low = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    start = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(2, 32, 32)
    mask[0, 4:12, 4:20], mask[1, 16:30, 8:16] = 1, 1
    kw = dict(upscaler=handle, image=low, prompt="a cat", negative_prompt="", steps=4, guidance=9.0, noise_level=20,
              seed=5, sampler="ddim", tiling=False, tile_size=64)
    out = SRUpsampler1024.execute(start_image=start, mask=mask, denoise=0.5, **kw).result[0]
    assert out.shape == (2, 32, 32, 3)
    for i in range(2):
        keep = mask[i] < 0.5
        assert torch.equal(out[i][keep], start[0][keep]) and not torch.equal(out[i][~keep], start[0][~keep])
    with pytest.raises(ValueError, match="SR Upsampler 1024: input 'denoise' 0.1 runs no step of 4"):
        SRUpsampler1024.execute(start_image=start, denoise=0.1, **kw)
    with pytest.raises(ValueError, match="SR Upsampler 1024: input 'mask' is all zeros"):
        SRUpsampler1024.execute(start_image=start, mask=torch.zeros(1, 32, 32), **kw)
