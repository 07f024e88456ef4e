"""The bad-input corpus as data: each case is a graph that must fail with a message a user can act on (or, for
odd but valid input, succeed), plus the broken model files some cases point at.

``actionable`` is the one check of "can a user act on this message": it names the input or file, and it is not a
bare exception from a library (a tokenizer, safetensors, torch).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from _checkpoints import FILE_T5_NAME, FILE_UNET, REPO_CLIP, REPO_GIT, REPO_IF_I, REPO_IF_II, REPO_X4
from _graphs import base_graph, empty_image, sr_graph, x4_graph

# phrases of library errors that reached users before the pack named them (issue 11)
BARE = ("TextEncodeInput must be", "index out of range", "has no attribute", "attribute name must be",
        "Error while deserializing", "header too small", "enforce fail", "DefaultCPUAllocator", "mat1 and mat2",
        "Expected all tensors", "object is not subscriptable", "unsupported operand", "NoneType")
OURS = ("ValueError", "RuntimeError", "FileNotFoundError", "WeightFileError", "ModelFolderError", "NotT5Error",
        "WrongModelError", "TokenizerNotFoundError", "MemoryBudgetError")


def actionable(message: str, names: tuple[str, ...], exception_type: str | None = None) -> str | None:
    """None when ``message`` names one of ``names`` (inputs or files) and is no bare library error; else why not."""
    if not any(n in message for n in names):
        return f"names none of {names}"
    bare = [b for b in BARE if b in message]
    if bare:
        return f"is a bare library error ({bare[0]!r})"
    if exception_type is not None and exception_type.rsplit(".", 1)[-1] not in OURS:
        return f"is a {exception_type}, not one of the pack's errors"
    return None


@dataclass(frozen=True)
class Case:
    """``graph(files)`` -> API graph; ``node``: the node id that must report it; ``names``: what the message must
    name (any one); ``ok``: odd but valid input that must succeed."""

    name: str
    graph: Callable[[dict], dict]
    node: str
    names: tuple[str, ...]
    ok: bool = False


def _set(graph: dict, node: str, **inputs) -> dict:
    graph[node]["inputs"].update(inputs)
    return graph


def base(node: str, **inputs) -> Callable[[dict], dict]:
    return lambda files: _set(base_graph(), node, **inputs)


def git_graph(*, model: str = REPO_GIT, prompt: str = "", max_new_tokens: int = 4, image=None) -> dict:
    return {"20": image or empty_image(32, 32),
            "40": {"class_type": "PixelCascadeGITLoader",
                   "inputs": {"model_name": model, "device": "default", "dtype": "default"}},
            "41": {"class_type": "PixelCascadeGITCaption",
                   "inputs": {"model": ["40", 0], "image": ["20", 0], "max_new_tokens": max_new_tokens,
                              "num_beams": 1, "repetition_penalty": 1.0, "prompt": prompt}}}


def clip_graph(*, model: str = REPO_CLIP, texts: str = "a red square", score: str = "cosine") -> dict:
    return {"20": empty_image(32, 32),
            "42": {"class_type": "PixelCascadeCLIPLoader",
                   "inputs": {"model_name": model, "device": "default", "dtype": "default"}},
            "43": {"class_type": "PixelCascadeEmbeddingSimilarity",
                   "inputs": {"model": ["42", 0], "image": ["20", 0], "texts": texts, "score": score}}}


def best_of_n_graph(*, batch: int = 2, keep: int = 1, texts: str = "a red square", batch_size: int = 16) -> dict:
    image = empty_image(16, 16)
    image["inputs"]["batch_size"] = batch
    return {"20": image,
            "42": {"class_type": "PixelCascadeCLIPLoader",
                   "inputs": {"model_name": REPO_CLIP, "device": "default", "dtype": "default"}},
            "44": {"class_type": "PixelCascadeBestOfN",
                   "inputs": {"model": ["42", 0], "image": ["20", 0], "texts": texts, "keep": keep,
                              "batch_size": batch_size}}}


def save_captions_graph(*, prefix: str = "tests/bad/x", images: int = 1, captioned: int = 0) -> dict:
    """Save Image With Captions (node "45") of ``images`` images with the captions of GIT Caption on ``captioned``
    images, or (0) one fixed caption: then "45" is the only output node (a bad prefix fails the whole prompt)."""
    if captioned:
        graph = git_graph()
        graph["20"]["inputs"]["batch_size"] = captioned
    else:
        graph = {"41": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a caption"}}}
    graph["21"] = empty_image(32, 32)
    graph["21"]["inputs"]["batch_size"] = images
    graph["45"] = {"class_type": "PixelCascadeSaveImageWithCaptions",
                   "inputs": {"images": ["21", 0], "captions": ["41", 0], "filename_prefix": prefix}}
    return graph


def _sr(width: int, height: int) -> Callable[[dict], dict]:
    return lambda files: sr_graph(empty_image(width, height))


LONG = "a red fox " * 10_000  # 100,000 characters
NAN, INF = float("nan"), float("inf")

CASES: list[Case] = [
    # numbers out of range, of the wrong type, NaN / inf
    Case("seed-negative", base("6", seed=-1), "6", ("seed",)),
    Case("seed-too-big", base("6", seed=2 ** 64), "6", ("seed",)),
    Case("seed-text", base("6", seed="abc"), "6", ("seed",)),
    Case("steps-zero", base("6", steps=0), "6", ("steps",)),
    Case("steps-huge", base("6", steps=100_000), "6", ("steps",)),
    Case("width-zero", base("6", width=0), "6", ("width",)),
    Case("width-odd", base("6", width=61), "6", ("width",)),
    Case("width-huge", base("6", width=4096), "6", ("width",)),
    Case("height-negative", base("6", height=-64), "6", ("height",)),
    Case("batch-zero", base("6", batch_size=0), "6", ("batch_size",)),
    Case("batch-huge", base("6", batch_size=1000), "6", ("batch_size",)),
    Case("schedule-bogus", base("6", schedule="bogus"), "6", ("schedule",)),
    Case("sampler-bogus", base("6", sampler="bogus"), "6", ("sampler",)),
    Case("sampler-number", base("6", sampler=3), "6", ("sampler",)),
    Case("cfg-nan", base("5", cfg=NAN), "5", ("cfg",)),
    Case("cfg-inf", base("5", cfg=INF), "5", ("cfg",)),
    Case("cfg-negative", base("5", cfg=-5.0), "5", ("cfg",)),
    Case("cfg-huge", base("5", cfg=1e9), "5", ("cfg",)),
    Case("cfg-text", base("5", cfg="strong"), "5", ("cfg",)),
    Case("percentile-above-one", base("5", threshold_percentile=2.0), "5", ("threshold_percentile",)),
    Case("percentile-nan", base("5", threshold_percentile=NAN), "5", ("threshold_percentile",)),
    Case("threshold-max-negative", base("5", threshold_max=-1.0), "5", ("threshold_max",)),
    Case("noise-level-negative", lambda f: _set(sr_graph(empty_image(16, 16)), "10", noise_level=-1), "10",
         ("noise_level",)),
    Case("noise-level-huge", lambda f: _set(sr_graph(empty_image(16, 16)), "10", noise_level=5000), "10",
         ("noise_level",)),
    # prompts: surrogates, huge, control characters, emoji, empty
    Case("prompt-lone-surrogate", base("2", text="a fox \ud800 in snow"), "2", ("text",)),
    Case("prompt-100k-chars", base("2", text=LONG), "2", ("text",)),
    Case("prompt-control-chars", base("2", text="a\x00 fox\x07\x1b[31m red\u200b"), "2", (), ok=True),
    Case("prompt-emoji", base("2", text="🦊 in ❄️ snow 🌅"), "2", (), ok=True),
    Case("prompt-rtl-and-cjk", base("2", text="ثعلب أحمر 赤い狐 in snow"), "2", (), ok=True),
    Case("prompt-long-chunked", base("2", text="a red fox " * 1500, long_prompt=True), "2", (), ok=True),
    Case("prompt-empty-positive", base("2", text=""), "5", ("positive", "prompt")),
    Case("prompt-number", base("2", text=12345), "2", (), ok=True),
    # combos and model names: missing, traversal, absolute, wrong type, wrong kind
    Case("t5-missing", base("1", t5_name="no-such-t5.safetensors"), "1", ("t5_name",)),
    Case("t5-traversal", base("1", t5_name="../../../etc/passwd"), "1", ("t5_name",)),
    Case("t5-absolute", base("1", t5_name="/etc/passwd"), "1", ("t5_name",)),
    Case("t5-number", base("1", t5_name=3), "1", ("t5_name",)),
    Case("t5-device-bogus", base("1", device="cuda:7"), "1", ("device",)),
    Case("t5-dtype-bogus", base("1", dtype="bogus"), "1", ("dtype",)),
    Case("t5-dtype-number", base("1", dtype=3), "1", ("dtype",)),
    Case("unet-missing", base("4", unet_name="IF-I-XL-v1.0/"), "4", ("unet_name",)),
    Case("unet-traversal", base("4", unet_name="../pixel_cascade/tiny-IF-I/"), "4", ("unet_name",)),
    Case("unet-absolute", base("4", unet_name="/tmp/unet.safetensors"), "4", ("unet_name",)),
    Case("unet-dtype-bogus", base("4", dtype="bogus"), "4", ("dtype",)),
    Case("unet-dtype-number", base("4", dtype=3), "4", ("dtype",)),
    Case("unet-weight-dtype-bogus", base("4", weight_dtype="int4"), "4", ("weight_dtype",)),
    Case("unet-sr-model-in-base-sampler", base("4", unet_name=REPO_IF_II), "6", ("guider",)),
    Case("unet-fp8-runs", base("4", weight_dtype="float8_e4m3fn"), "6", (), ok=True),
    Case("git-loader-given-clip", lambda f: git_graph(model=REPO_CLIP), "40", ("model_name",)),
    Case("clip-loader-given-git", lambda f: clip_graph(model=REPO_GIT), "42", ("model_name",)),
    Case("unet-loader-given-x4-repo", base("4", unet_name=REPO_X4), "4", ("unet_name",)),
    Case("t5-loader-given-x4-repo", base("1", t5_name=REPO_X4), "1", ("t5_name",)),
    Case("t5-loader-given-unet-repo", base("1", t5_name=REPO_IF_II), "1", ("t5_name",)),
    Case("upscaler-loader-given-if-repo", lambda f: _set(x4_graph(empty_image(16, 16)), "30",
                                                         upscaler_name=REPO_IF_I), "30", ("upscaler_name",)),
    Case("upscaler-missing", lambda f: _set(x4_graph(empty_image(16, 16)), "30", upscaler_name="x4.safetensors"),
         "30", ("upscaler_name",)),
    # broken files in every layout (written by write_broken_files)
    Case("unet-file-empty", base("4", unet_name="zero.safetensors"), "4", ("zero.safetensors",)),
    Case("unet-file-truncated", base("4", unet_name="truncated.safetensors"), "4", ("truncated.safetensors",)),
    Case("unet-file-garbage", base("4", unet_name="garbage.safetensors"), "4", ("garbage.safetensors",)),
    Case("unet-file-is-t5", base("4", unet_name="t5-as-unet.safetensors"), "4", ("t5-as-unet.safetensors",)),
    Case("t5-file-is-unet", base("1", t5_name="unet-as-t5.safetensors"), "1", ("unet-as-t5.safetensors",)),
    Case("t5-file-empty", base("1", t5_name="zero.safetensors"), "1", ("zero.safetensors",)),
    Case("t5-file-truncated", base("1", t5_name="truncated.safetensors"), "1", ("truncated.safetensors",)),
    Case("t5-repo-truncated", base("1", t5_name="t5-truncated/"), "1", ("t5-truncated", "model.safetensors")),
    Case("diffusers-empty-weights", base("4", unet_name="unet-empty/"), "4",
         ("unet-empty", "diffusion_pytorch_model")),
    Case("diffusers-missing-shard", base("4", unet_name="unet-missing-shard/"), "4",
         ("unet-missing-shard", "00002")),
    Case("diffusers-bad-config", base("4", unet_name="unet-bad-config/"), "4", ("unet-bad-config", "config.json")),
    Case("git-empty-weights", lambda f: git_graph(model="git-empty/"), "40", ("git-empty", "model.safetensors")),
    Case("git-truncated-weights", lambda f: git_graph(model="git-truncated/"), "40",
         ("git-truncated", "model.safetensors")),
    Case("clip-empty-weights", lambda f: clip_graph(model="clip-empty/"), "42", ("clip-empty", "model.safetensors")),
    Case("x4-empty-unet", lambda f: _set(x4_graph(empty_image(16, 16)), "30", upscaler_name="x4-broken/"), "30",
         ("x4-broken", "diffusion_pytorch_model")),
    # other nodes' inputs
    Case("git-prompt-100k", lambda f: git_graph(prompt=LONG), "41", ("prompt",)),
    Case("git-prompt-too-many-tokens", lambda f: git_graph(prompt="fox " * 2000), "41", ("prompt",)),
    Case("git-prompt-surrogate", lambda f: git_graph(prompt="what \ud800?"), "41", ("prompt",)),
    Case("git-max-tokens-zero", lambda f: git_graph(max_new_tokens=0), "41", ("max_new_tokens",)),
    Case("clip-texts-surrogate", lambda f: clip_graph(texts="a \udfff cat"), "43", ("texts",)),
    Case("clip-score-bogus", lambda f: clip_graph(score="bogus"), "43", ("score",)),
    Case("clip-texts-empty", lambda f: clip_graph(texts="\n \n"), "43", ("texts",)),
    Case("best-of-n-keep-above-batch", lambda f: best_of_n_graph(batch=2, keep=3), "44", ("keep",)),
    Case("best-of-n-texts-empty", lambda f: best_of_n_graph(texts=" \n"), "44", ("texts",)),
    Case("best-of-n-batch-size-zero", lambda f: best_of_n_graph(batch_size=0), "44", ("batch_size",)),
    Case("git-batch-size-zero", lambda f: _set(git_graph(), "41", batch_size=0), "41", ("batch_size",)),
    Case("save-captions-traversal", lambda f: save_captions_graph(prefix="../escape/x"), "45", ("filename_prefix",)),
    Case("save-captions-absolute", lambda f: save_captions_graph(prefix="/tmp/escape/x"), "45", ("filename_prefix",)),
    Case("save-captions-count-mismatch", lambda f: save_captions_graph(images=3, captioned=2), "45", ("captions",)),
    # images: 1x1, odd sizes, far too large
    Case("sr-image-1x1", _sr(1, 1), "10", ("image",)),
    Case("sr-image-odd", _sr(63, 63), "10", ("image",)),
    Case("sr-image-4000", _sr(4000, 4000), "10", ("image", "output", "memory")),
    Case("x4-image-4000", lambda f: x4_graph(empty_image(4000, 4000)), "31", ("tiling", "image", "input")),
    Case("x4-steps-1000", lambda f: x4_graph(empty_image(16, 16), steps=1000), "31", ("steps",)),
    Case("x4-image-1x1", lambda f: x4_graph(empty_image(1, 1)), "31", ("image",)),
    # wiring
    Case("sr1024-no-model", lambda f: _without_upscaler(x4_graph(empty_image(16, 16))), "31", ("upscaler", "guider")),
    Case("image-into-guider", lambda f: _set(sr_graph(empty_image(16, 16)), "9", unet=["20", 0]), "9", ("unet",)),
]


def start_graph(*, mask: float | None = None, image_batch: int = 1, size: int = 64,
                **sampler) -> Callable[[dict], dict]:
    """Base 64 Sampler ("6") with a start image ("21", EmptyImage) and optionally a SolidMask ("22") of ``mask``."""
    def build(files: dict) -> dict:
        graph = base_graph()
        graph["21"] = {"class_type": "EmptyImage",
                       "inputs": {"width": size, "height": size, "batch_size": image_batch, "color": 8421504}}
        graph["6"]["inputs"].update(start_image=["21", 0], **sampler)
        if mask is not None:
            graph["22"] = {"class_type": "SolidMask", "inputs": {"value": mask, "width": size, "height": size}}
            graph["6"]["inputs"]["mask"] = ["22", 0]
        return graph
    return build


def _mask_without_image(files: dict) -> dict:
    graph = start_graph(mask=1.0)(files)
    del graph["6"]["inputs"]["start_image"], graph["21"]
    return graph


def _x4_with_start(**inputs) -> Callable[[dict], dict]:
    def build(files: dict) -> dict:
        graph = x4_graph(empty_image(16, 16))
        graph["31"]["inputs"].update(start_image=["20", 0], **inputs)
        return graph
    return build


CASES += [
    # image-to-image and inpainting inputs (issue 13)
    Case("denoise-above-one", base("6", denoise=1.5), "6", ("denoise",)),
    Case("denoise-negative", base("6", denoise=-0.1), "6", ("denoise",)),
    Case("denoise-nan", base("6", denoise=NAN), "6", ("denoise",)),
    Case("denoise-without-start-image", base("6", denoise=0.5), "6", ("denoise", "start_image")),
    Case("denoise-runs-no-step", start_graph(denoise=0.01), "6", ("denoise",)),
    Case("mask-without-start-image", _mask_without_image, "6", ("mask", "start_image")),
    Case("mask-all-zero", start_graph(mask=0.0), "6", ("mask",)),
    Case("mask-all-one-runs", start_graph(mask=1.0), "6", (), ok=True),
    Case("start-image-other-size-runs", start_graph(mask=1.0, size=100, denoise=0.5), "6", (), ok=True),
    Case("start-image-batch-mismatch", start_graph(image_batch=2, batch_size=3), "6", ("batch", "start_image")),
    Case("x4-start-image-runs", _x4_with_start(denoise=0.5), "31", (), ok=True),
    Case("x4-denoise-runs-no-step", _x4_with_start(denoise=0.01), "31", ("denoise",)),
]


def _without_upscaler(graph: dict) -> dict:
    del graph["30"]
    del graph["31"]["inputs"]["upscaler"]
    return graph


def write_broken_files(models: Path, good: dict[str, Path]) -> None:
    """Broken and mismatched files beside the micro checkpoints (``good``: name -> path from build_models)."""
    unet_file, t5_file = good[FILE_UNET], good[FILE_T5_NAME]
    for folder in ("diffusion_models", "text_encoders"):
        d = models / folder
        (d / "zero.safetensors").write_bytes(b"")
        data = (unet_file if folder == "diffusion_models" else t5_file).read_bytes()
        (d / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (models / "diffusion_models" / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"%" * 64)
    shutil.copy(t5_file, models / "diffusion_models" / "t5-as-unet.safetensors")
    shutil.copy(unet_file, models / "text_encoders" / "unet-as-t5.safetensors")
    pack = models / "pixel_cascade"
    repo = good[REPO_IF_I]
    t5 = pack / "t5-truncated"
    shutil.copytree(repo / "tokenizer", t5 / "tokenizer")
    shutil.copytree(repo / "text_encoder", t5 / "text_encoder")
    for f in (t5 / "text_encoder").glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[:100])
    for name in ("unet-empty", "unet-missing-shard", "unet-bad-config"):
        (pack / name / "unet").mkdir(parents=True)
        shutil.copy(repo / "unet" / "config.json", pack / name / "unet" / "config.json")
    (pack / "unet-empty" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    shard = pack / "unet-missing-shard" / "unet"
    shutil.copy(repo / "unet" / "diffusion_pytorch_model.safetensors",
                shard / "diffusion_pytorch_model-00001-of-00002.safetensors")
    (shard / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "conv_in.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
        "conv_out.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}}))
    bad = pack / "unet-bad-config" / "unet"
    (bad / "config.json").write_text("{ this is not json")
    shutil.copy(repo / "unet" / "diffusion_pytorch_model.safetensors", bad / "diffusion_pytorch_model.safetensors")
    for src, name, cut in ((good[REPO_GIT], "git-empty", 0), (good[REPO_GIT], "git-truncated", 2),
                           (good[REPO_CLIP], "clip-empty", 0)):
        shutil.copytree(src, pack / name)
        weights = pack / name / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // cut] if cut else b"")
    shutil.copytree(good[REPO_X4], pack / "x4-broken")
    (pack / "x4-broken" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
