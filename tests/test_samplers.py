"""Samplers: loop parity with diffusers' DDPM (IF learned range + thresholding) and DDIM; analytic Gaussian cases."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from cascade_core.denoisers import DiscreteVPDenoiser
from cascade_core.guidance import CFGGuider, DynamicThreshold
from cascade_core.samplers import SAMPLERS, get_ancestral_step, get_sampler, sample_ddim, sample_ddpm
from cascade_core.schedules import (
    cosine_alphas_cumprod,
    get_sigmas_karras,
    scaled_linear_alphas_cumprod,
    sigmas_for_timesteps,
    sigmas_from_alphas_cumprod,
)
from cascade_core.spacing import respaced_timesteps, spaced_timesteps

B, C, H, W, L, D = 2, 3, 8, 8, 5, 8


class FakeUNet:
    """Cheap smooth stand-in for an IF UNet: tanh(1x1 conv of x_t + t term + text term), C or 2C channels."""

    def __init__(self, out_channels: int, in_channels: int = C, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(out_channels, in_channels, generator=g) * 0.8
        self.t_w = torch.randn(out_channels, generator=g)
        self.text_w = torch.randn(D, out_channels, generator=g) * 0.5

    def __call__(self, x_t, t, text_embeds=None):
        h = torch.einsum("oc,bchw->bohw", self.w, x_t) + (t.float()[:, None] / 1000 * self.t_w)[:, :, None, None]
        if text_embeds is not None:
            h = h + (text_embeds.mean(1) @ self.text_w)[:, :, None, None]
        return torch.tanh(h)


# ---------------------------------------------------------------- DDPM parity (IF stage I scheduler config)

def _diffusers_if_loop(unet, pos, neg, scale, seed, *, timesteps=None, num_steps=None):
    """Reference: the IF pipeline's loop (CFG on eps, variance from the cond half) with diffusers' DDPMScheduler."""
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
                              dynamic_thresholding_ratio=0.95, sample_max_value=1.5, prediction_type="epsilon")
    scheduler.set_timesteps(num_steps, timesteps=timesteps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g)
    for t in scheduler.timesteps:
        out = unet(torch.cat([x, x]), t.expand(2 * B), text_embeds=torch.cat([neg.expand(B, L, D), pos]))
        uncond, cond = out.chunk(2)
        eps_c, var_c = cond.split(C, dim=1)
        eps = uncond[:, :C] + scale * (eps_c - uncond[:, :C])
        x = scheduler.step(torch.cat([eps, var_c], dim=1), t, x, generator=g).prev_sample
    return x, scheduler.timesteps.tolist()


def _our_if_loop(unet, pos, neg, scale, seed, timesteps):
    alphas_cumprod = cosine_alphas_cumprod()
    denoiser = DiscreteVPDenoiser(unet, alphas_cumprod, learned_variance=True)
    guider = CFGGuider(denoiser, pos, neg, scale, post_cfg=[DynamicThreshold(0.95, 1.5)])
    sigmas = sigmas_for_timesteps(alphas_cumprod, timesteps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g) * math.sqrt(1 + sigmas[0].item() ** 2)
    draws = []

    def noise_sampler(sigma, sigma_next):
        draws.append(float(sigma_next))
        return torch.randn(x.shape, generator=g)

    return sample_ddpm(guider, x, sigmas, noise_sampler=noise_sampler), draws


@pytest.mark.parametrize("steps", ["leading100", "smart27"])
def test_ddpm_loop_matches_diffusers_if_scheduler(steps):
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(B, L, D, generator=g), torch.randn(1, L, D, generator=g)
    unet = FakeUNet(2 * C)
    if steps == "leading100":
        ref, timesteps = _diffusers_if_loop(unet, pos, neg, 7.0, seed=5, num_steps=100)
    else:
        ref, timesteps = _diffusers_if_loop(unet, pos, neg, 7.0, seed=5, timesteps=respaced_timesteps("smart27"))
    ours, draws = _our_if_loop(unet, pos, neg, 7.0, 5, timesteps)
    assert len(draws) == len(timesteps) - 1 and 0.0 not in draws  # no draw on the final step to sigma 0
    # Measured max |diff| ~4e-6 (leading 100) and ~1.4e-6 (smart27, starting at t=999, sigma ~2e4).
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert ref.abs().max() <= 1.0  # final step returns the thresholded x0


# ---------------------------------------------------------------- DDIM parity

def _diffusers_ddim_loop(scheduler, unet, num_steps, eta, seed):
    scheduler.set_timesteps(num_steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, H, W, generator=g)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t.expand(B)), t, x, eta=eta, generator=g).prev_sample
    return x, scheduler.timesteps.tolist()


def _our_ddim_loop(denoiser, sigmas, eta, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, H, W, generator=g) * math.sqrt(1 + sigmas[0].item() ** 2)
    out = sample_ddim(denoiser, x, sigmas, eta=eta, noise_sampler=lambda s, s_next: torch.randn(x.shape, generator=g))
    return out / math.sqrt(1 + sigmas[-1].item() ** 2)  # back to DDPM space at the last sigma


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_v_prediction_matches_x4_style_scheduler(eta):
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02,
                              prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1, clip_sample=False)
    unet = FakeUNet(4, in_channels=4)
    ref, timesteps = _diffusers_ddim_loop(scheduler, unet, 75, eta, seed=3)
    alphas_cumprod = scaled_linear_alphas_cumprod()
    assert timesteps == spaced_timesteps(75, "leading", steps_offset=1)
    # set_alpha_to_one=False: the last step lands on alphas_cumprod[0], i.e. sigma(t=0) > 0, not on 0.
    sigmas = torch.cat([sigmas_for_timesteps(alphas_cumprod, timesteps)[:-1],
                        sigmas_from_alphas_cumprod(alphas_cumprod)[:1]])
    ours = _our_ddim_loop(DiscreteVPDenoiser(unet, alphas_cumprod, prediction="v_prediction"), sigmas, eta, 3)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)  # measured ~2.4e-6 (eta 0), ~3.8e-6 (eta 1)


def test_ddim_eps_matches_cosine_scheduler():
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", clip_sample=False)
    unet = FakeUNet(4, in_channels=4)
    ref, timesteps = _diffusers_ddim_loop(scheduler, unet, 50, 0.0, seed=4)
    alphas_cumprod = cosine_alphas_cumprod()
    ours = _our_ddim_loop(DiscreteVPDenoiser(unet, alphas_cumprod), sigmas_for_timesteps(alphas_cumprod, timesteps),
                          0.0, 4)
    # An eps net that ignores the data gives x0 values ~1e2 (no clipping), so compare relative to the scale:
    # measured max |diff| 7.6e-5 at max |x| 115, i.e. 6.6e-7 relative (float32 roundoff).
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-6 * ref.abs().max().item())


# ---------------------------------------------------------------- analytic Gaussian data

MU, S_D = 0.5, 0.3


def gaussian_denoiser(x, sigma):
    """Exact x0 = E[x0 | x] for x0 ~ N(MU, S_D^2) per pixel: (S_D^2 x + sigma^2 MU) / (sigma^2 + S_D^2)."""
    s2 = sigma.reshape(-1, 1, 1, 1) ** 2
    return (S_D**2 * x + s2 * MU) / (s2 + S_D**2)


def _gaussian_start(sigma_max, seed=0):
    """20k points x_T ~ N(MU, sigma_max^2 + S_D^2), the exact marginal at sigma_max; float64 copy for the ODE."""
    g = torch.Generator().manual_seed(seed)
    x = MU + torch.randn(4, 1, 50, 100, generator=g, dtype=torch.float64) * math.sqrt(sigma_max**2 + S_D**2)
    return x, g


def _exact_ode_end(x_T, sigma_max, sigma_end=0.0):
    """Probability-flow ODE solution: x(sigma) = MU + (x_T - MU) * sqrt(sigma^2 + S_D^2) / sqrt(sigma_max^2 + S_D^2)."""
    return MU + (x_T - MU) * math.sqrt(sigma_end**2 + S_D**2) / math.sqrt(sigma_max**2 + S_D**2)


def _ancestral_chain_std(sigmas, eta=1.0):
    """Exact std after ancestral steps on Gaussian data: e' = (a + sigma_down (1 - a) / sigma) e + sigma_up z."""
    var = sigmas[0] ** 2 + S_D**2
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        a = S_D**2 / (sigma**2 + S_D**2)
        sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta)
        var = (a + sigma_down * (1 - a) / sigma) ** 2 * var + sigma_up**2
    return math.sqrt(var)


@pytest.mark.parametrize("name", ["ddpm", "euler_ancestral"])
def test_stochastic_samplers_follow_the_exact_chain_variance(name):
    sigmas = get_sigmas_karras(25, 0.0064, 71.0)
    x_T, g = _gaussian_start(sigmas[0].item())
    out = SAMPLERS[name](gaussian_denoiser, x_T.float(), sigmas,
                         noise_sampler=lambda s, s_next: torch.randn(x_T.shape, generator=g))
    expected_std = _ancestral_chain_std(sigmas.double().tolist())  # 0.239 (< S_D: 25 steps lose variance)
    # 20k samples: std of the sample std ~0.5%, of the mean ~0.002; tolerances ~4 standard errors
    assert abs(out.std().item() / expected_std - 1) < 0.02
    assert abs(out.mean().item() - MU) < 0.01


def test_ddpm_without_learned_variance_equals_euler_ancestral():
    # With ac = 1/(1+sigma^2), the DDPM posterior step with fixed-small variance is the eta=1 ancestral step.
    sigmas = sigmas_for_timesteps(cosine_alphas_cumprod(), spaced_timesteps(20))
    x_T, _ = _gaussian_start(sigmas[0].item())
    noises = [torch.randn(x_T.shape, generator=torch.Generator().manual_seed(i)) for i in range(20)]
    outs = []
    for name in ("ddpm", "euler_ancestral"):
        draws = iter(noises)
        outs.append(SAMPLERS[name](gaussian_denoiser, x_T.float(), sigmas,
                                   noise_sampler=lambda s, s_next, draws=draws: next(draws)))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_full_ddpm_chain_converges_to_the_data_distribution():
    sigmas = sigmas_for_timesteps(cosine_alphas_cumprod(), list(range(999, -1, -1)))
    x_T, g = _gaussian_start(sigmas[0].item())
    out = sample_ddpm(gaussian_denoiser, x_T.float(), sigmas,
                      noise_sampler=lambda s, s_next: torch.randn(x_T.shape, generator=g))
    assert abs(out.mean().item() - MU) < 0.01  # measured 0.4979
    assert abs(out.std().item() - S_D) < 0.01  # measured 0.2988


@pytest.mark.parametrize("name", ["ddim", "euler", "dpmpp_2m"])
def test_deterministic_samplers_converge_to_the_exact_ode_solution(name):
    sigmas = get_sigmas_karras(200, 0.0064, 71.0)
    x_T, _ = _gaussian_start(sigmas[0].item())
    out = SAMPLERS[name](gaussian_denoiser, x_T.float(), sigmas, noise_sampler=lambda *a: pytest.fail("no noise"))
    error = (out.double() - _exact_ode_end(x_T, sigmas[0].item())).abs().max().item()
    # measured max |error|: 1.85e-2 (DDIM, Euler: first order), 1.7e-4 (DPM-Solver++(2M))
    assert error < (1e-3 if name == "dpmpp_2m" else 0.03)
    assert abs(out.std().item() - S_D) < 0.01


def test_dpmpp_2m_beats_ddim_and_is_second_order():
    errors = {}
    for n in (25, 50):
        sigmas = get_sigmas_karras(n, 0.0064, 71.0)
        x_T, _ = _gaussian_start(sigmas[0].item())
        exact = _exact_ode_end(x_T, sigmas[0].item())
        for name in ("ddim", "dpmpp_2m"):
            errors[name, n] = (SAMPLERS[name](gaussian_denoiser, x_T.float(), sigmas).double() - exact).abs().max()
    # Measured: DDIM 0.143 -> 0.073 (first order), DPM-Solver++(2M) 0.036 -> 0.0079 (second order).
    assert errors["dpmpp_2m", 25] < errors["ddim", 25] / 3
    assert errors["dpmpp_2m", 25] < 0.05 and errors["ddim", 25] < 0.2
    assert errors["ddim", 25] / errors["ddim", 50] > 1.7
    assert errors["dpmpp_2m", 25] / errors["dpmpp_2m", 50] > 3.5


def test_stopping_at_a_positive_sigma_returns_that_state():
    sigmas = [71.0, 20.0, 5.0, 1.0]  # plain list, last entry > 0
    x_T, _ = _gaussian_start(sigmas[0])
    out = SAMPLERS["dpmpp_2m"](gaussian_denoiser, x_T.float(), sigmas)
    exact = _exact_ode_end(x_T, sigmas[0], sigma_end=1.0)
    assert (out.double() - exact).abs().max() < 0.05 * exact.abs().max()  # measured 1.9% with 3 coarse steps
    assert abs(out.std().item() - math.sqrt(1 + S_D**2)) < 0.03


# ---------------------------------------------------------------- contract: callback, noise, registry

@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_once_per_step_and_noise_only_through_the_sampler(name):
    sigmas = get_sigmas_karras(6, 0.1, 10.0)
    x = torch.randn(2, 1, 4, 4)
    seen, draws = [], []

    def noise_sampler(sigma, sigma_next):
        draws.append(float(sigma_next))
        return torch.zeros_like(x)

    state = torch.random.get_rng_state()
    SAMPLERS[name](gaussian_denoiser, x, sigmas, callback=seen.append, noise_sampler=noise_sampler)
    assert torch.equal(torch.random.get_rng_state(), state)  # never touches the global generator
    assert [s["i"] for s in seen] == list(range(6))
    assert all({"x", "i", "sigma", "sigma_hat", "denoised"} <= set(s) for s in seen)
    assert torch.equal(torch.stack([s["sigma"] for s in seen]), sigmas[:-1])
    assert len(draws) == (5 if name in ("ddpm", "euler_ancestral") else 0) and 0.0 not in draws


def test_callback_exceptions_propagate():
    def interrupt(info):
        raise InterruptedError

    for fn in SAMPLERS.values():
        with pytest.raises(InterruptedError):
            fn(gaussian_denoiser, torch.randn(1, 1, 2, 2), get_sigmas_karras(3, 0.1, 1.0), callback=interrupt)


def test_bad_sigmas_and_unknown_sampler():
    with pytest.raises(ValueError, match="descending"):
        SAMPLERS["euler"](gaussian_denoiser, torch.randn(1, 1, 2, 2), [1.0, 2.0, 0.0])
    assert get_sampler("dpmpp_2m") is SAMPLERS["dpmpp_2m"]
    assert set(SAMPLERS) == {"ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m"}
    with pytest.raises(ValueError, match="euler_ancestral"):
        get_sampler("heun")
