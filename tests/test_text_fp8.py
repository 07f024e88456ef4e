"""fp8-stored T5 weights (ComfyUI ``t5xxl_fp8_e4m3fn*.safetensors`` styles, and fp8 on load).

Tolerances, both against transformers' ``T5EncoderModel`` in fp32:

* against a reference holding the *same fp8-rounded weights* upcast to fp32 (scale applied): 1e-5.
  The math is identical (upcast weight, then an fp32 ``F.linear``); only summation order may differ.
* against the original, un-rounded fp32 weights: relative RMS error < 0.15. e4m3 keeps 3 mantissa bits,
  so each weight carries a relative rounding error of up to 2^-4 (uniform, RMS 2^-4/√3 ≈ 3.6 %); a matmul
  averages independent errors, so each linear output is off by a few percent, and the 3 residual layers
  add roughly in quadrature. Unscaled files (no per-tensor scale) also lose small weights to fp8
  subnormals (step 2^-9), hence the margin. The measured values are asserted to be clearly non-zero too,
  so a loader that silently kept full precision would fail.
"""
import pytest
import torch
from _text_models import encoder_state, hf_tokenizer, model_with_state, reference_encode, reference_model, save_single
from _text_models import train_spiece

from cascade_core import load_text_encoder
from cascade_core.text import Fp8Linear

E4M3 = torch.float8_e4m3fn
PROMPTS = ["a silver robot in a small kitchen", "", "oil painting of a dragon on the moon"]
LINEAR = (".q.weight", ".k.weight", ".v.weight", ".o.weight", ".wi_0.weight", ".wi_1.weight", ".wo.weight")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5fp8")
    spiece = train_spiece(root / "spm")
    model = reference_model(seed=2)
    return root, spiece, model, hf_tokenizer(spiece.parent)


def _scaled(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = w.abs().max() / torch.finfo(E4M3).max
    return (w / scale).to(E4M3), scale.reshape(()).float()


def _unscaled_file(state):
    """Every tensor stored as plain fp8 (no scales)."""
    stored = {k: v.to(E4M3) for k, v in state.items()}
    return stored, {k: v.float() for k, v in stored.items()}


def _scaled_file(state, scale_name="scale_weight", input_name="scale_input", marker=True):
    """Linear weights fp8 with a per-tensor scale (ComfyUI "scaled fp8"), everything else fp16."""
    stored, dense = {}, {}
    for k, v in state.items():
        if k.endswith(LINEAR):
            w8, s = _scaled(v)
            stored[k], stored[k[:-len("weight")] + scale_name] = w8, s
            stored[k[:-len("weight")] + input_name] = torch.ones(())
            dense[k] = w8.float() * s
        else:
            stored[k] = v.half()
            dense[k] = v.half().float()
    if marker:
        stored["scaled_fp8"] = torch.empty(0, dtype=E4M3)
    return stored, dense


def _errors(enc, model, rounded, tok):
    got, _ = enc.encode(PROMPTS, use_cache=False)
    same, _ = reference_encode(model_with_state(rounded), tok, PROMPTS)
    orig, _ = reference_encode(model, tok, PROMPTS)
    rel = ((got - orig).norm() / orig.norm()).item()
    return (got - same).abs().max().item(), rel


def _assert_fp8_storage(enc):
    layers = [m for m in enc.model.modules() if isinstance(m, Fp8Linear)]
    assert len(layers) == 3 * 7 and all(m.weight_fp8.dtype == E4M3 for m in layers)
    dense = [p for n, p in enc.model.named_parameters() if not n.endswith("weight_fp8")]
    assert dense and all(p.dtype == torch.float32 for p in dense)  # norms/embeddings: compute dtype


@pytest.mark.parametrize("kind", ["unscaled", "scaled", "mixed_precision_names"])
def test_fp8_file_matches_rounded_reference(assets, kind):
    root, spiece, model, tok = assets
    state = encoder_state(model)
    if kind == "unscaled":
        stored, rounded = _unscaled_file(state)
        meta = None
    elif kind == "scaled":
        stored, rounded = _scaled_file(state)
        meta = None
    else:  # newer ComfyUI naming: weight_scale / input_scale and no marker tensor
        stored, rounded = _scaled_file(state, "weight_scale", "input_scale", marker=False)
        meta = {"_quantization_metadata": "{}"}
    path = save_single(stored, root / kind / "t5xxl_fp8_e4m3fn.safetensors", metadata=meta)
    enc = load_text_encoder(path, tokenizer=spiece, device="cpu", dtype=torch.float32)
    _assert_fp8_storage(enc)
    same, rel = _errors(enc, model, rounded, tok)
    assert same <= 1e-5, same
    assert 1e-4 < rel < 0.15, rel


def test_fp8_on_load_halves_memory(assets):
    root, spiece, model, tok = assets
    state = encoder_state(model)
    path = save_single(state, root / "dense" / "t5.safetensors")
    dense = load_text_encoder(path, tokenizer=spiece, dtype=torch.float32)
    enc = load_text_encoder(path, tokenizer=spiece, dtype=torch.float32, weight_dtype=E4M3)
    _assert_fp8_storage(enc)
    rounded = {}
    for k, v in state.items():
        w8, s = _scaled(v)
        rounded[k] = w8.float() * s if k.endswith(LINEAR) else v
    same, rel = _errors(enc, model, rounded, tok)
    assert same <= 1e-5 and 1e-4 < rel < 0.15, (same, rel)
    linear = sum(v.numel() for k, v in state.items() if k.endswith(LINEAR))
    assert dense.parameter_bytes - enc.parameter_bytes == 3 * linear - 4 * 21  # 4 B → 1 B, plus 21 fp32 scales


def test_fp8_file_dequantized_on_request(assets):
    root, spiece, model, tok = assets
    stored, rounded = _scaled_file(encoder_state(model))
    path = save_single(stored, root / "deq" / "t5xxl_fp8_e4m3fn_scaled.safetensors")
    enc = load_text_encoder(path, tokenizer=spiece, dtype=torch.float32, weight_dtype=torch.float32)
    assert not any(isinstance(m, Fp8Linear) for m in enc.model.modules())
    same, _ = _errors(enc, model, rounded, tok)
    assert same <= 1e-5, same


def test_fp8_bf16_compute(assets):
    root, spiece, model, tok = assets
    stored, rounded = _scaled_file(encoder_state(model))
    path = save_single(stored, root / "bf16" / "t5xxl_fp8_e4m3fn_scaled.safetensors")
    enc = load_text_encoder(path, tokenizer=spiece, dtype=torch.bfloat16)
    got, _ = enc.encode(PROMPTS, use_cache=False)
    want, _ = reference_encode(model_with_state(rounded), tok, PROMPTS)
    assert got.dtype == torch.bfloat16
    assert ((got.float() - want).norm() / want.norm()).item() < 0.03  # bf16: 8 mantissa bits
