"""Bad input gets clear errors; the tokenizer is found beside the weights or in ComfyUI's shipped copy."""
import json
import shutil
import sys

import pytest
import torch
from _text_models import encoder_state, hf_tokenizer, reference_encode, reference_model, save_single, train_spiece

from cascade_core import WeightFileError, load_text_encoder
from cascade_core.text import NotT5Error, TokenizerNotFoundError
from cascade_core.text import tokenizer as tokenizer_module


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5e")
    spiece = train_spiece(root / "spm")
    model = reference_model(seed=5)
    return root, spiece, model, encoder_state(model)


def test_missing_tokenizer_lists_every_place(assets, monkeypatch):
    root, _, _, state = assets
    monkeypatch.setattr(tokenizer_module, "comfy_tokenizer_dir", lambda: None)
    path = save_single(state, root / "lonely" / "t5xxl_fp16.safetensors")
    with pytest.raises(TokenizerNotFoundError) as err:
        load_text_encoder(path, tokenizer=root / "nope")
    msg = str(err.value)
    for place in (str(root / "nope"), str(path.parent / "tokenizer"), str(path.parent), "comfy/text_encoders"):
        assert place in msg, msg


def test_missing_layers_are_named(assets):
    root, spiece, _, state = assets
    broken = {k: v for k, v in state.items() if not k.startswith("encoder.block.1.")}
    path = save_single(broken, root / "broken" / "t5.safetensors")
    with pytest.raises(NotT5Error, match=r"missing 9 of the T5 encoder's \d+ tensors: encoder\.block\.1\."):
        load_text_encoder(path, tokenizer=spiece)
    no_embedding = {k: v for k, v in state.items() if k != "shared.weight"}
    path = save_single(no_embedding, root / "noemb" / "t5.safetensors")
    with pytest.raises(NotT5Error, match="shared.weight"):
        load_text_encoder(path, tokenizer=spiece)


def test_config_disagreeing_with_weights(assets):
    root, spiece, model, _ = assets
    folder = root / "cfg"
    model.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_layers": 4}))
    with pytest.raises(NotT5Error, match=r"missing 9 .*encoder\.block\.3\."):
        load_text_encoder(folder, tokenizer=spiece)
    (folder / "config.json").write_text(json.dumps({**config, "d_ff": 128}))
    with pytest.raises(NotT5Error, match=r"shapes that do not fit.*wi_0\.weight \[96, 64\] \(expected \[128, 64\]\)"):
        load_text_encoder(folder, tokenizer=spiece)
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "clip_text_model"}))
    with pytest.raises(ValueError, match="not a T5 encoder"):
        load_text_encoder(folder, tokenizer=spiece)


def test_non_t5_file(assets):
    root, spiece, _, _ = assets
    unet = {"conv_in.weight": torch.zeros(8, 3, 3, 3), "down_blocks.0.resnets.0.conv1.weight": torch.zeros(8, 8, 3, 3)}
    path = save_single(unet, root / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(NotT5Error, match=r"not a T5 text encoder checkpoint: expected .*SelfAttention\.q\.weight.*"
                                         r"found 'conv_in\.weight'"):
        load_text_encoder(path, tokenizer=spiece)
    (root / "empty").mkdir()
    with pytest.raises(WeightFileError, match="no T5 encoder weights"):
        load_text_encoder(root / "empty")
    with pytest.raises(WeightFileError, match="not found"):
        load_text_encoder(root / "nothing.safetensors")


def test_int8_and_wrong_tokenizer(assets):
    root, spiece, _, state = assets
    int8 = {k: (v * 10).to(torch.int8) if k.endswith("q.weight") else v for k, v in state.items()}
    path = save_single(int8, root / "int8" / "model.8bit.safetensors")
    with pytest.raises(NotT5Error, match="bitsandbytes"):
        load_text_encoder(path, tokenizer=spiece)
    small = {**state, "shared.weight": state["shared.weight"][:100]}
    path = save_single(small, root / "smallvocab" / "t5.safetensors")
    with pytest.raises(ValueError, match="not the matching tokenizer"):
        load_text_encoder(path, tokenizer=spiece)


def test_tokenizer_from_comfyui_install(assets, tmp_path, monkeypatch):
    root, spiece, model, state = assets
    shipped = tmp_path / "site" / "comfy" / "text_encoders" / "t5_tokenizer"
    hf_tokenizer(spiece.parent).save_pretrained(str(shipped))  # tokenizer.json, as ComfyUI ships it
    (tmp_path / "site" / "comfy" / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    for name in [m for m in sys.modules if m == "comfy" or m.startswith("comfy.")]:
        monkeypatch.delitem(sys.modules, name)  # a real ComfyUI imported by the node tests must not answer
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = save_single(state, tmp_path / "models" / "text_encoders" / "t5xxl_fp16.safetensors")
    enc = load_text_encoder(path)
    assert "comfy" not in sys.modules
    got, _ = enc.encode(["a red cat", ""], use_cache=False)
    want, _ = reference_encode(model, hf_tokenizer(spiece.parent), ["a red cat", ""])
    assert (got - want).abs().max() <= 1e-5


def test_tokenizer_as_spiece_file_with_another_name(assets, tmp_path):
    root, spiece, model, state = assets
    renamed = tmp_path / "t5_vocab.model"
    shutil.copy(spiece, renamed)
    path = save_single(state, tmp_path / "w" / "t5.safetensors")
    enc = load_text_encoder(path, tokenizer=renamed)
    want, _ = reference_encode(model, hf_tokenizer(spiece.parent), ["a blue castle"])
    assert (enc.encode("a blue castle", use_cache=False)[0] - want).abs().max() <= 1e-5
