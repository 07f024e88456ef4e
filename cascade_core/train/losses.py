"""Training objectives of the cascade UNets: plain MSE, and IF's learned-variance hybrid objective, for
epsilon- or v-prediction networks.

The hybrid objective is Nichol & Dhariwal 2021 ("Improved DDPM", eq. 16): ``L_simple + L_vlb``, where the
variational bound term trains only the variance half of the output (the epsilon half is detached for it, so
the mean is trained by ``L_simple`` alone). The variance parameterisation is the one the pack's ``ddpm``
sampler reads (:func:`cascade_core.samplers`): ``v`` in [-1, 1] interpolates log beta_t and log beta~_t.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LOSSES", "epsilon_loss", "learned_variance_loss", "normal_kl", "discretized_gaussian_nll",
           "prediction_target", "epsilon_from"]


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_nll(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """-log p(x) of images in [-1, 1] quantised to 256 levels under N(mean, e^(2 log_scale)), elementwise (nats)."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    log_probs = torch.where(x < -0.999, log_cdf_plus,
                            torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))
    return -log_probs


def _per_sample_mean(x: Tensor) -> Tensor:
    return x.flatten(1).mean(dim=1)


def _ac(alphas_cumprod: Tensor, t: Tensor, device) -> Tensor:
    return alphas_cumprod.to(device, torch.float32)[t].reshape(-1, 1, 1, 1)


def prediction_target(prediction: str, noise: Tensor, x0: Tensor, ac_t: Tensor) -> Tensor:
    """What the network is trained to output: the noise (``epsilon``) or v = sqrt(abar) eps - sqrt(1 - abar) x0
    (``v_prediction``, Salimans & Ho 2022); all [B, C, H, W], ``ac_t`` [B, 1, 1, 1]."""
    if prediction == "epsilon":
        return noise
    return ac_t.sqrt() * noise - (1 - ac_t).sqrt() * x0


def epsilon_from(prediction: str, pred: Tensor, x_t: Tensor, ac_t: Tensor) -> Tensor:
    """The noise estimate a prediction implies (v: eps = sqrt(abar) v + sqrt(1 - abar) x_t)."""
    if prediction == "epsilon":
        return pred
    return ac_t.sqrt() * pred + (1 - ac_t).sqrt() * x_t


def epsilon_loss(output: Tensor, noise: Tensor, *, x0: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor,
                 prediction: str = "epsilon") -> Tensor:
    """Mean squared error of the prediction (first C channels of output [B, C or 2C, H, W]) against its target
    -> per-sample loss [B]."""
    del x_t
    target = prediction_target(prediction, noise, x0, _ac(alphas_cumprod, t, x0.device))
    return _per_sample_mean((output[:, :noise.shape[1]].float() - target) ** 2)


def learned_variance_loss(output: Tensor, noise: Tensor, *, x0: Tensor, x_t: Tensor, t: Tensor,
                          alphas_cumprod: Tensor, prediction: str = "epsilon") -> Tensor:
    """IF's hybrid objective: prediction MSE + variational bound on the variance half -> per-sample loss [B].

    output [B, 2C, H, W] (epsilon or v, then the variance fraction in [-1, 1]), noise / x0 / x_t [B, C, H, W],
    t [B] integer timesteps. The bound is in bits per dimension (as Improved DDPM), the decoder NLL at t = 0.
    """
    c = noise.shape[1]
    pred, v = output[:, :c].float(), output[:, c:].float()
    ac = alphas_cumprod.to(x0.device, torch.float32)
    shape = (-1, 1, 1, 1)
    ac_t = ac[t].reshape(shape)
    mse = _per_sample_mean((pred - prediction_target(prediction, noise, x0, ac_t)) ** 2)
    eps = epsilon_from(prediction, pred, x_t, ac_t)
    ac_prev = torch.where(t > 0, ac[(t - 1).clamp(min=0)], torch.ones_like(ac[t])).reshape(shape)
    beta = 1.0 - ac_t / ac_prev
    post_var = (1.0 - ac_prev) / (1.0 - ac_t) * beta
    # the posterior variance is 0 at t = 0: use the t = 1 value there (as Improved DDPM clips it)
    post_var_1 = ((1.0 - ac[0]) / (1.0 - ac[1]) * (1.0 - ac[1] / ac[0])).clamp(min=1e-20)
    log_post = torch.log(torch.where(t.reshape(shape) > 0, post_var, post_var_1).clamp(min=1e-20))
    coef_x0 = ac_prev.sqrt() * beta / (1.0 - ac_t)
    coef_xt = (1.0 - beta).sqrt() * (1.0 - ac_prev) / (1.0 - ac_t)
    true_mean = coef_x0 * x0 + coef_xt * x_t
    frac = (v + 1.0) / 2.0
    model_logvar = frac * torch.log(beta.clamp(min=1e-20)) + (1.0 - frac) * log_post
    x0_pred = (x_t - (1.0 - ac_t).sqrt() * eps.detach()) / ac_t.sqrt()
    model_mean = coef_x0 * x0_pred + coef_xt * x_t
    kl = _per_sample_mean(normal_kl(true_mean, log_post, model_mean, model_logvar)) / math.log(2.0)
    nll = _per_sample_mean(discretized_gaussian_nll(x0, model_mean, 0.5 * model_logvar)) / math.log(2.0)
    vb = torch.where(t == 0, nll, kl)
    return mse + vb


LOSSES = {"learned_variance": learned_variance_loss, "epsilon": epsilon_loss}
