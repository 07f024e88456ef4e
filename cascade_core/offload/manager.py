"""``ModelManager``: which model's weights are on which device, under a per-device memory budget.

Models are registered by name with a target device (``add``); ``use(name)`` (or ``with using(name)``) makes
one ready to call on its device according to its policy (:mod:`.policy`): resident (``keep`` / ``model``) or
streamed block by block (``block``). Calling a registered module also makes it ready (a forward pre-hook).

Budgets are the manager's own accounting of weight bytes (parameters + buffers, ``element_size`` per element)
per target device: ``budget_gib`` applies to every accelerator (non-CPU) device, ``device_budgets`` gives bytes
per device explicitly -- including ``"cpu"``, which otherwise counts against no budget: with a CPU target the
moves are physical no-ops, but accounting, eviction order and residency are real, which is how CPU tests
simulate a device. Without a budget a CUDA device's is its free memory (``torch.cuda.mem_get_info``) plus what
the manager holds there. ``reserve_gib`` (default 1) is kept free on CUDA devices for activations.

Transfers build every moved tensor first and swap them in at once (:mod:`.tensors`), so an error or interrupt
never leaves a model half-moved. On CUDA, host copies are pinned once and reused and copies are non-blocking;
the only synchronisation is after a device-to-host copy, between stages. A registered module belongs to its
manager: move it with ``use`` / ``offload`` (not ``module.to(...)``), ``remove`` it to take it back.
"""
from __future__ import annotations

import logging
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from .policy import GIB, check_policy, choose_modes
from .report import Eviction, MemoryReport, ModelPlacement
from .streaming import BlockStreamer
from .tensors import Weights, build, cuda_ok, normalize_device, pin, tensor_bytes, to_host

__all__ = ["ModelManager", "MemoryBudgetError"]

log = logging.getLogger(__name__)

_OWNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (manager, name): one manager each


class MemoryBudgetError(RuntimeError):
    """A model cannot be placed within its device's budget under the chosen policy."""


@dataclass
class _Entry:
    name: str
    module: nn.Module
    device: torch.device
    policy: str
    writeback: bool | None
    keep_resident: tuple[nn.Module, ...]
    weights: Weights
    home: list[torch.Tensor] | None  # host copies (None: a keep model on its device)
    nbytes: int
    mode: str = ""
    state: str = "offloaded"  # resident / streamed / offloaded
    tick: int = 0
    held: int = 0
    pinned: bool = False
    streamer: BlockStreamer | None = None
    hook: object = None


class ModelManager:
    """Per-model placement under per-device budgets (see the module docstring).

    ``policy``: ``keep`` / ``model`` / ``block`` / ``auto`` for every model (``add(policy=...)`` overrides one);
    ``budget_gib``: budget of each accelerator device; ``device_budgets``: ``{device: bytes}`` (also ``"cpu"``);
    ``reserve_gib``: left free on CUDA devices for activations; ``pin_memory``: pinned host copies on CUDA.
    """

    def __init__(self, policy: str = "auto", *, budget_gib: float | None = None,
                 device_budgets: Mapping[str, int] | None = None, reserve_gib: float = 1.0, pin_memory: bool = True):
        self.policy = check_policy(policy)
        self.budget_bytes = None if budget_gib is None else int(budget_gib * GIB)
        self.device_budgets = {normalize_device(d): int(b) for d, b in (device_budgets or {}).items()}
        self.reserve_bytes = int(reserve_gib * GIB)
        self.pin_memory = pin_memory
        self.last_eviction: Eviction | None = None
        self.evictions = 0
        self._entries: dict[str, _Entry] = {}
        self._tick = 0
        self._dirty = False
        self._lock = threading.RLock()

    # -- registration ---------------------------------------------------------------------------
    def add(self, name: str, module: nn.Module, *, device: str | torch.device | None = None,
            policy: str | None = None, writeback: bool | None = None,
            keep_resident: Sequence[nn.Module] = ()) -> nn.Module:
        """Register ``module`` to run on ``device`` (default: CUDA if present, else CPU); returns it.

        ``writeback``: on eviction copy the device weights back to the host copy -- None (default): only
        parameters with ``requires_grad`` (others are frozen: the host copy is still exact), True: all, False:
        none. ``keep_resident``: submodules kept on the device in ``block`` mode (e.g. a UNet's ``conv_in``,
        whose weight tells ``unet.device``)."""
        if not isinstance(module, nn.Module):
            raise TypeError(f"ModelManager.add({name!r}): expected an nn.Module, got {type(module).__name__} "
                            "(register a TextEncoder's .model, an Upscaler's .unet / .vae / .text.model)")
        with self._lock:
            if name in self._entries:
                raise ValueError(f"ModelManager.add: a model named {name!r} is already registered")
            owner = _OWNERS.get(module)
            if owner is not None:
                raise ValueError(f"ModelManager.add({name!r}): this module is already managed (as "
                                 f"{owner[1]!r} by {'this' if owner[0] is self else 'another'} ModelManager); "
                                 "remove it there first, or register a copy")
            device = normalize_device(device if device is not None else ("cuda" if cuda_ok() else "cpu"))
            weights = Weights.of(module)
            current = weights.current()
            e = _Entry(name, module, device, check_policy(policy or self.policy, f"policy of {name!r}"), writeback,
                       tuple(keep_resident), weights, current, sum(tensor_bytes(t) for t in current))
            if current and all(t.device == device for t in current) and device.type != "cpu":
                e.home, e.state = None, "resident"
            elif any(t.device.type != "cpu" for t in current):
                self._to_host(e)
            e.hook = module.register_forward_pre_hook(lambda m, a, n=name: self._on_call(n), prepend=True)
            _OWNERS[module] = (self, name)
            self._entries[name] = e
            self._dirty = True
            return module

    def remove(self, name: str) -> nn.Module:
        """Unregister ``name``: its weights go back to host memory and its hooks are removed; returns it."""
        with self._lock:
            e = self._entry(name)
            self._offload(e)
            if e.streamer is not None:
                e.streamer.detach()
            e.hook.remove()
            _OWNERS.pop(e.module, None)
            del self._entries[name]
            self._dirty = True
            return e.module

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def device_of(self, name: str) -> torch.device:
        """The device ``name`` computes on (with streaming its weights' own device is the host)."""
        return self._entry(name).device

    def mode_of(self, name: str) -> str:
        """The resolved policy of ``name``: ``keep``, ``model`` or ``block``."""
        with self._lock:
            self._plan()
            return self._entry(name).mode

    # -- use --------------------------------------------------------------------------------------
    def use(self, name: str) -> nn.Module:
        """Make ``name`` ready on its device (evicting least-recently-used models if needed); returns it."""
        with self._lock:
            self._plan()
            e = self._entry(name)
            self._tick += 1
            e.tick = self._tick
            self._activate(e)
            return e.module

    @contextmanager
    def using(self, *names: str) -> Iterator[nn.Module | tuple[nn.Module, ...]]:
        """``with manager.using("base") as unet:``: ready and protected from eviction inside the block (several
        names: a tuple of modules). On exit a streamed model's interrupted forward is repaired."""
        entries = [self._entry(n) for n in names]
        for e in entries:
            e.held += 1
        try:
            modules = tuple(self.use(n) for n in names)
            yield modules[0] if len(modules) == 1 else modules
        finally:
            for e in entries:
                e.held -= 1
                if e.streamer is not None:
                    e.streamer.heal()

    def offload(self, name: str) -> None:
        """Move ``name``'s weights to host memory now (any policy, ``keep`` included)."""
        with self._lock:
            self._offload(self._entry(name))

    def offload_all(self) -> None:
        with self._lock:
            for e in self._entries.values():
                self._offload(e)

    # -- report -----------------------------------------------------------------------------------
    def report(self) -> MemoryReport:
        """Where each model is, bytes per device, usable budgets and the last eviction (``str()`` reads well)."""
        with self._lock:
            self._plan()
            models, per_device = [], {}
            for e in self._entries.values():
                used = self._device_bytes(e)
                per_device[str(e.device)] = per_device.get(str(e.device), 0) + used
                host = 0 if e.home is None else sum(tensor_bytes(t) for t in e.home)
                models.append(ModelPlacement(e.name, str(e.device), e.policy, e.mode, e.state, e.nbytes, used, host))
            devices = {e.device for e in self._entries.values()}
            return MemoryReport(self.policy, tuple(models), per_device, {str(d): self._usable(d) for d in devices},
                                sum(m.host_bytes for m in models), self.last_eviction, self.evictions)

    # -- internals ----------------------------------------------------------------------------------
    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no model named {name!r} is registered (registered: {list(self._entries)})") from None

    def _on_call(self, name: str) -> None:
        e = self._entries.get(name)
        if e is not None and (e.state == "offloaded" or e.mode == ""):
            self.use(name)

    def _usable(self, device: torch.device) -> int | None:
        """Bytes of weights the manager may place on ``device`` (None = unlimited)."""
        budget = self.device_budgets.get(device)
        if budget is not None:
            return budget
        if device.type == "cpu":
            return None
        budget = self.budget_bytes
        if budget is None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            budget = free + cached + sum(self._device_bytes(e) for e in self._entries.values() if e.device == device)
        return None if budget is None else max(0, budget - self.reserve_bytes)

    def _plan(self) -> None:
        """Resolve every model's mode (``auto`` per device from the sizes of the models placed there)."""
        if not self._dirty:
            return
        for device in {e.device for e in self._entries.values()}:
            group = [e for e in self._entries.values() if e.device == device]
            usable = self._usable(device)
            auto = choose_modes({e.name: e.nbytes for e in group}, usable)
            for e in group:
                self._set_mode(e, auto[e.name] if e.policy == "auto" else e.policy, usable)
        self._dirty = False

    def _set_mode(self, e: _Entry, mode: str, usable: int | None) -> None:
        if mode == e.mode:
            return
        if e.mode:
            log.info("model %s: policy %s -> %s", e.name, e.mode, mode)
        if mode == "block" or e.mode == "block":  # keep <-> model: a resident model may stay where it is
            self._offload(e)
        if e.streamer is not None:
            e.streamer.detach()
            e.streamer = None
        e.mode = mode
        if mode == "block":
            self._pin(e)
            unit = max(1, (usable if usable is not None else e.nbytes) // 4)
            keep = {s.key for m in e.keep_resident for s in Weights.of(m).slots}
            home = {s.key: h for s, h in zip(e.weights.slots, e.home)}
            e.streamer = BlockStreamer(e.module, e.device, home, max_unit_bytes=unit, small_unit_bytes=unit // 16,
                                       keep=keep)

    def _device_bytes(self, e: _Entry) -> int:
        if e.state == "resident":
            return e.nbytes
        if e.state == "streamed":
            return e.streamer.need_bytes
        return 0

    def _activate(self, e: _Entry) -> None:
        if e.mode == "block":
            if e.state != "streamed":
                self._make_room(e, e.streamer.need_bytes)
                e.streamer.ready()
                e.state = "streamed"
        elif e.state != "resident":
            if e.mode == "model":
                self._make_room(e, e.nbytes)
            self._load(e)

    def _make_room(self, e: _Entry, need: int) -> None:
        """Evict least-recently-used ``model``-mode models on ``e.device`` until ``need`` more bytes fit."""
        usable = self._usable(e.device)
        if usable is None:
            return
        others = [o for o in self._entries.values() if o is not e and o.device == e.device]
        used = sum(self._device_bytes(o) for o in others)
        if used + need <= usable:
            return
        if need > usable and e.mode == "model":
            raise MemoryBudgetError(
                f"model {e.name!r} needs {need / GIB:.2f} GiB but {e.device} has {usable / GIB:.2f} GiB usable: "
                "use policy 'block' (streamed) or 'auto', or raise budget_gib")
        for o in sorted((o for o in others if o.state != "offloaded" and o.mode != "keep" and not o.held),
                        key=lambda o: o.tick):
            if used + need <= usable:
                break
            freed = self._device_bytes(o)
            self.last_eviction = Eviction(o.name, str(e.device), e.name, need, used, usable)
            self.evictions += 1
            log.info("evicting: %s", self.last_eviction.reason)
            self._offload(o)
            used -= freed
        if need > usable:
            log.warning("model %s: streaming needs %.3f GiB (resident weights + the two largest blocks), more than "
                        "the %.3f GiB usable on %s; going over the budget", e.name, need / GIB, usable / GIB, e.device)
        elif used + need > usable:
            log.warning("model %s: %.2f GiB needed, %.2f of %.2f GiB usable on %s stay taken by models that are in "
                        "use or kept; going over the budget", e.name, need / GIB, used / GIB, usable / GIB, e.device)

    def _pin(self, e: _Entry) -> None:
        """Pin the host copies once (CUDA targets only)."""
        if self.pin_memory and e.device.type == "cuda" and not e.pinned and e.home is not None:
            on_host = e.state == "offloaded"
            e.home = [pin(t) for t in e.home]
            if on_host:
                e.weights.install(e.home)
            e.pinned = True

    def _load(self, e: _Entry) -> None:
        if e.mode != "keep":
            self._pin(e)
        e.weights.install(build(e.home, e.device, non_blocking=True))
        e.state = "resident"
        if e.mode == "keep" and e.device.type != "cpu":
            e.home, e.pinned = None, False  # resident for good: no second copy on the host

    def _to_host(self, e: _Entry) -> None:
        """New host copies of device weights (pinned on CUDA), installed at once."""
        pinned = self.pin_memory and cuda_ok()
        home = [to_host(t, pinned=pinned) for t in e.weights.current()]
        if cuda_ok():
            torch.cuda.synchronize()
        e.weights.install(home)
        e.home, e.pinned, e.state = home, pinned, "offloaded"

    def _offload(self, e: _Entry) -> None:
        if e.state == "offloaded":
            return
        if e.state == "streamed":
            e.streamer.release()
        elif e.home is None:
            self._to_host(e)
        else:
            current = e.weights.current()
            copied = False
            for slot, home, t in zip(e.weights.slots, e.home, current):
                wanted = e.writeback or (e.writeback is None and slot.param is not None and slot.param.requires_grad)
                if wanted and home.data_ptr() != t.data_ptr():
                    home.copy_(t, non_blocking=True)
                    copied = True
            if copied and e.device.type == "cuda":
                torch.cuda.synchronize(e.device)
            e.weights.install(e.home)
        e.state = "offloaded"
