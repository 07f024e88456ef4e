"""CFGGuider (one batched call, [uncond, cond] order, linear in scale, cond-half variance) and DynamicThreshold."""
import pytest
import torch
from diffusers import DDPMScheduler

from cascade_core.guidance import CFGGuider, DynamicThreshold

B, C, L, D = 2, 3, 5, 8


class RecordingDenoiser:
    """Fake denoiser whose x0 and variance depend on x, sigma and the text embeddings; records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, *, text_embeds=None, **extra):
        return self.denoise_with_variance(x, sigma, text_embeds=text_embeds, **extra)[0]

    def denoise_with_variance(self, x, sigma, *, text_embeds=None, **extra):
        self.calls.append({"x": x, "sigma": sigma, "text_embeds": text_embeds, **extra})
        bias = text_embeds.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        denoised = torch.tanh(x) / (1 + sigma.reshape(-1, 1, 1, 1)) + bias
        return denoised, torch.tanh(bias * 10).expand_as(x)


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, C, 4, 4, generator=g), torch.tensor([3.0, 0.5]),
            torch.randn(B, L, D, generator=g), torch.randn(B, L, D, generator=g))


def test_scale_one_makes_a_single_cond_call(data):
    x, sigma, pos, _ = data
    inner = RecordingDenoiser()
    out = CFGGuider(inner, pos, None, scale=1.0)(x, sigma)
    assert len(inner.calls) == 1
    call = inner.calls[0]
    assert call["x"].shape[0] == B and torch.equal(call["text_embeds"], pos)
    assert torch.equal(out, RecordingDenoiser()(x, sigma, text_embeds=pos))


def test_cfg_batches_uncond_then_cond_in_one_call(data):
    x, sigma, pos, neg = data
    inner = RecordingDenoiser()
    low_res, label = torch.randn(B, C, 2, 2), torch.tensor([250, 250])
    shared = torch.randn(7, 2)
    CFGGuider(inner, pos, neg, scale=4.0)(x, sigma, low_res=low_res, class_labels=label, shared=shared, flag="on")
    assert len(inner.calls) == 1
    call = inner.calls[0]
    assert torch.equal(call["x"], torch.cat([x, x])) and torch.equal(call["sigma"], torch.cat([sigma, sigma]))
    assert torch.equal(call["text_embeds"], torch.cat([neg, pos]))
    assert torch.equal(call["low_res"], torch.cat([low_res, low_res]))
    assert torch.equal(call["class_labels"], torch.cat([label, label]))
    assert call["shared"] is shared and call["flag"] == "on"


def test_result_is_u_plus_scale_times_c_minus_u(data):
    x, sigma, pos, neg = data
    ref = RecordingDenoiser()
    u, c = ref(x, sigma, text_embeds=neg), ref(x, sigma, text_embeds=pos)
    outs = {}
    for scale in (0.0, 2.5, 7.0):
        outs[scale] = CFGGuider(RecordingDenoiser(), pos, neg, scale=scale)(x, sigma)
        torch.testing.assert_close(outs[scale], u + scale * (c - u), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outs[0.0], u, rtol=0, atol=0)
    # linear in scale: the 2.5 point lies on the line through 0 and 7
    torch.testing.assert_close(outs[2.5], outs[0.0] + 2.5 / 7.0 * (outs[7.0] - outs[0.0]), rtol=1e-5, atol=1e-5)


def test_variance_comes_from_the_cond_half(data):
    x, sigma, pos, neg = data
    _, cond_var = RecordingDenoiser().denoise_with_variance(x, sigma, text_embeds=pos)
    _, uncond_var = RecordingDenoiser().denoise_with_variance(x, sigma, text_embeds=neg)
    assert not torch.allclose(cond_var, uncond_var)
    denoised, variance = CFGGuider(RecordingDenoiser(), pos, neg, scale=5.0).denoise_with_variance(x, sigma)
    assert torch.equal(variance, cond_var) and denoised.shape == x.shape
    assert torch.equal(CFGGuider(RecordingDenoiser(), pos, neg, scale=5.0)(x, sigma), denoised)
    _, variance_1 = CFGGuider(RecordingDenoiser(), pos, None, scale=1.0).denoise_with_variance(x, sigma)
    assert torch.equal(variance_1, cond_var)


def test_post_cfg_runs_in_order_also_at_scale_one(data):
    x, sigma, pos, neg = data
    order = []

    def first(denoised, x_, sigma_):
        order.append("first")
        assert x_ is x and sigma_ is sigma
        return denoised * 2

    def second(denoised, x_, sigma_):
        order.append("second")
        return denoised + 1

    for scale, negative in ((1.0, None), (3.0, neg)):
        order.clear()
        guider = CFGGuider(RecordingDenoiser(), pos, negative, scale=scale, post_cfg=[first, second])
        plain = CFGGuider(RecordingDenoiser(), pos, negative, scale=scale)
        assert order == [] and torch.equal(guider(x, sigma), plain(x, sigma) * 2 + 1)
        assert order == ["first", "second"]


def test_batch_one_embeddings_broadcast(data):
    x, sigma, pos, neg = data
    inner = RecordingDenoiser()
    CFGGuider(inner, pos[:1], neg[:1], scale=2.0)(x, sigma)
    assert torch.equal(inner.calls[0]["text_embeds"], torch.cat([neg[:1].expand(B, L, D), pos[:1].expand(B, L, D)]))


def test_embedding_errors(data):
    x, sigma, pos, neg = data
    with pytest.raises(ValueError, match='""'):
        CFGGuider(RecordingDenoiser(), pos, None, scale=7.0)
    with pytest.raises(ValueError, match="token length"):
        CFGGuider(RecordingDenoiser(), pos, neg[:, :3], scale=7.0)
    with pytest.raises(ValueError, match="positive batch 2 and negative batch 3"):
        CFGGuider(RecordingDenoiser(), pos, torch.randn(3, L, D), scale=7.0)
    guider = CFGGuider(RecordingDenoiser(), torch.randn(3, L, D), torch.randn(3, L, D), scale=7.0)
    with pytest.raises(ValueError, match="positive embeddings have batch 3"):
        guider(x, sigma)


def test_exposes_inner_denoiser_and_propagates_errors(data):
    x, sigma, pos, neg = data
    inner = RecordingDenoiser()
    assert CFGGuider(inner, pos, neg).denoiser is inner

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        CFGGuider(broken, pos, neg)(x, sigma)


@pytest.mark.parametrize("ratio, max_value", [(0.95, 1.5), (0.95, 1.0), (0.8, 3.0), (1.0, 2.0)])
def test_dynamic_threshold_equals_diffusers(ratio, max_value):
    scheduler = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value)
    g = torch.Generator().manual_seed(0)
    # per-sample magnitudes below 1, between 1 and max_value, and above max_value
    x0 = torch.randn(3, C, 8, 8, generator=g) * torch.tensor([0.3, 0.9, 4.0]).reshape(3, 1, 1, 1)
    ours = DynamicThreshold(ratio, max_value)(x0, x0, torch.ones(3))
    assert torch.equal(ours, scheduler._threshold_sample(x0))
    assert ours.abs().max() <= 1.0


def test_dynamic_threshold_keeps_dtype_and_validates():
    x0 = (torch.randn(2, C, 4, 4) * 3).to(torch.bfloat16)
    out = DynamicThreshold()(x0, x0, torch.ones(2))
    assert out.dtype == torch.bfloat16 and out.float().abs().max() <= 1.0
    with pytest.raises(ValueError, match="percentile"):
        DynamicThreshold(percentile=0.0)
    with pytest.raises(ValueError, match="max_value"):
        DynamicThreshold(max_value=0.5)
    with pytest.raises(AttributeError):
        DynamicThreshold().percentile = 0.5  # frozen
