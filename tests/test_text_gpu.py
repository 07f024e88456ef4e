"""GPU checks of the T5 encoder (run with ``pytest -m gpu``): default bf16, fp16 with fp32 ``wo``, fp8 on
the device, offloading. References are transformers' ``T5EncoderModel`` in fp32 on the same GPU."""
import pytest
import torch
from _text_models import encoder_state, hf_tokenizer, model_with_state, reference_model, save_single, train_spiece

from cascade_core import load_text_encoder
from cascade_core.text import Fp8Linear

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

PROMPTS = ["a golden dragon under the sea, highly detailed", "", "a red cat"]
E4M3 = torch.float8_e4m3fn
LINEAR = (".q.weight", ".k.weight", ".v.weight", ".o.weight", ".wi_0.weight", ".wi_1.weight", ".wo.weight")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5gpu")
    spiece = train_spiece(root / "spm")
    model = reference_model(seed=6)
    path = save_single(encoder_state(model), root / "w" / "t5.safetensors")
    return root, spiece, model, hf_tokenizer(spiece.parent), path


def _reference(model, tok):
    enc = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    model = model.to("cuda")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"].cuda(), attention_mask=enc["attention_mask"].cuda()).last_hidden_state


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_defaults_are_cuda_bf16(assets):
    _, spiece, model, tok, path = assets
    enc = load_text_encoder(path, tokenizer=spiece, cache=None)
    assert enc.device.type == "cuda" and enc.dtype == torch.bfloat16
    got, mask = enc.encode(PROMPTS)
    assert got.dtype == torch.bfloat16 and got.device.type == "cuda" and mask.device.type == "cuda"
    assert _rel(got, _reference(model, tok)) < 0.03


def test_fp32_on_gpu_matches(assets):
    _, spiece, model, tok, path = assets
    enc = load_text_encoder(path, tokenizer=spiece, dtype=torch.float32, cache=None)
    got, _ = enc.encode(PROMPTS)
    assert (got - _reference(model, tok)).abs().max() <= 1e-4


def test_fp16_keeps_wo_fp32(assets):
    _, spiece, model, tok, path = assets
    enc = load_text_encoder(path, tokenizer=spiece, dtype=torch.float16, cache=None)
    for name, p in enc.model.named_parameters():
        assert p.dtype == (torch.float32 if name.endswith(".wo.weight") else torch.float16), name
    got, _ = enc.encode(PROMPTS)
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    assert _rel(got, _reference(model, tok)) < 0.01


def test_fp8_stays_fp8_on_gpu_and_offloads(assets):
    root, spiece, model, tok, path = assets
    state = encoder_state(model)
    linear = [k for k in state if k.endswith(LINEAR)]
    stored, rounded = dict(state), dict(state)
    for k in linear:
        scale = state[k].abs().max() / torch.finfo(E4M3).max
        stored[k] = (state[k] / scale).to(E4M3)
        stored[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
        rounded[k] = stored[k].float() * scale
    fp8_path = save_single(stored, root / "fp8" / "t5xxl_fp8_e4m3fn_scaled.safetensors")
    enc = load_text_encoder(fp8_path, tokenizer=spiece, dtype=torch.float32, cache=None)
    layers = [m for m in enc.model.modules() if isinstance(m, Fp8Linear)]
    assert layers and all(m.weight_fp8.dtype == E4M3 and m.weight_fp8.is_cuda for m in layers)
    got, _ = enc.encode(PROMPTS)
    assert (got - _reference(model_with_state(rounded), tok)).abs().max() <= 1e-4
    enc.to("cpu")
    assert all(m.weight_fp8.device.type == "cpu" for m in layers)
    on_cpu, _ = enc.encode(PROMPTS)
    assert on_cpu.device.type == "cpu" and (on_cpu - got.cpu()).abs().max() <= 1e-4
    enc.to("cuda")
    assert enc.encode(PROMPTS)[0].is_cuda
