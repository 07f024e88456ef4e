"""Our models under ComfyUI's memory manager: ModelPatcher wrapping, GPU loading, reuse, OOM retry.

Models whose weight layers are ComfyUI's ``comfy.ops`` (the UNets and T5, by :func:`adopt_comfy_ops`) take part
in ComfyUI's memory management fully: they are wrapped in ``CoreModelPatcher`` where ComfyUI has it (0.3x: the
Dynamic VRAM patcher when ``comfy-aimdo`` is active, else the plain one) and loaded without ``force_full_load``, so
low-VRAM partial loading (``--lowvram``, ``--reserve-vram``, small cards) streams their weights layer by layer.
Other models (GIT, CLIP, the x4 upscaler) are loaded whole, as before.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import logging
import weakref
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from cascade_core.unet.ops import CAST_OPS

from ._comfy import ModelPatcher, comfy_ops, model_management, model_patcher
from .types import ModelHandle

logger = logging.getLogger(__name__)
T = TypeVar("T")

_LOADED: "weakref.WeakValueDictionary[tuple, ModelHandle]" = weakref.WeakValueDictionary()


class ManagedModule(nn.Module):
    """Holds one of our modules for ModelPatcher, which moves ``self`` and writes ``self.device``.
    ``manual_cast_dtype``: the compute dtype when weights are stored in another one (fp8), which ComfyUI's
    loader reads for its offload-memory estimate."""

    def __init__(self, inner: nn.Module, device: torch.device, manual_cast_dtype: torch.dtype | None = None):
        super().__init__()
        self.inner = inner
        self.device = device
        self.manual_cast_dtype = manual_cast_dtype


_ADOPTED = ("Linear", "Conv2d", "GroupNorm", "LayerNorm", "Embedding")


def adopt_comfy_ops(module: nn.Module, *, always_cast: bool = False) -> int:
    """Turn the weight layers of a loaded model (plain torch layers, or ``cascade_core``'s casting ones) into
    ComfyUI's ``comfy.ops`` equivalents in place: same parameters, the classes only add ComfyUI's per-call weight
    casting, so partial loading and Dynamic VRAM can offload them. ``always_cast``: ``manual_cast`` layers (cast
    every call: weights stored in another dtype, e.g. fp8), else ``disable_weight_init`` (cast only when ComfyUI
    offloads the layer). Returns how many layers were converted.

    Why after loading and not through the UNet's ``operations=`` hook: ComfyUI 0.33's ``comfy.ops`` layers skip
    allocating their weights when Dynamic VRAM is on (they expect ``load_state_dict``), so a model built from them
    has no weights to check a checkpoint against; the pack's one strict loading path needs real layers. The classes
    keep their state in class attributes (``comfy_cast_weights``, the weight-function lists), so changing a layer's
    class is exact, except the Embedding's ``bias = None``, which is set here."""
    ops = comfy_ops.manual_cast if always_cast else comfy_ops.disable_weight_init
    n = 0
    for m in module.modules():
        for name in _ADOPTED:
            base = getattr(nn, name)
            if isinstance(m, base) and type(m).__module__ in (base.__module__, CAST_OPS.Linear.__module__):
                m.__class__ = getattr(ops, name)
                if not hasattr(m, "bias"):  # comfy.ops' Embedding sets bias = None in reset_parameters, not run
                    m.bias = None  # here; 0.33's partial loading reads every castable layer's bias
                n += 1
    return n


def fully_castable(module: nn.Module) -> bool:
    """Whether every parameter of ``module`` sits in a layer that computes correctly wherever ComfyUI leaves its
    weight (a ``comfy.ops`` layer, or one of ours marked ``device_tolerant``): then partial loading is safe."""
    return all(hasattr(type(m), "comfy_cast_weights") or getattr(m, "device_tolerant", False)
               for m in module.modules() if next(m.parameters(recurse=False), None) is not None)


def _identity(path: Path) -> tuple:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def _patcher_class(partial: bool):
    """``CoreModelPatcher`` (Dynamic VRAM where ComfyUI enables it) for comfy-ops models, else ``ModelPatcher``."""
    return getattr(model_patcher, "CoreModelPatcher", ModelPatcher) if partial else ModelPatcher


def _named(error: Exception, where: str) -> Exception:
    """``error`` of the same type with its message prefixed by ``where`` (the node and input)."""
    try:
        return type(error)(f"{where}: {error}")
    except TypeError:  # an exception type with another constructor
        return ValueError(f"{where}: {error}")


def load_managed(kind: str, path: Path, build: Callable[[], tuple], *, dtype: torch.dtype, load_device,
                 offload_device, where: str, options: tuple = (), partial: bool = False,
                 manual_cast_dtype: torch.dtype | None = None) -> ModelHandle:
    """The model loaded from ``path`` under ComfyUI's memory manager, reused when the same files were already
    loaded with the same dtype, devices and ``options``. ``build() -> (model, weights module, display name)``.
    ``where``: the node and input, for messages (e.g. "Cascade UNet Loader: input 'unet_name'"), which name the
    file too. ``partial``: ComfyUI may load the weights module partially (it is built from ``comfy.ops`` layers);
    honoured only when :func:`fully_castable` agrees, else the model is loaded whole."""
    key = (kind, _identity(path), dtype, str(load_device), str(offload_device), options, partial)
    handle = _LOADED.get(key)
    if handle is not None:
        logger.info("reusing loaded %s %s", kind, path.name)
        return handle
    try:
        model, module, name = build()
    except MemoryError:
        raise  # host out-of-memory: the node's caller retries and advises
    except (ValueError, OSError) as e:  # the loaders' named errors (missing, broken, foreign files)
        raise _named(e, where) from None
    if partial and not fully_castable(module):
        logger.info("%s %s has layers that cannot be offloaded one by one: it loads whole", kind, path.name)
        partial = False
    patcher = _patcher_class(partial)(ManagedModule(module, offload_device, manual_cast_dtype),
                                      load_device=load_device, offload_device=offload_device)
    handle = _LOADED[key] = ModelHandle(model=model, patcher=patcher, name=name, dtype=dtype, partial=partial)
    logger.info("Pixel Cascade: loaded %s %s (%s, %s)", kind, name, "partial loading" if partial else "whole", dtype)
    weakref.finalize(handle, logger.info, "Pixel Cascade: released %s %s", kind, name)
    return handle


def use(handles: list[ModelHandle], memory_required: int = 0) -> None:
    """Bring models onto their load device, asking ComfyUI for ``memory_required`` bytes of working memory
    beside them (it frees other models to make room). Whole-load models first, then the partially loadable
    ones, which take what is left."""
    whole = [h.patcher for h in handles if not h.partial]
    partial = [h.patcher for h in handles if h.partial]
    if whole:
        model_management.load_models_gpu(whole, memory_required=memory_required, force_full_load=True)
    if partial:
        model_management.load_models_gpu(partial, memory_required=memory_required)


_HOST_OOM = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory")
GIB = 1024 ** 3


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an out-of-memory error: on the device (``torch.OutOfMemoryError``, or with newer torch,
    as newer ComfyUI treats it, a ``torch.AcceleratorError`` saying "out of memory") or on the host (``MemoryError``,
    or torch's CPU allocator failing)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return "out of memory" in str(error).lower()
    return isinstance(error, RuntimeError) and any(s in str(error) for s in _HOST_OOM)


def check_fits(what: str, needed_bytes: int, device: torch.device, advice: str) -> None:
    """Refuse up front work whose working memory (``needed_bytes``, an estimate) exceeds all of ``device``'s
    memory (RAM for the CPU): it could never run, and trying would only stall the machine."""
    total = model_management.get_total_memory(device)
    if needed_bytes > 0.9 * total:
        where = "RAM" if device.type == "cpu" else f"memory on {device}"
        raise ValueError(f"{what} needs about {needed_bytes / GIB:.1f} GiB of working memory, more than the "
                         f"{total / GIB:.1f} GiB of {where}: {advice}")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_host_memory() -> None:
    """Hand the heap memory glibc keeps after large frees back to the system (about 7 ms). Without it the
    server's RSS grew 13 % over 200 varied prompts with nothing live growing (bench/results/soak.json)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def run_with_oom_retry(fn: Callable[[], T], handles: list[ModelHandle], what: str, memory_required: int = 0) -> T:
    """Run ``fn``; on out-of-memory (device or host) free everything else, retry once, then say what to change.
    Afterwards the host heap's freed memory goes back to the system (:func:`release_freed_host_memory`)."""
    try:
        return _run_with_oom_retry(fn, handles, what, memory_required)
    finally:
        release_freed_host_memory()


def _run_with_oom_retry(fn: Callable[[], T], handles: list[ModelHandle], what: str, memory_required: int) -> T:
    for retry in (False, True):
        try:
            use(handles, memory_required)
            return fn()
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            if retry:
                need = f" (it needs about {memory_required / GIB:.1f} GiB beside the model)" if memory_required else ""
                raise RuntimeError(
                    f"{what}: out of memory even after unloading other models{need}. Lower batch_size or the image "
                    "size, load the UNet with weight_dtype float8_e4m3fn (Cascade UNet Loader), start ComfyUI with "
                    "--lowvram, or run the T5 encoder on the CPU (T5 Loader device=cpu)."
                ) from e
        logger.warning("%s ran out of memory; unloading other models and retrying once", what)
        model_management.unload_all_models()
        model_management.soft_empty_cache(True)
        gc.collect()
    raise AssertionError("unreachable")


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
