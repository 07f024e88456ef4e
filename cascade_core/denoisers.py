"""Adapters that turn a discrete-time VP network (eps or v, optional learned variance) into denoise(x, sigma).

Sigma space as in k-diffusion (Karras et al. 2022): x = x_t * sqrt(1 + sigma^2), sigma = sqrt((1 - ac) / ac).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .schedules import sigmas_from_alphas_cumprod

__all__ = ["PREDICTIONS", "DiscreteVPDenoiser"]

PREDICTIONS = ("epsilon", "v_prediction")
_PREDICTION_ALIASES = {"epsilon": "epsilon", "eps": "epsilon", "v_prediction": "v_prediction", "v": "v_prediction"}


class DiscreteVPDenoiser:
    """Discrete DDPM network -> x0 denoiser in sigma space (k-diffusion DiscreteEpsDDPMDenoiser / OpenAIDenoiser)."""

    def __init__(
        self,
        model: Callable[..., Tensor],
        alphas_cumprod: Tensor,
        *,
        prediction: str = "epsilon",
        learned_variance: bool = False,
    ) -> None:
        if prediction not in _PREDICTION_ALIASES:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.model = model
        self.prediction = _PREDICTION_ALIASES[prediction]
        self.learned_variance = bool(learned_variance)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> Tensor:
        """Smallest trained noise level (t = 0), scalar tensor."""
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        """Largest trained noise level (t = T-1), scalar tensor."""
        return self.sigmas[-1]

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Nearest integer timestep in log-sigma (IF UNets take integer t): sigma [B] -> t [B] long."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigmas = self.log_sigmas.to(sigma.device)
        distance = (sigma.log().reshape(-1, 1) - log_sigmas).abs()
        return distance.argmin(dim=1).reshape(sigma.shape)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Sigma of timestep t: the table at integers, log-linear between them (k-diffusion): t [B] -> sigma [B]."""
        t = torch.as_tensor(t, dtype=torch.float32)
        sigmas, log_sigmas = self.sigmas.to(t.device), self.log_sigmas.to(t.device)
        low = t.floor().long().clamp(0, len(log_sigmas) - 1)
        high = (low + 1).clamp(max=len(log_sigmas) - 1)
        w = t - low.to(t.dtype)
        between = ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()
        return torch.where(w == 0, sigmas[low], between)

    def _split(self, out: Tensor, channels: int) -> tuple[Tensor, Tensor | None]:
        """Split a [B, C or 2C, H, W] output into the prediction and the learned-range fraction (IF 6-channel)."""
        expected = 2 * channels if self.learned_variance else channels
        if out.shape[1] != expected:
            raise ValueError(
                f"model output has {out.shape[1]} channels but input x has {channels} and "
                f"learned_variance={self.learned_variance}: expected {expected} output channels"
            )
        if self.learned_variance:
            return out[:, :channels], out[:, channels:]
        return out, None

    def __call__(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        """x0 estimate (Karras et al. 2022 eq. 7 preconditioning, VP): x [B, C, H, W], sigma [B] -> [B, C, H, W]."""
        return self.denoise_with_variance(x, sigma, **cond)[0]

    def denoise_with_variance(self, x: Tensor, sigma: Tensor, **cond) -> tuple[Tensor, Tensor | None]:
        """``(x0 [B, C, H, W], learned-range fraction [B, C, H, W] or None)``: what the DDPM sampler needs."""
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma.numel() == 1 and x.shape[0] != 1:
            sigma = sigma.expand(x.shape[0])
        sigma_b = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        c_in = (1.0 + sigma_b**2).rsqrt()
        x_t = x * c_in
        out = self.model(x_t, self.sigma_to_t(sigma), **cond)
        prediction, variance = self._split(out.to(torch.float32), x.shape[1])
        if self.prediction == "epsilon":
            denoised = x - sigma_b * prediction
        else:
            denoised = c_in * x_t - sigma_b * c_in * prediction
        return denoised, variance


def denoise_with_variance(model: Callable, x: Tensor, sigma: Tensor, extra_args: dict) -> tuple[Tensor, Tensor | None]:
    """``model.denoise_with_variance(x, sigma, **extra_args)`` where the denoiser has learned variance to give
    (``DiscreteVPDenoiser``, ``CFGGuider``), else ``(model(x, sigma, **extra_args), None)``."""
    method = getattr(model, "denoise_with_variance", None)
    if method is not None:
        return method(x, sigma, **extra_args)
    return model(x, sigma, **extra_args), None


def denoise_pair(model: Callable, x: Tensor, sigma: Tensor, extra_args: dict,
                 with_variance: bool) -> tuple[Tensor, Tensor | None]:
    """``(x0, learned-range fraction or None)`` from ``model``: through :func:`denoise_with_variance` when the
    caller needs the variance, else a plain call with None (wrappers that serve both entry points use this)."""
    if with_variance:
        return denoise_with_variance(model, x, sigma, extra_args)
    return model(x, sigma, **extra_args), None
