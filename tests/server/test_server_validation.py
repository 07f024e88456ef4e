"""Graphs the server must refuse before running: ``POST /prompt`` answers HTTP 400 with ``node_errors``
naming our node, for a model file that is not there and for bad links."""
from __future__ import annotations

import pytest
from _client import PromptRejected
from _graphs import base_graph

pytestmark = pytest.mark.server


def _rejected(comfy, graph: dict) -> dict:
    with pytest.raises(PromptRejected) as caught:
        comfy.post_prompt(graph)
    assert caught.value.status == 400, caught.value
    return caught.value.body


@pytest.mark.parametrize("node_id,name,value", [
    ("4", "unet_name", "IF-I-XL-v1.0-missing/"),
    ("4", "unet_name", "no-such-unet.safetensors"),
    ("1", "t5_name", "no-such-t5.safetensors"),
])
def test_missing_model_file(comfy, node_id, name, value):
    graph = base_graph()
    graph[node_id]["inputs"][name] = value
    body = _rejected(comfy, graph)
    errors = body["node_errors"][node_id]
    assert errors["class_type"] == graph[node_id]["class_type"]
    # our nodes validate their inputs themselves (custom_validation_failed; ComfyUI repeats the one message for
    # each input it passed to the check), ComfyUI's combo check would say value_not_in_list; either way the
    # message must name the input, the missing model and where to put it
    assert errors["errors"], errors
    for error in errors["errors"]:
        assert error["type"] in ("custom_validation_failed", "value_not_in_list"), error
        assert name in error["details"] and value in error["details"], error
        assert "models/" in error["details"], f"no folder to put the model in: {error['details']!r}"


@pytest.mark.parametrize("link,kind", [
    (["2", 0], "return_type_mismatch"),                  # conditioning into the guider's unet input
    (["4", 3], "exception_during_inner_validation"),     # an output slot the loader does not have
    (["99", 0], "exception_during_inner_validation"),    # a node that is not in the graph
])
def test_bad_link(comfy, link, kind):
    graph = base_graph()
    graph["5"]["inputs"]["unet"] = link
    body = _rejected(comfy, graph)
    errors = body["node_errors"]["5"]
    assert errors["class_type"] == "PixelCascadeCFGGuider"
    assert [e["type"] for e in errors["errors"]] == [kind], errors
    if kind == "return_type_mismatch":  # (inner-validation errors name the downstream input instead)
        assert errors["errors"][0]["extra_info"]["input_name"] == "unet"


def test_missing_required_input(comfy):
    graph = base_graph()
    del graph["6"]["inputs"]["guider"]
    errors = _rejected(comfy, graph)["node_errors"]["6"]
    assert errors["class_type"] == "PixelCascadeBase64Sampler"
    assert errors["errors"][0]["type"] == "required_input_missing"
    assert errors["errors"][0]["details"] == "guider"


def test_stage_three_refuses_bad_noise_level_and_an_if_model(comfy):
    from _checkpoints import REPO_IF_I
    from _graphs import empty_image, x4_graph

    errors = _rejected(comfy, x4_graph(empty_image(16, 16), noise_level=351))["node_errors"]["31"]
    assert errors["class_type"] == "PixelCascadeSRUpsampler1024"
    assert errors["errors"] and all(e["type"] == "custom_validation_failed" and "'noise_level' is 351" in e["details"]
                                    and "350" in e["details"] for e in errors["errors"]), errors
    graph = x4_graph(empty_image(16, 16))
    graph["30"] = {"class_type": "PixelCascadeUNetLoader", "inputs": {"unet_name": REPO_IF_I, "dtype": "default"}}
    errors = _rejected(comfy, graph)["node_errors"]["31"]  # an IF model cannot be wired into the x4 node
    assert [e["type"] for e in errors["errors"]] == ["return_type_mismatch"], errors
    assert errors["errors"][0]["extra_info"]["input_name"] == "upscaler"


@pytest.mark.parametrize("wiring", ["neither", "both"])
def test_stage_three_needs_exactly_one_of_upscaler_and_guider(comfy, wiring):
    from _graphs import base_graph, empty_image, x4_graph

    graph = x4_graph(empty_image(16, 16))
    if wiring == "neither":
        del graph["31"]["inputs"]["upscaler"]
    else:
        graph.update({k: v for k, v in base_graph().items() if k in ("1", "2", "3", "4", "5")})
        graph["31"]["inputs"]["guider"] = ["5", 0]
    errors = _rejected(comfy, graph)["node_errors"]["31"]
    assert errors["class_type"] == "PixelCascadeSRUpsampler1024"
    assert {e["type"] for e in errors["errors"]} == {"custom_validation_failed"}, errors
    details = errors["errors"][0]["details"]
    assert "SR Upsampler 1024" in details and "'upscaler'" in details and "'guider'" in details, details
    assert ("neither is connected" if wiring == "neither" else "both are connected") in details, details
