"""Small API graphs built in code for the error, validation and interrupt tests (micro models)."""
from __future__ import annotations

from _checkpoints import FILE_T5_NAME, REPO_IF_I, REPO_IF_II


def base_graph(*, text: str = "a red fox in the snow", unet: str = REPO_IF_I, steps: int = 2, width: int = 64,
               height: int = 64, seed: int = 0) -> dict:
    """T5 → encode (positive, empty negative) → guider → Base 64 Sampler (node "6") → PreviewImage."""
    return {
        "1": {"class_type": "PixelCascadeT5Loader",
              "inputs": {"t5_name": FILE_T5_NAME, "device": "default", "dtype": "default"}},
        "2": {"class_type": "PixelCascadeT5Encode", "inputs": {"t5": ["1", 0], "text": text, "clean_caption": False}},
        "3": {"class_type": "PixelCascadeT5Encode", "inputs": {"t5": ["1", 0], "text": "", "clean_caption": False}},
        "4": {"class_type": "PixelCascadeUNetLoader", "inputs": {"unet_name": unet, "dtype": "default"}},
        "5": {"class_type": "PixelCascadeCFGGuider",
              "inputs": {"unet": ["4", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 7.0,
                         "threshold_percentile": 0.95, "threshold_max": 1.5}},
        "6": {"class_type": "PixelCascadeBase64Sampler",
              "inputs": {"guider": ["5", 0], "seed": seed, "steps": steps, "schedule": "leading", "sampler": "ddpm",
                         "width": width, "height": height, "batch_size": 1}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def sr_graph(image: dict, *, steps: int = 2) -> dict:
    """An SR stage (guider "9", upsampler "10") on ``image`` (an API node, given id "20") → PreviewImage."""
    graph = base_graph()
    for node_id in ("6", "7"):
        del graph[node_id]
    graph.update({
        "20": image,
        "8": {"class_type": "PixelCascadeUNetLoader", "inputs": {"unet_name": REPO_IF_II, "dtype": "default"}},
        "9": {"class_type": "PixelCascadeCFGGuider",
              "inputs": {"unet": ["8", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 4.0,
                         "threshold_percentile": 0.95, "threshold_max": 1.0}},
        "10": {"class_type": "PixelCascadeSRUpsampler256",
               "inputs": {"guider": ["9", 0], "image": ["20", 0], "noise_level": 250, "seed": 0, "steps": steps,
                          "schedule": "leading", "sampler": "ddpm"}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    })
    del graph["4"], graph["5"]
    return graph


def empty_image(width: int, height: int) -> dict:
    """ComfyUI core's EmptyImage node (any size, unlike our base sampler)."""
    return {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0}}


def x4_graph(image: dict, *, steps: int = 2, noise_level: int = 100) -> dict:
    """Stage III alone: x4 Upscaler Loader ("30") + SR Upsampler 1024 ("31") on ``image`` (node "20") → PreviewImage."""
    from _checkpoints import REPO_X4

    return {
        "20": image,
        "30": {"class_type": "PixelCascadeUpscalerLoader", "inputs": {"upscaler_name": REPO_X4, "dtype": "default"}},
        "31": {"class_type": "PixelCascadeSRUpsampler1024",
               "inputs": {"upscaler": ["30", 0], "image": ["20", 0], "prompt": "a cat", "negative_prompt": "",
                          "steps": steps, "guidance": 9.0, "noise_level": noise_level, "seed": 0, "sampler": "ddim",
                          "tiling": False, "tile_size": 64}},
        "32": {"class_type": "PreviewImage", "inputs": {"images": ["31", 0]}},
    }
