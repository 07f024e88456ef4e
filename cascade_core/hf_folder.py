"""Checks shared by the loaders of transformers model folders (GIT captioner, CLIP/SigLIP embedder).

A usable folder holds ``config.json`` (whose ``model_type`` says what the model is), safetensors
weights (``model.safetensors`` or shards; pickles are refused, as everywhere in the pack), the tokenizer
files and the image processor config. Everything is checked before transformers is asked to load,
so a wrong or incomplete folder fails fast with a message that names the folder, what was found and
what to do, as a :class:`ModelFolderError` (a ``ValueError``, via :class:`~cascade_core.weights.WeightFileError`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .weights import WeightFileError, find_weight_files, read_header

__all__ = [
    "ModelFolderError",
    "WrongModelError",
    "read_config",
    "check_processor_files",
    "load_model",
    "parameter_bytes",
]

log = logging.getLogger(__name__)

IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


class ModelFolderError(WeightFileError):
    """A model folder that cannot be used: not found, no config, incomplete processor files."""


class WrongModelError(ModelFolderError):
    """The folder holds another kind of model than the loader expects (e.g. CLIP given to the captioner)."""


def read_config(path: str | os.PathLike, expected: Mapping[str, str], what: str) -> tuple[Path, dict]:
    """``(folder, config.json dict)`` of a transformers folder whose ``model_type`` is a key of ``expected``.

    ``expected`` maps accepted ``model_type`` values to a human name (``{"git": "GIT"}``); ``what``
    names the loader's purpose for messages ("image captioning"). Raises :class:`ModelFolderError`
    or :class:`WrongModelError`.
    """
    folder = Path(path).expanduser()
    accepted = " or ".join(f"{name} [model_type {key!r}]" for key, name in expected.items())
    if not folder.exists():
        raise ModelFolderError(f"model folder not found: {folder}")
    if not folder.is_dir():
        raise ModelFolderError(
            f"{folder} is a file; {what} needs a transformers model folder (config.json, model.safetensors, "
            f"tokenizer and preprocessor_config.json) of {accepted}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFolderError(
            f"{folder} has no config.json: not a transformers model folder. Download the whole repository of "
            f"a {accepted} model into one folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"cannot read {config_path}: {e}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in expected:
        arch = ", ".join(config.get("architectures") or []) if isinstance(config, dict) else ""
        found = f"model_type {model_type!r}" + (f" ({arch})" if arch else "")
        raise WrongModelError(
            f"{folder} holds a {found} model, but {what} needs {accepted}; pick a matching model folder "
            "or use the loader for that kind of model")
    return folder, config


def check_processor_files(folder: Path, tokenizer_files: Sequence[Sequence[str]], what: str) -> None:
    """Raise :class:`ModelFolderError` unless ``folder`` has an image processor config and a tokenizer.

    ``tokenizer_files`` lists alternatives, each a group of files that must all exist
    (``[["tokenizer.json"], ["vocab.txt"]]``).
    """
    missing = []
    if not any(_has_image_processor(folder / name) for name in IMAGE_PROCESSOR_FILES):
        missing.append("the image processor config: preprocessor_config.json (or processor_config.json "
                       "with an 'image_processor' entry)")
    if not any(all((folder / f).is_file() for f in group) for group in tokenizer_files):
        options = " or ".join(" + ".join(group) for group in tokenizer_files)
        missing.append(f"the tokenizer: {options}")
    if missing:
        raise ModelFolderError(
            f"{folder} lacks the processor files {what} needs: " + "; ".join(missing)
            + ". Download them from the same model repository into this folder (they are small JSON/text files)")


def _has_image_processor(path: Path) -> bool:
    if not path.is_file():
        return False
    if path.name == "preprocessor_config.json":
        return True
    try:
        return "image_processor" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def load_model(model_class: Any, folder: Path, *, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``model_class.from_pretrained`` on local safetensors only, cast to ``dtype``, on ``device``, frozen."""
    for weights in find_weight_files(folder, "model"):  # missing weights, pickle-only folders, missing shards
        read_header(weights)  # empty, truncated or foreign files: named here, before transformers reads them
    try:
        model, info = model_class.from_pretrained(
            str(folder), dtype=dtype, use_safetensors=True, local_files_only=True, output_loading_info=True,
            ignore_mismatched_sizes=True)  # reported below, by name
    except MemoryError:
        raise  # host out-of-memory: the caller frees memory and retries
    except Exception as e:  # transformers, safetensors and tokenizers raise many types of their own
        raise ModelFolderError(f"transformers could not load {folder} as {model_class.__name__}: "
                               f"{type(e).__name__}: {e}") from None
    problems = {k: sorted(info.get(k) or [], key=str) for k in ("missing_keys", "mismatched_keys")}
    if any(problems.values()):
        shown = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {', '.join(_key(x) for x in v[:3])})"
                          for k, v in problems.items() if v)
        raise ModelFolderError(f"{folder}: the weights do not fit its config.json ({model_class.__name__}): {shown}")
    return model.to(device).eval().requires_grad_(False)


def _key(entry: Any) -> str:
    """A missing key, or a mismatched ``(key, file shape, model shape)`` entry, as text."""
    if isinstance(entry, (tuple, list)) and len(entry) == 3:
        name, stored, expected = entry
        return f"{name}: file {list(stored)}, config {list(expected)}"
    return str(entry)


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers (tied tensors counted once)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


class FrozenModel:
    """Shared by the transformers-backed wrappers: ``device``/``dtype`` read off the weights, byte count, ``to``.

    Subclasses set ``self.model`` (a frozen ``nn.Module``).
    """

    model: torch.nn.Module

    @property
    def device(self) -> torch.device:
        """Where the weights are (preprocessing and inference run there)."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the model."""
        return next(self.model.parameters()).dtype

    @property
    def parameter_bytes(self) -> int:
        """Bytes of all weights held."""
        return parameter_bytes(self.model)

    def to(self, device: str | torch.device):
        """Move the weights (for offloading); returns ``self``."""
        self.model.to(device)
        return self
