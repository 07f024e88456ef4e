"""Finding and loading the T5 sentencepiece tokenizer.

Lookup order (the first folder that has ``tokenizer.json`` or ``spiece.model`` wins):

1. the explicit ``tokenizer=`` argument: a folder, a ``spiece.model`` file or a ``tokenizer.json`` file;
2. the folders beside the weights (:attr:`Checkpoint.tokenizer_dirs`: ``tokenizer/`` next to the weights,
   then the weights' own folder; for a transformers folder also ``../tokenizer``);
3. inside ComfyUI, the T5 tokenizer ComfyUI ships (``comfy/text_encoders/t5_tokenizer``), found through
   ``importlib.util.find_spec("comfy")`` at call time; nothing is imported and nothing is vendored.

Any T5 v1.1 sentencepiece vocabulary gives the same ids, so ComfyUI's copy is a faithful fallback.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

__all__ = ["TokenizerNotFoundError", "comfy_tokenizer_dir", "find_tokenizer", "load_tokenizer"]

log = logging.getLogger(__name__)

_FILES = ("tokenizer.json", "spiece.model")


class TokenizerNotFoundError(FileNotFoundError):
    """No T5 tokenizer in any of the places looked at (the message lists them)."""


def comfy_tokenizer_dir(*parts: str) -> Path | None:
    """A tokenizer folder ComfyUI ships (default ``comfy/text_encoders/t5_tokenizer``; the CLIP one is
    ``comfy/sd1_tokenizer``), found without importing ComfyUI; None when absent."""
    parts = parts or ("text_encoders", "t5_tokenizer")
    try:
        spec = importlib.util.find_spec("comfy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root).joinpath(*parts)
        if folder.is_dir():
            return folder
    return None


def _usable(path: Path) -> bool:
    if path.is_file():
        return path.name.endswith((".model", ".json"))
    return path.is_dir() and any((path / f).is_file() for f in _FILES)


def find_tokenizer(explicit: str | os.PathLike | None, beside_weights: Iterable[Path]) -> Path:
    """The tokenizer folder or file to use, following the lookup order in the module docstring.

    Raises :class:`TokenizerNotFoundError` listing every place looked at.
    """
    looked: list[str] = []
    if explicit is not None:
        path = Path(explicit).expanduser()
        if _usable(path):
            return path
        looked.append(f"{path} (the tokenizer= argument)")
    for folder in beside_weights:
        if _usable(folder):
            return folder
        looked.append(str(folder))
    comfy = comfy_tokenizer_dir()
    if comfy is not None and _usable(comfy):
        return comfy
    looked.append("comfy/text_encoders/t5_tokenizer (" + ("empty" if comfy else "ComfyUI not importable") + ")")
    raise TokenizerNotFoundError(
        "no T5 tokenizer found (need a folder with spiece.model or tokenizer.json, or one of those files); "
        "looked in: " + "; ".join(looked) + ". Pass tokenizer=<folder or spiece.model>, e.g. the "
        "tokenizer/ folder of a DeepFloyd IF download."
    )


def load_tokenizer(path: str | os.PathLike) -> Any:
    """A transformers T5 tokenizer from a folder, a ``spiece.model`` file or a ``tokenizer.json`` file."""
    from transformers import T5TokenizerFast

    path = Path(path)
    if path.is_dir():
        return T5TokenizerFast.from_pretrained(str(path))
    if path.name.endswith(".json"):
        return T5TokenizerFast(tokenizer_file=str(path))
    with tempfile.TemporaryDirectory() as tmp:  # from_pretrained wants a folder holding "spiece.model"
        link = Path(tmp) / "spiece.model"
        try:
            link.symlink_to(path.resolve())
        except OSError:
            link.write_bytes(path.read_bytes())
        return T5TokenizerFast.from_pretrained(tmp)
