"""Noise schedules as plain tensors: DDPM cumulative alphas and k-diffusion sigma arrays.

Conventions (k-diffusion "sigma space", Karras et al. 2022): for a VP model with cumulative
alphas ``ac``, ``sigma = sqrt((1 - ac) / ac)`` and the sampler state is ``x = x_t * sqrt(1 + sigma**2)``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "ALPHA_SCHEDULES",
    "alphas_cumprod_from_sigmas",
    "cosine_alphas_cumprod",
    "get_sigmas_karras",
    "linear_alphas_cumprod",
    "scaled_linear_alphas_cumprod",
    "sigmas_for_timesteps",
    "sigmas_from_alphas_cumprod",
]


def _cumprod_of_betas(betas: Tensor) -> Tensor:
    """Cumulative product of (1 - beta) in float32 (Ho et al. 2020, eq. 4): betas [T] -> alphas_cumprod [T]."""
    return torch.cumprod(1.0 - betas.to(torch.float32), dim=0)


def cosine_alphas_cumprod(num_train_timesteps: int = 1000) -> Tensor:
    """Cosine schedule, betas capped at 0.999 (Nichol & Dhariwal 2021, eq. 17; IF's squaredcos_cap_v2) -> [T]."""

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    T = num_train_timesteps
    betas = [min(1.0 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)]
    return _cumprod_of_betas(torch.tensor(betas, dtype=torch.float32))


def linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """Linear beta schedule (Ho et al. 2020, sec. 4) -> alphas_cumprod [T] float32."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    return _cumprod_of_betas(betas)


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """Linear-in-sqrt(beta) schedule (Rombach et al. 2022, latent diffusion) -> alphas_cumprod [T] float32."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    return _cumprod_of_betas(betas)


ALPHA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "cosine": cosine_alphas_cumprod,
    "squaredcos_cap_v2": cosine_alphas_cumprod,
    "scaled_linear": scaled_linear_alphas_cumprod,
    "linear": linear_alphas_cumprod,
}


def sigmas_from_alphas_cumprod(alphas_cumprod: Tensor) -> Tensor:
    """sigma = sqrt((1 - ac) / ac), computed in float64 (Karras et al. 2022, Table 1 VP): ac [T] -> sigmas [T] f32."""
    ac = torch.as_tensor(alphas_cumprod).to(torch.float64)
    return ((1.0 - ac) / ac).sqrt().to(torch.float32)


def alphas_cumprod_from_sigmas(sigmas: Tensor) -> Tensor:
    """Inverse of sigmas_from_alphas_cumprod: ac = 1 / (1 + sigma^2), float64 math: sigmas [N] -> ac [N] f32."""
    sigmas = torch.as_tensor(sigmas).to(torch.float64)
    return (1.0 / (1.0 + sigmas**2)).to(torch.float32)


def sigmas_for_timesteps(alphas_cumprod: Tensor, timesteps: Sequence[int]) -> Tensor:
    """Sigma of each integer timestep (descending) followed by 0, for sampling: ac [T], n steps -> sigmas [n+1]."""
    steps = [int(t) for t in timesteps]
    num_train = int(torch.as_tensor(alphas_cumprod).shape[0])
    if not steps:
        raise ValueError("timesteps must not be empty")
    if any(t < 0 or t >= num_train for t in steps):
        raise ValueError(f"timesteps must lie in [0, {num_train - 1}], got {steps}")
    if any(b >= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"timesteps must be strictly descending, got {steps}")
    table = sigmas_from_alphas_cumprod(alphas_cumprod)
    return torch.cat([table[torch.tensor(steps, dtype=torch.long)], table.new_zeros(1)])


def get_sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: torch.device | str = "cpu"
) -> Tensor:
    """Karras et al. (2022) eq. 5 noise levels, descending and ending in 0 -> sigmas [n+1] float32."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device=device, dtype=torch.float32)
