"""The shipped 16:9 workflow (issue 13, item 3) without a server: DeepFloyd IF's recipe of cascade_64_256_1024 with a
112x64 base, and every stage saved at 112x64, 448x256 and 1792x1024. test_server_workflows.py runs it on a real
server and checks each saved PNG against ``image_size`` (this file pins what that rule gives for it);
test_browser_workflows.py loads and runs it in the frontend."""
from __future__ import annotations

from _workflows import API_DIR, SAMPLERS, image_size, load

WIDE = "cascade_wide_16x9"


def test_wide_workflow_is_the_if_recipe_at_112x64():
    wide, square = load(API_DIR / f"{WIDE}.json"), load(API_DIR / "cascade_64_256_1024.json")
    assert sorted(wide, key=int) == sorted(square, key=int)
    for node_id, node in square.items():
        if node["class_type"] in ("PreviewImage", "SaveImage", "PrimitiveStringMultiline"):
            continue
        assert wide[node_id]["class_type"] == node["class_type"], node_id
        differs = {k for k in node["inputs"] if wide[node_id]["inputs"][k] != node["inputs"][k]}
        assert differs == ({"width"} if node["class_type"] == SAMPLERS[0] else set()), node_id  # height stays 64


def test_wide_workflow_saves_every_stage_at_4x():
    api = load(API_DIR / f"{WIDE}.json")
    sinks = {node["inputs"]["filename_prefix"]: image_size(api, node["inputs"]["images"])
             for node in api.values() if node["class_type"] == "SaveImage"}
    assert sinks == {"PixelCascade/wide_112x64": (1, 112, 64), "PixelCascade/wide_448x256": (1, 448, 256),
                     "PixelCascade/wide_1792x1024": (1, 1792, 1024)}
    assert not [n for n in api.values() if n["class_type"] == "PreviewImage"]
