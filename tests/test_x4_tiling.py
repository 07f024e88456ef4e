"""Tiled UNet and VAE decoding: exact blending arithmetic, bounded seams on a smooth image, measured lower peak memory.

Seam score: the largest excess of the tiled output's mean |neighbour difference| profile (per column and
per row) over the untiled output's, divided by the untiled mean |neighbour difference|. A hard cut
between tiles shows as a spike; blending spreads it over the overlap. Tiles see their own GroupNorm
statistics and attention context, so how large the score is depends on the model: the tiny random
models here are far less local than trained ones, and the bounds below are stated for them.
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from cascade_core.upscaler.loading import load_upscaler
from cascade_core.upscaler.stage import sample_x4_stage
from cascade_core.upscaler.tiling import TiledDenoiser, tile_starts, tiled_map
from tiny_x4 import low_res_image

diffusers = pytest.importorskip("diffusers")

VAE_SEAM_BOUND = 7.0   # tile 32, overlap 8 latents; measured 6.1 (hard cuts: 14.3; diffusers' tiled decode: 6.4)
UNET_SEAM_BOUND = 0.12  # tile 16, overlap 8 latents, 6 DDIM steps; measured 0.09 (hard cuts: 0.11; max |diff| 0.5)


def _profile(image: torch.Tensor) -> torch.Tensor:
    gx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    gy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    return torch.cat([gx, gy])


def seam_score(tiled: torch.Tensor, full: torch.Tensor) -> float:
    reference = _profile(full)
    return ((_profile(tiled) - reference).clamp(min=0).max() / reference.mean()).item()


def peak_cpu_bytes(fn) -> int:
    """Peak of live CPU tensor memory while ``fn`` runs (allocations minus frees, from the profiler)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.time_range.start, e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage)
                    for e in prof.events())
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


@pytest.fixture(scope="module")
def upscaler(x4_repo):
    return load_upscaler(x4_repo[1], device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("size,tile,overlap,align", [(64, 24, 8, 8), (100, 24, 8, 8), (37, 16, 4, 1), (17, 8, 2, 1)])
def test_windows_cover_with_the_overlap(size, tile, overlap, align):
    starts = tile_starts(size, tile, overlap, align)
    assert starts[0] == 0 and starts[-1] == size - tile
    assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert all(s % align == 0 for s in starts[:-1])


def test_blend_weights_are_a_partition_of_unity():
    x = torch.randn(2, 3, 50, 37)
    assert (tiled_map(lambda t, _: t * 2, x, 16, 4) - 2 * x).abs().max() < 1e-5
    up = torch.nn.functional.interpolate
    got = tiled_map(lambda t, _: up(t, scale_factor=4), x, 16, 4, scale=4)
    assert (got - up(x, scale_factor=4)).abs().max() < 1e-5


def test_one_tile_is_the_untiled_call(upscaler):
    z = torch.randn(1, 4, 16, 16)
    assert torch.equal(upscaler.decode(z, tile=16), upscaler.decode(z))
    calls = []

    def denoiser(x, sigma, **extra):
        calls.append((x.shape, extra["low_res"].shape))
        return x

    tiled = TiledDenoiser(denoiser, 16, 4)
    x, low = torch.randn(1, 4, 40, 24), torch.randn(1, 3, 40, 24)
    assert (tiled(x, torch.ones(1), low_res=low, noise_level=torch.tensor([5])) - x).abs().max() < 1e-5
    assert {c for c in calls} == {((1, 4, 16, 16), (1, 3, 16, 16))} and len(calls) == 4 * 2


def _smooth_latent(size: int) -> torch.Tensor:
    image = low_res_image(1, (size, size), smooth=True)
    return torch.cat([image, image[:, :1]], dim=1) * 2


def test_vae_tiling_seams_and_peak_memory(x4_repo, upscaler):
    pipe, _ = x4_repo
    z = _smooth_latent(64)
    full = upscaler.decode(z)
    tiled = upscaler.decode(z, tile=32, overlap=8)
    hard_cut = upscaler.decode(z, tile=32, overlap=0)
    pipe.vae.enable_tiling()
    pipe.vae.tile_latent_min_size, pipe.vae.tile_sample_min_size = 32, 128
    try:
        with torch.no_grad():
            reference_tiled = pipe.vae.decode(z).sample
    finally:
        pipe.vae.disable_tiling()
    score = seam_score(tiled, full)
    assert score < VAE_SEAM_BOUND
    assert score < 0.5 * seam_score(hard_cut, full)  # the metric does see seams
    assert score < 1.1 * seam_score(reference_tiled, full)
    untiled_peak = peak_cpu_bytes(lambda: upscaler.decode(z))
    tiled_peak = peak_cpu_bytes(lambda: upscaler.decode(z, tile=16, overlap=4))
    assert tiled_peak < 0.25 * untiled_peak  # measured 28.1 MiB -> 2.8 MiB for a 256 x 256 output


def test_unet_tiling_seams_and_peak_memory(upscaler):
    image = low_res_image(1, (32, 32), smooth=True)
    run = lambda **kw: sample_x4_stage(upscaler, image, "the cat", steps=6,  # noqa: E731
                                       generator=torch.Generator().manual_seed(0), **kw)
    full, tiled = run(), run(tile=16, overlap=8)
    assert seam_score(tiled, full) < UNET_SEAM_BOUND
    assert (tiled - full).abs().mean() < 0.1
    embeds = upscaler.encode_prompt(["the cat"])
    from cascade_core.stage import unet_denoiser

    den = unet_denoiser(upscaler.unet, alphas_cumprod=upscaler.alphas_cumprod, prediction="v_prediction")
    x, low = torch.randn(1, 4, 40, 40), torch.randn(1, 3, 40, 40)
    kwargs = dict(text_embeds=embeds, low_res=low, noise_level=torch.tensor([100]))
    untiled_peak = peak_cpu_bytes(lambda: den(x, torch.ones(1), **kwargs))
    tiled_peak = peak_cpu_bytes(lambda: TiledDenoiser(den, 24, 8)(x, torch.ones(1), **kwargs))  # 2 x 2 tiles
    assert tiled_peak < 0.5 * untiled_peak
