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
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple

import torch

__all__ = [
    "WeightFileError",
    "TensorInfo",
    "read_header",
    "read_header_and_metadata",
    "iter_tensors",
    "read_tensors",
    "find_weight_files",
    "Source",
    "file_sources",
    "iter_sources",
    "load_sources",
    "assign_tensor",
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


def _parse_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate a safetensors header; detect truncation against the file size."""
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
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise WeightFileError(f"{path}: malformed __metadata__ entry (not a mapping)")
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
    return infos, metadata


def read_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Parse and validate a safetensors header; detect truncation against the file size.

    Returns ``{name: TensorInfo}`` (the ``__metadata__`` entry is dropped: see :func:`read_metadata`).
    """
    return _parse_header(Path(path))[0]


def read_header_and_metadata(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """:func:`read_header` and the file's ``__metadata__`` string mapping (``{}`` when it has none), in one read."""
    return _parse_header(Path(path))


def iter_tensors(
    path: str | os.PathLike,
    names: Iterable[str],
    *,
    device: str | torch.device = "cpu",
    header: Mapping[str, TensorInfo] | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for each of ``names`` in one safetensors file, in stored dtype, one at a time: the
    file is opened once and a tensor is only read when the caller asks for it (peak memory: one tensor).
    ``header``: the file's :func:`read_header` result when the caller already has it."""
    from safetensors import safe_open

    path = Path(path)
    infos = read_header(path) if header is None else header
    names = list(names)
    for name in names:
        if name not in infos:
            raise WeightFileError(f"{path}: no tensor named {name!r}")
        if infos[name].dtype not in _DTYPES:
            raise WeightFileError(f"{path}: tensor {name!r} has unsupported dtype {infos[name].dtype}")
    try:
        handle = safe_open(str(path), framework="pt", device=str(device))
    except Exception as e:  # safetensors raises its own error types
        raise WeightFileError(f"could not read {path}: {e} (a damaged file? fetch it again)") from None
    with handle as f:
        for name in names:
            try:
                tensor = f.get_tensor(name)
            except Exception as e:
                raise WeightFileError(f"could not read tensor {name!r} of {path}: {e} (a damaged file? fetch it "
                                      "again)") from None
            yield name, tensor


def read_tensors(
    path: str | os.PathLike,
    *,
    names: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Load tensors from one safetensors file (validated first), keeping their stored dtypes."""
    infos = read_header(path)
    return dict(iter_tensors(path, infos.keys() if names is None else names, device=device, header=infos))


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


class Source(NamedTuple):
    """Where a model tensor comes from: ``name`` in ``path``; ``part=(i, n)`` takes the i-th of n equal
    chunks along dim 0 (a packed q/k/v projection stored as one tensor)."""

    path: Path
    name: str
    part: tuple[int, int] | None = None


Sources = dict[str, Source]  # model key -> source
Transform = Callable[[str, torch.Tensor], torch.Tensor]  # (model key, tensor as read and reshaped) -> stored tensor


def file_sources(files: Iterable[str | os.PathLike], *, rename: Callable[[str], str | None] | None = None,
                 headers: Mapping[Path, Mapping[str, TensorInfo]] | None = None) -> Sources:
    """Map model keys to the tensors of ``files``: stored name -> ``rename(name)`` (identity by default);
    a ``rename`` result of None drops the tensor (e.g. a VAE's encoder when only the decoder is built).
    ``headers``: :func:`read_header` results the caller already has, by path (not read again)."""
    sources: Sources = {}
    for f in files:
        f = Path(f)
        header = headers[f] if headers is not None and f in headers else read_header(f)
        for name in header:
            key = name if rename is None else rename(name)
            if key is not None:
                sources[key] = Source(f, name)
    return sources


def _fits(expected: tuple[int, ...], stored: tuple[int, ...]) -> bool:
    """Equal shapes, or a 1x1 convolution / conv1d stored where a Linear is expected (trailing 1s)."""
    return stored == expected or (stored[:len(expected)] == expected and all(s == 1 for s in stored[len(expected):]))


def _mismatch_report(expected: Mapping[str, tuple], found: Mapping[str, tuple], what: str) -> str | None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if not _fits(tuple(expected[k]), tuple(found[k])))
    if not (missing or unexpected or wrong):
        return None
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {label} keys (e.g. {', '.join(keys[:5])})")
    if wrong:
        shown = ", ".join(f"{k}: expected {tuple(expected[k])}, file has {tuple(found[k])}" for k in wrong[:5])
        parts.append(f"{len(wrong)} shape mismatches ({shown})")
    return f"{what} does not fit the architecture: " + "; ".join(parts)


def iter_sources(sources: Sources, *, device: str | torch.device = "cpu",
                 headers: Mapping[Path, Mapping[str, TensorInfo]] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """``(model key, tensor)`` for every source, file by file, one tensor in memory at a time (in stored
    dtype, on ``device``; a ``part`` source yields its chunk). The one place the pack reads weight data."""
    headers = dict(headers or {})
    by_file: dict[Path, dict[str, list[tuple[str, Source]]]] = {}
    for key, src in sources.items():
        by_file.setdefault(src.path, {}).setdefault(src.name, []).append((key, src))
    for path, names in by_file.items():
        header = headers.get(path) or read_header(path)
        for name, tensor in iter_tensors(path, names, device=device, header=header):
            for key, src in names[name]:
                yield key, (tensor if src.part is None else tensor.chunk(src.part[1], dim=0)[src.part[0]])
            del tensor


def assign_tensor(model: torch.nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Replace parameter or buffer ``key`` of ``model`` by ``tensor`` (no copy; parameters stay frozen or not
    as they were, and fp8/integer tensors never require grad)."""
    module_name, _, attr = key.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if attr in module._parameters:
        grad = module._parameters[attr].requires_grad and (tensor.is_floating_point() and tensor.element_size() > 1)
        module._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=grad)
    elif attr in module._buffers:
        module._buffers[attr] = tensor
    else:
        raise KeyError(f"internal error: {key} is neither a parameter nor a buffer of {type(module).__name__}")


def load_sources(model: torch.nn.Module, sources: Sources, *, device, dtype: torch.dtype, what: str,
                 transform: Transform | None = None,
                 headers: Mapping[Path, Mapping[str, TensorInfo]] | None = None) -> None:
    """Strictly load ``sources`` into ``model`` (normally built on the meta device).

    Every model key must have exactly one source of a fitting shape, and every source must be used;
    the report names missing, unexpected and mis-shaped tensors before any data is read. Tensors are read one
    at a time, reshaped to the model's shape, stored by ``transform(key, tensor)`` (default: floating tensors
    cast to ``dtype``; a transform may pick another storage, e.g. fp8, or pin the tensor) and assigned in place
    of the model's parameter or buffer, so peak memory is about one tensor beyond the result. ``headers``: the
    files' :func:`read_header` results when the caller already has them.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    known = headers or {}
    headers = {f: known[f] if f in known else read_header(f) for f in dict.fromkeys(s.path for s in sources.values())}
    found = {key: _source_shape(headers[src.path][src.name].shape, src.part) for key, src in sources.items()}
    report = _mismatch_report(expected, found, what)
    if report:
        raise WeightFileError(report)
    if transform is None:
        def transform(key: str, tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(dtype=dtype) if tensor.is_floating_point() else tensor
    for key, tensor in iter_sources(sources, device=device, headers=headers):
        assign_tensor(model, key, transform(key, tensor.reshape(expected[key])))


def _source_shape(shape: tuple[int, ...], part: tuple[int, int] | None) -> tuple[int, ...]:
    if part is None or not shape or shape[0] % part[1]:
        return tuple(shape)
    return (shape[0] // part[1], *shape[1:])
