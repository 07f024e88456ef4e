"""Our models under ComfyUI's memory manager: ModelPatcher wrapping, GPU loading, reuse, OOM retry."""
from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from ._comfy import ModelPatcher, model_management
from .types import ModelHandle

logger = logging.getLogger(__name__)
T = TypeVar("T")

_LOADED: "weakref.WeakValueDictionary[tuple, ModelHandle]" = weakref.WeakValueDictionary()


class ManagedModule(nn.Module):
    """Holds one of our modules for ModelPatcher, which moves ``self`` and writes ``self.device``."""

    def __init__(self, inner: nn.Module, device: torch.device):
        super().__init__()
        self.inner = inner
        self.device = device


def _identity(path: Path) -> tuple:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def load_managed(kind: str, path: Path, build: Callable[[], tuple], *, dtype: torch.dtype, load_device,
                 offload_device, options: tuple = ()) -> ModelHandle:
    """The model loaded from ``path`` under ComfyUI's memory manager, reused when the same files were already
    loaded with the same dtype, devices and ``options``. ``build() -> (model, weights module, display name)``."""
    key = (kind, _identity(path), dtype, str(load_device), str(offload_device), options)
    handle = _LOADED.get(key)
    if handle is not None:
        logger.info("reusing loaded %s %s", kind, path.name)
        return handle
    model, module, name = build()
    patcher = ModelPatcher(ManagedModule(module, offload_device), load_device=load_device,
                           offload_device=offload_device)
    handle = _LOADED[key] = ModelHandle(model=model, patcher=patcher, name=name, dtype=dtype)
    return handle


def use(handles: list[ModelHandle]) -> None:
    """Bring models onto their load device (ComfyUI frees others to make room)."""
    model_management.load_models_gpu([h.patcher for h in handles], force_full_load=True)


def run_with_oom_retry(fn: Callable[[], T], handles: list[ModelHandle], what: str) -> T:
    """Run ``fn``; on out-of-memory free everything else, retry once, then say what to change."""
    try:
        use(handles)
        return fn()
    except torch.OutOfMemoryError:
        logger.warning("%s ran out of GPU memory; unloading other models and retrying once", what)
    model_management.unload_all_models()
    model_management.soft_empty_cache(True)
    try:
        use(handles)
        return fn()
    except torch.OutOfMemoryError as e:
        raise RuntimeError(
            f"{what}: out of GPU memory even after unloading other models. Lower batch_size or the image size, "
            "load the model in float16/bfloat16, or run the T5 encoder on the CPU (T5 Loader device=cpu)."
        ) from e


SUPPORTED = (torch.bfloat16, torch.float16, torch.float32)


def default_dtype(choice: str, device: torch.device, role: str = "unet") -> torch.dtype:
    """A dtype widget value -> torch dtype. 'default' follows ComfyUI's choice for the device, including its
    command-line flags (--bf16-unet, --fp16-text-enc, --cpu ...): bf16 where supported, else fp16, fp32 on CPU."""
    if choice != "default":
        return getattr(torch, choice)
    if role == "text":
        flags = model_management.args
        for flag, dtype in (("fp16_text_enc", torch.float16), ("bf16_text_enc", torch.bfloat16),
                            ("fp32_text_enc", torch.float32)):
            if getattr(flags, flag, False):
                return dtype
    else:
        dtype = model_management.unet_dtype(device, supported_dtypes=list(SUPPORTED))
        if dtype in SUPPORTED:
            return dtype
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if model_management.should_use_bf16(device) else torch.float16
