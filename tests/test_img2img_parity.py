"""Image-to-image and inpainting at stages I and II equal diffusers' four IF pipelines at fp32 (same seeds,
strengths, DDPM with learned variance, CFG and dynamic thresholding), and inpainting keeps the original exactly."""
import pytest
import torch

from cascade_core.guidance import CFGGuider, DynamicThreshold
from cascade_core.inpaint import prepare_mask
from cascade_core.stage import sample_stage, stage_sigmas, unet_denoiser
from test_stage_parity import _embeds, _pair, _pipe_kwargs
from tiny_unets import MICRO_IF_I, MICRO_IF_II

diffusers = pytest.importorskip("diffusers")
STEPS = 10


def _image(batch, size, seed):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _mask(batch, size):
    """Binary masks [batch, 1, size, size]: a different rectangle per image (1 = repaint)."""
    m = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        m[i, :, 2 + i: size // 2 + 2 + i, 3: size - 2 - i] = 1.0
    return m


def _ours(unet, emb, neg, scale, max_value, **stage):
    den = unet_denoiser(unet)
    guider = CFGGuider(den, emb, neg, scale, post_cfg=[DynamicThreshold(0.95, max_value)])
    return sample_stage(guider, stage_sigmas(den, STEPS), generator=torch.Generator().manual_seed(0), **stage)


def _stage_one(strength, masks):
    ref, ours = _pair(MICRO_IF_I)
    emb, neg = _embeds(16, batch=2)
    image = _image(2, 16, 3)
    pipe_cls = diffusers.IFImg2ImgPipeline if masks is None else diffusers.IFInpaintingPipeline
    pipe = pipe_cls(**_pipe_kwargs(ref, 1.5))
    pipe.set_progress_bar_config(disable=True)
    kw = {} if masks is None else {"mask_image": _mask(masks, 16)}
    with torch.no_grad():
        expected = pipe(image=image, strength=strength, prompt_embeds=emb, negative_prompt_embeds=neg,
                        guidance_scale=7.0, num_inference_steps=STEPS, output_type="pt",
                        generator=torch.Generator().manual_seed(0), **kw).images
        mask = None if masks is None else prepare_mask(_mask(masks, 16), 16, 16)
        got = _ours(ours, emb, neg, 7.0, 1.5, height=16, width=16, init_image=image, strength=strength, mask=mask)
    return got, expected, image, mask


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.35])
def test_stage_one_img2img_matches_diffusers(strength):
    got, expected, _, _ = _stage_one(strength, None)
    assert got.shape == expected.shape == (2, 3, 16, 16)
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("strength,masks", [(1.0, 1), (0.5, 2), (0.8, 2)])
def test_stage_one_inpainting_matches_diffusers_and_keeps_the_original(strength, masks):
    got, expected, image, mask = _stage_one(strength, masks)
    assert (got - expected).abs().max().item() < 1e-4
    keep = mask.expand_as(got) < 0.5
    assert torch.equal(got[keep], image[keep])  # exactly the original outside the mask
    assert (got[~keep] - image[~keep]).abs().max() > 0.1  # and something repainted inside


def _stage_two(strength, masks):
    ref, ours = _pair(MICRO_IF_II)
    emb, neg = _embeds(16, batch=2)
    low, original = _image(2, 8, 9), _image(2, 32, 4)
    noising = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    pipe_cls = diffusers.IFImg2ImgSuperResolutionPipeline if masks is None else \
        diffusers.IFInpaintingSuperResolutionPipeline
    pipe = pipe_cls(**_pipe_kwargs(ref, 1.0), image_noising_scheduler=noising)
    pipe.set_progress_bar_config(disable=True)
    kw = {} if masks is None else {"mask_image": _mask(masks, 32)}
    with torch.no_grad():
        expected = pipe(image=low, original_image=original, strength=strength, prompt_embeds=emb,
                        negative_prompt_embeds=neg, guidance_scale=4.0, num_inference_steps=STEPS, noise_level=250,
                        output_type="pt", generator=torch.Generator().manual_seed(0), **kw).images
        mask = None if masks is None else prepare_mask(_mask(masks, 32), 32, 32)
        got = _ours(ours, emb, neg, 4.0, 1.0, height=32, width=32, low_res=low, noise_level=250,
                    init_image=original, strength=strength, mask=mask)
    return got, expected, original, mask


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_stage_two_img2img_matches_diffusers(strength):
    got, expected, _, _ = _stage_two(strength, None)
    assert got.shape == expected.shape == (2, 3, 32, 32)
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("strength,masks", [(1.0, 2), (0.5, 1)])
def test_stage_two_inpainting_matches_diffusers_and_keeps_the_original(strength, masks):
    got, expected, original, mask = _stage_two(strength, masks)
    assert (got - expected).abs().max().item() < 1e-4
    keep = mask.expand_as(got) < 0.5
    assert torch.equal(got[keep], original[keep])
