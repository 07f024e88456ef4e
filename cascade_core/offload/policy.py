"""Placement policies and the ``auto`` choice (pure functions of sizes and budgets).

* ``keep``: every model stays resident on its device once loaded (no budget is enforced).
* ``model``: a model moves to its device when its stage uses it; least-recently-used models on that device go
  back to host memory when the budget needs room.
* ``block``: the model's weights stay in host memory and are streamed block by block (:mod:`.streaming`).
* ``auto``: per device, from the budget (or free memory) and the sizes of the models placed there: all fit at
  once -> ``keep``; otherwise each model that fits alone -> ``model``, each larger one -> ``block``.
"""
from __future__ import annotations

from typing import Mapping

__all__ = ["POLICIES", "MODES", "GIB", "choose_modes", "check_policy"]

GIB = 1024**3
POLICIES = ("keep", "model", "block", "auto")
MODES = ("keep", "model", "block")  # what ``auto`` resolves to


def check_policy(policy: str, what: str = "policy") -> str:
    if policy not in POLICIES:
        raise ValueError(f"{what} must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


def choose_modes(sizes: Mapping[str, int], usable_bytes: int | None) -> dict[str, str]:
    """``auto`` for the models of one device: ``{name: "keep" | "model" | "block"}``.

    ``sizes``: weight bytes per model; ``usable_bytes``: the device's budget minus its reserve (None = unlimited).
    """
    if usable_bytes is None or sum(sizes.values()) <= usable_bytes:
        return {name: "keep" for name in sizes}
    return {name: ("model" if size <= usable_bytes else "block") for name, size in sizes.items()}
