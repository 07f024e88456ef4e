"""Reading weight files: safetensors only (never pickles), single or sharded, with clear errors.

Every loader in the pack goes through here, so a missing, truncated or foreign file always gets the
same kind of message (:class:`WeightFileError`, a ``ValueError``) naming the path and what is wrong.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

__all__ = [
    "WeightFileError",
    "TensorInfo",
    "read_header",
    "read_tensors",
    "find_weight_files",
]

_MAX_HEADER_BYTES = 100 * 1024 * 1024

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):
    if hasattr(torch, _attr):
        _DTYPES[_name] = getattr(torch, _attr)


class WeightFileError(ValueError):
    """A weight file or folder is missing, truncated, not safetensors, or inconsistent."""


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of one stored tensor, read from a header without loading data."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise WeightFileError(f"weight file not found: {path}")
    if not path.is_file():
        raise WeightFileError(f"expected a file, got a folder: {path}")
    if path.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"):
        raise WeightFileError(
            f"{path.name} is a pickle checkpoint; Pixel Cascade loads .safetensors files only "
            "(use the .safetensors variant of the same model)"
        )


def read_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Parse and validate a safetensors header; detect truncation against the file size.

    Returns ``{name: TensorInfo}`` (the ``__metadata__`` entry is dropped).
    """
    path = Path(path)
    _check_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightFileError(f"{path} is not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > _MAX_HEADER_BYTES or n + 8 > size:
            raise WeightFileError(f"{path} is not a safetensors file, or it is truncated (bad header length)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightFileError(f"{path} is not a safetensors file (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path} is not a safetensors file (header is not a mapping)")
    header.pop("__metadata__", None)
    end = 0
    infos = {}
    for name, meta in header.items():
        try:
            begin, stop = meta["data_offsets"]
            infos[name] = TensorInfo(name, meta["dtype"], tuple(int(s) for s in meta["shape"]))
        except (KeyError, TypeError, ValueError):
            raise WeightFileError(f"{path}: malformed header entry for tensor {name!r}") from None
        end = max(end, stop)
    if 8 + n + end > size:
        raise WeightFileError(
            f"{path} is truncated: the header describes {8 + n + end} bytes but the file has {size} "
            "(an interrupted download? fetch the file again)"
        )
    return infos


def read_tensors(
    path: str | os.PathLike,
    *,
    names: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Load tensors from one safetensors file (validated first), keeping their stored dtypes."""
    from safetensors import safe_open

    path = Path(path)
    infos = read_header(path)
    wanted = infos.keys() if names is None else names
    for name in wanted:
        if infos.get(name, None) is not None and infos[name].dtype not in _DTYPES:
            raise WeightFileError(f"{path}: tensor {name!r} has unsupported dtype {infos[name].dtype}")
    out = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for name in wanted:
                out[name] = f.get_tensor(name)
    except Exception as e:  # safetensors raises its own error types
        raise WeightFileError(f"could not read {path}: {e}") from None
    return out


def _index_files(index_path: Path) -> list[Path]:
    try:
        index = json.loads(index_path.read_text())
        weight_map = index["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise WeightFileError(f"{index_path} is not a valid shard index ({e})") from None
    files = []
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = (index_path.parent / shard).resolve()
        if shard_path.parent != index_path.parent.resolve():
            raise WeightFileError(f"{index_path} names a shard outside its folder: {shard!r}")
        files.append(shard_path)
    return files


def find_weight_files(folder: str | os.PathLike, stem: str, *, variant: str | None = None) -> list[Path]:
    """The safetensors file(s) of a diffusers/transformers component folder.

    ``stem`` is ``diffusion_pytorch_model`` (diffusers) or ``model`` (transformers). Looks, in order of
    preference, for ``{stem}.safetensors``, the sharded ``{stem}.safetensors.index.json``, then the
    ``fp16`` variants (``{stem}.fp16.safetensors`` / ``{stem}.safetensors.index.fp16.json``). With
    ``variant="fp16"`` the fp16 files are preferred instead.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightFileError(f"model folder not found: {folder}")
    plain = [f"{stem}.safetensors", f"{stem}.safetensors.index.json"]
    fp16 = [f"{stem}.fp16.safetensors", f"{stem}.safetensors.index.fp16.json"]
    for name in (fp16 + plain) if variant == "fp16" else (plain + fp16):
        candidate = folder / name
        if candidate.is_file():
            return _index_files(candidate) if name.endswith(".json") else [candidate]
    pickles = sorted(p.name for p in folder.glob("*.bin"))
    hint = f" (found only pickle files {pickles}; Pixel Cascade loads safetensors only)" if pickles else ""
    raise WeightFileError(f"no {stem}*.safetensors weights in {folder}{hint}")
