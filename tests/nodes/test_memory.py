"""Out-of-memory handling of the node layer: unload everything else, retry once, then say what to change."""
from __future__ import annotations

import pytest
import torch


def test_oom_is_retried_once_after_unloading(pack, monkeypatch):
    import comfy.model_management as mm

    from pixel_cascade.nodes import memory

    unloaded = []
    monkeypatch.setattr(mm, "unload_all_models", lambda: unloaded.append(True))
    monkeypatch.setattr(memory, "use", lambda handles, memory_required=0: None)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return "image"

    assert memory.run_with_oom_retry(flaky, [], "Base 64 Sampler") == "image"
    assert len(attempts) == 2 and unloaded == [True]

    def always():
        raise torch.OutOfMemoryError("CUDA out of memory")

    advice = "Base 64 Sampler: out of memory.*batch_size.*float8_e4m3fn.*T5 Loader device=cpu"
    with pytest.raises(RuntimeError, match=advice):
        memory.run_with_oom_retry(always, [], "Base 64 Sampler")


def test_other_errors_are_not_retried(pack, monkeypatch):
    from pixel_cascade.nodes import memory

    monkeypatch.setattr(memory, "use", lambda handles, memory_required=0: None)
    calls = []

    def bad():
        calls.append(1)
        raise ValueError("Base 64 Sampler: input 'width' ...")

    with pytest.raises(ValueError, match="width"):
        memory.run_with_oom_retry(bad, [], "Base 64 Sampler")
    assert len(calls) == 1
