"""fp8 weight storage with per-layer upcast compute for the T5 encoder's linear layers.

A :class:`Fp8Linear` keeps its weight in ``float8_e4m3fn`` (or ``float8_e5m2``), one byte per value,
plus an optional fp32 scale (a scalar, or one value per output row). At each forward it upcasts the
weight to its compute dtype, multiplies by the scale and runs an ordinary ``F.linear``, so only one
layer's weight exists in compute precision at a time.

Scaled fp8 files: ComfyUI's "scaled fp8" T5 files store beside each fp8 ``<layer>.weight`` a float
``<layer>.scale_weight`` (the newer mixed-precision files call it ``<layer>.weight_scale``) and mark the
file with an empty ``scaled_fp8`` tensor; the true weight is ``weight.float() * scale``. The
``scale_input``/``input_scale`` entries only matter for fp8 matrix multiplication, which we do not use
(inputs stay in compute precision), so they are dropped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FP8_DTYPES", "Fp8Linear", "is_fp8", "quantize_fp8", "dequantize"]

FP8_DTYPES: tuple[torch.dtype, ...] = tuple(
    getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name)
)


def is_fp8(dtype: torch.dtype) -> bool:
    """Whether ``dtype`` is one of the fp8 storage dtypes we handle."""
    return dtype in FP8_DTYPES


def _as_row_scale(scale: torch.Tensor | None, out_features: int) -> torch.Tensor | None:
    """Normalise a stored scale to shape ``[]`` (per tensor) or ``[out, 1]`` (per output row), fp32."""
    if scale is None:
        return None
    scale = scale.detach().to(torch.float32)
    if scale.numel() == 1:
        return scale.reshape(())
    if scale.numel() == out_features:
        return scale.reshape(out_features, 1)
    raise ValueError(
        f"fp8 weight scale has {scale.numel()} values; expected 1 or one per output row ({out_features})"
    )


def dequantize(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` (any dtype, shape ``[out, in]`` or other) times its optional scale, in ``dtype``."""
    out = weight.to(dtype)
    if scale is not None:
        scale = _as_row_scale(scale, weight.shape[0]) if weight.dim() == 2 else scale.reshape(())
        out = out * scale.to(device=out.device, dtype=dtype)
    return out


def quantize_fp8(
    weight: torch.Tensor, dtype: torch.dtype = FP8_DTYPES[0]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Round a weight to fp8 with one fp32 scale per tensor (``amax / fp8_max``), round-to-nearest.

    Returns ``(weight_fp8, scale)`` with ``weight ≈ weight_fp8.float() * scale``; ``scale`` has shape ``[]``.
    """
    w = weight.detach().to(torch.float32)
    fmax = torch.finfo(dtype).max
    scale = (w.abs().amax() / fmax).clamp(min=torch.finfo(torch.float32).tiny)
    q = (w / scale).clamp(-fmax, fmax).to(dtype)
    return q, scale.reshape(())


class Fp8Linear(nn.Module):
    """A bias-free linear layer whose weight ``[out, in]`` is stored in fp8 and upcast per call.

    ``weight`` is deliberately ``None`` (the fp8 data lives in the frozen ``weight_fp8`` parameter): transformers'
    T5 feed-forward casts its input to ``wo.weight.dtype`` when ``wo.weight`` is a tensor, which would
    cast activations to fp8. Inputs ``[..., in]`` are cast to ``compute_dtype``; the output ``[..., out]``
    is in ``compute_dtype``.
    """

    weight = None
    bias = None
    device_tolerant = True  # computes on the input's device wherever the weight was left (streams it then)

    def __init__(self, weight_fp8: torch.Tensor, scale: torch.Tensor | None, compute_dtype: torch.dtype):
        super().__init__()
        if weight_fp8.dim() != 2 or not is_fp8(weight_fp8.dtype):
            raise ValueError(f"Fp8Linear needs a 2-d fp8 weight, got {weight_fp8.dtype} {tuple(weight_fp8.shape)}")
        self.out_features, self.in_features = weight_fp8.shape
        self.compute_dtype = compute_dtype
        # a frozen parameter (not a buffer), so memory managers that move parameters module by module see it
        self.weight_fp8 = nn.Parameter(weight_fp8.detach(), requires_grad=False)
        scale = _as_row_scale(scale, self.out_features)
        if scale is not None:
            scale = scale.to(weight_fp8.device)
        self.register_buffer("weight_scale", scale)

    def upcast_weight(self, device: torch.device | None = None) -> torch.Tensor:
        """The weight ``[out, in]`` in ``compute_dtype`` (scale applied), on ``device`` (default: where it is)."""
        weight, scale = self.weight_fp8, self.weight_scale
        if device is not None and weight.device != device:  # left on the host by a partial load: stream it
            weight = weight.to(device, non_blocking=True)
            scale = None if scale is None else scale.to(device, non_blocking=True)
        return dequantize(weight, scale, self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in] -> [..., out]`` in ``compute_dtype``."""
        return F.linear(x.to(self.compute_dtype), self.upcast_weight(x.device))

    def extra_repr(self) -> str:
        scaled = "scaled" if self.weight_scale is not None else "unscaled"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"storage={self.weight_fp8.dtype} ({scaled}), compute={self.compute_dtype}"
        )
