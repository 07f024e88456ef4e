"""Pixel Cascade: ComfyUI entry point.

Imported outside ComfyUI this does nothing (no network, no model loading, no ComfyUI imports); inside a
ComfyUI process it exposes the node pack through ``comfy_entrypoint`` (V3 node API).
"""
import os
import sys

try:  # only inside a ComfyUI process
    import comfy.utils  # noqa: F401

    _IN_COMFY = True
except ImportError:
    _IN_COMFY = False

if _IN_COMFY:
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if _HERE not in sys.path:
        sys.path.append(_HERE)  # makes `cascade_core` importable; appended, so ComfyUI's own modules win
    from .nodes import comfy_entrypoint  # noqa: F401,E402

WEB_DIRECTORY = "./js"  # a small frontend extension that shows captions and scores inside their nodes
__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"] if _IN_COMFY else []
