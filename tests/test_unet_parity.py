"""Our UNet equals diffusers' UNet2DConditionModel at fp32 on tiny configs covering every IF block path."""
import pytest
import torch

from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from tiny_unets import CONFIGS, diffusers_unet

pytest.importorskip("diffusers")


def _inputs(cfg: dict, batch: int = 2, tokens: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    size = cfg["sample_size"]
    x = torch.randn(batch, cfg["in_channels"], size, size, generator=g)
    text = torch.randn(batch, tokens, cfg["encoder_hid_dim"], generator=g)
    t = torch.tensor([999, 17][:batch])
    noise = torch.tensor([250, 20][:batch]) if cfg.get("class_embed_type") else None
    return x, t, text, noise


def _ours_from(ref) -> UNet:
    ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config))).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    return ours


@pytest.mark.parametrize("name", ["if_i", "if_ii", "if_ii_onlycross", "micro_if_i", "micro_if_ii"])
def test_forward_matches_diffusers(name):
    cfg = CONFIGS[name]
    ref = diffusers_unet(cfg)
    ours = _ours_from(ref)
    x, t, text, noise = _inputs(cfg)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=text, class_labels=noise).sample
        got = ours(x, t, text, noise)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


def test_same_keys_and_shapes_as_diffusers():
    for cfg in CONFIGS.values():
        ref = diffusers_unet(cfg)
        ours = UNet(UNetConfig.from_diffusers_config(dict(ref.config)))
        ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert our_shapes == ref_shapes


@pytest.mark.parametrize("name", ["if_i", "if_ii_onlycross"])
def test_long_text_context_matches_diffusers(name):
    """Long-prompt mode feeds 154 tokens: both IF attention kinds accept any context length."""
    cfg = CONFIGS[name]
    ref = diffusers_unet(cfg)
    ours = _ours_from(ref)
    x, t, text, noise = _inputs(cfg, tokens=154)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=text, class_labels=noise).sample
        got = ours(x, t, text, noise)
    assert (got - expected).abs().max().item() < 1e-4


def test_scalar_timestep_and_non_square():
    cfg = CONFIGS["micro_if_i"]
    ref = diffusers_unet(cfg)
    ours = _ours_from(ref)
    x = torch.randn(2, 3, 8, 16)
    text = torch.randn(2, 5, 16)
    with torch.no_grad():
        expected = ref(x, torch.tensor(500), encoder_hidden_states=text).sample
        got = ours(x, 500, text)
    assert (got - expected).abs().max().item() < 1e-4
