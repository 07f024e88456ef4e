"""The embedding cache: hits skip T5, misses run it; LRU bounds on entries and bytes; clearing."""
import pytest
import torch
from _text_models import encoder_state, reference_model, save_single, train_spiece

from cascade_core import load_text_encoder
from cascade_core.text import EmbeddingCache


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5c")
    spiece = train_spiece(root / "spm")
    return save_single(encoder_state(reference_model(seed=4)), root / "w" / "t5.safetensors"), spiece


def _counting(enc):
    calls = []
    enc.model.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["input_ids"].shape[0]),
                                    with_kwargs=True)
    return calls


def test_hits_and_misses(files):
    path, spiece = files
    cache = EmbeddingCache()
    enc = load_text_encoder(path, tokenizer=spiece, cache=cache)
    calls = _counting(enc)
    first, m1 = enc.encode(["a red cat", ""])
    assert calls == [2] and (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    again, m2 = enc.encode(["A red cat  ", ""])  # same text after lower().strip()
    assert calls == [2] and cache.hits == 2 and torch.equal(first, again) and torch.equal(m1, m2)
    enc.encode(["", "a blue dog"])  # only the new prompt is encoded
    assert calls == [2, 1]
    enc.encode(["a red cat"], long_prompt=True)  # another mode is another key
    assert calls == [2, 1, 1]
    enc.encode(["a red cat"], use_cache=False)
    assert calls == [2, 1, 1, 1]
    # a re-loaded encoder of the same files (a re-queued ComfyUI graph) reuses the entries
    enc2 = load_text_encoder(path, tokenizer=spiece, cache=cache)
    calls2 = _counting(enc2)
    enc2.encode(["a red cat", "a blue dog"])
    assert calls2 == []
    # a different compute dtype is a different key
    enc3 = load_text_encoder(path, tokenizer=spiece, cache=cache, dtype=torch.bfloat16)
    calls3 = _counting(enc3)
    out, _ = enc3.encode(["a red cat"])
    assert calls3 == [1] and out.dtype == torch.bfloat16
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    enc.encode(["a red cat"])
    assert calls == [2, 1, 1, 1, 1]


def test_returned_tensors_are_not_the_cached_ones(files):
    path, spiece = files
    cache = EmbeddingCache()
    enc = load_text_encoder(path, tokenizer=spiece, cache=cache)
    a, _ = enc.encode(["a red cat"])
    a.add_(1.0)  # callers may modify their result in place
    b, _ = enc.encode(["a red cat"])
    assert not torch.equal(a, b) and cache.hits == 1


def test_lru_bounds():
    entry = (torch.zeros(77, 64), torch.zeros(77, dtype=torch.long))
    size = 77 * 64 * 4 + 77 * 8
    cache = EmbeddingCache(max_entries=2, max_bytes=10 * size)
    for key in "abc":
        cache.put(key, *entry)
    assert "a" not in cache and len(cache) == 2  # least recently used went first
    cache.get("b")
    cache.put("d", *entry)
    assert "b" in cache and "c" not in cache and cache.nbytes == 2 * size
    small = EmbeddingCache(max_entries=100, max_bytes=int(2.5 * size))
    for key in "abcd":
        small.put(key, *entry)
    assert len(small) == 2 and small.nbytes == 2 * size and small.nbytes <= small.max_bytes
    tiny = EmbeddingCache(max_bytes=size - 1)
    tiny.put("x", *entry)
    assert len(tiny) == 0
    with pytest.raises(ValueError):
        EmbeddingCache(max_entries=-1)
