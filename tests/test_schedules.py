"""Noise schedules: exact equality with diffusers' DDPMScheduler tables, sigma conversions, Karras sigmas."""
import math

import pytest
import torch
from diffusers import DDPMScheduler

from cascade_core.schedules import (
    ALPHA_SCHEDULES,
    alphas_cumprod_from_sigmas,
    cosine_alphas_cumprod,
    get_sigmas_karras,
    linear_alphas_cumprod,
    scaled_linear_alphas_cumprod,
    sigmas_for_timesteps,
    sigmas_from_alphas_cumprod,
)


@pytest.mark.parametrize("num_train_timesteps", [1000, 500])
def test_cosine_equals_diffusers_exactly(num_train_timesteps):
    ref = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    ours = cosine_alphas_cumprod(num_train_timesteps)
    assert ours.dtype == torch.float32 and ours.shape == (num_train_timesteps,)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize(
    "name, fn", [("linear", linear_alphas_cumprod), ("scaled_linear", scaled_linear_alphas_cumprod)]
)
@pytest.mark.parametrize("beta_start, beta_end", [(1e-4, 0.02), (0.00085, 0.012)])
def test_linear_schedules_equal_diffusers_exactly(name, fn, beta_start, beta_end):
    ref = DDPMScheduler(beta_schedule=name, beta_start=beta_start, beta_end=beta_end).alphas_cumprod
    assert torch.equal(fn(1000, beta_start, beta_end), ref)


def test_registry_names_and_aliases():
    assert set(ALPHA_SCHEDULES) == {"cosine", "squaredcos_cap_v2", "scaled_linear", "linear"}
    assert torch.equal(ALPHA_SCHEDULES["cosine"](), ALPHA_SCHEDULES["squaredcos_cap_v2"]())
    ref = DDPMScheduler(beta_schedule="scaled_linear").alphas_cumprod
    assert torch.equal(ALPHA_SCHEDULES["scaled_linear"](), ref)


def test_sigma_conversion_analytic_values_and_roundtrip():
    ac = torch.tensor([0.5, 0.2, 0.8])
    expected = torch.tensor([1.0, 2.0, 0.5])  # sqrt((1 - a) / a)
    torch.testing.assert_close(sigmas_from_alphas_cumprod(ac), expected, rtol=1e-7, atol=0)
    table = cosine_alphas_cumprod()
    back = alphas_cumprod_from_sigmas(sigmas_from_alphas_cumprod(table))
    torch.testing.assert_close(back, table, rtol=2e-7, atol=0)


def test_sigmas_for_timesteps_monotone_with_trailing_zero():
    table = cosine_alphas_cumprod()
    steps = [999, 700, 400, 100, 0]
    sigmas = sigmas_for_timesteps(table, steps)
    assert sigmas.shape == (len(steps) + 1,) and sigmas.dtype == torch.float32
    assert sigmas[-1] == 0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    for sigma, t in zip(sigmas[:-1].tolist(), steps):
        a = table[t].double().item()
        assert math.isclose(sigma, math.sqrt((1 - a) / a), rel_tol=1e-6)


@pytest.mark.parametrize("steps", [[], [10, 10], [5, 9], [1000, 3], [3, -1]])
def test_sigmas_for_timesteps_rejects_bad_lists(steps):
    with pytest.raises(ValueError, match="timesteps"):
        sigmas_for_timesteps(cosine_alphas_cumprod(), steps)


def test_karras_sigmas_follow_eq5():
    n, sigma_min, sigma_max, rho = 9, 0.01, 80.0, 7.0
    sigmas = get_sigmas_karras(n, sigma_min, sigma_max, rho)
    assert sigmas.shape == (n + 1,) and sigmas[-1] == 0
    assert math.isclose(sigmas[0].item(), sigma_max, rel_tol=1e-6)
    assert math.isclose(sigmas[-2].item(), sigma_min, rel_tol=1e-6)
    middle = ((sigma_max ** (1 / rho) + sigma_min ** (1 / rho)) / 2) ** rho  # ramp = 1/2 at index 4 of 9
    assert math.isclose(sigmas[4].item(), middle, rel_tol=1e-6)
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    with pytest.raises(ValueError, match="sigma_min"):
        get_sigmas_karras(5, 2.0, 1.0)
