"""What :meth:`ModelManager.report` returns: where each model is, bytes per device, the last eviction."""
from __future__ import annotations

from dataclasses import dataclass, field

from .policy import GIB

__all__ = ["ModelPlacement", "Eviction", "MemoryReport"]


@dataclass(frozen=True)
class ModelPlacement:
    """One model: ``state`` is ``resident`` (all weights on ``device``), ``streamed`` (block mode, ready: small
    weights on ``device``, blocks streamed from the host) or ``offloaded`` (all weights in host memory)."""

    name: str
    device: str
    policy: str  # as requested: keep / model / block / auto
    mode: str  # as resolved: keep / model / block
    state: str
    weight_bytes: int  # all parameters + buffers
    device_bytes: int  # counted against the device now (streamed: resident weights + two largest blocks)
    host_bytes: int  # host (pinned on CUDA) copies held


@dataclass(frozen=True)
class Eviction:
    """Why a model went back to host memory."""

    evicted: str
    device: str
    for_model: str
    needed_bytes: int
    used_bytes: int  # counted on the device before the eviction
    budget_bytes: int

    @property
    def reason(self) -> str:
        return (f"{self.evicted} left {self.device} to make room for {self.for_model}: it needs "
                f"{_gib(self.needed_bytes)}, {_gib(self.used_bytes)} of the {_gib(self.budget_bytes)} usable "
                "were in use (least recently used first)")


@dataclass(frozen=True)
class MemoryReport:
    policy: str
    models: tuple[ModelPlacement, ...]
    device_bytes: dict[str, int]  # per device (as counted against budgets)
    budgets: dict[str, int | None]  # usable bytes per device (budget minus reserve; None = unlimited)
    host_bytes: int
    last_eviction: Eviction | None = None
    evictions: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def model(self, name: str) -> ModelPlacement:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"no model named {name!r} in the report (models: {[m.name for m in self.models]})")

    def __str__(self) -> str:
        lines = [f"policy {self.policy}; host copies {_gib(self.host_bytes)}"]
        for device, used in self.device_bytes.items():
            budget = self.budgets.get(device)
            lines.append(f"  {device}: {_gib(used)} used of {'no budget' if budget is None else _gib(budget)}")
        for m in self.models:
            lines.append(f"  {m.name:<14} {m.mode:<6} {m.state:<10} on {m.device:<7} weights {_gib(m.weight_bytes)}, "
                         f"on device {_gib(m.device_bytes)}")
        last = self.last_eviction
        lines.append(f"  evictions: {self.evictions}" + (f"; last: {last.reason}" if last else ""))
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _gib(n: int) -> str:
    return f"{n / GIB:.3f} GiB" if n >= GIB // 1000 else f"{n / 1024:.1f} KiB"
