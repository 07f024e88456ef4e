"""Captions and best-of-N on a real server (micro models): the shipped caption_dataset workflow captions 16
images with a prefix and suffix and writes each caption as a .txt beside its PNG; the caption list reaches a node
taking a STRING once per caption; 16+ images are scored in small batches; Best of N keeps the arg-max."""
from __future__ import annotations

import json

import pytest
from _checkpoints import REPO_CLIP
from _client import PromptRejected
from _workflows import API_DIR, for_tests, load

pytestmark = pytest.mark.server


def _ids(api: dict, class_type: str) -> list[str]:
    return [i for i, n in api.items() if n["class_type"] == class_type]


def test_caption_dataset_writes_txt_beside_png(comfy):
    api = for_tests(load(API_DIR / "caption_dataset.json"), steps=2, prefix="caption-dataset")
    (caption_id,) = _ids(api, "PixelCascadeGITCaption")
    (save_id,) = _ids(api, "PixelCascadeSaveImageWithCaptions")
    (sr_id,) = _ids(api, "PixelCascadeSRUpsampler256")
    api[caption_id]["inputs"].update(prefix="ohwx corgi,", suffix=" trigger-end ", batch_size=5, max_new_tokens=6,
                                     num_beams=1)
    # the caption list into a node that takes one STRING: Embedding Similarity runs once per caption (its texts),
    # scoring all 16 images in batches of 4 each time
    api["90"] = {"class_type": "PixelCascadeCLIPLoader",
                 "inputs": {"model_name": REPO_CLIP, "device": "default", "dtype": "default"}}
    api["91"] = {"class_type": "PixelCascadeEmbeddingSimilarity",
                 "inputs": {"model": ["90", 0], "image": [sr_id, 0], "texts": [caption_id, 0], "score": "cosine",
                            "batch_size": 4}}
    run = comfy.run(api, timeout=300)
    assert run.status == "success", f"{run.of_type('execution_error')}\n{comfy.log_tail()}"
    outputs = run.history["outputs"]
    captions = outputs[caption_id]["text"]
    batch = api[[i for i, n in api.items() if n["class_type"] == "PixelCascadeBase64Sampler"][0]]["inputs"]
    assert len(captions) == batch["batch_size"] >= 16
    assert all(c.startswith("ohwx corgi, ") and c.endswith(", trigger-end") for c in captions), captions[:3]

    saved = outputs[save_id]["images"]
    assert outputs[save_id]["text"] == captions and len(saved) == len(captions)
    folder = comfy.base / "output" / saved[0]["subfolder"]
    assert saved[0]["subfolder"] == "tests" and saved[0]["filename"].startswith("caption-dataset_")
    for image, caption in zip(saved, captions):
        png = folder / image["filename"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".txt").read_text(encoding="utf-8") == caption
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"

    rankings = outputs["91"]["text"]  # one ranking per caption, each against that caption alone
    assert len(rankings) == len(captions)
    for ranking, caption in zip(rankings, captions):
        lines = ranking.splitlines()
        assert len(lines) == len(captions) and lines[0].startswith(f"image[0]: {caption} (")


def _best_of_n_graph(batch: int, keep: int) -> dict:
    image = {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 24, "batch_size": batch, "color": 0}}
    noise = {"class_type": "ImageAddNoise", "inputs": {"image": ["20", 0], "seed": 3, "strength": 0.8}}
    return {"20": image, "21": noise,
            "42": {"class_type": "PixelCascadeCLIPLoader",
                   "inputs": {"model_name": REPO_CLIP, "device": "default", "dtype": "default"}},
            "43": {"class_type": "PixelCascadeEmbeddingSimilarity",
                   "inputs": {"model": ["42", 0], "image": ["21", 0], "texts": "a red square", "score": "cosine",
                              "batch_size": 7}},
            "44": {"class_type": "PixelCascadeBestOfN",
                   "inputs": {"model": ["42", 0], "image": ["21", 0], "texts": "a red square", "keep": keep,
                              "batch_size": 5}},
            "46": {"class_type": "PreviewImage", "inputs": {"images": ["44", 0]}}}


def test_best_of_n_keeps_the_argmax_and_reports_scores(comfy):
    graph = _best_of_n_graph(batch=18, keep=3)
    run = comfy.run(graph, timeout=240)
    assert run.status == "success", f"{run.of_type('execution_error')}\n{comfy.log_tail()}"
    outputs = run.history["outputs"]
    best = outputs["44"]
    assert len(best["indices"]) == 3 and len(best["all_scores"]) == 18 and len(outputs["46"]["images"]) == 3
    scores = best["all_scores"]
    assert best["indices"][0] == max(range(18), key=lambda i: (scores[i], -i))
    assert best["indices"] == sorted(range(18), key=lambda i: (-scores[i], i))[:3]
    assert best["scores"] == [scores[i] for i in best["indices"]]
    assert best["text"][0].startswith(f"#1: image[{best['indices'][0]}] ")
    similarity = outputs["43"]["text"][0].splitlines()  # Embedding Similarity agrees, image by image
    for i in best["indices"]:
        assert similarity[i].startswith(f"image[{i}]: a red square ({scores[i]:.4f})")


def test_best_of_n_k_above_n_and_unsafe_prefix_are_named(comfy):
    run = comfy.run(_best_of_n_graph(batch=2, keep=3), timeout=120)
    assert run.status == "error" and run.error()["node_id"] == "44"
    assert "Best of N: input 'keep' is 3 but input 'image' holds only 2 images" in run.error()["exception_message"]
    graph = {"20": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "30": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a caption"}},
             "45": {"class_type": "PixelCascadeSaveImageWithCaptions",
                    "inputs": {"images": ["20", 0], "captions": ["30", 0], "filename_prefix": "../escape/x"}}}
    with pytest.raises(PromptRejected) as caught:
        comfy.post_prompt(graph)
    details = json.dumps(caught.value.body["node_errors"]["45"])
    assert "filename_prefix" in details and "outside ComfyUI's output folder" in details
    assert not (comfy.base / "escape").exists()
    graph["45"]["inputs"]["filename_prefix"] = "tests/one-caption"
    run = comfy.run(graph)
    assert run.status == "success", run.of_type("execution_error")
    (image,) = run.history["outputs"]["45"]["images"]
    assert (comfy.base / "output" / "tests" / image["filename"]).with_suffix(".txt").read_text() == "a caption"


NEW_NODES = {  # node id -> (required inputs, optional inputs, outputs, which outputs are lists)
    "PixelCascadeBestOfN": (["model", "image", "texts", "keep"], ["batch_size"], ["IMAGE", "FLOAT", "STRING", "INT"],
                            [False, True, False, True]),
    "PixelCascadeGITCaption": (["model", "image", "max_new_tokens", "num_beams", "repetition_penalty", "prompt"],
                               ["prefix", "suffix", "batch_size"], ["STRING"], [True]),
    "PixelCascadeEmbeddingSimilarity": (["model", "image", "texts", "score"], ["image_b", "batch_size"],
                                        ["FLOAT", "STRING", "STRING", "STRING"], [False, False, True, False]),
    "PixelCascadeSaveImageWithCaptions": (["images", "captions", "filename_prefix"], [], [], []),
}


@pytest.mark.parametrize("name", sorted(NEW_NODES))
def test_object_info_of_caption_and_selection_nodes(comfy, name):
    required, optional, outputs, lists = NEW_NODES[name]
    node = comfy.get(f"/object_info/{name}")[name]
    assert node["input_order"]["required"] == required
    assert node["input_order"].get("optional", []) == optional
    assert node["output"] == outputs and node["output_is_list"] == lists
    if name == "PixelCascadeSaveImageWithCaptions":
        assert node["output_node"] and node["input"]["required"]["captions"][1]["forceInput"]
