"""ComfyUI adapters over :mod:`cascade_core` (filled in by the node-pack issue)."""
