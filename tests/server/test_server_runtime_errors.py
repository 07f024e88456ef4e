"""Mistakes only visible at run time end the prompt with an ``execution_error`` from the right node whose
message names the node, the input and the fix; the server keeps serving afterwards."""
from __future__ import annotations

import pytest
from _checkpoints import REPO_IF_II
from _graphs import base_graph, empty_image, sr_graph, x4_graph

pytestmark = pytest.mark.server

# (case, graph, node that must fail, input the message must name, words of the fix, one of which must appear)
CASES = [
    ("sr-model-in-base-sampler", lambda: base_graph(unet=REPO_IF_II), "6", "guider",
     ("base", "IF-I")),
    ("image-size-sr-cannot-take", lambda: sr_graph(empty_image(31, 31)), "10", "image",
     ("multiple of", "resize", "crop")),
    ("empty-positive-prompt", lambda: base_graph(text=""), "5", "positive",
     ("prompt", "text")),
    ("image-size-x4-cannot-take", lambda: x4_graph(empty_image(30, 22)), "31", "image",
     ("multiples of 4", "resize", "crop")),
]


@pytest.fixture(scope="module")
def display_names(comfy) -> dict:
    info = comfy.get("/object_info")
    return {k: v["display_name"] for k, v in info.items() if k.startswith("PixelCascade")}


@pytest.mark.parametrize("case,make,node_id,input_name,fix_words", CASES, ids=[c[0] for c in CASES])
def test_runtime_error_is_explained(comfy, display_names, case, make, node_id, input_name, fix_words):
    graph = make()
    run = comfy.run(graph)
    assert run.status == "error" and not run.of_type("execution_success"), f"{case}: {run.status}"
    error = run.error()
    assert error["node_id"] == node_id, error
    assert error["node_type"] in display_names, error
    message = error["exception_message"]
    assert display_names[error["node_type"]] in message or error["node_type"] in message, \
        f"{case}: message does not name the node: {message!r}"
    assert input_name in message, f"{case}: message does not name the input {input_name!r}: {message!r}"
    assert any(w.lower() in message.lower() for w in fix_words), f"{case}: no fix in {message!r}"
    assert "Traceback" not in message

    assert comfy.get("/system_stats")["system"]
    after = comfy.run(base_graph(steps=1, seed=100 + [c[0] for c in CASES].index(case)))  # not a cached result
    assert after.status == "success", f"server broken after {case}: {after.of_type('execution_error')}"
