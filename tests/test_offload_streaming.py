"""Block streaming on the CPU (same code path as CUDA, no streams): outputs identical to the fully loaded model,
every weight really comes through the stream, at most two blocks at a time, and interrupted forwards repair."""
import copy

import pytest
import torch

from _demo_models import require_demo
from _offload_models import Stack
from cascade_core.offload import ModelManager, split_units, tensors
from cascade_core.offload.tensors import module_bytes


def _poison_home(monkeypatch, manager, name):
    """NaN-fill the host copies; copies 'to the device' come from clean clones. A weight used without being
    streamed or made resident would turn the output into NaN."""
    e = manager._entries[name]
    clean = {id(h): h.clone() for h in e.home}
    monkeypatch.setattr(tensors, "copy_tensor", lambda t, device, non_blocking=False:
                        clean[id(t)].clone() if id(t) in clean else t)
    with torch.no_grad():
        for h in e.home:
            if h.is_floating_point():
                h.fill_(float("nan"))
    return e


def _block_manager(module, fraction=3, **kw):
    m = ModelManager("block", device_budgets={"cpu": module_bytes(module) // fraction})
    m.add("model", module, device="cpu", **kw)
    assert m.mode_of("model") == "block"  # resolves the plan: the streamer exists from here on
    return m


def _unet_inputs(unet, size):
    g = torch.Generator().manual_seed(0)
    c = unet.config
    x = torch.randn(2, c.in_channels, size, size, generator=g)
    emb = torch.randn(2, 5, c.encoder_hid_dim or c.cross_attention_dim, generator=g)
    noise = torch.tensor([10, 200]) if c.is_super_resolution else None
    return x, torch.tensor([10, 500]), emb, noise


@pytest.mark.parametrize("fixture", ["base", "sr"])
def test_streamed_unet_equals_fully_loaded(fixture, request, monkeypatch):
    unet = copy.deepcopy(request.getfixturevalue(fixture))  # its host copies get poisoned below
    args = _unet_inputs(unet, 16 if fixture == "sr" else 8)
    with torch.no_grad():
        ref = unet(*args)
    m = _block_manager(unet, keep_resident=[unet.conv_in])
    e = _poison_home(monkeypatch, m, "model")
    try:
        streamer = e.streamer
        names = streamer.unit_names()
        assert any(n.startswith("down_blocks.") for n in names) and any(n.startswith("up_blocks.") for n in names)
        with torch.no_grad(), m.using("model") as model:
            first = model(*args)
            second = model(*args)  # with the call order learned: every fetch but the first was prefetched
        assert torch.equal(first, ref) and torch.equal(second, ref)
        assert streamer.prefetch_hits >= len(names) - 1
        assert streamer.peak_stream_bytes <= streamer.need_bytes - streamer.resident_bytes
        assert m.report().model("model").state == "streamed"
        assert m.device_of("model") == torch.device("cpu")
    finally:
        m.remove("model")


def test_split_units_expands_containers_and_large_children():
    model = Stack(depth=3)
    names = [n for n, _ in split_units(model, max_unit_bytes=10**9)]
    assert names == ["inp", "blocks.0", "blocks.1", "blocks.2"]
    names = [n for n, _ in split_units(model, max_unit_bytes=200)]
    assert "blocks.0.0" in names and "blocks.0.2" in names


def test_streamed_t5_encodes_identically(monkeypatch):
    from cascade_core.text import load_text_encoder

    demo = require_demo("t5")
    te = load_text_encoder(demo / "t5", device="cpu", cache=None)
    prompts = ["a red circle", ""]
    ref, ref_mask = te.encode(prompts)
    m = _block_manager(te.model, fraction=4)
    _poison_home(monkeypatch, m, "model")
    try:
        assert any(n.startswith("encoder.block.") for n in m._entries["model"].streamer.unit_names())
        embeds, mask = te.encode(prompts)  # calling the model makes it ready (forward pre-hook)
        assert torch.equal(embeds, ref) and torch.equal(mask, ref_mask)
    finally:
        monkeypatch.undo()
        m.remove("model")


def test_interrupted_forward_is_repaired(monkeypatch):
    model = Stack(depth=4)
    x = torch.randn(3, 16)
    with torch.no_grad():
        ref = model(x)
    m = _block_manager(model, fraction=2)
    homes = {h.data_ptr() for h in m._entries["model"].home}
    monkeypatch.setattr(tensors, "copy_tensor", lambda t, device, non_blocking=False: t.clone())

    def interrupt(module, args):
        raise KeyboardInterrupt

    handle = model.blocks[2].register_forward_pre_hook(interrupt, prepend=True)
    with pytest.raises(KeyboardInterrupt), torch.no_grad(), m.using("model") as mod:
        mod(x)
    handle.remove()
    streamer = m._entries["model"].streamer
    assert not streamer.active and not streamer.inflight
    streamed = {k for u in streamer.units for k in u.weights.keys()}
    assert all(s.get().data_ptr() in homes for s in m._entries["model"].weights.slots if s.key in streamed)
    with torch.no_grad():
        assert torch.equal(m.use("model")(x), ref)
