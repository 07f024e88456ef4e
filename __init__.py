"""Pixel Cascade: ComfyUI entry point.

Importing this file outside ComfyUI does nothing (no network, no model loading); inside ComfyUI it
exposes the node pack through ``comfy_entrypoint``.
"""
try:  # pragma: no cover - only inside a ComfyUI process
    import comfy.utils  # noqa: F401
    _IN_COMFY = True
except ImportError:
    _IN_COMFY = False

if _IN_COMFY:  # pragma: no cover
    from .nodes import comfy_entrypoint  # noqa: F401

__all__ = ["comfy_entrypoint"] if _IN_COMFY else []
