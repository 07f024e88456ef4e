"""``load_unet``: diffusers model folders, IF repo folders and single safetensors files, loaded strictly.

Tensors are read one at a time straight into a model built on the meta device, cast to the target
dtype as they arrive, so peak host memory stays near one copy of the weights.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..weights import WeightFileError, file_sources, find_weight_files, load_sources, read_header
from .config import UNetConfig
from .inference import describe, infer_unet_config
from .model import UNet

logger = logging.getLogger(__name__)

__all__ = ["load_unet", "default_device_dtype", "save_single_file", "load_state_dict_strict"]


def default_device_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """cuda + bf16 when a GPU is present, else cpu + fp32, unless given."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def _resolve(path: Path, dtype: torch.dtype) -> tuple[dict, list[Path]]:
    """(config dict, weight files) for a folder or single file."""
    if path.is_dir():
        folder = path if (path / "config.json").is_file() else path / "unet"
        if not (folder / "config.json").is_file():
            raise WeightFileError(
                f"{path} is neither a diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) "
                "nor a model repo folder with a unet/ subfolder")
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise WeightFileError(f"cannot read {folder / 'config.json'}: {e}") from None
        UNetConfig.from_diffusers_config(config)  # report config problems before looking for weights
        variant = "fp16" if dtype in (torch.float16, torch.bfloat16) else None
        return config, find_weight_files(folder, "diffusion_pytorch_model", variant=variant)
    if path.suffix != ".safetensors":
        read_header(path)  # raises the right error (missing, pickle, not safetensors)
    from safetensors import safe_open

    header = read_header(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    try:
        return infer_unet_config(header, metadata), [path]
    except ValueError as e:
        raise WeightFileError(f"{path.name}: {e}") from None


def load_state_dict_strict(model: torch.nn.Module, files: list[Path], *, device, dtype, what: str) -> None:
    """Load ``files`` into ``model`` (built on meta) under their stored names, checking names and shapes first."""
    load_sources(model, file_sources(files), device=device, dtype=dtype, what=what)


def load_unet(path: str | os.PathLike, *, device=None, dtype=None) -> UNet:
    """Load an IF UNet from a diffusers folder, a repo folder with ``unet/``, or a single ``.safetensors``.

    Single files carry no config: the architecture is inferred from tensor names and shapes
    (IF-I-XL/L/M, IF-II-L/M or any consistent variant). Loading is strict: missing, unexpected and
    mis-shaped tensors are reported by name. Returns the model in eval mode, frozen, channels-last.
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"model path not found: {path}")
    device, dtype = default_device_dtype(device, dtype)
    config_dict, files = _resolve(path, dtype)
    config = UNetConfig.from_diffusers_config(config_dict)
    with torch.device("meta"):
        model = UNet(config)
    load_state_dict_strict(model, files, device=device, dtype=dtype, what=f"{path.name} ({describe(config_dict)})")
    model.to(memory_format=torch.channels_last)
    model.eval().requires_grad_(False)
    model.prediction_type = _prediction_type(path)
    logger.info("loaded %s from %s (%s, %s, %s)", describe(config_dict), path, device, dtype, model.prediction_type)
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
