"""The built-in demo models in the loaders' dropdowns (``demo/<name>``, listed first) and resolved from
``cascade_core.demo.DEMO_DIR``, never from outside it; and the real demo folders through the nodes."""
from __future__ import annotations

import json

import pytest
import torch
from _demo_models import require_demo


@pytest.fixture
def fake_demo(pack, model_dirs, tmp_path, monkeypatch):
    """A DEMO_DIR holding only what the dropdowns look at (no weights)."""
    from pixel_cascade.nodes import model_files

    root = tmp_path / "demo_models"
    for name in ("base64", "sr256", "sr1024"):
        (root / name / "unet").mkdir(parents=True)
    (root / "t5").mkdir()
    (root / "t5" / "spiece.model").write_bytes(b"")
    for name, kind in (("git", "git"), ("clip", "clip")):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({"model_type": kind}))
    monkeypatch.setattr(model_files, "DEMO_DIR", root)
    return root


def test_demo_entries_come_first(fake_demo):
    from pixel_cascade.nodes import model_files
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader
    from pixel_cascade.nodes.vision import CLIPLoader, GITLoader

    assert model_files.unet_choices() == ["demo/base64", "demo/sr256", "demo/sr1024", "tiny-IF-I/", "tiny-IF-II/",
                                          "tiny_if_i.safetensors"]
    assert model_files.t5_choices() == ["demo/t5", "tiny-IF-I/", "tiny_t5.safetensors"]
    assert model_files.hf_folders(("git",)) == ["demo/git", "tiny-git/"]
    assert model_files.hf_folders(("clip", "siglip")) == ["demo/clip", "tiny-clip/"]
    for schema, name, default in ((UNetLoader, "unet_name", "demo/base64"), (T5Loader, "t5_name", "demo/t5"),
                                  (GITLoader, "model_name", "demo/git"), (CLIPLoader, "model_name", "demo/clip")):
        combo = next(i for i in schema.define_schema().inputs if i.id == name)
        assert combo.options[0] == default, schema
    assert UNetLoader.validate_inputs(unet_name="demo/sr1024") is True
    assert "unet_name" in UNetLoader.validate_inputs(unet_name="demo/t5")


def test_demo_entries_only_for_existing_folders(fake_demo, tmp_path, monkeypatch):
    import shutil

    from pixel_cascade.nodes import model_files

    shutil.rmtree(fake_demo / "sr1024")
    (fake_demo / "git" / "config.json").unlink()
    assert model_files.unet_choices()[:3] == ["demo/base64", "demo/sr256", "tiny-IF-I/"]
    assert model_files.hf_folders(("git",)) == ["tiny-git/"]
    monkeypatch.setattr(model_files, "DEMO_DIR", tmp_path / "absent")
    assert not [c for c in model_files.unet_choices() + model_files.t5_choices() if c.startswith("demo/")]


def test_demo_names_resolve_inside_demo_dir_only(fake_demo):
    from pixel_cascade.nodes import model_files

    assert model_files.resolve("demo/sr256", model_files.UNET_FILES) == fake_demo / "sr256"
    assert model_files.resolve("demo/git", model_files.PACK_FOLDER) == fake_demo / "git"
    for bad in ("demo/../sr256", "demo/..", "demo/", "demo/./t5", "demo/t5/../../x"):
        with pytest.raises(ValueError, match="invalid demo model name"):
            model_files.resolve(bad, model_files.UNET_FILES)
    with pytest.raises(FileNotFoundError, match="demo model 'demo/nope' not found"):
        model_files.resolve("demo/nope", model_files.UNET_FILES)
    (fake_demo.parent / "outside").mkdir()
    (fake_demo / "link").symlink_to(fake_demo.parent / "outside")
    with pytest.raises(FileNotFoundError):
        model_files.resolve("demo/link", model_files.UNET_FILES)


def test_real_demo_models_load_through_the_nodes(pack, model_dirs, one_torch_thread):
    """The shipped folders: each loader takes its demo entry, and the demo stage III runs in SR Upsampler 1024."""
    require_demo()
    from pixel_cascade.nodes.guidance import CFGGuider
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader
    from pixel_cascade.nodes.text import T5Encode
    from pixel_cascade.nodes.upscale import SRUpsampler1024
    from pixel_cascade.nodes.vision import CLIPLoader, GITLoader

    t5 = T5Loader.execute(t5_name="demo/t5", device="default", dtype="default").result[0]
    pos = T5Encode.execute(t5=t5, text="a large red circle on the left", clean_caption=False).result[0]
    neg = T5Encode.execute(t5=t5, text="", clean_caption=False).result[0]
    for name in ("demo/base64", "demo/sr256"):
        assert UNetLoader.execute(unet_name=name, dtype="default").result[0].model is not None
    sr = UNetLoader.execute(unet_name="demo/sr1024", dtype="default").result[0]
    guider = CFGGuider.execute(unet=sr, positive=pos, negative=neg, cfg=1.0, threshold_percentile=0.95,
                               threshold_max=1.0).result[0]
    out = SRUpsampler1024.execute(guider=guider, image=torch.rand(1, 16, 16, 3), prompt="", negative_prompt="",
                                  steps=1, guidance=9.0, noise_level=100, seed=0, sampler="ddpm", tiling=False,
                                  tile_size=64).result[0]
    assert out.shape == (1, 64, 64, 3) and 0 <= out.min() and out.max() <= 1
    for loader in (GITLoader, CLIPLoader):
        default = next(i for i in loader.define_schema().inputs if i.id == "model_name").options[0]
        assert loader.execute(model_name=default, device="default", dtype="default").result[0].model is not None
