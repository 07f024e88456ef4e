"""Where a T5 encoder checkpoint's files are: layout detection for folders and single files.

Three layouts are recognised, by what the path contains (never by its name):

* ``deepfloyd_if``: a DeepFloyd IF / diffusers pipeline folder with ``text_encoder/`` (``config.json``
  plus ``model.safetensors``, sharded ``model-0000x-of-0000y.safetensors`` + ``model.safetensors.index.json``
  or the ``fp16`` variant) and ``tokenizer/spiece.model``;
* ``transformers``: a transformers model folder (``config.json`` and ``model*.safetensors``, tokenizer
  files usually beside them);
* ``single_file``: one ``.safetensors`` file with transformers key names, such as ComfyUI's
  ``t5xxl_fp16.safetensors``; its config is inferred from tensor shapes (:mod:`.keys`).

Whether the tensors really are a T5 encoder is decided from their keys and shapes in :mod:`.keys`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..weights import WeightFileError, find_weight_files

__all__ = ["Checkpoint", "locate_checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """The files of one T5 encoder checkpoint.

    ``config`` is the parsed ``config.json`` (``None`` for a single file); ``tokenizer_dirs`` are the
    folders next to the weights where a tokenizer is looked for, in order; ``identity`` names the exact
    files (path, size, mtime), for the embedding cache.
    """

    layout: str
    path: Path
    weight_files: tuple[Path, ...]
    config: dict | None
    tokenizer_dirs: tuple[Path, ...]
    identity: str


def _identity(files: tuple[Path, ...]) -> str:
    """A short stable name for these exact files: resolved path, size and mtime of each."""
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return f"t5:{files[0].name}:{h.hexdigest()[:16]}"


def _read_config(folder: Path) -> dict | None:
    """``folder/config.json`` if present; must describe a T5 model."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable JSON config ({e})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "t5":
        raise ValueError(
            f"{path} describes a {model_type!r} model, not a T5 encoder: expected model_type 't5' "
            "(the T5-v1.1-XXL text encoder, e.g. DeepFloyd IF's text_encoder/config.json)"
        )
    return config


def _folder_checkpoint(path: Path, prefer_fp16: bool) -> Checkpoint:
    """A pipeline folder (with ``text_encoder/``) or a transformers model folder."""
    if (path / "text_encoder").is_dir():
        layout, folder = "deepfloyd_if", path / "text_encoder"
        tokenizer_dirs = (path / "tokenizer", folder)
    elif (path / "config.json").is_file() or any(path.glob("model*.safetensors")):
        layout, folder = "transformers", path
        tokenizer_dirs = (path, path / "tokenizer", path.parent / "tokenizer")
    else:
        raise WeightFileError(
            f"no T5 encoder weights in {path}: expected a DeepFloyd IF folder (text_encoder/ with "
            "config.json and model*.safetensors), a transformers folder (config.json + model.safetensors) "
            "or a single .safetensors file"
        )
    files = tuple(find_weight_files(folder, "model", variant="fp16" if prefer_fp16 else None))
    return Checkpoint(layout, path, files, _read_config(folder), tokenizer_dirs, _identity(files))


def locate_checkpoint(path: str | os.PathLike, *, prefer_fp16: bool = False) -> Checkpoint:
    """Find the weight files, config and tokenizer folders for ``path`` (a folder or one file).

    ``prefer_fp16`` picks a folder's ``fp16`` variant when both it and the fp32 weights exist (less to
    read when the encoder will not run in fp32 anyway).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _folder_checkpoint(path, prefer_fp16)
    if not path.exists():
        raise WeightFileError(f"text encoder checkpoint not found: {path}")
    if path.name.endswith(".json"):
        raise WeightFileError(f"{path} is an index/config file; pass the folder that contains it instead")
    files = (path,)
    return Checkpoint("single_file", path, files, None, (path.parent / "tokenizer", path.parent), _identity(files))
