"""Node-level tests without a server: ComfyUI's modules are imported in-process and our pack is loaded
under its own package name, as ComfyUI loads custom nodes (so ``nodes`` stays ComfyUI's ``nodes.py``).

ComfyUI comes from ``COMFYUI_DIR``, else from the tree ``scripts/comfyui.sh install`` makes for
``COMFY_VERSION`` (``.comfy_runtime/ComfyUI`` for the default 0.3.75; see ``tests/_comfy_host.py``). Without
it these tests are skipped locally and fail in CI.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from _comfy_host import comfyui_tree, version_mismatch

ROOT = Path(__file__).resolve().parents[2]


def _comfy_dir() -> Path | None:
    path = comfyui_tree()
    return path if (path / "comfy").is_dir() else None


@pytest.fixture(scope="session")
def pack():
    """Our node pack, imported the way ComfyUI imports a custom node folder."""
    tree = _comfy_dir()
    if tree is None:
        if os.environ.get("CI"):
            pytest.fail("ComfyUI not found: run scripts/comfyui.sh install (or set COMFYUI_DIR)")
        pytest.skip("ComfyUI not installed (scripts/comfyui.sh install)")
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    import comfy.options
    import comfyui_version

    imported = Path(comfy.options.__file__).resolve().parents[1]
    if imported != tree.resolve():
        pytest.fail(f"imported ComfyUI from {imported}, not {tree}", pytrace=False)
    problem = version_mismatch(comfyui_version.__version__, f"the imported ComfyUI at {imported}")
    if problem:
        pytest.fail(problem, pytrace=False)
    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True  # as `main.py --cpu`: this machine has no GPU (set before model_management is imported)
    sys.modules.pop("nodes", None)  # our repo's nodes/ package must not stand in for ComfyUI's nodes.py
    spec = importlib.util.spec_from_file_location("pixel_cascade", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pixel_cascade"] = module
    spec.loader.exec_module(module)
    import pixel_cascade.nodes as pack_nodes

    return pack_nodes


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, pack):
    """Tiny checkpoints in temporary model folders registered with folder_paths."""
    import folder_paths
    from tiny_models import write_tiny_models

    root = tmp_path_factory.mktemp("models")
    write_tiny_models(root)
    for name in ("pixel_cascade", "diffusion_models", "text_encoders"):
        folder_paths.folder_names_and_paths[name] = ([str(root / name)], {".safetensors"} if name != "pixel_cascade"
                                                      else set())
    folder_paths.filename_list_cache.clear()
    return root
