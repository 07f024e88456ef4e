"""CUDA-graph replay of a whole denoising step: one graph launch instead of thousands of kernel launches.

A guided IF step at batch 2 is launch- and overhead-bound (the GPU waits on the host issuing ~1,500 small
kernels), so :class:`GraphedDenoiser` captures one call of any denoiser (CFG, UNet, thresholding) into a CUDA
graph per input signature and replays it, after copying the step's inputs into the graph's static buffers. It
is itself a denoiser (``denoise(x, sigma, **extra) -> x0``, plus ``denoise_with_variance`` for the DDPM sampler).

Valid only while the model's weights stay where they were at capture (a resident model: the ``keep`` policy, or
``auto`` when everything fits). Off CUDA, or when capture fails (e.g. weights that are cast or moved per call,
as under ComfyUI's partial loading), it runs the wrapped denoiser eagerly, logging why once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from .denoisers import denoise_pair

__all__ = ["GraphedDenoiser"]

log = logging.getLogger(__name__)


def _signature(x: Tensor, sigma: Tensor, extra: dict, with_variance: bool) -> tuple:
    """What a captured graph is specific to: tensor shapes / dtypes / devices, other extras by identity."""
    def sig(v):
        return ("t", tuple(v.shape), v.dtype, v.device) if isinstance(v, Tensor) else ("o", id(v))

    return (with_variance, sig(x), sig(sigma), tuple(sorted((k, sig(v)) for k, v in extra.items())))


class _Graph:
    """One captured call: static input buffers, the graph, its static outputs."""

    def __init__(self, fn: Callable, x: Tensor, sigma: Tensor, extra: dict, warmup: int):
        self.inputs = {"x": x.clone(), "sigma": sigma.clone(),
                       **{k: v.clone() for k, v in extra.items() if isinstance(v, Tensor)}}
        self.others = {k: v for k, v in extra.items() if not isinstance(v, Tensor)}
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):  # warm-up outside the graph: cuDNN/cuBLAS choices, lazy buffers, text k/v
            for _ in range(warmup):
                self._call(fn)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self._call(fn)

    def _call(self, fn: Callable):
        inputs = dict(self.inputs)
        return fn(inputs.pop("x"), inputs.pop("sigma"), {**inputs, **self.others})

    def replay(self, x: Tensor, sigma: Tensor, extra: dict):
        self.inputs["x"].copy_(x)
        self.inputs["sigma"].copy_(sigma)
        for k, v in extra.items():
            if isinstance(v, Tensor):
                self.inputs[k].copy_(v)
        self.graph.replay()
        return self.outputs


class GraphedDenoiser:
    """``denoiser`` replayed from CUDA graphs (one per input signature); x [B, C, H, W], sigma [B] -> x0."""

    def __init__(self, denoiser: Callable[..., Tensor], *, warmup: int = 2):
        self.denoiser = denoiser
        self.warmup = warmup
        self._graphs: dict[tuple, _Graph] = {}
        self._eager_reason: str | None = None

    def __call__(self, x: Tensor, sigma: Tensor, **extra) -> Tensor:
        return self._run(x, sigma, extra, False)[0]

    def denoise_with_variance(self, x: Tensor, sigma: Tensor, **extra) -> tuple[Tensor, Tensor | None]:
        """``(x0, learned-range fraction or None)`` of the wrapped denoiser, replayed like ``__call__``."""
        return self._run(x, sigma, extra, True)

    def _eager(self, x: Tensor, sigma: Tensor, extra: dict, with_variance: bool) -> tuple[Tensor, Tensor | None]:
        return denoise_pair(self.denoiser, x, sigma, extra, with_variance)

    def _run(self, x: Tensor, sigma: Tensor, extra: dict, with_variance: bool) -> tuple[Tensor, Tensor | None]:
        sigma = torch.as_tensor(sigma, device=x.device)
        if not x.is_cuda or self._eager_reason is not None:
            return self._eager(x, sigma, extra, with_variance)
        key = _signature(x, sigma, extra, with_variance)
        graph = self._graphs.get(key)
        if graph is None:
            try:
                graph = self._graphs[key] = _Graph(
                    lambda x_, s_, e_: self._eager(x_, s_, e_, with_variance), x, sigma, extra, self.warmup)
            except RuntimeError as exc:  # not capturable (host syncs, per-call weight casts/copies): stay eager
                self._eager_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                log.warning("Pixel Cascade: CUDA graphs off for this stage, running eagerly (%s)", self._eager_reason)
                torch.cuda.synchronize(x.device)
                return self._eager(x, sigma, extra, with_variance)
        denoised, variance = graph.replay(x, sigma, extra)
        # the sampler keeps outputs across steps (multistep solvers): hand out copies, not the static buffers
        return denoised.clone(), None if variance is None else variance.clone()

    @property
    def eager_reason(self) -> str | None:
        """Why this stage runs eagerly on CUDA (None while graphs are in use)."""
        return self._eager_reason
