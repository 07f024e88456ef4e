"""Which ComfyUI host the tests run against, shared by ``tests/server`` and ``tests/nodes``.

The tree is ``$COMFYUI_DIR`` if set, else the one ``scripts/comfyui.sh install`` makes for ``$COMFY_VERSION``
(``0.3.75``, the default: ``.comfy_runtime/ComfyUI``; ``0.33.0``: ``.comfy_runtime/0.33.0/ComfyUI-0.33.0``).
With ``$COMFY_EXPECT_VERSION`` set (``scripts/test.sh`` sets it for each host) a session whose tree, imported
``comfyui_version`` or running server reports another version fails instead of testing the wrong host.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VERSION = "0.3.75"


def comfy_root() -> Path:
    """``scripts/comfyui.sh``'s ``COMFY_ROOT`` (default ``.comfy_runtime`` of the clone)."""
    return Path(os.environ.get("COMFY_ROOT") or REPO / ".comfy_runtime")


def comfyui_tree() -> Path:
    """The ComfyUI source tree in use (it may not exist yet)."""
    if os.environ.get("COMFYUI_DIR"):
        return Path(os.environ["COMFYUI_DIR"])
    version = os.environ.get("COMFY_VERSION") or DEFAULT_VERSION
    return comfy_root() / "ComfyUI" if version == DEFAULT_VERSION else comfy_root() / version / f"ComfyUI-{version}"


def tree_version(tree: Path) -> str | None:
    """``__version__`` from ``tree/comfyui_version.py``, or None when the file is absent or unreadable."""
    try:
        text = (tree / "comfyui_version.py").read_text()
    except OSError:
        return None
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return found.group(1) if found else None


def version_mismatch(found: str | None, where: str) -> str | None:
    """An error message when ``$COMFY_EXPECT_VERSION`` is set and ``found`` differs, else None."""
    expected = os.environ.get("COMFY_EXPECT_VERSION")
    if expected and found != expected:
        return (f"{where} is ComfyUI {found}, but COMFY_EXPECT_VERSION={expected}: point COMFYUI_DIR at a "
                f"{expected} tree (COMFY_VERSION={expected} scripts/comfyui.sh install)")
    return None
