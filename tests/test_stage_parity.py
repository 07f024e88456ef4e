"""Whole stage loops equal diffusers' IF pipelines (same seed, DDPM, CFG, dynamic thresholding) at fp32."""
import pytest
import torch

from cascade_core.guidance import CFGGuider, DynamicThreshold
from cascade_core.spacing import respaced_timesteps
from cascade_core.stage import sample_stage, stage_sigmas, unet_denoiser
from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from tiny_unets import MICRO_IF_I, MICRO_IF_II, diffusers_unet

diffusers = pytest.importorskip("diffusers")


def _pair(cfg):
    ref = diffusers_unet(cfg)
    ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _scheduler(max_value):
    return diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                                   thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=max_value,
                                   prediction_type="epsilon")


def _embeds(width, batch=1, seed=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 7, width, generator=g), torch.randn(batch, 7, width, generator=g)


def _pipe_kwargs(ref, max_value):
    return dict(tokenizer=None, text_encoder=None, unet=ref, scheduler=_scheduler(max_value), safety_checker=None,
                feature_extractor=None, watermarker=None, requires_safety_checker=False)


@pytest.mark.parametrize("steps", [20, "smart27"])
def test_stage_one_matches_if_pipeline(steps):
    ref, ours = _pair(MICRO_IF_I)
    emb, neg = _embeds(16, batch=2)
    pipe = diffusers.IFPipeline(**_pipe_kwargs(ref, 1.5))
    pipe.set_progress_bar_config(disable=True)
    kw = {"num_inference_steps": steps} if isinstance(steps, int) else {
        "timesteps": respaced_timesteps(steps, flavour="diffusers")}
    with torch.no_grad():
        expected = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=7.0, height=16, width=16,
                        output_type="pt", generator=torch.Generator().manual_seed(0), **kw).images
        den = unet_denoiser(ours)
        guider = CFGGuider(den, emb, neg, 7.0, post_cfg=[DynamicThreshold(0.95, 1.5)])
        sigmas = stage_sigmas(den, steps if isinstance(steps, int) else respaced_timesteps(steps, flavour="diffusers"))
        got = sample_stage(guider, sigmas, batch_size=2, height=16, width=16,
                           generator=torch.Generator().manual_seed(0))
    assert got.shape == expected.shape == (2, 3, 16, 16)
    assert (got - expected).abs().max().item() < 1e-4


def test_stage_two_matches_if_superresolution_pipeline():
    ref, ours = _pair(MICRO_IF_II)
    emb, neg = _embeds(16)
    low = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(9)) * 2 - 1
    noising = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    pipe = diffusers.IFSuperResolutionPipeline(**_pipe_kwargs(ref, 1.0), image_noising_scheduler=noising)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = pipe(image=low, prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=4.0,
                        num_inference_steps=15, noise_level=250, height=32, width=32, output_type="pt",
                        generator=torch.Generator().manual_seed(0)).images
        den = unet_denoiser(ours)
        guider = CFGGuider(den, emb, neg, 4.0, post_cfg=[DynamicThreshold(0.95, 1.0)])
        got = sample_stage(guider, stage_sigmas(den, 15), height=32, width=32, low_res=low, noise_level=250,
                           generator=torch.Generator().manual_seed(0))
    assert got.shape == expected.shape == (1, 3, 32, 32)
    assert (got - expected).abs().max().item() < 1e-4


def _dpm_scheduler(max_value):
    return diffusers.DPMSolverMultistepScheduler(
        beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
        dynamic_thresholding_ratio=0.95, sample_max_value=max_value, prediction_type="epsilon",
        algorithm_type="dpmsolver++", solver_order=2, lambda_min_clipped=-5.1)


@pytest.mark.parametrize("steps", [25])  # >= 15: below 15 steps diffusers also drops to first order one step early
def test_dpm_solver_stage_one_matches_if_pipeline_with_dpm_solver(steps):
    """dpmpp_2m on the ``dpm`` schedule = diffusers' DPMSolverMultistepScheduler (dpmsolver++, 2nd order, lambda
    clipped at -5.1, the epsilon half of the learned-variance output, dynamic thresholding) in IFPipeline."""
    from cascade_core.stage import schedule_sigmas

    ref, ours = _pair(MICRO_IF_I)
    emb, neg = _embeds(16, batch=2)
    pipe = diffusers.IFPipeline(**dict(_pipe_kwargs(ref, 1.5), scheduler=_dpm_scheduler(1.5)))
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=7.0, height=16, width=16,
                        num_inference_steps=steps, output_type="pt", generator=torch.Generator().manual_seed(0)).images
        den = unet_denoiser(ours)
        guider = CFGGuider(den, emb, neg, 7.0, post_cfg=[DynamicThreshold(0.95, 1.5)])
        sigmas = schedule_sigmas(den, steps, "dpm")
        assert len(sigmas) == steps + 1 and [int(t) for t in pipe.scheduler.timesteps] == \
            [int(den.sigma_to_t(s)) for s in sigmas[:-1]]
        got = sample_stage(guider, sigmas, batch_size=2, height=16, width=16, sampler="dpmpp_2m",
                           generator=torch.Generator().manual_seed(0))
    assert (got - expected).abs().max().item() < 1e-4
