"""sample_stage behaviour: seeds, callbacks and interrupts, batches, aspect ratios, SR inputs, bad input."""
import pytest
import torch

from cascade_core.guidance import CFGGuider, DynamicThreshold
from cascade_core.stage import sample_stage, stage_sigmas, unet_denoiser


def _guider(unet, scale=5.0, batch=1, max_value=1.5):
    g = torch.Generator().manual_seed(1)
    emb, neg = torch.randn(batch, 6, 16, generator=g), torch.randn(1, 6, 16, generator=g)
    den = unet_denoiser(unet)
    return CFGGuider(den, emb, neg, scale, post_cfg=[DynamicThreshold(0.95, max_value)]), den


def test_seed_reproduces_and_changes(base):
    guider, den = _guider(base)
    sigmas = stage_sigmas(den, 8)
    run = lambda seed: sample_stage(guider, sigmas, height=8, width=8, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.abs().max() <= 1.0 + 1e-6  # the last step returns the thresholded x0


def test_callback_progress_preview_and_interrupt(base):
    guider, den = _guider(base)
    seen = []

    def callback(info):
        seen.append((info["i"], info["total"], tuple(info["denoised"].shape)))

    sample_stage(guider, stage_sigmas(den, "smart27"), height=8, width=8, callback=callback,
                 generator=torch.Generator().manual_seed(0))
    assert [s[0] for s in seen] == list(range(27)) and all(s[1] == 27 and s[2] == (1, 3, 8, 8) for s in seen)

    class Interrupted(Exception):
        pass

    def interrupt(info):
        if info["i"] == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        sample_stage(guider, stage_sigmas(den, 10), height=8, width=8, callback=interrupt)
    # the model is left usable
    assert sample_stage(guider, stage_sigmas(den, 3), height=8, width=8).shape == (1, 3, 8, 8)


def test_batch_and_aspect_ratio(base):
    guider, den = _guider(base, batch=1)
    out = sample_stage(guider, stage_sigmas(den, 4), batch_size=3, height=8, width=16,
                       generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 8, 16)
    assert not torch.allclose(out[0], out[1])  # independent noise per image


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m"])
def test_every_sampler_runs_a_stage(base, sampler):
    guider, den = _guider(base)
    out = sample_stage(guider, stage_sigmas(den, 6), height=8, width=8, sampler=sampler,
                       generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 8, 8) and torch.isfinite(out).all()


def test_super_resolution_of_any_image(sr):
    guider, den = _guider(sr, scale=4.0, max_value=1.0)
    low = torch.rand(2, 3, 5, 7) * 2 - 1  # an image that did not come from the base stage, odd size
    out = sample_stage(guider, stage_sigmas(den, 4), height=16, width=32, low_res=low, noise_level=100,
                       generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 32)


def test_bad_stage_inputs(base, sr):
    guider, den = _guider(sr, scale=4.0)
    sig = stage_sigmas(den, 2)
    with pytest.raises(ValueError, match="noise_level"):
        sample_stage(guider, sig, height=16, width=16, low_res=torch.zeros(1, 3, 8, 8), noise_level=1000)
    with pytest.raises(ValueError, match=r"\[B, 3, h, w\]"):
        sample_stage(guider, sig, height=16, width=16, low_res=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        sample_stage(guider, sig, height=16, width=16, low_res=torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="multiple of 8"):
        sample_stage(guider, sig, height=12, width=16, low_res=torch.zeros(1, 3, 8, 8))
    base_guider, base_den = _guider(base)
    with pytest.raises(ValueError, match="multiple of 4"):
        sample_stage(base_guider, stage_sigmas(base_den, 2), height=10, width=8)


def test_nan_conditioning_and_nan_output(base):
    den = unet_denoiser(base)
    bad = torch.zeros(1, 6, 16)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="positive embeddings contain NaN"):
        CFGGuider(den, bad, torch.zeros(1, 6, 16), 5.0)

    def broken(x, sigma, **extra):
        return torch.full_like(x, float("nan"))

    with pytest.raises(FloatingPointError, match="NaN"):
        sample_stage(broken, stage_sigmas(den, 3), height=8, width=8, sampler="euler")
