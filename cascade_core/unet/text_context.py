"""What a UNet derives from the text alone, computed once per sampling loop instead of once per step.

The text states' projection (IF's ``encoder_hid_proj``), the pooled text embedding (IF's ``add_embedding``) and
every attention layer's text keys/values do not depend on the timestep or the image. A :class:`TextContext`
holds them for one text batch; attention layers ask it for their keys/values (:meth:`TextContext.keys_values`),
computing them on first use. Inside :func:`reuse_text_context` (``run_sampler`` enters it around the loop, when
the weights cannot change) a UNet keeps the context of the text tensor it was last given and reuses it while the
very same tensor object, unmodified, comes back, so the CFG guider's fixed [negative; positive] batch pays the text
work once per stage (x4 tiles share it too). Outside the scope every call computes afresh (training, tests).
"""
from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["TextContext", "reuse_text_context", "tensor_version", "text_context_for", "text_work_per_step"]

KeysValues = tuple[Tensor, Tensor]

# None: no reuse (the default); a dict {id(unet): (weakref to the text tensor, its _version, TextContext)}
_reuse: contextvars.ContextVar[dict | None] = contextvars.ContextVar("pixel_cascade_text_reuse", default=None)
_per_step = contextvars.ContextVar("pixel_cascade_text_per_step", default=False)


class TextContext:
    """One text batch as the UNet's layers see it: ``states`` [B, L, Dc] (the projected token states), ``pooled``
    [B, time_embed_dim] or None, and per attention layer its keys/values [B, L, C] each, made on first request."""

    def __init__(self, states: Tensor, pooled: Tensor | None = None):
        self.states = states
        self.pooled = pooled
        self._keys_values: dict[int, KeysValues] = {}

    def keys_values(self, layer: nn.Module, project: Callable[[Tensor], KeysValues]) -> KeysValues:
        """``project(states)`` for ``layer``, computed once per context."""
        kv = self._keys_values.get(id(layer))
        if kv is None:
            kv = self._keys_values[id(layer)] = project(self.states)
        return kv


def tensor_version(t: Tensor) -> int:
    """``t``'s in-place modification counter; -1 for inference-mode tensors, which keep none (and cannot be
    modified outside inference mode)."""
    return -1 if t.is_inference() else t._version


def as_text_context(ctx: Tensor | TextContext) -> TextContext:
    """An attention layer called with raw states [B, L, Dc] (tests, other callers) gets a throwaway context."""
    return ctx if isinstance(ctx, TextContext) else TextContext(ctx)


@contextlib.contextmanager
def reuse_text_context() -> Iterator[None]:
    """Within this scope a UNet reuses the text work for a text tensor it has seen (the weights must not change
    inside it); the kept contexts are dropped on exit. Inside :func:`text_work_per_step` it does nothing."""
    token = _reuse.set(None if _per_step.get() else {})
    try:
        yield
    finally:
        _reuse.reset(token)


@contextlib.contextmanager
def text_work_per_step() -> Iterator[None]:
    """The plain path, for comparisons and benchmarks: no reuse inside this scope, every call does its text work."""
    token = _per_step.set(True)
    try:
        yield
    finally:
        _per_step.reset(token)


def text_context_for(unet: nn.Module, text: Tensor, build: Callable[[Tensor], TextContext]) -> TextContext:
    """``build(text)``, or inside :func:`reuse_text_context` the context already built for this very ``text``
    object (same tensor, not modified in place since: its ``_version`` is unchanged)."""
    kept = _reuse.get()
    if kept is None or torch.is_grad_enabled():
        return build(text)
    entry = kept.get(id(unet))
    if entry is not None and entry[0]() is text and entry[1] == tensor_version(text):
        return entry[2]
    context = build(text)
    kept[id(unet)] = (weakref.ref(text), tensor_version(text), context)
    return context
