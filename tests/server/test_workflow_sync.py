"""The shipped workflows without a server or browser: each UI workflow and its API twin describe the same
graph (node types, links, widget values in order), the UI file is internally consistent, and the cascade
uses the real checkpoint names and DeepFloyd IF's recommended settings with fixed seeds."""
from __future__ import annotations

import pytest
from _ui import links, to_api, widget_names, widgets
from _workflows import API_DIR, SAMPLERS, WORKFLOWS, api_paths, load, ui_path_for, ui_paths

PAIRS = [(p, ui_path_for(p)) for p in api_paths()]


def test_every_workflow_has_both_formats():
    assert api_paths(), f"no API workflows in {API_DIR}"
    assert sorted(p.name for p in api_paths()) == sorted(p.name for p in ui_paths()), \
        f"{WORKFLOWS} (UI) and {API_DIR} (API) must hold the same workflow names"


@pytest.mark.parametrize("api_path,ui_path", PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_ui_and_api_describe_the_same_graph(api_path, ui_path):
    api, ui = load(api_path), load(ui_path)
    derived = to_api(ui)
    assert sorted(derived, key=int) == sorted(api, key=int), "node ids differ"
    for node_id, node in api.items():
        assert derived[node_id]["class_type"] == node["class_type"], f"node {node_id}"
        assert derived[node_id]["inputs"] == node["inputs"], f"node {node_id} ({node['class_type']})"


@pytest.mark.parametrize("ui_path", ui_paths(), ids=lambda p: p.stem)
def test_ui_file_is_consistent(ui_path):
    ui = load(ui_path)
    nodes = {n["id"]: n for n in ui["nodes"]}
    table = links(ui)
    assert len(table) == len(ui["links"]), "duplicate link ids"
    assert ui["last_node_id"] >= max(nodes) and ui["last_link_id"] >= max(table)
    for link_id, (_, src, src_slot, dst, dst_slot, kind) in table.items():
        out = nodes[src]["outputs"][src_slot]
        assert link_id in out["links"] and out["type"] == kind, f"link {link_id}: source side"
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id, f"link {link_id}: target side"
    for node in ui["nodes"]:
        for out in node.get("outputs", []):
            assert all(table[i][1] == node["id"] for i in out.get("links") or []), f"node {node['id']}"
        if node["type"] in SAMPLERS:
            assert widgets(node)["control_after_generate"] == "fixed", f"node {node['id']}: seed not fixed"
        assert len(widget_names(node)) == len(node.get("widgets_values", [])), f"node {node['id']}"


def _stage(api: dict, sampler: str) -> tuple[dict, dict, dict]:
    """(sampler inputs, guider inputs, UNet loader inputs) of the stage ending in a ``sampler`` node."""
    node = next(n for n in api.values() if n["class_type"] == sampler)
    guider = api[node["inputs"]["guider"][0]]
    return node["inputs"], guider["inputs"], api[guider["inputs"]["unet"][0]]["inputs"]


def test_cascade_64_256_recipe():
    """DeepFloyd IF's reference settings and the real checkpoint names, as users download them."""
    api = load(API_DIR / "cascade_64_256.json")
    base, base_guider, base_unet = _stage(api, "PixelCascadeBase64Sampler")
    sr, sr_guider, sr_unet = _stage(api, "PixelCascadeSRUpsampler256")
    assert base_unet["unet_name"] == "IF-I-XL-v1.0/" and sr_unet["unet_name"] == "IF-II-L-v1.0/"
    t5 = [n["inputs"]["t5_name"] for n in api.values() if n["class_type"] == "PixelCascadeT5Loader"]
    assert t5 == ["t5xxl_fp16.safetensors"]
    assert (base["steps"], base["width"], base["height"], base["sampler"]) == (100, 64, 64, "ddpm")
    assert (base_guider["cfg"], base_guider["threshold_percentile"], base_guider["threshold_max"]) == (7.0, 0.95, 1.5)
    assert (sr["steps"], sr["noise_level"], sr["sampler"]) == (50, 250, "ddpm")
    assert (sr_guider["cfg"], sr_guider["threshold_percentile"], sr_guider["threshold_max"]) == (4.0, 0.95, 1.0)
    assert sr["image"][0] == next(i for i, n in api.items() if n["class_type"] == "PixelCascadeBase64Sampler")
    prompts = {base_guider[k][0]: api[base_guider[k][0]]["inputs"]["text"] for k in ("positive", "negative")}
    assert prompts[base_guider["negative"][0]] == "" and prompts[base_guider["positive"][0]].strip()
    assert (sr_guider["positive"], sr_guider["negative"]) == (base_guider["positive"], base_guider["negative"])
    sinks = {n["class_type"]: n["inputs"]["images"][0] for n in api.values() if "images" in n["inputs"]}
    assert api[sinks["PreviewImage"]]["class_type"] == "PixelCascadeBase64Sampler"
    assert api[sinks["SaveImage"]]["class_type"] == "PixelCascadeSRUpsampler256"


def test_demo_cascade_recipe():
    """The shipped demo: demo models only, each stage's settings from cascade_core.demo.settings.STAGES, the
    guider wiring of SR Upsampler 1024, the three stages saved, and the caption / similarity of the final image."""
    from cascade_core.demo.settings import DEFAULT_PROMPT, NEGATIVE_PROMPT, STAGES

    api = load(API_DIR / "demo_cascade.json")
    stages = dict(zip(STAGES, SAMPLERS))  # base64, sr256, sr1024 in cascade order
    for name, sampler_type in stages.items():
        sampler, guider, unet = _stage(api, sampler_type)
        want = STAGES[name]
        assert unet["unet_name"] == f"demo/{name}"
        assert (guider["cfg"], guider["threshold_percentile"], guider["threshold_max"]) == \
            (want.guidance, want.threshold_percentile, want.threshold_max), name
        assert (sampler["steps"], sampler["sampler"], sampler["seed"]) == (want.steps, want.sampler, 0), name
        if "schedule" in sampler:
            assert sampler["schedule"] == want.schedule, name
        if name != "base64":
            assert sampler["noise_level"] == want.noise_level, name
    sr1024 = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeSRUpsampler1024")
    assert "upscaler" not in sr1024 and api[sr1024["image"][0]]["class_type"] == "PixelCascadeSRUpsampler256"
    models = {n["inputs"][k] for n in api.values() for k in ("t5_name", "model_name") if k in n["inputs"]}
    assert models == {"demo/t5", "demo/git", "demo/clip"}
    prompt_id = next(i for i, n in api.items() if n["class_type"] == "PrimitiveStringMultiline")
    assert api[prompt_id]["inputs"]["value"] == DEFAULT_PROMPT
    encoders = {n["inputs"]["text"] if isinstance(n["inputs"]["text"], str) else "<prompt>"
                for n in api.values() if n["class_type"] == "PixelCascadeT5Encode"}
    assert encoders == {"<prompt>", NEGATIVE_PROMPT}
    saves = {n["inputs"]["filename_prefix"]: api[n["inputs"]["images"][0]]["class_type"] for n in api.values()
             if n["class_type"] == "SaveImage"}
    assert saves == {"PixelCascade/demo_64": SAMPLERS[0], "PixelCascade/demo_256": SAMPLERS[1],
                     "PixelCascade/demo_1024": SAMPLERS[2]}
    for kind in ("PixelCascadeGITCaption", "PixelCascadeEmbeddingSimilarity"):
        node = next(n["inputs"] for n in api.values() if n["class_type"] == kind)
        assert api[node["image"][0]]["class_type"] == SAMPLERS[2], kind
    similarity = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeEmbeddingSimilarity")
    assert similarity["texts"] == [prompt_id, 0]


def test_cascade_best_of_8_recipe():
    """Generate 8 at 64 px -> Best of N keeps 2 (scored against the prompt) -> 256 -> 1024 -> saved."""
    api = load(API_DIR / "cascade_best_of_8.json")
    kind = {i: n["class_type"] for i, n in api.items()}
    base_id = next(i for i, k in kind.items() if k == "PixelCascadeBase64Sampler")
    best = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeBestOfN")
    assert api[base_id]["inputs"]["batch_size"] == 8 and best["keep"] == 2 and best["image"] == [base_id, 0]
    prompt_id = next(i for i, k in kind.items() if k == "PrimitiveStringMultiline")
    assert best["texts"] == [prompt_id, 0] and kind[best["model"][0]] == "PixelCascadeCLIPLoader"
    sr256 = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeSRUpsampler256")
    sr1024 = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeSRUpsampler1024")
    assert kind[sr256["image"][0]] == "PixelCascadeBestOfN" and kind[sr1024["image"][0]] == SAMPLERS[1]
    saves = [n["inputs"] for n in api.values() if n["class_type"] == "SaveImage"]
    assert [kind[s["images"][0]] for s in saves] == [SAMPLERS[2]]


def test_caption_dataset_recipe():
    """A generated batch of 16 -> 256 -> GIT Caption with a trigger-word prefix -> Save Image With Captions."""
    api = load(API_DIR / "caption_dataset.json")
    kind = {i: n["class_type"] for i, n in api.items()}
    base = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeBase64Sampler")
    caption_id = next(i for i, k in kind.items() if k == "PixelCascadeGITCaption")
    caption = api[caption_id]["inputs"]
    save = next(n["inputs"] for n in api.values() if n["class_type"] == "PixelCascadeSaveImageWithCaptions")
    assert base["batch_size"] >= 16 and caption["prefix"].strip() and caption["batch_size"] < base["batch_size"]
    assert save["captions"] == [caption_id, 0] and save["images"] == caption["image"]
    assert kind[save["images"][0]] == SAMPLERS[1] and save["filename_prefix"].startswith("PixelCascade/")
