"""fp8 weight storage for the UNets (``load_unet(weight_dtype=torch.float8_e4m3fn)``) and the one loading path."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from cascade_core.unet.config import UNetConfig
from cascade_core.unet.loading import load_unet
from cascade_core.unet.ops import CAST_OPS
from tiny_unets import MICRO_IF_I, MICRO_IF_II, diffusers_unet

E4M3 = torch.float8_e4m3fn


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp8")
    diffusers_unet(MICRO_IF_I).save_pretrained(root / "base")
    diffusers_unet(MICRO_IF_II, seed=1).save_pretrained(root / "sr")
    return root


def _forward(unet, dtype=torch.float32) -> torch.Tensor:
    c = unet.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c.in_channels, 16, 16, generator=g)
    text = torch.randn(2, 5, c.text_dim, generator=g)
    noise = torch.tensor([20, 300]) if c.is_super_resolution else None
    with torch.inference_mode():
        return unet(x.to(dtype), torch.tensor([10.0, 700.0]), text.to(dtype), noise).float()


@pytest.mark.parametrize("name", ["base", "sr"])
def test_fp8_storage_is_exactly_the_rounded_weights(repos, name):
    ref = load_unet(repos / name, device="cpu", dtype=torch.float32)
    fp8 = load_unet(repos / name, device="cpu", dtype=torch.float32, weight_dtype=E4M3)
    layers = [m for m in fp8.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers and all(m.weight.dtype == E4M3 and type(m) in (CAST_OPS.Linear, CAST_OPS.Conv2d) for m in layers)
    assert all(m.bias is None or m.bias.dtype == torch.float32 for m in layers)
    assert fp8.dtype == torch.float32 and fp8.compute_dtype == torch.float32
    # the same model with its Linear/Conv2d weights rounded to fp8 and back computes the very same thing
    for m in ref.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.data = m.weight.data.to(E4M3).float()
    assert torch.allclose(_forward(fp8), _forward(ref), rtol=1e-5, atol=1e-6)


def test_fp8_bytes_and_error_against_full_precision(repos):
    ref = load_unet(repos / "base", device="cpu", dtype=torch.float32)
    fp8 = load_unet(repos / "base", device="cpu", dtype=torch.bfloat16, weight_dtype=E4M3)
    nbytes = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    bf16 = load_unet(repos / "base", device="cpu", dtype=torch.bfloat16)
    assert nbytes(fp8) < 0.6 * nbytes(bf16)
    want = _forward(ref)
    got = _forward(fp8, torch.bfloat16)
    assert fp8.dtype == torch.bfloat16
    assert (got - want).norm() / want.norm() < 0.15


def test_unsupported_weight_dtype_is_named(repos):
    with pytest.raises(ValueError, match="weight_dtype"):
        load_unet(repos / "base", device="cpu", dtype=torch.float32, weight_dtype=torch.float16)


def test_single_file_reads_each_header_once(repos, tmp_path, monkeypatch):
    from cascade_core import weights
    from cascade_core.unet.loading import save_single_file

    path = tmp_path / "unet.safetensors"
    save_single_file(load_unet(repos / "base", device="cpu"), path)
    calls = []
    real = weights._parse_header
    monkeypatch.setattr(weights, "_parse_header", lambda p: calls.append(p) or real(p))
    load_unet(path, device="cpu")
    assert calls == [path]  # config inference, metadata and the strict check share one read


def test_config_defaults_are_diffusers_defaults():
    """One set of defaults: a key a config.json leaves out means the same here as in diffusers."""
    from diffusers import UNet2DConditionModel

    theirs = {k: p.default for k, p in inspect.signature(UNet2DConditionModel.__init__).parameters.items()
              if p.default is not inspect.Parameter.empty}
    ours = UNetConfig()
    for field in ("in_channels", "out_channels", "act_fn", "mid_block_type", "resnet_time_scale_shift",
                  "cross_attention_norm", "norm_num_groups", "norm_eps", "cross_attention_dim", "flip_sin_to_cos",
                  "freq_shift", "resnet_out_scale_factor", "addition_embed_type_num_heads", "sample_size"):
        assert getattr(ours, field) == theirs[field], field
    for field in ("down_block_types", "up_block_types", "block_out_channels"):
        assert getattr(ours, field) == tuple(theirs[field]), field
    assert ours.layers_per_block == (theirs["layers_per_block"],) * 4
    assert ours.attention_head_dim == (theirs["attention_head_dim"],) * 4


def test_converting_a_loaded_model_equals_loading_in_fp8(repos):
    from cascade_core.unet.ops import store_weights_in

    loaded = load_unet(repos / "sr", device="cpu", dtype=torch.float32, weight_dtype=E4M3)
    converted = store_weights_in(load_unet(repos / "sr", device="cpu", dtype=torch.float32), E4M3, torch.float32)
    assert torch.equal(_forward(converted), _forward(loaded))


def test_cascade_with_fp8_weights():
    """Cascade(weight_dtype=fp8) stores the UNets' and T5's large weights in fp8 and samples close to fp32."""
    from _demo_models import require_demo

    from cascade_core.cascade import Cascade

    demo = require_demo("t5", "base64")
    full = Cascade(demo / "t5", demo / "base64", policy="keep", device="cpu")
    fp8 = Cascade(demo / "t5", demo / "base64", policy="keep", device="cpu", weight_dtype=E4M3)
    assert {m.weight.dtype for m in fp8.base.modules() if isinstance(m, nn.Linear)} == {E4M3}
    want = full("a large red circle on the left, on a white background", steps=6)[64]
    got = fp8("a large red circle on the left, on a white background", steps=6)[64]
    assert got.shape == want.shape and (got - want).abs().mean() < 0.1
