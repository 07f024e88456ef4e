"""Each shipped API workflow (the demo's has test_server_demo.py) runs on a real server (micro models, fewer
steps) through ``POST /prompt``: it succeeds, every image node saves PNGs of the expected size (64 → 256), and
the websocket reports ``progress`` for every sampling step of every sampler."""
from __future__ import annotations

import io

import pytest
from _checkpoints import FILE_UNET, REPO_IF_I
from cascade_core.inpaint import strength_steps
from _workflows import (BASIC, IMAGE_SINKS, SAMPLERS, SAVERS, api_path, api_paths, for_tests, image_size, load,
                        micro_api_paths)

pytestmark = pytest.mark.server

STEPS = 8
# (label, T5 name, base UNet name): the shipped models' stand-ins (None), then the other checkpoint layouts
VARIANTS = [("as-shipped", None, None), ("repo-t5-single-file-unet", REPO_IF_I, FILE_UNET)]


def _swap_models(api: dict, t5_name: str | None, base_unet: str | None) -> dict:
    """Point the T5 loader and the base stage's UNet loader at other checkpoints (None: leave as is)."""
    for node in api.values():
        if t5_name and node["class_type"] == "PixelCascadeT5Loader":
            node["inputs"]["t5_name"] = t5_name
        if base_unet and node["class_type"] == "PixelCascadeBase64Sampler":
            guider = api[str(node["inputs"]["guider"][0])]
            api[str(guider["inputs"]["unet"][0])]["inputs"]["unet_name"] = base_unet
    return api


def _png_size(comfy, image: dict) -> tuple[int, int]:
    from PIL import Image
    from urllib.parse import urlencode

    query = urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
    status, raw = comfy.request("GET", f"/view?{query}")
    assert status == 200 and raw[:8] == b"\x89PNG\r\n\x1a\n", f"/view?{query} -> {status}"
    with Image.open(io.BytesIO(raw)) as im:
        return im.size


# the other checkpoint layouts are a loader matter: the plain cascades cover them, the rest run as shipped
LAYOUT_WORKFLOWS = (BASIC, "cascade_64_256_1024")
RUNS = [(path, *variant) for path in micro_api_paths() for variant in VARIANTS
        if variant is VARIANTS[0] or path.stem in LAYOUT_WORKFLOWS]
MAX_BATCH = 4  # a shipped batch of 8 or 16 runs as 4 here (tests/server/test_server_captions.py runs 16 and more)


@pytest.mark.parametrize("path,label,t5_name,base_unet", RUNS, ids=[f"{r[0].stem}-{r[1]}" for r in RUNS])
def test_shipped_workflow_runs(comfy, path, label, t5_name, base_unet):
    api = _swap_models(for_tests(load(path), steps=STEPS, prefix=f"{path.stem}-{label}", max_batch=MAX_BATCH),
                       t5_name, base_unet)
    run = comfy.run(api)
    assert run.status == "success", f"{label}: {run.status}: {run.of_type('execution_error')}\n{comfy.log_tail()}"
    assert run.of_type("execution_success")

    sinks = [i for i, n in api.items() if n["class_type"] in IMAGE_SINKS]
    assert sinks, "workflow has no SaveImage/PreviewImage"
    for node_id in sinks:
        batch, width, height = image_size(api, api[node_id]["inputs"]["images"])
        images = run.history["outputs"][node_id]["images"]
        assert len(images) == batch, node_id
        expected_type = "output" if api[node_id]["class_type"] in SAVERS else "temp"
        for image in images:
            assert image["type"] == expected_type
            assert _png_size(comfy, image) == (width, height), f"node {node_id} ({api[node_id]['class_type']})"

    for node_id in (i for i, n in api.items() if n["class_type"] in SAMPLERS):
        progress = [d for d in run.of_type("progress") if str(d.get("node")) == node_id]
        steps = strength_steps(STEPS, api[node_id]["inputs"].get("denoise", 1.0))  # img2img runs part of them
        assert {d["max"] for d in progress} == {steps}, f"sampler {node_id}: {progress}"
        assert sorted({d["value"] for d in progress}) == list(range(1, steps + 1)), f"sampler {node_id}"


def test_cascade_output_is_4x_base(comfy):
    """The 256 px stage really is 4× the 64 px stage, also for a non-square, batched base image."""
    api = for_tests(load(api_path(BASIC)), steps=2, prefix="wide")
    sampler = next(n for n in api.values() if n["class_type"] == "PixelCascadeBase64Sampler")
    sampler["inputs"].update(width=80, height=48, batch_size=2)
    run = comfy.run(api)
    assert run.status == "success", run.of_type("execution_error")
    saved = [im for i, n in api.items() if n["class_type"] == "SaveImage" for im in run.history["outputs"][i]["images"]]
    assert [_png_size(comfy, im) for im in saved] == [(320, 192)] * 2


def test_caption_and_scores_reach_history(comfy):
    """The generate → caption → score workflow: captions and similarity scores appear in /history outputs."""
    api = for_tests(load(next(p for p in api_paths() if p.stem == "cascade_caption_score")), steps=2,
                    prefix="caption")
    run = comfy.run(api)
    assert run.status == "success", f"{run.of_type('execution_error')}\n{comfy.log_tail()}"
    caption_id = next(i for i, n in api.items() if n["class_type"] == "PixelCascadeGITCaption")
    score_id = next(i for i, n in api.items() if n["class_type"] == "PixelCascadeEmbeddingSimilarity")
    captions = run.history["outputs"][caption_id]["text"]
    assert len(captions) == 1 and isinstance(captions[0], str)
    ranking = run.history["outputs"][score_id]["text"][0]
    assert ranking.startswith("image[0]: a photograph of a red fox") and "(" in ranking
