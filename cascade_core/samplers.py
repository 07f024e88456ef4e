"""Samplers with the k-diffusion signature: pure functions over a denoiser ``model(x, sigma, **extra) -> x0``.

State x lives in sigma space (x = x_t * sqrt(1 + sigma^2) for VP models). ``sigmas`` is descending; when its
last entry is > 0 the returned x is the state at that sigma. Every random draw goes through ``noise_sampler``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .denoisers import denoise_with_variance

__all__ = [
    "SAMPLERS",
    "get_ancestral_step",
    "get_sampler",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_euler_ancestral",
]

NoiseSampler = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], None]


def _setup(
    x: Tensor, sigmas: Tensor | Sequence[float], extra_args: dict | None, noise_sampler: NoiseSampler | None
) -> tuple[Tensor, dict, NoiseSampler, Tensor]:
    """Common argument handling: sigmas -> float32 1-D CPU tensor, defaults for extras and noise.

    Sigmas stay on the CPU so reading them as Python floats never waits for the GPU: the loop then
    queues GPU work ahead instead of synchronising every step.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    if sigmas.ndim != 1 or sigmas.numel() < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() > 1 and bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError(f"sigmas must be strictly descending, got {sigmas.tolist()}")
    if noise_sampler is None:

        def noise_sampler(sigma: Tensor, sigma_next: Tensor) -> Tensor:
            return torch.randn_like(x)

    return sigmas, dict(extra_args or {}), noise_sampler, x.new_ones([x.shape[0]])


def _report(callback: Callback | None, x: Tensor, i: int, sigma: Tensor, denoised: Tensor) -> None:
    """Send the per-step dict to the caller (progress, previews, interrupts); exceptions propagate."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def get_ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step into deterministic sigma_down and fresh noise sigma_up (k-diffusion; DDIM eq. 16 at eta)."""
    if not eta or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def _ancestral_loop(
    model: Callable, x: Tensor, sigmas: Tensor | Sequence[float], eta: float,
    extra_args: dict | None, callback: Callback | None, noise_sampler: NoiseSampler | None,
) -> Tensor:
    """x <- x0 + sigma_down * d + sigma_up * z per step, d = (x - x0) / sigma: x [B, C, H, W] -> x [B, C, H, W]."""
    sigmas, extra_args, noise_sampler, s_in = _setup(x, sigmas, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        _report(callback, x, i, sigma, denoised)
        sigma_down, sigma_up = get_ancestral_step(float(sigma), float(sigma_next), eta)
        d = (x - denoised) / sigma
        x = denoised + d * sigma_down
        if sigma_up > 0:
            x = x + noise_sampler(sigma, sigma_next) * sigma_up
    return x


def sample_euler(
    model: Callable, x: Tensor, sigmas: Tensor | Sequence[float], extra_args: dict | None = None,
    callback: Callback | None = None, disable: bool | None = None, noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Alg. 2 without churn): x [B, C, H, W].
    x + d (sigma_next - sigma) = x0 + d sigma_next: the ancestral update without noise, i.e. DDIM at eta 0, so the
    three share one loop."""
    return _ancestral_loop(model, x, sigmas, 0.0, extra_args, callback, noise_sampler)


def sample_euler_ancestral(
    model: Callable, x: Tensor, sigmas: Tensor | Sequence[float], extra_args: dict | None = None,
    callback: Callback | None = None, disable: bool | None = None, noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
) -> Tensor:
    """Ancestral Euler (k-diffusion sample_euler_ancestral; Song et al. 2021 reverse SDE): x [B, C, H, W]."""
    return _ancestral_loop(model, x, sigmas, eta, extra_args, callback, noise_sampler)


def sample_ddim(
    model: Callable, x: Tensor, sigmas: Tensor | Sequence[float], extra_args: dict | None = None,
    callback: Callback | None = None, disable: bool | None = None, noise_sampler: NoiseSampler | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12/16) in sigma space; its eta noise equals the ancestral split: x [B, C, H, W]."""
    # With ac = 1/(1+sigma^2), DDIM's std * sqrt(1 + sigma_next^2) is exactly get_ancestral_step's sigma_up.
    return _ancestral_loop(model, x, sigmas, eta, extra_args, callback, noise_sampler)


def _ddpm_step(
    x: Tensor, denoised: Tensor, v: Tensor | None, sigmas: Tensor, noise_sampler: NoiseSampler
) -> Tensor:
    """Posterior q(x_prev | x_t, x0) step, learned-range variance (Nichol & Dhariwal 2021, eq. 11-15); sigmas [2]."""
    sigma, sigma_next = float(sigmas[0]), float(sigmas[1])  # python floats: coefficients in float64
    ac_t, ac_prev = 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma_next**2)
    beta = 1.0 - ac_t / ac_prev
    x_t = x / math.sqrt(1.0 + sigma**2)
    coef_x0 = math.sqrt(ac_prev) * beta / (1.0 - ac_t)
    coef_xt = math.sqrt(1.0 - beta) * (1.0 - ac_prev) / (1.0 - ac_t)
    x_prev = coef_x0 * denoised + coef_xt * x_t
    if sigma_next > 0:
        log_small = math.log(max((1.0 - ac_prev) / (1.0 - ac_t) * beta, 1e-20))
        if v is None:
            std = math.exp(0.5 * log_small)
        else:
            frac = (v.to(torch.float32) + 1) / 2
            std = torch.exp(0.5 * (frac * math.log(beta) + (1 - frac) * log_small))
        x_prev = x_prev + std * noise_sampler(sigmas[0], sigmas[1])
    return x_prev * math.sqrt(1.0 + sigma_next**2)


def sample_ddpm(
    model: Callable, x: Tensor, sigmas: Tensor | Sequence[float], extra_args: dict | None = None,
    callback: Callback | None = None, disable: bool | None = None, noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DDPM ancestral sampling, IF learned-range variance (Ho et al. 2020; Nichol & Dhariwal 2021): x [B,C,H,W]."""
    sigmas, extra_args, noise_sampler, s_in = _setup(x, sigmas, extra_args, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised, v = denoise_with_variance(model, x, sigma * s_in, extra_args)
        _report(callback, x, i, sigma, denoised)
        x = _ddpm_step(x, denoised, v, sigmas[i : i + 2], noise_sampler)
    return x


def sample_dpmpp_2m(
    model: Callable, x: Tensor, sigmas: Tensor | Sequence[float], extra_args: dict | None = None,
    callback: Callback | None = None, disable: bool | None = None, noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DPM-Solver++(2M), multistep data prediction in lambda = -log sigma (Lu et al. 2022, Alg. 2): x [B,C,H,W]."""
    sigmas, extra_args, _, s_in = _setup(x, sigmas, extra_args, noise_sampler)
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        _report(callback, x, i, sigma, denoised)
        if float(sigma_next) == 0:
            x = denoised
        else:
            h = math.log(float(sigma)) - math.log(float(sigma_next))
            if old_denoised is None:
                denoised_d = denoised
            else:
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (float(sigma_next) / float(sigma)) * x - math.expm1(-h) * denoised_d
            h_last = h
        old_denoised = denoised
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "dpmpp_2m": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """Look up a sampler function by name in SAMPLERS."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
