"""The shipped workflows, and their test copies pointed at the micro checkpoints with fewer steps."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from _checkpoints import FILE_T5_NAME, REPO_CLIP, REPO_GIT, REPO_IF_I, REPO_IF_II, REPO_X4
from _runtime import REPO

WORKFLOWS = REPO / "workflows"
API_DIR = WORKFLOWS / "api"

MODEL_INPUTS = ("t5_name", "unet_name", "model_name", "upscaler_name")
# every real checkpoint name a shipped workflow may use → the micro checkpoint standing in for it
TEST_MODELS = {
    "IF-I-XL-v1.0/": REPO_IF_I, "IF-I-L-v1.0/": REPO_IF_I, "IF-I-M-v1.0/": REPO_IF_I,
    "IF-II-L-v1.0/": REPO_IF_II, "IF-II-M-v1.0/": REPO_IF_II,
    "t5xxl_fp16.safetensors": FILE_T5_NAME, "t5xxl_fp8_e4m3fn.safetensors": FILE_T5_NAME,
    "git-large-coco/": REPO_GIT, "git-base-coco/": REPO_GIT,
    "clip-vit-large-patch14/": REPO_CLIP, "clip-vit-base-patch32/": REPO_CLIP,
    "stable-diffusion-x4-upscaler/": REPO_X4, "x4-upscaler-ema.safetensors": REPO_X4,
    # the built-in demo models ship inside the pack (cascade_core/demo/models): used as they are
    **{f"demo/{name}": f"demo/{name}" for name in ("t5", "base64", "sr256", "sr1024", "git", "clip")},
}
DEMO = "demo_cascade"  # the shipped demo workflow: runs on the demo models, not on micro checkpoints
SAMPLERS = ("PixelCascadeBase64Sampler", "PixelCascadeSRUpsampler256", "PixelCascadeSRUpsampler1024")
SAVE_WITH_CAPTIONS = "PixelCascadeSaveImageWithCaptions"
IMAGE_SINKS = ("SaveImage", "PreviewImage", SAVE_WITH_CAPTIONS)
SAVERS = ("SaveImage", SAVE_WITH_CAPTIONS)  # image sinks that write to the output folder (filename_prefix)


def api_paths() -> list[Path]:
    return sorted(API_DIR.glob("*.json"))


BASIC = "cascade_64_256"  # the plain two-stage workflow the generic server tests start from


def api_path(stem: str) -> Path:
    """The shipped API workflow ``workflows/api/<stem>.json``."""
    path = API_DIR / f"{stem}.json"
    assert path.is_file(), f"no shipped API workflow {path}"
    return path


def micro_api_paths() -> list[Path]:
    """The API workflows the micro checkpoints can stand in for (all but the demo's)."""
    return [p for p in api_paths() if p.stem != DEMO]


def ui_paths() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def ui_path_for(api_path: Path) -> Path:
    """A shipped API workflow's UI twin: ``workflows/api/x.json`` → ``workflows/x.json``."""
    return WORKFLOWS / api_path.name


def retarget_models(api: dict) -> dict:
    """A copy of ``api`` with every model name replaced by its micro stand-in (unknown names fail loudly)."""
    api = copy.deepcopy(api)
    for node_id, node in api.items():
        for name in MODEL_INPUTS:
            if name in node["inputs"]:
                value = node["inputs"][name]
                assert value in TEST_MODELS, f"node {node_id}: no micro stand-in for model {value!r}"
                node["inputs"][name] = TEST_MODELS[value]
    return api


def for_tests(api: dict, *, steps: int = 8, prefix: str = "test", max_batch: int | None = None) -> dict:
    """Micro models, ``steps`` steps on a step-count schedule, a test-only output file prefix, and base batches of
    at most ``max_batch`` images (None: as shipped)."""
    api = retarget_models(api)
    for node in api.values():
        if max_batch is not None and "batch_size" in node["inputs"] and node["class_type"] == SAMPLERS[0]:
            node["inputs"]["batch_size"] = min(node["inputs"]["batch_size"], max_batch)
        if node["class_type"] in SAMPLERS:
            node["inputs"]["steps"] = steps
            if "schedule" in node["inputs"]:
                node["inputs"]["schedule"] = "leading"
        if node["class_type"] in SAVERS:
            node["inputs"]["filename_prefix"] = f"tests/{prefix}"
    return api


def image_size(api: dict, link: list) -> tuple[int, int, int]:
    """(batch, width, height) of the IMAGE at ``link`` = [node id, slot], following our samplers' rules."""
    node = api[str(link[0])]
    inputs = node["inputs"]
    if node["class_type"] == "PixelCascadeBase64Sampler":
        return inputs["batch_size"], inputs["width"], inputs["height"]
    if node["class_type"] in ("PixelCascadeSRUpsampler256", "PixelCascadeSRUpsampler1024"):
        batch, width, height = image_size(api, inputs["image"])
        return batch, 4 * width, 4 * height
    if node["class_type"] == "PixelCascadeBestOfN":  # the best `keep` of the batch, same size
        _, width, height = image_size(api, inputs["image"])
        return inputs["keep"], width, height
    raise ValueError(f"no size rule for {node['class_type']}")
