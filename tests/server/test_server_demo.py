"""The shipped demo workflow on a real server, on the shipped demo models, through the main command's client
(``scripts/run_demo.py``, few steps): the three images (64, 256, 1024 px), the caption and the similarity score
reach ``/history`` and the output folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _demo_models import require_demo
from _runtime import REPO
from _workflows import API_DIR, DEMO, load

pytestmark = pytest.mark.server

STEPS = (2, 2, 1)  # base64, sr256, sr1024 (the shipped workflow: STAGES' steps)
PROMPT = "a small blue star at the top, on a beige background"


def test_demo_workflow_images_caption_and_score(comfy, tmp_path):
    require_demo()
    out = tmp_path / "demo_output"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "run_demo.py"), PROMPT, "--url", comfy.url,
                           "--out", str(out), "--steps", ",".join(map(str, STEPS)), "--log", str(comfy.log),
                           "--timeout", "600"], capture_output=True, text=True, timeout=660, check=False)
    assert done.returncode == 0, f"run_demo.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "step 2/2" in done.stdout and "step 1/1" in done.stdout, done.stdout  # per-node progress lines
    assert f"{comfy.url}/" in done.stdout  # the graph editor's URL

    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt"] == PROMPT and summary["seconds"] > 0
    from PIL import Image

    for size in (64, 256, 1024):
        path = Path(summary["images"][f"demo_{size}"])
        assert path.parent == out
        with Image.open(path) as im:
            assert im.size == (size, size), path
    assert (out / "caption.txt").read_text().strip() == summary["caption"].strip()
    assert float((out / "score.txt").read_text()) == pytest.approx(summary["score"], abs=1e-4)
    assert -1.0 <= summary["score"] <= 1.0

    api = load(API_DIR / f"{DEMO}.json")
    history = comfy.get(f"/history/{summary['prompt_id']}")[summary["prompt_id"]]
    assert history["status"]["status_str"] == "success"
    outputs = history["outputs"]
    saved = {api[i]["inputs"]["filename_prefix"]: outputs[i]["images"] for i, n in api.items()
             if n["class_type"] == "SaveImage"}
    assert sorted(saved) == ["PixelCascade/demo_1024", "PixelCascade/demo_256", "PixelCascade/demo_64"]
    assert all(len(images) == 1 and images[0]["type"] == "output" for images in saved.values())
    caption_id = next(i for i, n in api.items() if n["class_type"] == "PixelCascadeGITCaption")
    score_id = next(i for i, n in api.items() if n["class_type"] == "PixelCascadeEmbeddingSimilarity")
    assert outputs[caption_id]["text"] == [summary["caption"]] and summary["caption"].strip()
    ranking = outputs[score_id]["text"][0]
    assert ranking.startswith(f"image[0]: {PROMPT} (") and f"({summary['score']:.4f})" in ranking
