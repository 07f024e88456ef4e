"""Where the integration tests find ComfyUI and the browser, and how they give up when either is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from _comfy_host import comfy_root

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "comfyui.sh"
ROOT = comfy_root()  # scripts/comfyui.sh's COMFY_ROOT


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Skip locally; fail under CI, where a missing ComfyUI or browser must never pass silently."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)
