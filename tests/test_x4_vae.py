"""The x4 VAE decoder equals diffusers' ``AutoencoderKL.decode``; decoder-only, legacy-name, strict loading."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from cascade_core.upscaler.loading import load_upscaler
from cascade_core.upscaler.vae import VAEConfig, VAEDecoder, vae_key
from cascade_core.weights import WeightFileError
from tiny_unets import perturb_
from tiny_x4 import MICRO_VAE

diffusers = pytest.importorskip("diffusers")

TWO_LEVEL = dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8, latent_channels=4,
                 scaling_factor=0.08333)


def _decoder_from(ref) -> VAEDecoder:
    ours = VAEDecoder(VAEConfig.from_diffusers_config(dict(ref.config))).eval()
    state = {vae_key(k): v for k, v in ref.state_dict().items() if vae_key(k) is not None}
    ours.load_state_dict(state, strict=True)
    return ours


@pytest.mark.parametrize("cfg", [TWO_LEVEL, MICRO_VAE, dict(MICRO_VAE, mid_block_add_attention=False)])
def test_decode_matches_diffusers(cfg):
    torch.manual_seed(0)
    ref = perturb_(diffusers.AutoencoderKL(**cfg), 1)
    ours = _decoder_from(ref)
    z = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = ref.decode(z).sample, ours(z)
    factor = 2 ** (len(cfg["block_out_channels"]) - 1)
    assert got.shape == expected.shape == (2, 3, 8 * factor, 12 * factor)
    assert (got - expected).abs().max().item() < 1e-4


def test_query_chunking_of_large_attention_is_exact(monkeypatch):
    """Huge token counts (65k in the x4 mid attention) run SDPA on query chunks; the result is unchanged."""
    from cascade_core.unet import attention

    torch.manual_seed(0)
    ref = perturb_(diffusers.AutoencoderKL(**TWO_LEVEL), 1)
    ours = _decoder_from(ref)
    z = torch.randn(1, 4, 12, 10, generator=torch.Generator().manual_seed(2))
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(attention, "MAX_SCORES_PER_CALL", 120 * 16)  # 120 tokens -> chunks of 16 queries
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, *a, **k: calls.append(q.shape[2]) or real(q, *a, **k))
    with torch.no_grad():
        assert (ours(z) - ref.decode(z).sample).abs().max().item() < 1e-4
    assert calls[:8] == [16] * 7 + [8]


def test_real_x4_vae_decoder_size_on_meta():
    """Decoder + post_quant_conv of the x4 VAE: 33.0 M parameters (IF spec §1.7), diffusers' names and shapes."""
    cfg = dict(block_out_channels=[128, 256, 512], down_block_types=["DownEncoderBlock2D"] * 3,
               up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=2, latent_channels=4, norm_num_groups=32,
               scaling_factor=0.08333)
    with torch.device("meta"):
        ours = VAEDecoder(VAEConfig.from_diffusers_config(cfg))
        ref = diffusers.AutoencoderKL(**cfg)
    expected = {k: v.shape for k, v in ref.state_dict().items() if vae_key(k) is not None}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    count = sum(p.numel() for p in ours.parameters())
    assert count == 32_965_399 and round(count / 1e6, 1) == 33.0
    assert ours.config.upscale_factor == 4


def _copy(repo, tmp_path):
    shutil.copytree(repo, tmp_path / "repo")
    return tmp_path / "repo", tmp_path / "repo" / "vae" / "diffusion_pytorch_model.safetensors"


def test_legacy_attention_names_and_encoder_ignored(x4_repo, tmp_path):
    pipe, repo = x4_repo
    root, weights = _copy(repo, tmp_path)
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {}
    for k, v in load_file(str(weights)).items():
        for new, old in legacy.items():
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        state[k] = v
    assert any(".query." in k for k in state) and any(k.startswith("encoder.") for k in state)
    save_file(state, str(weights))
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = load_upscaler(root, device="cpu", dtype=torch.float32).decode(z)
        assert (got - pipe.vae.decode(z).sample).abs().max().item() < 1e-4


@pytest.mark.parametrize("edit,match", [("drop", "1 missing keys"), ("add", "1 unexpected keys"),
                                        ("shape", "shape mismatches")])
def test_decoder_keys_checked_strictly(x4_repo, tmp_path, edit, match):
    _, repo = x4_repo
    root, weights = _copy(repo, tmp_path)
    state = load_file(str(weights))
    if edit == "drop":
        del state["decoder.conv_out.bias"]
    elif edit == "add":
        state["decoder.extra_block.weight"] = torch.zeros(3)
    else:
        state["post_quant_conv.weight"] = torch.zeros(4, 4, 3, 3)
    save_file(state, str(weights))
    with pytest.raises(WeightFileError, match=match):
        load_upscaler(root, device="cpu", dtype=torch.float32)
