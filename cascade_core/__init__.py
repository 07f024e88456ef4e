"""cascade_core: the math and model loading of Pixel Cascade (never imports ComfyUI).

Public names are imported lazily so that ``import cascade_core`` stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # UNets
    "UNet": "cascade_core.unet.model",
    "UNetConfig": "cascade_core.unet.config",
    "load_unet": "cascade_core.unet.loading",
    # schedules, samplers, guidance
    "SAMPLERS": "cascade_core.samplers",
    "CFGGuider": "cascade_core.guidance",
    "DynamicThreshold": "cascade_core.guidance",
    # stage runner, the whole cascade and model placement
    "sample_stage": "cascade_core.stage",
    # image-to-image and inpainting options of the stage runners
    "MaskedDenoiser": "cascade_core.inpaint",
    "strength_sigmas": "cascade_core.inpaint",
    "prepare_mask": "cascade_core.inpaint",
    "Cascade": "cascade_core.cascade",
    "StageSettings": "cascade_core.cascade",
    "ModelManager": "cascade_core.offload",
    "MemoryReport": "cascade_core.offload",
    "MemoryBudgetError": "cascade_core.offload",
    # text encoder
    "load_text_encoder": "cascade_core.text",
    # captioning and image-text similarity
    "load_captioner": "cascade_core.captioning",
    "Captioner": "cascade_core.captioning",
    "load_embedder": "cascade_core.similarity",
    "Embedder": "cascade_core.similarity",
    # best-of-N selection and caption files
    "best_of_n": "cascade_core.selection",
    "select_best": "cascade_core.selection",
    "Selection": "cascade_core.selection",
    "SelectionError": "cascade_core.selection",
    "decorate_caption": "cascade_core.caption_files",
    "save_pairs": "cascade_core.caption_files",
    # stage III: SD x4 upscaler
    "Upscaler": "cascade_core.upscaler.model",
    "load_upscaler": "cascade_core.upscaler.loading",
    "sample_x4_stage": "cascade_core.upscaler.stage",
    # weights and model folders
    "WeightFileError": "cascade_core.weights",
    "ModelFolderError": "cascade_core.hf_folder",
    "WrongModelError": "cascade_core.hf_folder",
    "ImageInputError": "cascade_core.image",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cascade_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
