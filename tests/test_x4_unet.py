"""The SD x4 UNet family (DownBlock2D, CrossAttn* + Transformer2D, class-embedding noise level) equals diffusers."""
import pytest
import torch

from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from cascade_core.unet.presets import PRESETS
from tiny_unets import CONFIGS, MICRO_X4, TINY_X4, diffusers_unet

diffusers = pytest.importorskip("diffusers")


def _pair(cfg):
    ref = diffusers_unet(cfg)
    ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _max_diff(ref, ours, cfg, size, tokens=77):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cfg["in_channels"], *size, generator=g)
    text = torch.randn(2, tokens, cfg["cross_attention_dim"], generator=g)
    t, noise = torch.tensor([999, 17]), torch.tensor([350, 20])
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=text, class_labels=noise).sample
        got = ours(x, t, text, noise)
    assert got.shape == expected.shape == (2, cfg["out_channels"], *size)
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("name", ["x4", "micro_x4", "x4_conv_proj"])
def test_forward_matches_diffusers(name):
    cfg = CONFIGS[name]
    ref, ours = _pair(cfg)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert _max_diff(ref, ours, cfg, (16, 16)) < 1e-4


@pytest.mark.parametrize("size", [(10, 14), (12, 20)])
def test_sizes_not_divisible_follow_diffusers_upsample_size(size):
    """Conv resamplers accept any size: odd skips make the upsamplers resize to them, as in diffusers."""
    ref, ours = _pair(MICRO_X4)
    assert ours.config.size_multiple == 1
    assert _max_diff(ref, ours, MICRO_X4, size, tokens=7) < 1e-4


def test_every_attention_uses_sdpa(monkeypatch):
    """All stage-III attention goes through SDPA (no materialised score matrix)."""
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append(q.shape)
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    _, ours = _pair(MICRO_X4)
    with torch.no_grad():
        ours(torch.randn(1, 7, 8, 8), 10, torch.randn(1, 77, 16), torch.tensor([100]))
    # (attn1, attn2) x transformer blocks: down 1 + 1, up 2 + 2 (layers_per_block + 1), mid 1
    assert len(calls) == 2 * (2 + 4 + 1)


def test_real_x4_config_on_meta_matches_published_size():
    """473.4 M parameters (IF spec §1.7), same keys and shapes as diffusers' UNet2DConditionModel."""
    config = UNetConfig.from_diffusers_config(PRESETS["SD-x4-upscaler"])
    with torch.device("meta"):
        ours = UNet(config)
        ref = diffusers.UNet2DConditionModel(**PRESETS["SD-x4-upscaler"])
    assert sum(p.numel() for p in ours.parameters()) == 473_398_020
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert config.attention_head_dim == (8, 8, 8, 8) and config.only_cross_attention == (True, True, True, False)


@pytest.mark.parametrize("change,match", [
    (dict(attention_head_dim=5), "not divisible by attention_head_dim=5"),
    (dict(transformer_layers_per_block=[1, 0, 1]), "transformer_layers_per_block"),
    (dict(transformer_layers_per_block=[1, 2]), "transformer_layers_per_block has 2 entries"),
])
def test_bad_x4_configs_are_named(change, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig.from_diffusers_config(dict(TINY_X4, **change))


def test_x4_unet_input_checks():
    _, ours = _pair(MICRO_X4)
    with pytest.raises(ValueError, match="noise_level"):
        ours(torch.zeros(1, 7, 8, 8), 10, torch.zeros(1, 77, 16))
    with pytest.raises(ValueError, match=r"\[B, L, 16\]"):
        ours(torch.zeros(1, 7, 8, 8), 10, torch.zeros(1, 77, 4096), torch.tensor([100]))
