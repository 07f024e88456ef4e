"""Precision policy of the T5 encoder: compute dtype, fp32 ``wo`` under fp16, fp8 weight storage.

* ``device=None``: CUDA if available, else CPU.
* ``dtype=None`` (the compute dtype, also the dtype of the returned embeddings): bf16 on CUDA (fp16 on
  GPUs without bf16), fp32 on CPU. DeepFloyd ran T5 in bf16.
* fp16 compute keeps every feed-forward output projection ``…DenseReluDense.wo`` in fp32, as transformers'
  ``_keep_in_fp32_modules = ["wo"]`` does (T5 overflows fp16 there); the hub fp16 files store ``wo`` in
  fp32 and that is preserved.
* ``weight_dtype``: how linear-layer weights are stored.
  ``None`` keeps fp8 weights of an fp8 file in fp8 (upcast per layer at compute) and stores everything
  else in the compute dtype; an fp8 dtype (``torch.float8_e4m3fn``) stores *all* linear weights in fp8
  with one scale per tensor (about half the memory of bf16: 4.9 GB instead of 9.5 GB for XXL);
  the compute dtype itself dequantizes fp8 files into dense weights.
  Embeddings, the relative position bias and layer norms are always dense in the compute dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .fp8 import is_fp8

__all__ = ["Precision", "resolve_device", "resolve_precision"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → ``cuda`` when available, else ``cpu``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Precision:
    """Per-tensor storage decisions for one load."""

    compute: torch.dtype
    fp8: torch.dtype | None = None  # fp8 storage for every linear weight; None: only where the file has fp8
    dequantize_fp8: bool = False  # fp8 weights in the file become dense compute-dtype weights

    def dense_dtype(self, key: str) -> torch.dtype:
        """Dtype of a dense parameter (``wo`` is fp32 under fp16 compute)."""
        if self.compute == torch.float16 and key.endswith("DenseReluDense.wo.weight"):
            return torch.float32
        return self.compute

    def fp8_storage(self, stored: torch.dtype) -> torch.dtype | None:
        """The fp8 dtype a linear weight stored as ``stored`` is kept in, or ``None`` for dense."""
        if self.fp8 is not None:
            return self.fp8
        if is_fp8(stored) and not self.dequantize_fp8:
            return stored
        return None


def resolve_precision(
    device: torch.device, dtype: torch.dtype | None, weight_dtype: torch.dtype | None
) -> Precision:
    """Apply the defaults of the module docstring; reject unsupported combinations."""
    if dtype is None:
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"T5 compute dtype must be float32, bfloat16 or float16, got {dtype}")
    if weight_dtype is None:
        return Precision(dtype)
    if is_fp8(weight_dtype):
        return Precision(dtype, fp8=weight_dtype)
    if weight_dtype == dtype:
        return Precision(dtype, dequantize_fp8=True)
    raise ValueError(
        f"weight_dtype must be None, an fp8 dtype (torch.float8_e4m3fn) or the compute dtype {dtype}; "
        f"got {weight_dtype}"
    )
