"""The demo quality bench's plumbing, with a fake demo module that renders the truth (no trained model)."""
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from cascade_core.train.shapes import HELD_OUT, Scene, is_held_out, render, scene_from_caption

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
KEYS = {"color_acc", "shape_acc", "position_acc", "size_acc", "color_acc_1024", "shape_acc_1024",
        "position_acc_1024", "size_acc_1024", "sr256_gain_db", "sr1024_gain_db", "caption_acc", "retrieval_top1",
        "no_cfg", "machine", "seconds", "counts", "skipped", "settings"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("demo_quality", ROOT / "bench" / "demo_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_quality"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("demo_quality", None)


def _truth(prompts, size, noise, seed, scenes=None):
    g = torch.Generator().manual_seed(seed)
    scenes = scenes or {}
    images = torch.stack([render(scenes.get(p) or scene_from_caption(p), size) for p in prompts]).permute(0, 2, 3, 1)
    return (images + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)


def fake_demo(root: Path, calls: list, scenes: dict):
    """A stand-in for cascade_core.demo: generate renders the prompt's truth plus noise (more without CFG);
    upscale renders the truth of the bench's scene (``scenes``: prompt -> scene, with its jitter)."""

    def generate(prompts, seed=0, guidance=None, steps=None, device=None):
        calls.append(("generate", len(prompts), seed, guidance, steps))
        noise = 0.2 if guidance == 1.0 else 0.02
        return {r: _truth(prompts, r, noise, seed) for r in (64, 256, 1024)}

    def upscale(images, prompts, stage, seed=0):
        calls.append(("upscale", images.shape[1], stage))
        assert images.shape[1] * 4 == stage
        return _truth(prompts, stage, 0.003, seed, scenes)

    return types.SimpleNamespace(DEMO_DIR=root, generate=generate, upscale=upscale)


def test_heldout_prompts_and_distractors(bench):
    scenes = bench.heldout_scenes(48)
    assert len(set(scenes)) == 48 and all(is_held_out(s) for s in scenes)
    assert {(s.color, s.shape, s.position) for s in scenes} == set(HELD_OUT)
    prompts = bench.prompts_of(scenes)
    assert [scene_from_caption(p) for p in prompts] == scenes
    for i, scene in enumerate(scenes):
        others = bench.distractors(scene, i)
        assert len(others) == 8 and len(set(others)) == 8 and scene not in others
        for other in others:
            assert sum(getattr(other, f) != getattr(scene, f) for f in scene.__dataclass_fields__ if f != "jitter") == 1
    assert bench.names_color_and_shape("a big red circle on a white background", Scene(
        "red", "circle", "large", "left", "white"))
    assert not bench.names_color_and_shape("a white circle on a red background", Scene(
        "red", "circle", "large", "left", "white"))


def test_bench_with_a_fake_demo_module(bench, tmp_path, monkeypatch):
    calls = []
    scenes = bench.heldout_scenes(4)
    by_prompt = dict(zip(bench.prompts_of(scenes), scenes))
    monkeypatch.setattr(bench, "demo_module", lambda: fake_demo(tmp_path / "models", calls, by_prompt))
    for name in ("t5", "base64", "sr256", "sr1024"):
        (tmp_path / "models" / name).mkdir(parents=True)
    out = tmp_path / "demo_quality.json"
    result = bench.main(["--prompts", "4", "--seeds", "1", "--steps", "2", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved) == KEYS and saved["settings"]["prompts"] == 4
    for key in ("color_acc", "shape_acc", "position_acc", "size_acc"):
        assert result[key] == 1.0 and result[f"{key}_1024"] == 1.0 and result["counts"][key] == 4
    assert result["sr256_gain_db"] > 3 and result["sr1024_gain_db"] > 1
    assert result["no_cfg"] is not None and set(result["no_cfg"]) == {"color_acc", "shape_acc", "position_acc",
                                                                       "size_acc"}
    assert result["caption_acc"] is None and "git" in result["skipped"]["caption_acc"]
    assert result["retrieval_top1"] is None and "clip" in result["skipped"]["retrieval_top1"]
    assert ("generate", 4, 0, None, 2) in calls and ("generate", 4, 0, 1.0, 2) in calls
    assert ("upscale", 64, 256) in calls and ("upscale", 256, 1024) in calls


def test_every_section_skips_without_models(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "demo_module", lambda: types.SimpleNamespace(DEMO_DIR=tmp_path / "none"))
    result = bench.run(prompts=2, seeds=1)
    assert set(result) == KEYS
    for key in bench.METRICS:
        assert result[key] is None and "missing" in result["skipped"][key]
    assert "null" in bench.table(result)


@pytest.mark.slow  # building the tiny GIT and CLIP folders takes ~10 s on this CPU
def test_caption_and_retrieval_sections_run_on_tiny_models(bench, tmp_path):
    from _vision_models import save_clip, save_git

    save_git(tmp_path / "git")
    save_clip(tmp_path / "clip")
    result = bench.run(prompts=2, seeds=1, root=tmp_path, device="cpu")
    assert 0 <= result["caption_acc"] <= 1 and result["counts"]["caption_acc"] == 2
    assert 0 <= result["retrieval_top1"] <= 1 and result["counts"]["retrieval_top1"] == 2
    assert result["color_acc"] is None  # no generator models there
