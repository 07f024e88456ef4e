"""Our models inside ComfyUI's memory manager: built from comfy.ops, partially loadable, same outputs.

On this CPU-only machine load and offload devices are both the CPU, so a partial load moves nothing; what is
checked is ComfyUI's real partial-load path (ModelPatcher.load with a lowvram_model_memory budget): which layers
it turns into per-call casting layers, and that the model computes exactly what a full load computes.
"""
from __future__ import annotations

import pytest
import torch


def _out(node_output):
    return node_output.result[0]


def _forward(unet, seed: int = 0) -> torch.Tensor:
    c = unet.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c.in_channels, 16, 16, generator=g)
    text = torch.randn(2, 5, c.text_dim, generator=g)
    noise = torch.tensor([20, 300]) if c.is_super_resolution else None
    with torch.inference_mode():
        return unet(x, torch.tensor([10.0, 700.0]), text, noise).float()


def _partial_load(handle, budget: int) -> int:
    """Load ``handle`` the way ComfyUI does in low-VRAM mode with ``budget`` bytes; returns the offloaded count."""
    patcher = handle.patcher
    patcher.unpatch_model(patcher.offload_device)
    patcher.load(torch.device("cpu"), lowvram_model_memory=budget)
    return sum(1 for m in patcher.model.modules() if getattr(m, "comfy_cast_weights", False))


@pytest.fixture()
def fresh(pack):
    """No cached handles across tests (each test loads its own)."""
    from pixel_cascade.nodes import memory

    memory._LOADED.clear()
    yield
    memory._LOADED.clear()


@pytest.mark.parametrize("name", ["tiny-IF-I/", "tiny-IF-II/"])
def test_unet_built_from_comfy_ops_and_partial_load_matches_full(pack, model_dirs, fresh, name):
    import comfy.ops

    from pixel_cascade.nodes.loaders import UNetLoader

    handle = _out(UNetLoader.execute(unet_name=name, dtype="default"))
    assert handle.partial
    layers = [m for m in handle.model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert layers and all(isinstance(m, comfy.ops.disable_weight_init.Linear | comfy.ops.disable_weight_init.Conv2d)
                          for m in layers)
    full = _forward(handle.model)
    size = handle.patcher.model_size()
    assert _partial_load(handle, size // 3) > 0  # ComfyUI left layers offloaded, cast per call
    assert handle.patcher.model.model_lowvram
    assert torch.equal(_forward(handle.model), full)
    assert _partial_load(handle, 10 * size) == 0  # room for all: loaded completely, no casting layers
    assert torch.equal(_forward(handle.model), full)


def test_fp8_weights_halve_memory_and_stay_close(pack, model_dirs, fresh):
    from pixel_cascade.nodes.loaders import UNetLoader

    ref = _out(UNetLoader.execute(unet_name="tiny-IF-I/", dtype="float32"))
    fp8 = _out(UNetLoader.execute(unet_name="tiny-IF-I/", dtype="float32", weight_dtype="float8_e4m3fn"))
    assert fp8 is not ref and fp8.model.dtype == torch.float32
    stored = {p.dtype for p in fp8.model.parameters()}
    assert torch.float8_e4m3fn in stored
    assert fp8.patcher.model_size() < 0.45 * ref.patcher.model_size()
    want, got = _forward(ref.model), _forward(fp8.model)
    assert (got - want).norm() / want.norm() < 0.15
    assert _partial_load(fp8, fp8.patcher.model_size() // 3) > 0
    assert torch.equal(_forward(fp8.model), got)


def test_t5_partial_load_encodes_the_same(pack, model_dirs, fresh):
    from pixel_cascade.nodes.loaders import T5Loader

    handle = _out(T5Loader.execute(t5_name="tiny-IF-I/", device="default", dtype="default"))
    assert handle.partial
    encoder = handle.model
    encoder.cache = None
    full, _ = encoder.encode(["a red fox", ""])
    assert _partial_load(handle, handle.patcher.model_size() // 3) > 0
    again, _ = encoder.encode(["a red fox", ""])
    assert torch.equal(again, full)


def test_sampler_asks_for_room_and_loads_partially(pack, model_dirs, fresh, monkeypatch):
    import comfy.model_management as mm

    from pixel_cascade.nodes.guidance import CFGGuider
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader
    from pixel_cascade.nodes.sampling import Base64Sampler
    from pixel_cascade.nodes.text import T5Encode

    calls = []
    real = mm.load_models_gpu

    def spy(models, memory_required=0, force_full_load=False, **kw):
        calls.append((len(models), memory_required, force_full_load))
        return real(models, memory_required=memory_required, force_full_load=force_full_load, **kw)

    monkeypatch.setattr(mm, "load_models_gpu", spy)
    t5 = _out(T5Loader.execute(t5_name="tiny-IF-I/", device="default", dtype="default"))
    pos = _out(T5Encode.execute(t5=t5, text="a red fox", clean_caption=False))
    neg = _out(T5Encode.execute(t5=t5, text="", clean_caption=False))
    unet = _out(UNetLoader.execute(unet_name="tiny-IF-I/", dtype="default"))
    guider = _out(CFGGuider.execute(unet=unet, positive=pos, negative=neg, cfg=4.0, threshold_percentile=0.95,
                                    threshold_max=1.5))
    calls.clear()
    _out(Base64Sampler.execute(guider=guider, seed=0, steps=2, schedule="leading", sampler="ddpm", width=16,
                               height=16, batch_size=1))
    assert calls and all(not full for _, _, full in calls) and calls[0][1] > 0


def test_accelerator_oom_counts_as_out_of_memory(pack):
    from pixel_cascade.nodes.memory import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("out of memory"))  # not a device error type
    if hasattr(torch, "AcceleratorError"):
        try:
            error = torch.AcceleratorError("CUDA error: out of memory")
        except TypeError:
            pytest.skip("torch.AcceleratorError cannot be built from Python in this torch")
        assert is_out_of_memory(error)
