"""Transfers are all-or-nothing: a failure or KeyboardInterrupt on the Nth tensor leaves the model wholly where
it was; 100 load/offload cycles do not leak host memory."""
import gc

import pytest
import torch

from _offload_models import Stack
from cascade_core.offload import ModelManager, tensors
from cascade_core.offload.tensors import Weights


def _ptrs(module):
    return [s.get().data_ptr() for s in Weights.of(module).slots]


def _failing_copy(n, exc):
    """A copy that really copies (clone: the CPU 'device' gets distinct tensors) and raises on the n-th tensor."""
    calls = {"n": 0}

    def copy(t, device, non_blocking=False):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc("injected failure")
        return t.clone()

    return copy, calls


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("policy", ["model", "keep", "block"])
def test_failed_load_leaves_the_model_where_it_was(monkeypatch, exc, policy):
    model = Stack(depth=3)
    x = torch.randn(2, 16)
    with torch.no_grad():
        ref = model(x)
    budget = 10**9 if policy != "block" else 900
    m = ModelManager(policy, device_budgets={"cpu": budget})
    m.add("s", model, device="cpu")
    before = _ptrs(model)
    copy, calls = _failing_copy(3, exc)
    monkeypatch.setattr(tensors, "copy_tensor", copy)
    with pytest.raises(exc, match="injected"), torch.no_grad(), m.using("s") as mod:
        mod(x)  # block: the resident weights at use, then the streamed blocks in the forward
    assert calls["n"] == 3
    after = _ptrs(model)
    if policy == "block":  # only the resident weights (the buffer) are on the 'device'
        streamed = {k for u in m._entries["s"].streamer.units for k in u.weights.keys()}
        keys = [s.key for s in Weights.of(model).slots]
        before, after = ([p for p, k in zip(v, keys) if k in streamed] for v in (before, after))
    assert after == before  # not one tensor swapped
    if policy != "block":  # (a streamed model stays ready: its resident weights were installed at use)
        assert m.report().model("s").state == "offloaded" and m.report().device_bytes == {"cpu": 0}
    monkeypatch.setattr(tensors, "copy_tensor", lambda t, device, non_blocking=False: t.clone())
    with torch.no_grad():
        assert torch.equal(m.use("s")(x), ref)  # a retry works
    assert m.report().model("s").state in ("resident", "streamed")


def test_failure_inside_the_swap_rolls_back(monkeypatch):
    model = Stack(depth=2)
    w = Weights.of(model)
    before = _ptrs(model)
    new = [t.clone() for t in w.current()]
    original = tensors.Slot.set
    calls = {"n": 0}

    def flaky(self, t):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        original(self, t)

    monkeypatch.setattr(tensors.Slot, "set", flaky)
    with pytest.raises(KeyboardInterrupt):
        w.install(new)
    monkeypatch.setattr(tensors.Slot, "set", original)
    assert _ptrs(model) == before


def test_failed_streamed_block_leaves_host_weights(monkeypatch):
    model = Stack(depth=3)
    x = torch.randn(2, 16)
    m = ModelManager("block", device_budgets={"cpu": 900})
    m.add("s", model, device="cpu")
    m.use("s")
    before = _ptrs(model)
    copy, _ = _failing_copy(2, RuntimeError)
    monkeypatch.setattr(tensors, "copy_tensor", copy)
    with pytest.raises(RuntimeError, match="injected"), torch.no_grad(), m.using("s") as mod:
        mod(x)
    assert _ptrs(model) == before


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_no_leak_over_100_cycles(monkeypatch):
    """Each cycle really allocates (the copy clones): 100 loads + evictions of two 1 MB models stay bounded."""
    monkeypatch.setattr(tensors, "copy_tensor", lambda t, device, non_blocking=False: t.clone())
    a, b = Stack(width=256, depth=4, seed=1), Stack(width=256, depth=4, seed=2)
    size = sum(t.numel() * 4 for t in Weights.of(a).current())
    m = ModelManager("model", device_budgets={"cpu": int(size * 1.5)})
    m.add("a", a, device="cpu")
    m.add("b", b, device="cpu")
    x = torch.randn(1, 256)
    for _ in range(5):  # warm up the allocator
        m.use("a")(x), m.use("b")(x)
    gc.collect()
    start = _rss()
    with torch.no_grad():
        for _ in range(100):
            m.use("a")(x)
            m.use("b")(x)
    gc.collect()
    assert m.report().evictions >= 200
    assert _rss() - start < 8 * 2**20, f"RSS grew by {(_rss() - start) / 2**20:.1f} MB over 100 cycles"
