"""Stage III loop equals diffusers' StableDiffusionUpscalePipeline (same seed, fp32, CPU); bad input is named."""
import pytest
import torch

from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from cascade_core.upscaler.loading import load_upscaler
from cascade_core.upscaler.stage import sample_x4_stage, x4_sigmas
from tiny_unets import MICRO_IF_II
from tiny_x4 import low_res_image

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def upscaler(x4_repo):
    return load_upscaler(x4_repo[1], device="cpu", dtype=torch.float32)


def _reference(pipe, image, prompt, steps, **kwargs):
    """The pipeline's output mapped to [-1, 1]; it takes and returns [0, 1] images."""
    with torch.no_grad():
        out = pipe(prompt=prompt, image=(image + 1) / 2, num_inference_steps=steps, output_type="pt",
                   generator=torch.Generator().manual_seed(0), **kwargs).images
    return out * 2 - 1


@pytest.mark.parametrize("case", ["strings", "batch_embeds"])
def test_loop_matches_upscale_pipeline(x4_repo, upscaler, case):
    pipe, _ = x4_repo
    image = low_res_image(2, (16, 12))
    prompts = ["the cat", "a dog"]
    negative = ["", "cat"]
    expected = _reference(pipe, image, prompts, 8, negative_prompt=negative, guidance_scale=9.0, noise_level=100)
    if case == "strings":
        prompt, neg = prompts, negative
    else:
        prompt, neg = upscaler.encode_prompt(prompts), upscaler.encode_prompt(negative)
    got = sample_x4_stage(upscaler, image, prompt, neg, steps=8, guidance=9.0, noise_level=100,
                          generator=torch.Generator().manual_seed(0))
    assert got.shape == expected.shape == (2, 3, 64, 48)
    assert (got - expected).abs().max().item() < 1e-4


def test_default_negative_and_max_noise_level(x4_repo, upscaler):
    pipe, _ = x4_repo
    image = low_res_image(1, (8, 8), seed=3)
    expected = _reference(pipe, image, "a cat", 5, guidance_scale=4.0, noise_level=350)
    got = sample_x4_stage(upscaler, image, "a cat", steps=5, guidance=4.0, noise_level=350,
                          generator=torch.Generator().manual_seed(0))
    assert (got - expected).abs().max().item() < 1e-4


def test_ddim_timesteps_and_tail(upscaler):
    """75 steps: t = 963, 950, ..., 1, then the set_alpha_to_one=False tail at alphas_cumprod[0]."""
    sigmas = x4_sigmas(upscaler, 75)
    ac = upscaler.alphas_cumprod
    assert len(sigmas) == 76
    assert torch.allclose(sigmas[0], ((1 - ac[963]) / ac[963]).sqrt())
    assert torch.allclose(sigmas[-2], ((1 - ac[1]) / ac[1]).sqrt()) and sigmas[-1] > 0


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "ddpm"])
def test_other_samplers_run_through_the_same_adapter(upscaler, sampler):
    seen = []
    out = sample_x4_stage(upscaler, low_res_image(1, (8, 8)), "a dog", steps=4, sampler=sampler,
                          generator=torch.Generator().manual_seed(1), callback=lambda info: seen.append(info["i"]))
    assert out.shape == (1, 3, 32, 32) and bool(torch.isfinite(out).all()) and out.abs().max() <= 1
    assert seen == [0, 1, 2, 3]


def test_bad_inputs_are_named(upscaler):
    image = low_res_image(1, (8, 8))
    with pytest.raises(ValueError, match="not a multiple of 4"):
        sample_x4_stage(upscaler, low_res_image(1, (10, 8)), "x", steps=2)
    with pytest.raises(ValueError, match=r"noise_level must be an integer in \[0, 350\]"):
        sample_x4_stage(upscaler, image, "x", steps=2, noise_level=351)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        sample_x4_stage(upscaler, image * 3, "x", steps=2)
    with pytest.raises(ValueError, match="T5 embeddings of the IF stages do not apply"):
        sample_x4_stage(upscaler, image, torch.zeros(1, 77, 4096), steps=2)
    with pytest.raises(ValueError, match="batch 3 but the image batch is 1"):
        sample_x4_stage(upscaler, image, ["a", "b", "c"], steps=2)


def test_base_if_model_wired_in_is_refused(x4_repo, tmp_path):
    if_unet = UNet(UNetConfig.from_diffusers_config(MICRO_IF_II)).eval()
    with pytest.raises(ValueError, match="DeepFloyd IF UNet"):
        sample_x4_stage(if_unet, low_res_image(1, (8, 8)), "x", steps=2)
    from tiny_unets import MICRO_IF_I, diffusers_unet
    import diffusers

    pipe = diffusers.IFPipeline(tokenizer=None, text_encoder=None, unet=diffusers_unet(MICRO_IF_I),
                                scheduler=diffusers.DDPMScheduler(), safety_checker=None, feature_extractor=None,
                                watermarker=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "if")
    with pytest.raises(ValueError, match="DeepFloyd IF stage I"):
        load_upscaler(tmp_path / "if", device="cpu")
