"""Model dropdowns and path resolution through ComfyUI's ``folder_paths`` (never inside custom_nodes).

Single files live in ComfyUI's standard folders (``diffusion_models`` for UNets, ``text_encoders`` for
T5); whole Hugging Face repo folders (``IF-I-XL-v1.0/`` with ``unet/``, ``text_encoder/``,
``tokenizer/``) live in ``models/pixel_cascade/`` and are listed with a trailing slash. The built-in demo
cascade (``cascade_core.demo.DEMO_DIR``, inside this pack) is listed first, as ``demo/<name>``, when present.
"""
from __future__ import annotations

import os
from pathlib import Path

from cascade_core.demo import DEMO_DIR

from ._comfy import folder_paths

PACK_FOLDER = "pixel_cascade"
UNET_FILES = "diffusion_models"
T5_FILES = "text_encoders"
DEMO_PREFIX = "demo/"
DEMO_ORDER = ("t5", "base64", "sr256", "sr1024", "git", "clip")  # the cascade's order (then any others, sorted)


def register_folders() -> None:
    """Make ``models/pixel_cascade`` a model folder (idempotent; other roots from extra_model_paths stay)."""
    if PACK_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(PACK_FOLDER, os.path.join(folder_paths.models_dir, PACK_FOLDER),
                                           is_default=True)


def repo_folders(marker: str) -> list[str]:
    """Folders in models/pixel_cascade that contain ``marker`` (a file or subfolder), listed as "name/"."""
    register_folders()
    names = set()
    for root in folder_paths.get_folder_paths(PACK_FOLDER):
        if os.path.isdir(root):
            for entry in os.scandir(root):
                if entry.is_dir() and (Path(entry.path) / marker).exists():
                    names.add(entry.name + "/")
    return sorted(names)


def demo_folders(marker: str = "", model_types: tuple[str, ...] = ()) -> list[str]:
    """The demo model folders (``demo/base64`` ...) holding ``marker`` and, if given, a config.json of one of
    ``model_types``; none when the demo folder is absent. Read at call time (tests may point DEMO_DIR elsewhere)."""
    import json

    root = Path(DEMO_DIR)
    if not root.is_dir():
        return []
    rank = {name: i for i, name in enumerate(DEMO_ORDER)}
    names = sorted((e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith((".", "_"))),
                   key=lambda n: (rank.get(n, len(rank)), n))
    found = []
    for name in names:
        folder = root / name
        if marker and not (folder / marker).exists():
            continue
        if model_types:
            try:
                if json.loads((folder / "config.json").read_text()).get("model_type") not in model_types:
                    continue
            except (OSError, ValueError):
                continue
        found.append(DEMO_PREFIX + name)
    return found


def files(folder: str) -> list[str]:
    """The .safetensors files of one of ComfyUI's model folders."""
    return [f for f in folder_paths.get_filename_list(folder) if f.endswith(".safetensors")]


def _if_folders(*markers: str) -> list[str]:
    """Repo folders with any of ``markers``, except the SD x4 upscaler's (its unet/ and text_encoder/ are not IF's)."""
    upscalers = set(repo_folders("low_res_scheduler"))
    return sorted({name for marker in markers for name in repo_folders(marker)} - upscalers)


def unet_choices() -> list[str]:
    """Demo UNets, repo folders holding ``unet/`` (or a bare diffusers UNet folder), then single UNet files."""
    return demo_folders("unet") + _if_folders("unet", "diffusion_pytorch_model.safetensors",
                                              "diffusion_pytorch_model.safetensors.index.json") + files(UNET_FILES)


def t5_choices() -> list[str]:
    """The demo T5, repo folders holding ``text_encoder/`` (or a bare transformers T5 folder), then single files."""
    return demo_folders("spiece.model") + _if_folders("text_encoder", "spiece.model") + files(T5_FILES)


def _resolve_demo(name: str) -> Path | None:
    """``demo/<name>`` -> DEMO_DIR/<name>; None for other names (e.g. files in a ``demo/`` subfolder)."""
    rest = name[len(DEMO_PREFIX):]
    parts = rest.split("/")
    if any(p in ("", ".", "..") or os.sep in p for p in parts):
        raise ValueError(f"invalid demo model name {name!r}")
    if len(parts) > 1 or rest.endswith(".safetensors"):
        return None
    root = Path(DEMO_DIR)
    candidate = root / rest
    if candidate.is_dir() and candidate.resolve().parent == root.resolve():
        return candidate
    raise FileNotFoundError(f"demo model {name!r} not found: {candidate} does not exist (the demo models ship "
                            f"with the pack in {root}; reinstall or update it)")


def resolve(name: str, file_folder: str) -> Path:
    """The path of a dropdown entry; refuses anything outside the model folders (and the demo folder)."""
    if name.startswith(DEMO_PREFIX):
        demo = _resolve_demo(name)
        if demo is not None:
            return demo
    if name.endswith("/"):
        register_folders()
        folder_name = name[:-1]
        if not folder_name or os.sep in folder_name or "/" in folder_name or folder_name in (".", ".."):
            raise ValueError(f"invalid model folder name {name!r}")
        for root in folder_paths.get_folder_paths(PACK_FOLDER):
            candidate = Path(root, folder_name)
            if candidate.is_dir() and candidate.resolve().parent == Path(root).resolve():
                return candidate
        raise FileNotFoundError(f"model folder {name!r} not found in {folder_paths.get_folder_paths(PACK_FOLDER)}")
    path = folder_paths.get_full_path(file_folder, name)
    if path is None:
        raise FileNotFoundError(f"model file {name!r} not found in {folder_paths.get_folder_paths(file_folder)}")
    return Path(path)


def hf_folders(model_types: tuple[str, ...]) -> list[str]:
    """Demo folders, then repo folders in models/pixel_cascade, whose config.json has one of ``model_types``
    (GIT, CLIP, SigLIP)."""
    import json

    names = demo_folders("config.json", model_types)
    for name in repo_folders("config.json"):
        for root in folder_paths.get_folder_paths(PACK_FOLDER):
            config = Path(root, name, "config.json")
            try:
                if config.is_file() and json.loads(config.read_text()).get("model_type") in model_types:
                    names.append(name)
                    break
            except (OSError, ValueError):
                continue
    return names
