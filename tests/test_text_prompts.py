"""Prompt handling: lower/strip, caption cleaning, empty prompt, truncation warning, long-prompt chunks."""
import logging

import pytest
import torch
from _text_models import encoder_state, hf_tokenizer, reference_encode, reference_model, save_single, train_spiece

from cascade_core import load_text_encoder
from cascade_core.text import clean_caption, preprocess_prompt
from cascade_core.text.tokens import pack_chunks

LONG = ", ".join(f"a {c} {s} in a forest" for c in ("red", "blue", "green") for s in ("cat", "dog", "castle"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5p")
    spiece = train_spiece(root / "spm")
    model = reference_model(seed=3)
    path = save_single(encoder_state(model), root / "w" / "t5.safetensors")
    enc = load_text_encoder(path, tokenizer=spiece, cache=None)
    return enc, model, hf_tokenizer(spiece.parent)


def _t5(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state


def test_lower_strip_is_the_default():
    assert preprocess_prompt("  A Red CAT  ") == "a red cat"  # diffusers IF encode_prompt(clean_caption=False)
    with pytest.raises(TypeError):
        preprocess_prompt(None)


@pytest.mark.parametrize("raw, want", [
    ("  Photo of a CAT by @someone https://example.com/x.jpg  ", "photo of a cat by"),
    ("<b>Red</b> &amp; blue <i>dragon</i>", "red & blue dragon"),
    ("“Golden” teapot — 1920x1080 IMG_2031.png free shipping", "\"golden\" teapot"),
    ('"a castle on a hill"', "a castle on a hill"),
    ("a dog 東京 at 192.168.0.1, #12345 jc6640vc", "a dog at"),
    ("a%20robot%20in%20space!!!!", "a robot in space!"),
])
def test_clean_caption(raw, want):
    assert clean_caption(raw) == want
    assert preprocess_prompt(raw, clean=True) == want


def test_empty_prompt_is_eos_then_padding(setup):
    enc, model, tok = setup
    embeds, mask = enc.encode([""])
    assert mask.tolist() == [[1] + [0] * 76]
    want, _ = reference_encode(model, tok, [""])
    assert (embeds - want).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="at least one prompt"):
        enc.encode([])


def test_truncation_warning_counts_dropped_tokens(setup, caplog):
    enc, model, tok = setup
    n = len(tok(LONG.lower())["input_ids"])  # with EOS
    assert n > 77
    with caplog.at_level(logging.WARNING, logger="cascade_core.text"):
        embeds, mask = enc.encode([LONG, "a red cat"])
    msgs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(msgs) == 1 and f"has {n} tokens" in msgs[0] and f"last {n - 77} tokens were dropped" in msgs[0]
    want, want_mask = reference_encode(model, tok, [LONG, "a red cat"])
    assert embeds.shape == (2, 77, 64) and torch.equal(mask, want_mask)
    assert (embeds - want).abs().max() <= 1e-5


def test_long_prompt_chunks(setup, caplog):
    enc, model, tok = setup
    tokens = tok(LONG.lower(), add_special_tokens=False)["input_ids"]
    with caplog.at_level(logging.WARNING):
        embeds, mask = enc.encode([LONG, "a red cat"], long_prompt=True)
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]
    k = embeds.shape[1] // 77
    assert k >= 2 and embeds.shape == (2, 77 * k, 64) and mask.shape == (2, 77 * k)
    # every token appears exactly once, in order, each chunk ending with its own EOS
    ids = [enc.pack(LONG.lower(), long_prompt=True).ids[i] for i in range(k)]
    body = [t for chunk, m in zip(ids, mask[0].view(k, 77).tolist()) for t in chunk[: sum(m) - 1]]
    assert body == tokens
    assert all(chunk[sum(m) - 1] == tok.eos_token_id for chunk, m in zip(ids, mask[0].view(k, 77).tolist()))
    # each chunk is an ordinary T5 input
    want = _t5(model, ids, mask[0].view(k, 77).tolist()).reshape(77 * k, 64)
    assert (embeds[0] - want).abs().max() <= 1e-5
    # the short prompt: its own 77 rows, then filler chunks = embedding of "" with a zero mask
    short, short_mask = enc.encode(["a red cat"])
    empty, _ = enc.encode([""])
    assert torch.equal(embeds[1, :77], short[0]) and torch.equal(mask[1, :77], short_mask[0])
    assert torch.equal(embeds[1, 77:154], empty[0]) and mask[1, 77:].sum() == 0


def test_chunking_prefers_word_starts():
    tokens = list(range(200))
    word_start = [i % 10 == 0 for i in range(200)]
    packed = pack_chunks(tokens, eos=1, pad=0, word_start=word_start, max_length=77)
    lengths = [sum(m) - 1 for m in packed.mask]
    assert lengths == [70, 70, 60] and all(len(s) == 77 for s in packed.ids)
    assert pack_chunks([], eos=1, pad=0).ids == [[1] + [0] * 76]


def test_pad_chunks():
    import pytest
    import torch

    from cascade_core.text import pad_chunks

    filler = torch.randn(77, 8)
    embeds = torch.randn(2, 77, 8)
    padded = pad_chunks(embeds, 3, filler)
    assert padded.shape == (2, 231, 8) and torch.equal(padded[:, :77], embeds)
    assert torch.equal(padded[1, 154:], filler)
    assert pad_chunks(padded, 3, filler) is padded
    with pytest.raises(ValueError, match="cannot pad"):
        pad_chunks(padded, 2, filler)
