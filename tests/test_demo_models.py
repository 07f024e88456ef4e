"""The shipped demo model folders: within the size budget, each read by the pack's own loader unchanged."""
from __future__ import annotations

import json

import pytest

from _demo_models import require_demo

BUDGET = 40 * 2**20
NOT_SHIPPED = {"resume", "samples", "train_record.json"}  # left out of git and wheels


@pytest.fixture(scope="module")
def demo_dir():
    return require_demo()


def _shipped_files(root):
    return [p for p in root.rglob("*") if p.is_file() and not NOT_SHIPPED & set(p.relative_to(root).parts)]


def test_all_demo_models_fit_the_budget(demo_dir):
    total = sum(p.stat().st_size for p in _shipped_files(demo_dir))
    assert total <= BUDGET, f"demo models take {total / 2**20:.1f} MB (budget 40 MB)"


def test_weights_are_safetensors_only(demo_dir):
    assert not [p for p in _shipped_files(demo_dir) if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]


@pytest.mark.parametrize("name", ["base64", "sr256", "sr1024"])
def test_unets_load_with_load_unet(demo_dir, name):
    from cascade_core import load_unet
    from cascade_core.demo.architectures import UNETS
    from cascade_core.unet.config import UNetConfig

    unet = load_unet(demo_dir / name)
    assert unet.config == UNetConfig.from_diffusers_config(UNETS[name])
    assert unet.config.is_super_resolution == (name != "base64")
    config = json.loads((demo_dir / name / "unet" / "config.json").read_text())
    assert config["_class_name"] == "UNet2DConditionModel"


def test_text_models_load_with_their_loaders(demo_dir):
    from cascade_core import load_captioner, load_embedder, load_text_encoder
    from cascade_core.demo.architectures import TEXT_DIM

    t5 = load_text_encoder(demo_dir / "t5", cache=None)
    embeds, _ = t5.encode(["a large red circle on the left, on a white background"])
    assert embeds.shape == (1, 77, TEXT_DIM)
    assert load_captioner(demo_dir / "git").name == "git"
    assert load_embedder(demo_dir / "clip") is not None
