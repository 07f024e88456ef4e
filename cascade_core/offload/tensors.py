"""A module's weights as one swappable set: count their bytes, copy them, and install a new set atomically.

Every parameter and buffer of a module (or of one streamed block) is a :class:`Slot`. A transfer first builds
all the moved tensors (:func:`build`, through :func:`copy_tensor`, the one place a tensor crosses devices), then
:meth:`Weights.install` swaps them in together; if anything raises (an out-of-memory error, a KeyboardInterrupt,
an injected failure), the tensors already swapped are put back, so a model is never left half-moved.

Parameters are swapped through ``param.data`` (the ``nn.Parameter`` objects stay, so tied weights stay tied);
buffers are re-assigned on every module that holds them. Byte counts use ``element_size`` (fp8 storage = 1 byte).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["Slot", "Weights", "tensor_bytes", "module_bytes", "copy_tensor", "build", "to_host", "pin",
           "normalize_device", "cuda_ok"]


def cuda_ok() -> bool:
    """True when CUDA can be used (pinned memory, streams, events)."""
    return torch.cuda.is_available()


def normalize_device(device: str | torch.device) -> torch.device:
    """``torch.device`` with the CUDA index filled in (``"cuda"`` -> ``cuda:<current>``); clear error without CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        if not cuda_ok():
            raise ValueError(f"device {device} was requested but CUDA is not available on this machine (use 'cpu')")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def tensor_bytes(t: torch.Tensor) -> int:
    """Storage bytes of ``t`` (``numel * element_size``; float8 counts 1 byte per element)."""
    return t.numel() * t.element_size()


def copy_tensor(t: torch.Tensor, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """``t`` on ``device``: ``t`` itself when it is already there (moves to the same device are no-ops), else a
    copy (asynchronous from pinned host memory with ``non_blocking``). Tests monkeypatch this to inject failures."""
    if t.device == device:
        return t
    return t.to(device, non_blocking=non_blocking, copy=True)


def pin(t: torch.Tensor) -> torch.Tensor:
    """A page-locked copy of host tensor ``t`` where CUDA is available (else ``t``); already pinned: ``t``."""
    if not cuda_ok() or t.device.type != "cpu" or t.is_pinned():
        return t
    return t.pin_memory()


def to_host(t: torch.Tensor, *, pinned: bool) -> torch.Tensor:
    """A host copy of device tensor ``t`` (page-locked when ``pinned`` and CUDA is there); host ``t``: itself."""
    if t.device.type == "cpu":
        return t
    if pinned and cuda_ok():
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)  # the caller synchronizes before using it
        return host
    return copy_tensor(t, torch.device("cpu"))


def build(tensors: Sequence[torch.Tensor], device: torch.device, *, non_blocking: bool = False) -> list[torch.Tensor]:
    """Copies of ``tensors`` on ``device`` (normal tensors even inside ``torch.inference_mode``)."""
    with torch.inference_mode(False), torch.no_grad():
        return [copy_tensor(t, device, non_blocking) for t in tensors]


@dataclass
class Slot:
    """One weight tensor: a parameter (``param`` set) or a buffer held by ``holders`` as ``(module, name)``."""

    param: nn.Parameter | None = None
    holders: list[tuple[nn.Module, str]] = field(default_factory=list)
    key: int = 0  # id of the parameter / of the buffer tensor when the slot was made (stable across swaps)

    def get(self) -> torch.Tensor:
        if self.param is not None:
            return self.param.data
        module, name = self.holders[0]
        return module._buffers[name]

    def set(self, t: torch.Tensor) -> None:
        if self.param is not None:
            self.param.data = t
            return
        for module, name in self.holders:
            module._buffers[name] = t


def _slots(modules: Iterable[nn.Module]) -> list[Slot]:
    """The distinct parameters and buffers of ``modules`` and all their submodules (tied ones once)."""
    slots: dict[int, Slot] = {}
    for root in modules:
        for m in root.modules():
            for p in m._parameters.values():
                if p is not None and id(p) not in slots:
                    slots[id(p)] = Slot(param=p, key=id(p))
            for name, b in m._buffers.items():
                if b is not None:
                    slot = slots.setdefault(id(b), Slot(key=id(b)))
                    if not any(h is m and n == name for h, n in slot.holders):
                        slot.holders.append((m, name))
    return list(slots.values())


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's distinct parameters and buffers."""
    return sum(tensor_bytes(s.get()) for s in _slots([module]))


class Weights:
    """The weight tensors of some modules, swapped in and out together."""

    def __init__(self, slots: list[Slot]):
        self.slots = slots

    @classmethod
    def of(cls, *modules: nn.Module, exclude: set[int] | None = None) -> Weights:
        """All slots of ``modules`` except those whose :attr:`Slot.key` is in ``exclude``."""
        exclude = exclude or set()
        return cls([s for s in _slots(modules) if s.key not in exclude])

    def keys(self) -> set[int]:
        return {s.key for s in self.slots}

    def current(self) -> list[torch.Tensor]:
        return [s.get() for s in self.slots]

    @property
    def nbytes(self) -> int:
        return sum(tensor_bytes(t) for t in self.current())

    def install(self, tensors: Sequence[torch.Tensor]) -> None:
        """Swap ``tensors`` in (same order as :attr:`slots`); on any exception all slots keep their old tensors."""
        if len(tensors) != len(self.slots):
            raise ValueError(f"install: {len(tensors)} tensors for {len(self.slots)} weight slots")
        old = self.current()
        done = 0
        try:
            for slot, t in zip(self.slots, tensors):
                slot.set(t)
                done += 1
        except BaseException:
            for slot, t in zip(self.slots[:done + 1], old[:done + 1]):
                slot.set(t)
            raise

