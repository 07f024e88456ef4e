"""Every checkpoint layout loads and encodes exactly like transformers' own ``T5EncoderModel`` (fp32, CPU)."""
import shutil

import pytest
import torch
from _text_models import (
    XXL_CONFIG, encoder_state, hf_tokenizer, model_with_state, reference_encode, reference_model, save_if_repo,
    save_single, train_spiece,
)

from cascade_core import load_text_encoder
from cascade_core.text import build_t5_encoder
from cascade_core.text.keys import TensorPlan, infer_config
from cascade_core.weights import TensorInfo

PROMPTS = ["A Red Cat on a table", "", "  a golden dragon under the sea, highly detailed  ",
           "purple teapot " * 30]  # the last one is longer than 77 tokens (truncated)
TOL = 1e-5


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5")
    spiece = train_spiece(root / "spm")
    model = reference_model(seed=1)
    return root, spiece, model, hf_tokenizer(spiece.parent)


def _check(encoder, reference, tokenizer):
    want, want_mask = reference_encode(reference, tokenizer, PROMPTS)
    got, mask = encoder.encode(PROMPTS, use_cache=False)
    assert got.shape == want.shape == (len(PROMPTS), 77, 64) and got.dtype == torch.float32
    assert torch.equal(mask, want_mask) and mask.dtype == torch.long
    diff = (got - want).abs().max().item()
    assert diff <= TOL, diff
    return diff


def test_tokenization_matches_transformers(assets):
    root, spiece, model, tok = assets
    enc = load_text_encoder(save_single(encoder_state(model), root / "tk" / "m.safetensors"), tokenizer=spiece)
    for p in PROMPTS:
        want = tok(p.lower().strip(), padding="max_length", max_length=77, truncation=True)
        packed = enc.pack(p.lower().strip())
        assert packed.ids == [want["input_ids"]] and packed.mask == [want["attention_mask"]]


def test_if_repo_sharded_fp32(assets):
    root, spiece, model, tok = assets
    repo = save_if_repo(model, spiece, root / "IF-I-tiny")
    assert len(list((repo / "text_encoder").glob("model-*-of-*.safetensors"))) > 1
    enc = load_text_encoder(repo, device="cpu")
    assert enc.layout == "deepfloyd_if" and enc.dtype == torch.float32 and enc.device.type == "cpu"
    assert not any(p.requires_grad for p in enc.model.parameters()) and not enc.model.training
    _check(enc, model, tok)


def test_if_repo_fp16_variant_keeps_wo_fp32(assets):
    root, spiece, model, tok = assets
    repo = save_if_repo(model, spiece, root / "IF-fp16", fp16=True)
    assert list((repo / "text_encoder").glob("model.fp16-*.safetensors"))
    rounded = {k: (v if k.endswith(".wo.weight") else v.half()) for k, v in encoder_state(model).items()}
    _check(load_text_encoder(repo, dtype=torch.float32), model_with_state(rounded), tok)
    enc16 = load_text_encoder(repo, device="cpu", dtype=torch.float16)
    dtypes = {n: p.dtype for n, p in enc16.model.named_parameters()}
    assert all(d == (torch.float32 if n.endswith(".wo.weight") else torch.float16) for n, d in dtypes.items())
    got, _ = enc16.encode(PROMPTS[:2], use_cache=False)
    want, _ = reference_encode(model_with_state(rounded), tok, PROMPTS[:2])
    assert got.dtype == torch.float16 and (got.float() - want).abs().max() < 2e-2


def test_transformers_folder_matches_from_pretrained(assets):
    from transformers import T5EncoderModel

    root, spiece, model, tok = assets
    folder = root / "hf"
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))  # tokenizer.json only
    assert (folder / "model.safetensors").is_file() and not (folder / "spiece.model").exists()
    enc = load_text_encoder(folder)
    assert enc.layout == "transformers"
    _check(enc, T5EncoderModel.from_pretrained(str(folder)).eval(), tok)


@pytest.mark.parametrize("variant", ["shared", "embed_tokens", "both", "prefixed_fp16", "with_decoder"])
def test_single_file_variants(assets, variant):
    root, spiece, model, tok = assets
    state = encoder_state(model)
    if variant == "embed_tokens":
        state["encoder.embed_tokens.weight"] = state.pop("shared.weight")
    elif variant == "both":
        state["encoder.embed_tokens.weight"] = state["shared.weight"].clone()
    elif variant == "with_decoder":  # a full encoder-decoder checkpoint: the decoder is ignored
        state.update({k.replace("encoder.", "decoder.", 1): torch.zeros_like(v) for k, v in state.items()
                      if k.startswith("encoder.")})
        state["lm_head.weight"] = torch.zeros_like(state["shared.weight"])
        state["decoder.block.3.layer.0.SelfAttention.q.weight"] = torch.zeros(64, 64)  # more decoder layers
    elif variant == "prefixed_fp16":
        state = {f"text_encoders.t5xxl.transformer.{k}": v.half() for k, v in state.items()}
    path = save_single(state, root / variant / "t5xxl_test.safetensors")
    shutil.copytree(spiece.parent, path.parent / "tokenizer")  # tokenizer/ beside the file
    enc = load_text_encoder(path, dtype=torch.float32)
    assert enc.layout == "single_file"
    if variant == "prefixed_fp16":
        state = {k.removeprefix("text_encoders.t5xxl.transformer."): v for k, v in state.items()}
        _check(enc, model_with_state(state), tok)
    else:
        _check(enc, model, tok)


def test_xxl_parameter_count_and_config_inference():
    model = build_t5_encoder(XXL_CONFIG)  # meta device: no memory
    assert sum(p.numel() for p in model.parameters()) == 4_762_310_656
    # the shapes of an XXL single file (headers only) give back the XXL config
    infos = {k: TensorInfo(k, "F16", tuple(v.shape)) for k, v in model.state_dict().items()}
    infos.pop("encoder.embed_tokens.weight")
    plan = TensorPlan(sources={k: (None, k) for k in infos}, infos=infos)
    inferred = infer_config(plan)
    assert {k: inferred[k] for k in XXL_CONFIG} == XXL_CONFIG


def test_parameter_bytes_and_offload(assets):
    root, spiece, model, _ = assets
    path = save_single(encoder_state(model), root / "pb" / "m.safetensors")
    enc = load_text_encoder(path, tokenizer=spiece, dtype=torch.bfloat16, device="cpu")
    n = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    assert enc.parameter_bytes == 2 * n and enc.max_length == 77 and enc.hidden_size == 64
    assert enc.to("meta") is enc and enc.device.type == "meta"


def test_fp16_variant_preferred_unless_fp32(assets):
    root, spiece, model, _ = assets
    repo = save_if_repo(model, spiece, root / "IF-both")
    save_if_repo(model, spiece, root / "IF-both-16", fp16=True)
    for f in (root / "IF-both-16" / "text_encoder").glob("model*fp16*"):
        shutil.copy(f, repo / "text_encoder" / f.name)
    assert load_text_encoder(repo, dtype=torch.float32).identity.startswith("t5:model-0")
    assert load_text_encoder(repo, dtype=torch.bfloat16).identity.startswith("t5:model.fp16-0")
