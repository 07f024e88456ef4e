"""The shipped demo model folders: within the size budget, each read by the pack's own loader unchanged."""
from __future__ import annotations

import json
import os

import pytest

from cascade_core.demo import DEMO_DIR

FOLDERS = ("t5", "base64", "sr256", "sr1024", "git", "clip")
if not all((DEMO_DIR / n).is_dir() for n in FOLDERS):
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"demo models missing in {DEMO_DIR}: they ship with the pack")
    pytest.skip(f"demo models not in {DEMO_DIR}", allow_module_level=True)

BUDGET = 40 * 2**20


def _shipped_files():
    skip = {"resume", "samples"}
    return [p for p in DEMO_DIR.rglob("*") if p.is_file() and not skip & set(p.relative_to(DEMO_DIR).parts)]


def test_all_demo_models_fit_the_budget():
    total = sum(p.stat().st_size for p in _shipped_files())
    assert total <= BUDGET, f"demo models take {total / 2**20:.1f} MB (budget 40 MB)"


def test_weights_are_safetensors_only():
    assert not [p for p in _shipped_files() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]


@pytest.mark.parametrize("name", ["base64", "sr256", "sr1024"])
def test_unets_load_with_load_unet(name):
    from cascade_core import load_unet
    from cascade_core.demo.architectures import UNETS
    from cascade_core.unet.config import UNetConfig

    unet = load_unet(DEMO_DIR / name)
    assert unet.config == UNetConfig.from_diffusers_config(UNETS[name])
    assert unet.config.is_super_resolution == (name != "base64")
    config = json.loads((DEMO_DIR / name / "unet" / "config.json").read_text())
    assert config["_class_name"] == "UNet2DConditionModel"


def test_text_models_load_with_their_loaders():
    from cascade_core import load_captioner, load_embedder, load_text_encoder
    from cascade_core.demo.architectures import TEXT_DIM

    t5 = load_text_encoder(DEMO_DIR / "t5", cache=None)
    embeds, _ = t5.encode(["a large red circle on the left, on a white background"])
    assert embeds.shape == (1, 77, TEXT_DIM)
    assert load_captioner(DEMO_DIR / "git").name == "git"
    assert load_embedder(DEMO_DIR / "clip") is not None
