"""``load_unet``: diffusers model folders, IF repo folders and single safetensors files, loaded strictly.

Tensors are read one at a time (``weights.load_sources``, the pack's one loading path) straight into a model
built on the meta device, stored in their target dtype as they arrive (fp8 for the Linear/Conv2d weights with
``weight_dtype=torch.float8_e4m3fn``), so peak host memory stays near one copy of the weights.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..text.fp8 import FP8_DTYPES
from ..weights import (Sources, Transform, WeightFileError, file_sources, find_weight_files, load_sources,
                       read_header, read_header_and_metadata)
from .config import UNetConfig
from .inference import describe, infer_unet_config
from .model import UNet
from .ops import CAST_OPS, DEFAULT_OPS

logger = logging.getLogger(__name__)

__all__ = ["load_unet", "default_device_dtype", "save_single_file"]


def default_device_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """cuda + bf16 when a GPU is present, else cpu + fp32, unless given."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def _resolve(path: Path, dtype: torch.dtype) -> tuple[dict, UNetConfig, Sources, dict]:
    """(config dict, parsed config, weight sources, headers read so far) for a folder or single file."""
    if path.is_dir():
        folder = path if (path / "config.json").is_file() else path / "unet"
        if not (folder / "config.json").is_file():
            raise WeightFileError(
                f"{path} is neither a diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) "
                "nor a model repo folder with a unet/ subfolder")
        try:
            config_dict = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise WeightFileError(f"cannot read {folder / 'config.json'}: {e}") from None
        config = UNetConfig.from_diffusers_config(config_dict)  # config problems before looking for weights
        variant = "fp16" if dtype in (torch.float16, torch.bfloat16) else None
        files = find_weight_files(folder, "diffusion_pytorch_model", variant=variant)
        headers = {f: read_header(f) for f in files}
        return config_dict, config, file_sources(files, headers=headers), headers
    header, metadata = read_header_and_metadata(path)  # the right error: missing, pickle, not safetensors, truncated
    try:
        config_dict = infer_unet_config(header, metadata)
    except ValueError as e:
        raise WeightFileError(f"{path.name}: {e}") from None
    headers = {path: header}
    return config_dict, UNetConfig.from_diffusers_config(config_dict), file_sources([path], headers=headers), headers


def _storage(model: torch.nn.Module, dtype: torch.dtype, weight_dtype: torch.dtype) -> Transform:
    """The per-key storage: Linear/Conv2d weights in ``weight_dtype``, every other floating tensor in ``dtype``."""
    low = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}

    def store(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            return tensor
        return tensor.to(weight_dtype if key in low else dtype)

    return store


def load_unet(path: str | os.PathLike, *, device=None, dtype=None, weight_dtype: torch.dtype | None = None,
              operations=None) -> UNet:
    """Load an IF UNet from a diffusers folder, a repo folder with ``unet/``, or a single ``.safetensors``.

    Single files carry no config: the architecture is inferred from tensor names and shapes
    (IF-I-XL/L/M, IF-II-L/M or any consistent variant). Loading is strict: missing, unexpected and
    mis-shaped tensors are reported by name. ``dtype``: the compute dtype (and storage of everything else);
    ``weight_dtype``: storage of the Linear/Conv2d weights when it differs, e.g. ``torch.float8_e4m3fn``
    (about half of bf16's memory; the layers then cast per call: :data:`.ops.CAST_OPS`). ``operations``: the
    layer constructors (default :data:`.ops.DEFAULT_OPS`, or ``CAST_OPS`` for another ``weight_dtype``; the nodes
    pass ComfyUI's ``comfy.ops``). Returns the model in eval mode, frozen, channels-last.
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"model path not found: {path}")
    device, dtype = default_device_dtype(device, dtype)
    weight_dtype = dtype if weight_dtype is None else weight_dtype
    if weight_dtype not in (dtype, *FP8_DTYPES):
        raise ValueError(f"load_unet: weight_dtype {weight_dtype} is not supported (None for {dtype}, or one of "
                         f"{[str(d) for d in FP8_DTYPES]})")
    if operations is None:
        operations = DEFAULT_OPS if weight_dtype == dtype else CAST_OPS
    config_dict, config, sources, headers = _resolve(path, dtype)
    with torch.device("meta"):
        model = UNet(config, operations=operations)
    what = f"{path.name} ({describe(config_dict)})"
    load_sources(model, sources, device=device, dtype=dtype, what=what, transform=_storage(model, dtype, weight_dtype),
                 headers=headers)
    model.to(memory_format=torch.channels_last)
    model.eval().requires_grad_(False)
    model.compute_dtype = dtype
    model.prediction_type = _prediction_type(path)
    logger.info("loaded %s from %s (%s, %s%s, %s)", describe(config_dict), path, device, dtype,
                "" if weight_dtype == dtype else f", weights {weight_dtype}", model.prediction_type)
    return model


def _prediction_type(path: Path) -> str:
    """``prediction_type`` of the repo's ``scheduler/scheduler_config.json`` (beside ``unet/``), else epsilon."""
    from ..denoisers import PREDICTIONS

    repo = path.parent if path.name == "unet" else path
    config = repo / "scheduler" / "scheduler_config.json"
    if not path.is_dir() or not config.is_file():
        return "epsilon"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("prediction_type", "epsilon")
    except (OSError, json.JSONDecodeError) as e:
        raise WeightFileError(f"cannot read {config}: {e}") from None
    if value not in PREDICTIONS:
        raise WeightFileError(f"{config}: prediction_type {value!r} is not supported (supported: {PREDICTIONS})")
    return value


def save_single_file(model: UNet, path: str | os.PathLike, *, embed_config: bool = True) -> None:
    """Write ``model`` as one safetensors file (diffusers key names), optionally with its config as metadata."""
    from safetensors.torch import save_file

    metadata = {"config": json.dumps(model.config.to_dict())} if embed_config else None
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
