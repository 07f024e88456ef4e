"""Block streaming: run a model larger than its device budget with its weights kept on the host.

The model is cut into *units* (:func:`split_units`): its top-level children, with containers
(``nn.ModuleList`` / ``nn.ModuleDict``, e.g. a UNet's ``down_blocks`` and ``up_blocks``, T5's ``block``) and
children larger than ``max_unit_bytes`` split further. Units no larger than ``small_unit_bytes`` and weights
shared between units stay on the device while the model is ready (so ``unet.device`` -- ``conv_in`` -- is the
compute device); every other unit's weights live in (pinned, on CUDA) host memory and are streamed:

* a forward pre-hook on unit ``i`` installs its device copy -- already prefetched, or copied now -- and starts
  copying the next unit (in the call order recorded on the first forward) on a side CUDA stream;
* the compute stream waits on that copy's CUDA event (``wait_event``: no host-device synchronisation inside a
  forward) and ``record_stream`` keeps the allocator from reusing the memory before the compute is done;
* a forward post-hook (``always_call``) puts the host tensors back, dropping the device copy.

The root's pre-hook moves tensor inputs to the compute device. On the CPU the same code runs with no streams
and moves are no-ops, so outputs equal those of the fully loaded model. Inference only (no autograd through
streamed weights). A unit whose parameters are read without calling the unit (``F.linear(x, m.weight)`` from a
parent) would see host tensors: such a model raises a device-mismatch error on CUDA, never silently differs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .tensors import Weights, build, module_bytes

__all__ = ["split_units", "BlockStreamer"]


def split_units(model: nn.Module, max_unit_bytes: int) -> list[tuple[str, nn.Module]]:
    """``[(qualified name, module)]`` in registration order: the units block streaming moves one at a time."""
    units: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def visit(prefix: str, m: nn.Module, top: bool) -> None:
        if id(m) in seen:
            return  # a module reachable twice (tied embeddings) is one unit
        seen.add(id(m))
        size = module_bytes(m)
        children = list(m.named_children())
        if size == 0:
            return
        container = isinstance(m, (nn.ModuleList, nn.ModuleDict))
        if children and (top or container or size > max_unit_bytes):
            for name, child in children:
                visit(f"{prefix}.{name}" if prefix else name, child, False)
            return
        units.append((prefix or "<root>", m))

    visit("", model, True)
    return units


@dataclass
class _Unit:
    name: str
    module: nn.Module
    weights: Weights
    home: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.home)


@dataclass
class _Fetched:
    tensors: list[torch.Tensor]
    event: Any  # torch.cuda.Event or None on the CPU


class BlockStreamer:
    """Streams ``model``'s units to ``device`` around each unit's forward (see the module docstring).

    ``home``: slot key -> host tensor (the weights' offloaded copies); ``keep``: slot keys that stay resident;
    ``before_call`` runs at the start of every root forward.
    """

    def __init__(self, model: nn.Module, device: torch.device, home: dict[int, torch.Tensor], *,
                 max_unit_bytes: int, small_unit_bytes: int, keep: set[int] = frozenset(),
                 before_call: Callable[[], None] | None = None):
        self.model, self.device, self.before_call = model, device, before_call
        found = [(name, m, Weights.of(m)) for name, m in split_units(model, max_unit_bytes)]
        counts: dict[int, int] = {}
        for _, _, w in found:
            for k in w.keys():
                counts[k] = counts.get(k, 0) + 1
        shared = {k for k, n in counts.items() if n > 1} | set(keep)
        self.units: list[_Unit] = []
        for name, m, w in found:
            w = Weights([s for s in w.slots if s.key not in shared])
            if w.slots and sum(home[s.key].numel() * home[s.key].element_size() for s in w.slots) > small_unit_bytes:
                self.units.append(_Unit(name, m, w, [home[s.key] for s in w.slots]))
        streamed = {k for u in self.units for k in u.weights.keys()}
        self.resident = Weights.of(model, exclude=streamed)
        self.resident_home = [home[s.key] for s in self.resident.slots]
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.order: list[int] | None = None
        self.inflight: dict[int, _Fetched] = {}
        self.active: set[int] = set()
        self.is_ready = False
        self.peak_stream_bytes = 0
        self.fetches = 0
        self.prefetch_hits = 0
        self._trace: list[int] = []
        self._handles: list = []
        self._attach()

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def resident_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.resident_home)

    @property
    def need_bytes(self) -> int:
        """Device bytes the model needs while streaming: resident weights + the two largest units."""
        sizes = sorted((u.nbytes for u in self.units), reverse=True)
        return self.resident_bytes + sum(sizes[:2])

    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    # -- readiness (called by the manager, never inside a forward) -------------------------------
    def ready(self) -> None:
        """Put the resident weights on the device (all at once; an exception leaves them on the host)."""
        if not self.is_ready:
            self.resident.install(build(self.resident_home, self.device, non_blocking=True))
            self.is_ready = True

    def release(self) -> None:
        """Everything back on the host (also repairs a forward interrupted by KeyboardInterrupt)."""
        self.heal()
        self.resident.install(self.resident_home)
        self.is_ready = False

    def heal(self, *, keep_prefetch: bool = False) -> None:
        """Put back the host tensors of units left installed by an interrupted forward; drop prefetched copies
        (``keep_prefetch``: keep them, they are valid copies of unchanged weights)."""
        for i in sorted(self.active):
            self.units[i].weights.install(self.units[i].home)
        self.active.clear()
        if not keep_prefetch:
            self.inflight.clear()

    def detach(self) -> None:
        """Remove the hooks (after :meth:`release`)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- hooks -----------------------------------------------------------------------------------
    def _attach(self) -> None:
        self._handles.append(self.model.register_forward_pre_hook(self._root_pre, with_kwargs=True))
        self._handles.append(self.model.register_forward_hook(self._root_post, always_call=True))
        for i, unit in enumerate(self.units):
            self._handles.append(unit.module.register_forward_pre_hook(lambda m, a, i=i: self._pre(i)))
            self._handles.append(unit.module.register_forward_hook(lambda m, a, o, i=i: self._post(i),
                                                                   always_call=True))

    def _move(self, value):
        if isinstance(value, torch.Tensor) and value.device != self.device:
            return value.to(self.device, non_blocking=True)
        if isinstance(value, (list, tuple)):
            return type(value)(self._move(v) for v in value)
        if isinstance(value, dict):
            return {k: self._move(v) for k, v in value.items()}
        return value

    def _root_pre(self, module, args, kwargs):
        if self.before_call is not None:
            self.before_call()
        self.heal(keep_prefetch=True)
        self._trace = []
        return self._move(args), self._move(kwargs)

    def _root_post(self, module, args, output):
        """Restore the units; prefetch the first unit of the next call (sampling loops call the model again).
        After an exception (``output`` is None for ``always_call`` hooks) nothing is recorded or prefetched."""
        failed = output is None
        if self._trace and not failed:
            self.order = self._trace
        self._trace = []
        self.heal()
        if self.order and self.is_ready and not failed:
            self.inflight[self.order[0]] = self._fetch(self.order[0])

    def _fetch(self, i: int) -> _Fetched:
        self.fetches += 1
        if self.stream is None:
            return _Fetched(build(self.units[i].home, self.device), None)
        with torch.cuda.stream(self.stream):
            tensors = build(self.units[i].home, self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        return _Fetched(tensors, event)

    def _next(self, k: int, i: int) -> int | None:
        order = self.order
        if order is not None and k + 1 < len(order) and order[k] == i:
            return order[k + 1]
        return i + 1 if order is None and i + 1 < len(self.units) else None

    def _pre(self, i: int) -> None:
        if i in self.active:
            return
        k = len(self._trace)
        self._trace.append(i)
        fetched = self.inflight.pop(i, None)
        self.inflight.clear()  # a prefetch of a unit that did not come next (order changed) is dropped
        if fetched is None:
            fetched = self._fetch(i)
        else:
            self.prefetch_hits += 1
        if fetched.event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(fetched.event)
            for t in fetched.tensors:
                t.record_stream(current)
        self.units[i].weights.install(fetched.tensors)
        self.active.add(i)
        nxt = self._next(k, i)
        if nxt is not None and nxt not in self.inflight and nxt not in self.active:
            self.inflight[nxt] = self._fetch(nxt)
        held = sum(self.units[j].nbytes for j in self.active | set(self.inflight))
        self.peak_stream_bytes = max(self.peak_stream_bytes, held)

    def _post(self, i: int) -> None:
        if i in self.active:
            self.units[i].weights.install(self.units[i].home)
            self.active.discard(i)
