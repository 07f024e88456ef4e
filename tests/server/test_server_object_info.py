"""``/object_info`` on a real server: every Pixel Cascade node with a tooltip on each input; the cascade nodes
with their inputs in order and their outputs; model dropdowns listing the checkpoints in ComfyUI's model
folders; the template browser listing the UI workflows only."""
from __future__ import annotations

import pytest
from _checkpoints import FILE_T5_NAME, FILE_UNET, REPO_IF_I, REPO_IF_II

pytestmark = pytest.mark.server

SCHEDULES = {"leading", "trailing", "linspace", "dpm", "smart27", "smart50", "smart100", "smart185", "super27",
             "super40", "super100", "fast27"}
SAMPLERS = {"ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m"}
CONTRACT = {  # node id → (required inputs in order, output types)
    "PixelCascadeT5Loader": (["t5_name", "device", "dtype"], ["PIXEL_CASCADE_T5"]),
    "PixelCascadeUNetLoader": (["unet_name", "dtype"], ["PIXEL_CASCADE_UNET"]),
    "PixelCascadeT5Encode": (["t5", "text", "clean_caption"], ["PIXEL_CASCADE_CONDITIONING"]),
    "PixelCascadeCFGGuider": (["unet", "positive", "negative", "cfg", "threshold_percentile", "threshold_max"],
                              ["PIXEL_CASCADE_GUIDER"]),
    "PixelCascadeBase64Sampler": (["guider", "seed", "steps", "schedule", "sampler", "width", "height",
                                   "batch_size"], ["IMAGE"]),
    "PixelCascadeSRUpsampler256": (["guider", "image", "noise_level", "seed", "steps", "schedule", "sampler"],
                                   ["IMAGE"]),
}


@pytest.fixture(scope="module")
def info(comfy) -> dict:
    return comfy.get("/object_info")


# node id → optional inputs in order
START = ["start_image", "mask", "denoise", "eta"]  # img2img / inpainting inputs of the samplers, then DDIM's eta
OPTIONAL = {"PixelCascadeT5Encode": ["long_prompt"], "PixelCascadeUNetLoader": ["weight_dtype"],
            "PixelCascadeBase64Sampler": START, "PixelCascadeSRUpsampler256": START}


def _inputs(node: dict) -> dict:
    return {**node["input"].get("required", {}), **node["input"].get("optional", {})}


def _options(spec: list) -> list:
    """Combo choices in either the V1 (list as type) or the V3 ("COMBO" + options) form."""
    return spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])


def _ours(info: dict) -> dict:
    return {k: v for k, v in info.items() if v.get("python_module") == "custom_nodes.pixel_cascade"}


def test_cascade_nodes_listed_in_category(info):
    ours = _ours(info)
    assert set(CONTRACT) <= set(ours), f"Pixel Cascade nodes on the server: {sorted(ours)}"
    for name, node in ours.items():
        assert node["category"].startswith("Pixel Cascade"), name
        assert node["display_name"] and node["description"], name


def test_every_input_of_every_node_has_a_tooltip(info):
    untipped = {name: [k for k, spec in _inputs(node).items() if not (len(spec) > 1 and spec[1].get("tooltip"))]
                for name, node in _ours(info).items()}
    assert not {k: v for k, v in untipped.items() if v}, "inputs without a tooltip"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_cascade_node_inputs_in_order(info, name):
    required, outputs = CONTRACT[name]
    assert info[name]["input_order"]["required"] == required
    assert info[name]["input_order"].get("optional", []) == OPTIONAL.get(name, [])
    assert info[name]["output"] == outputs


def test_sampler_widgets(info):
    for name in ("PixelCascadeBase64Sampler", "PixelCascadeSRUpsampler256"):
        inputs = _inputs(info[name])
        assert set(_options(inputs["schedule"])) == SCHEDULES, name
        assert set(_options(inputs["sampler"])) == SAMPLERS, name
        assert inputs["seed"][1].get("control_after_generate"), f"{name}: seed has no control_after_generate"
    base = _inputs(info["PixelCascadeBase64Sampler"])
    assert base["width"][1]["default"] == base["height"][1]["default"] == 64
    assert base["width"][1]["step"] == base["height"][1]["step"] == 8
    assert _inputs(info["PixelCascadeSRUpsampler256"])["noise_level"][1]["default"] == 250
    for name in ("PixelCascadeBase64Sampler", "PixelCascadeSRUpsampler256", "PixelCascadeSRUpsampler1024"):
        denoise = _inputs(info[name])["denoise"][1]
        assert (denoise["default"], denoise["min"], denoise["max"]) == (1.0, 0.0, 1.0), name
        assert _inputs(info[name])["mask"][0] == "MASK" and _inputs(info[name])["start_image"][0] == "IMAGE", name
        eta = _inputs(info[name])["eta"][1]
        assert (eta["default"], eta["min"], eta["max"]) == (0.0, 0.0, 1.0), name


def test_model_dropdowns_list_the_model_folders(info):
    unets = _options(_inputs(info["PixelCascadeUNetLoader"])["unet_name"])
    t5s = _options(_inputs(info["PixelCascadeT5Loader"])["t5_name"])
    assert {REPO_IF_I, REPO_IF_II, FILE_UNET} <= set(unets), unets
    assert {REPO_IF_I, FILE_T5_NAME} <= set(t5s), t5s
    assert not {REPO_IF_II, FILE_UNET} & set(t5s), f"T5 dropdown offers files without a text encoder: {t5s}"


def test_demo_models_come_first_in_the_dropdowns(info):
    """The built-in demo models (inside the pack, nothing copied into ComfyUI/models) are every loader's default."""
    from _demo_models import require_demo

    require_demo()
    first = {"PixelCascadeUNetLoader": ("unet_name", ["demo/base64", "demo/sr256", "demo/sr1024"]),
             "PixelCascadeT5Loader": ("t5_name", ["demo/t5"]),
             "PixelCascadeGITLoader": ("model_name", ["demo/git"]),
             "PixelCascadeCLIPLoader": ("model_name", ["demo/clip"])}
    for node, (name, demo) in first.items():
        options = _options(_inputs(info[node])[name])
        assert options[:len(demo)] == demo, f"{node}.{name}: {options}"
        assert not [o for o in options[len(demo):] if o.startswith("demo/")], f"{node}.{name}: {options}"


def test_template_browser_lists_only_the_ui_workflows(comfy):
    from _workflows import ui_paths

    templates = comfy.get("/workflow_templates")
    assert sorted(templates.get("pixel_cascade", [])) == sorted(p.stem for p in ui_paths())
    for path in ui_paths():
        served = comfy.get(f"/api/workflow_templates/pixel_cascade/{path.name}")
        assert served["nodes"], path.name
