"""DiscreteVPDenoiser: eps / v formulas against direct DDPM-space formulas, timestep quantisation, variance split."""
import pytest
import torch

from cascade_core.denoisers import DiscreteVPDenoiser
from cascade_core.schedules import cosine_alphas_cumprod, scaled_linear_alphas_cumprod

C = 3


class RecordingNet:
    """Smooth fake network: tanh of a fixed 1x1 conv of x_t plus a t term; records its inputs."""

    def __init__(self, out_channels: int, dtype=torch.float32):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(out_channels, C, generator=g)
        self.dtype = dtype
        self.calls = []

    def __call__(self, x_t, t, **cond):
        self.calls.append((x_t.clone(), t.clone(), cond))
        h = torch.einsum("oc,bchw->bohw", self.w, x_t) + (t.float() / 1000).reshape(-1, 1, 1, 1)
        return torch.tanh(h).to(self.dtype)


def _inputs(table, t):
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(len(t), C, 4, 4, generator=g)
    a = table[t].double().reshape(-1, 1, 1, 1)
    sigma = ((1 - a) / a).sqrt()
    return x_t, a, sigma.reshape(-1).float(), (x_t.double() * (1 + sigma**2).sqrt()).float()


def test_eps_prediction_matches_ddpm_formula():
    table = cosine_alphas_cumprod()
    net = RecordingNet(C)
    den = DiscreteVPDenoiser(net, table)
    t = torch.tensor([999, 500, 37, 0])
    x_t, a, sigma, x = _inputs(table, t)
    denoised = den(x, sigma, text_embeds="kept")
    eps = net(x_t, t).double()
    expected = (x_t.double() - (1 - a).sqrt() * eps) / a.sqrt()  # Ho et al. eq. 15 in DDPM space
    torch.testing.assert_close(denoised.double(), expected, rtol=1e-5, atol=2e-5 * expected.abs().max().item())
    seen_x, seen_t, seen_cond = net.calls[0]
    assert seen_t.dtype == torch.long and torch.equal(seen_t, t)
    torch.testing.assert_close(seen_x, x_t, rtol=1e-6, atol=1e-6)
    assert seen_cond == {"text_embeds": "kept"}


def test_v_prediction_matches_ddpm_formula():
    table = scaled_linear_alphas_cumprod()
    net = RecordingNet(C)
    den = DiscreteVPDenoiser(net, table, prediction="v_prediction")
    t = torch.tensor([999, 600, 13, 1])
    x_t, a, sigma, x = _inputs(table, t)
    v = net(x_t, t).double()
    expected = a.sqrt() * x_t.double() - (1 - a).sqrt() * v  # Salimans & Ho 2022
    torch.testing.assert_close(den(x, sigma).double(), expected, rtol=1e-5, atol=1e-5)


def test_sigma_to_t_inverts_t_to_sigma_for_every_timestep():
    den = DiscreteVPDenoiser(RecordingNet(C), cosine_alphas_cumprod())
    t = torch.arange(1000)
    assert torch.equal(den.sigma_to_t(den.t_to_sigma(t)), t)
    assert torch.equal(den.t_to_sigma(t), den.sigmas)
    assert den.sigma_min == den.sigmas[0] and den.sigma_max == den.sigmas[-1]


def test_sigma_to_t_rounds_in_log_sigma():
    den = DiscreteVPDenoiser(RecordingNet(C), cosine_alphas_cumprod())
    log_s = den.sigmas.log()
    just_below_mid = ((0.49 * log_s[10] + 0.51 * log_s[11])).exp()
    just_above_mid = ((0.51 * log_s[10] + 0.49 * log_s[11])).exp()
    assert den.sigma_to_t(torch.stack([just_below_mid, just_above_mid])).tolist() == [11, 10]
    assert den.sigma_to_t(torch.tensor([1e9, 1e-9])).tolist() == [999, 0]
    halfway = den.t_to_sigma(torch.tensor([10.5]))
    torch.testing.assert_close(halfway, (den.sigmas[10] * den.sigmas[11]).sqrt().reshape(1), rtol=1e-6, atol=0)


def test_denoise_with_variance_splits_learned_range_channels():
    table = cosine_alphas_cumprod()
    net = RecordingNet(2 * C)
    den = DiscreteVPDenoiser(net, table, learned_variance=True)
    t = torch.tensor([400, 20])
    x_t, a, sigma, x = _inputs(table, t)
    denoised, variance = den.denoise_with_variance(x, sigma)
    out = net(x_t, t)
    torch.testing.assert_close(variance, out[:, C:], rtol=1e-6, atol=1e-6)
    expected = (x_t.double() - (1 - a).sqrt() * out[:, :C].double()) / a.sqrt()
    torch.testing.assert_close(denoised.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(den(x, sigma), denoised)  # calling it gives x0 alone, always a tensor


def test_no_learned_variance_returns_none_and_float32_from_bf16():
    den = DiscreteVPDenoiser(RecordingNet(C, dtype=torch.bfloat16), cosine_alphas_cumprod())
    x = torch.randn(2, C, 4, 4)
    denoised, variance = den.denoise_with_variance(x, torch.tensor([2.0, 0.5]))
    assert variance is None and denoised.dtype == torch.float32 and denoised.shape == x.shape


@pytest.mark.parametrize("out_channels, learned", [(C, True), (2 * C, False), (C + 1, False)])
def test_channel_mismatch_raises(out_channels, learned):
    den = DiscreteVPDenoiser(RecordingNet(out_channels), cosine_alphas_cumprod(), learned_variance=learned)
    with pytest.raises(ValueError, match="channels"):
        den(torch.randn(1, C, 4, 4), torch.tensor([1.0]))


def test_unknown_prediction_raises():
    with pytest.raises(ValueError, match="prediction"):
        DiscreteVPDenoiser(RecordingNet(C), cosine_alphas_cumprod(), prediction="sample")
