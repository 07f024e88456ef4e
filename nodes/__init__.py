"""Pixel Cascade's ComfyUI nodes: thin V3 adapters over :mod:`cascade_core` (no math here)."""
from __future__ import annotations

from ._comfy import ComfyExtension, io
from .guidance import CFGGuider
from .loaders import T5Loader, UNetLoader
from .model_files import register_folders
from .sampling import Base64Sampler, SRUpsampler256
from .saving import SaveImageWithCaptions
from .selection import BestOfN
from .text import T5Encode
from .upscale import SRUpsampler1024, UpscalerLoader
from .vision import CLIPLoader, EmbeddingSimilarity, GITCaption, GITLoader

NODES: list[type[io.ComfyNode]] = [T5Loader, UNetLoader, T5Encode, CFGGuider, Base64Sampler, SRUpsampler256,
                                   UpscalerLoader, SRUpsampler1024, GITLoader, GITCaption, CLIPLoader,
                                   EmbeddingSimilarity, BestOfN, SaveImageWithCaptions]


class PixelCascadeExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> PixelCascadeExtension:
    register_folders()
    return PixelCascadeExtension()
