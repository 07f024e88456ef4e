"""cascade_core.inpaint: the strength rule, mask resizing/binarising, batch broadcasting, and MaskedDenoiser under
every sampler (exact original outside the mask; learned variance passed through)."""
import pytest
import torch

from cascade_core.inpaint import MaskedDenoiser, match_batches, prepare_mask, start_image, strength_sigmas
from cascade_core.samplers import SAMPLERS
from cascade_core.stage import sample_stage


def test_strength_keeps_the_tail_of_the_schedule():
    sigmas = torch.linspace(10, 0, 11)  # 10 steps
    assert torch.equal(strength_sigmas(sigmas, 1.0), sigmas)
    assert torch.equal(strength_sigmas(sigmas, 0.5), sigmas[5:])
    assert len(strength_sigmas(sigmas, 0.19)) == 2  # int(10 * 0.19) = 1 step
    with pytest.raises(ValueError, match="runs no step .* at least 0.1"):
        strength_sigmas(sigmas, 0.05)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="must be a number in 0..1"):
            strength_sigmas(sigmas, bad)


def test_masks_are_resized_by_area_then_binarised():
    m = torch.zeros(1, 8, 8)
    m[0, :4, :3] = 1.0  # at 4x4: cells (0,0) fully and (0,1)/(1,1) half covered
    small = prepare_mask(m, 4, 4)
    assert small.shape == (1, 1, 4, 4) and set(small.unique().tolist()) <= {0.0, 1.0}
    assert small[0, 0, :2, 0].tolist() == [1.0, 1.0] and small[0, 0, 2:, :].sum() == 0
    assert torch.equal(prepare_mask(torch.full((2, 3, 3), 0.5), 3, 3), torch.ones(2, 1, 3, 3))  # >= 0.5 repaints
    assert prepare_mask(m, 16, 16).sum() == 4 * m.sum()  # enlarging keeps the region
    for bad in (torch.ones(8, 8), torch.ones(1, 3, 8, 8)):
        with pytest.raises(ValueError, match="mask must be"):
            prepare_mask(bad, 8, 8)


def test_batches_broadcast_or_fail_by_name():
    image, mask = torch.zeros(1, 3, 4, 4), torch.ones(3, 1, 4, 4)
    out_image, out_mask, batch = match_batches(1, image, mask)
    assert batch == 3 and out_image.shape[0] == 3 and out_mask.shape[0] == 3
    assert match_batches(2, torch.zeros(2, 3, 4, 4), torch.ones(1, 1, 4, 4))[2] == 2
    with pytest.raises(ValueError, match=r"batch sizes do not match \(start image 2, mask 3, batch_size 1\)"):
        match_batches(1, torch.zeros(2, 3, 4, 4), mask)


class _Toy:
    """A denoiser with learned variance: x0 = tanh(x / 3), variance = 0.25."""

    def __init__(self):
        self.seen = []

    def __call__(self, x, sigma, **extra):
        return self.denoise_with_variance(x, sigma, **extra)[0]

    def denoise_with_variance(self, x, sigma, **extra):
        self.seen.append(x.clone())
        return torch.tanh(x / 3), torch.full_like(x, 0.25)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_keeps_the_original_outside_the_mask(sampler):
    original = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:5] = 1
    toy = _Toy()
    out = sample_stage(toy, torch.tensor([8.0, 3.0, 1.0, 0.2, 0.0]), height=8, width=8, sampler=sampler,
                       generator=torch.Generator().manual_seed(1), init_image=original, mask=mask, strength=0.75)
    keep = mask.expand_as(out) < 0.5
    assert torch.equal(out[keep], original[keep]) and not torch.equal(out[~keep], original[~keep])
    assert len(toy.seen) == 3  # int(4 * 0.75) steps
    for x, sigma in zip(toy.seen, (3.0, 1.0, 0.2)):  # the model saw the clean original (x_t = original) outside
        assert torch.allclose(x[keep] / (1 + sigma**2) ** 0.5, original[keep], atol=1e-6)


def test_masked_denoiser_passes_learned_variance_through():
    original, mask = torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 4)
    x0, v = MaskedDenoiser(_Toy(), original, mask).denoise_with_variance(torch.ones(1, 3, 4, 4), torch.tensor([1.0]))
    assert v is not None and torch.equal(v, torch.full((1, 3, 4, 4), 0.25))


def test_start_image_from_comfy_layout():
    images = torch.rand(1, 16, 32, 4)  # RGBA, another size: composited on white, stretched to 8x8
    begin = start_image(images, 8, 8, torch.ones(1, 16, 32))
    assert begin.pixels.shape == (1, 3, 8, 8) and begin.images.shape == (1, 8, 8, 3) and begin.mask.shape == \
        (1, 1, 8, 8)
    assert -1 <= begin.pixels.min() and begin.pixels.max() <= 1
    with pytest.raises(ValueError, match="mask and strength .* need a start image"):
        sample_stage(_Toy(), torch.tensor([1.0, 0.0]), height=8, width=8, mask=begin.mask)
    with pytest.raises(ValueError, match="mask is all zeros: nothing to repaint"):
        sample_stage(_Toy(), torch.tensor([1.0, 0.0]), height=8, width=8, init_image=begin.pixels,
                     mask=torch.zeros(1, 1, 8, 8))
