"""The one place Pixel Cascade imports ComfyUI. Pinning the node API version is a one-line change here.

Everything ComfyUI-specific the nodes need (node schema API, model folders, the memory manager,
progress bars, interrupts) is re-exported from this module, so the rest of ``nodes/`` reads as plain
adapters and tests can see exactly what the pack depends on.
"""
from __future__ import annotations

import comfy.model_management as model_management  # noqa: F401
import comfy.model_patcher as model_patcher  # noqa: F401
import comfy.ops as comfy_ops  # noqa: F401
import comfy.utils  # noqa: F401
import folder_paths  # noqa: F401
from comfy.cli_args import args as comfy_args  # noqa: F401
from comfy.model_patcher import ModelPatcher  # noqa: F401
from comfy_api.latest import ComfyExtension, io  # noqa: F401

ProgressBar = comfy.utils.ProgressBar
