"""load_unet: every layout users have, loaded strictly, equal to diffusers' model."""
import json

import pytest
import torch
from safetensors.torch import save_file

from cascade_core.unet.loading import load_unet, save_single_file
from cascade_core.weights import WeightFileError
from tiny_unets import FILE_IF_I, FILE_IF_II, FILE_IF_II_ONLYCROSS, MICRO_IF_I, MICRO_IF_II, diffusers_unet

pytest.importorskip("diffusers")


def _check_equal(ours, ref, cfg, atol=1e-4):
    g = torch.Generator().manual_seed(3)
    s = cfg["sample_size"]
    x = torch.randn(2, cfg["in_channels"], s, s, generator=g)
    text = torch.randn(2, 5, cfg["encoder_hid_dim"], generator=g)
    nl = torch.tensor([100, 300]) if cfg.get("class_embed_type") else None
    with torch.no_grad():
        expected = ref(x, torch.tensor([10, 900]), encoder_hidden_states=text, class_labels=nl).sample
        got = ours(x, torch.tensor([10, 900]), text, nl)
    assert (got.float() - expected).abs().max().item() < atol


@pytest.mark.parametrize("cfg", [MICRO_IF_I, MICRO_IF_II])
def test_diffusers_folder(tmp_path, cfg):
    ref = diffusers_unet(cfg)
    ref.save_pretrained(tmp_path / "unet")
    _check_equal(load_unet(tmp_path / "unet", device="cpu", dtype=torch.float32), ref, cfg)
    # a repo folder holding unet/ works the same
    model = load_unet(tmp_path, device="cpu", dtype=torch.float32)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_sharded_and_fp16_variant(tmp_path):
    ref = diffusers_unet(MICRO_IF_I)
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").exists()
    _check_equal(load_unet(tmp_path / "sharded", device="cpu", dtype=torch.float32), ref, MICRO_IF_I)
    ref.save_pretrained(tmp_path / "fp16", variant="fp16")
    ours = load_unet(tmp_path / "fp16", device="cpu", dtype=torch.float16)
    assert ours.dtype == torch.float16
    _check_equal(ours.float(), ref, MICRO_IF_I, atol=2e-2)


@pytest.mark.parametrize("cfg,kind", [(FILE_IF_I, "IF-I-like base"), (FILE_IF_II, "IF-II-like super-resolution"),
                                      (FILE_IF_II_ONLYCROSS, "IF-II-like super-resolution")])
def test_single_file_config_inferred_from_shapes(tmp_path, cfg, kind):
    from cascade_core.unet.inference import describe, infer_unet_config
    from cascade_core.weights import read_header

    ref = diffusers_unet(cfg)
    path = tmp_path / "unet.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    inferred = infer_unet_config(read_header(path))
    assert kind in describe(inferred)
    assert inferred["in_channels"] == cfg["in_channels"]
    assert bool(inferred.get("only_cross_attention")) == bool(cfg.get("only_cross_attention", False))
    _check_equal(load_unet(path, device="cpu", dtype=torch.float32), ref, cfg)


def test_single_file_with_embedded_config(tmp_path):
    ref = diffusers_unet(MICRO_IF_II)  # head size 8, 4 groups: not inferable, so the metadata must be used
    path = tmp_path / "micro.safetensors"
    save_single_file(load_unet(_saved(ref, tmp_path), device="cpu", dtype=torch.float32), path)
    _check_equal(load_unet(path, device="cpu", dtype=torch.float32), ref, MICRO_IF_II)


def _saved(ref, tmp_path):
    ref.save_pretrained(tmp_path / "folder")
    return tmp_path / "folder"


def test_real_architectures_are_named():
    from cascade_core.unet.inference import describe
    from cascade_core.unet.presets import PRESETS

    for name, cfg in PRESETS.items():
        assert describe(cfg) == name


@pytest.mark.parametrize("tensors,message", [
    ({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4)}, "T5 text encoder"),
    ({"input_blocks.0.0.weight": torch.zeros(4, 3, 3, 3)}, "original DeepFloyd"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 3, 3, 3)}, "Stable Diffusion"),
    ({"some.random.weight": torch.zeros(2)}, "not a DeepFloyd IF UNet"),
])
def test_unrecognisable_single_file_refused(tmp_path, tensors, message):
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightFileError, match=message):
        load_unet(path, device="cpu")


def test_strict_loading_reports_keys_by_name(tmp_path):
    ref = diffusers_unet(MICRO_IF_I)
    ref.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    state = load_file(str(weights))
    state.pop("conv_out.bias")
    state["extra.weight"] = torch.zeros(1)
    state["conv_in.weight"] = torch.zeros(16, 3, 1, 1)
    save_file(state, str(weights))
    with pytest.raises(WeightFileError) as err:
        load_unet(tmp_path / "m", device="cpu")
    text = str(err.value)
    assert "conv_out.bias" in text and "extra.weight" in text and "conv_in.weight" in text


def test_missing_truncated_and_foreign_paths(tmp_path):
    with pytest.raises(WeightFileError, match="not found"):
        load_unet(tmp_path / "nothing.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightFileError, match="neither a diffusers UNet folder"):
        load_unet(tmp_path / "empty")
    ref = diffusers_unet(MICRO_IF_I)
    ref.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(WeightFileError, match="truncated"):
        load_unet(tmp_path / "m")
    (tmp_path / "model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(WeightFileError, match="pickle"):
        load_unet(tmp_path / "model.bin")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(dict(MICRO_IF_I, act_fn="relu")))
    with pytest.raises(ValueError, match="act_fn"):
        load_unet(bad)
