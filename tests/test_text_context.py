"""The UNets' text work (projection, pooling, per-layer text k/v) runs once per sampling loop, with results equal to
the per-step path, and never outlives the loop, a changed text or a training step."""
from __future__ import annotations

import torch
from tiny_unets import MICRO_IF_I, MICRO_IF_II, MICRO_X4

from cascade_core.stage import run_sampler, stage_sigmas, unet_guider
from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from cascade_core.unet.text_context import reuse_text_context, text_work_per_step


def _unet(config: dict, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    unet = UNet(UNetConfig.from_diffusers_config(config)).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return unet


def _count_text_work(unet: UNet) -> dict:
    """Forward hooks counting calls of the text-only layers (projection and each attention's text k/v)."""
    counts = {"text": 0, "kv": 0}
    first = unet.encoder_hid_proj if hasattr(unet, "encoder_hid_proj") else None
    for m in unet.modules():
        if first is not None and m is first:
            m.register_forward_hook(lambda *a: counts.__setitem__("text", counts["text"] + 1))
        if hasattr(m, "add_k_proj"):
            m.add_k_proj.register_forward_hook(lambda *a: counts.__setitem__("kv", counts["kv"] + 1))
    return counts


def _sample(unet: UNet, steps: int = 4, *, batch: int = 2, size: int = 8, low_res: bool = False) -> torch.Tensor:
    text = torch.randn(1, 5, unet.config.text_dim, generator=torch.Generator().manual_seed(1))
    guider = unet_guider(unet, text, torch.zeros_like(text), 4.0)
    sigmas = stage_sigmas(guider.denoiser, steps)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, size, size, generator=g) * float(sigmas[0])
    extra = {}
    if low_res:
        extra = {"low_res": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
                 "noise_level": torch.full((batch,), 100, dtype=torch.long)}
    with torch.no_grad():
        return run_sampler(guider, x, sigmas, extra=extra, sampler="ddpm",
                           randn=lambda shape: torch.randn(shape, generator=g))


def test_text_work_runs_once_per_loop_and_matches_the_per_step_path():
    unet = _unet(MICRO_IF_I)
    counts = _count_text_work(unet)
    reused = _sample(unet, steps=4)
    layers = sum(hasattr(m, "add_k_proj") for m in unet.modules())
    assert counts == {"text": 1, "kv": layers}, counts  # once for 4 steps, not 4x
    with text_work_per_step():  # the plain path: each call builds a fresh context
        per_step = _sample(unet, steps=4)
    assert counts["text"] == 1 + 4
    torch.testing.assert_close(reused, per_step, rtol=0, atol=0)


def test_super_resolution_and_x4_reuse_too():
    sr = _unet(MICRO_IF_II)
    counts = _count_text_work(sr)
    _sample(sr, steps=3, size=16, low_res=True)
    assert counts["text"] == 1
    x4 = _unet(MICRO_X4)
    calls = []
    x4.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k.register_forward_hook(lambda *a: calls.append(1))
    text = torch.randn(2, 5, x4.config.cross_attention_dim)
    with torch.no_grad(), reuse_text_context():
        for _ in range(3):
            x4(torch.randn(2, 7, 8, 8), torch.tensor([5, 5]), text, torch.tensor([20, 20]))
    assert len(calls) == 1


def test_reuse_ends_with_the_scope_a_changed_text_or_gradients():
    unet = _unet(MICRO_IF_I)
    counts = _count_text_work(unet)
    text = torch.randn(2, 5, unet.config.text_dim)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 10])
    with torch.no_grad():
        with reuse_text_context():
            first = unet(x, t, text)
            unet(x, t, text)
            assert counts["text"] == 1
            text.mul_(2.0)  # modified in place: its version changes, the kept context is stale
            changed = unet(x, t, text)
            assert counts["text"] == 2 and not torch.equal(first, changed)
            unet(x, t, text.clone())  # another tensor with equal values: recomputed (identity, not values)
            assert counts["text"] == 3
        unet(x, t, text)  # outside the scope: always computed
        assert counts["text"] == 4
    with reuse_text_context():  # gradients on (training): never reused, so gradients reach the text layers
        unet(x, t, text).sum().backward()
        unet(x, t, text)
    assert counts["text"] == 6 and unet.encoder_hid_proj.weight.grad is not None
