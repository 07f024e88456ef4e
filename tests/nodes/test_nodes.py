"""The node adapters, run in-process against ComfyUI's real modules (no server)."""
from __future__ import annotations

import pytest
import torch


def _out(node_output):
    return node_output.result[0]


@pytest.fixture(scope="module")
def chain(pack, model_dirs):
    """Loaded T5, encoded prompts, base and SR guiders, through the nodes themselves."""
    from pixel_cascade.nodes.guidance import CFGGuider
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader
    from pixel_cascade.nodes.text import T5Encode

    t5 = _out(T5Loader.execute(t5_name="tiny-IF-I/", device="default", dtype="default"))
    pos = _out(T5Encode.execute(t5=t5, text="A Red Fox", clean_caption=False))
    neg = _out(T5Encode.execute(t5=t5, text="", clean_caption=False))
    base = _out(UNetLoader.execute(unet_name="tiny-IF-I/", dtype="default"))
    sr = _out(UNetLoader.execute(unet_name="tiny-IF-II/", dtype="default"))
    guide = lambda unet, cfg, top: _out(CFGGuider.execute(unet=unet, positive=pos, negative=neg, cfg=cfg,  # noqa: E731
                                                           threshold_percentile=0.95, threshold_max=top))
    return dict(t5=t5, pos=pos, neg=neg, base=base, sr=sr, base_guider=guide(base, 7.0, 1.5),
                sr_guider=guide(sr, 4.0, 1.0))


def test_schemas_are_prefixed_with_tooltips(pack):
    ids = set()
    for node in pack.NODES:
        schema = node.define_schema()
        assert schema.node_id.startswith("PixelCascade") and schema.node_id not in ids
        ids.add(schema.node_id)
        for inp in schema.inputs:
            assert inp.tooltip, f"{schema.node_id}.{inp.id} has no tooltip"


def test_dropdowns_list_repo_folders_and_files(pack, model_dirs, monkeypatch, tmp_path):
    from pixel_cascade.nodes import model_files

    monkeypatch.setattr(model_files, "DEMO_DIR", tmp_path / "no-demo")  # demo entries: test_demo_nodes.py
    assert model_files.unet_choices() == ["tiny-IF-I/", "tiny-IF-II/", "tiny_if_i.safetensors"]
    assert model_files.t5_choices() == ["tiny-IF-I/", "tiny_t5.safetensors"]
    assert model_files.hf_folders(("git",)) == ["tiny-git/"]
    assert model_files.hf_folders(("clip", "siglip")) == ["tiny-clip/"]
    with pytest.raises(ValueError):
        model_files.resolve("../tiny-IF-I/", model_files.UNET_FILES)
    with pytest.raises(FileNotFoundError):
        model_files.resolve("nope.safetensors", model_files.UNET_FILES)


def test_missing_model_fails_validation(pack, model_dirs):
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader

    message = UNetLoader.validate_inputs(unet_name="IF-I-XL-v1.0/")
    assert isinstance(message, str) and "unet_name" in message and "models/pixel_cascade" in message
    assert UNetLoader.validate_inputs(unet_name="tiny-IF-I/") is True
    assert "t5_name" in T5Loader.validate_inputs(t5_name="t5xxl_fp16.safetensors")


def test_loading_reuses_models_and_single_files_work(pack, model_dirs, chain):
    from pixel_cascade.nodes.loaders import T5Loader, UNetLoader

    assert _out(UNetLoader.execute(unet_name="tiny-IF-I/", dtype="default")) is chain["base"]
    single = _out(UNetLoader.execute(unet_name="tiny_if_i.safetensors", dtype="default"))
    a, b = single.model.state_dict(), chain["base"].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    t5_file = _out(T5Loader.execute(t5_name="tiny_t5.safetensors", device="cpu", dtype="default"))
    assert torch.equal(t5_file.model.encode(["a red fox"])[0], chain["t5"].model.encode(["a red fox"])[0])


def test_base_then_sr_with_progress_previews(pack, chain):
    import comfy.utils

    from pixel_cascade.nodes.sampling import Base64Sampler, SRUpsampler256

    calls = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append((value, total,
                                                                                                       preview)))
    try:
        img = _out(Base64Sampler.execute(guider=chain["base_guider"], seed=3, steps=4, schedule="leading",
                                         sampler="ddpm", width=16, height=8, batch_size=2))
        up = _out(SRUpsampler256.execute(guider=chain["sr_guider"], image=img, noise_level=250, seed=4, steps=3,
                                         schedule="leading", sampler="ddpm"))
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    assert img.shape == (2, 8, 16, 3) and up.shape == (2, 32, 64, 3)
    assert 0 <= img.min() and img.max() <= 1 and 0 <= up.min() and up.max() <= 1
    assert [c[:2] for c in calls] == [(i, 4) for i in range(1, 5)] + [(i, 3) for i in range(1, 4)]
    assert all(c[2][0] == "JPEG" and max(c[2][1].size) >= 256 for c in calls)
    again = _out(Base64Sampler.execute(guider=chain["base_guider"], seed=3, steps=4, schedule="leading",
                                       sampler="ddpm", width=16, height=8, batch_size=2))
    assert torch.equal(img, again)


def test_interrupt_stops_and_models_stay_usable(pack, chain):
    import comfy.model_management as mm

    from pixel_cascade.nodes.sampling import Base64Sampler

    run = lambda: Base64Sampler.execute(guider=chain["base_guider"], seed=0, steps=3, schedule="smart27",  # noqa: E731
                                        sampler="dpmpp_2m", width=8, height=8, batch_size=1)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run()
    finally:
        mm.interrupt_current_processing(False)
    assert _out(run()).shape == (1, 8, 8, 3)


def test_errors_name_node_input_and_fix(pack, chain):
    from pixel_cascade.nodes.guidance import CFGGuider
    from pixel_cascade.nodes.sampling import Base64Sampler, SRUpsampler256
    from pixel_cascade.nodes.text import T5Encode

    with pytest.raises(ValueError, match="Base 64 Sampler: input 'guider' .* super-resolution .* base model"):
        Base64Sampler.execute(guider=chain["sr_guider"], seed=0, steps=2, schedule="leading", sampler="ddpm",
                              width=8, height=8, batch_size=1)
    with pytest.raises(ValueError, match="SR Upsampler 256: input 'guider' .* base .* super-resolution model"):
        SRUpsampler256.execute(guider=chain["base_guider"], image=torch.rand(1, 8, 8, 3), noise_level=250, seed=0,
                               steps=2, schedule="leading", sampler="ddpm")
    with pytest.raises(ValueError, match="SR Upsampler 256: input 'image' is 5x7.*resize"):
        SRUpsampler256.execute(guider=chain["sr_guider"], image=torch.rand(1, 7, 5, 3), noise_level=250, seed=0,
                               steps=2, schedule="leading", sampler="ddpm")
    empty = _out(T5Encode.execute(t5=chain["t5"], text="   ", clean_caption=False))
    with pytest.raises(ValueError, match="Cascade CFG Guider: the 'positive' .* empty prompt"):
        CFGGuider.execute(unet=chain["base"], positive=empty, negative=chain["neg"], cfg=7.0,
                          threshold_percentile=0.95, threshold_max=1.5)


def test_long_prompt_is_padded_for_cfg(pack, chain):
    from pixel_cascade.nodes.guidance import CFGGuider
    from pixel_cascade.nodes.sampling import Base64Sampler
    from pixel_cascade.nodes.text import T5Encode

    long_text = " ".join(["a red fox sitting in the snow at golden hour"] * 20)
    pos = _out(T5Encode.execute(t5=chain["t5"], text=long_text, clean_caption=False, long_prompt=True))
    assert pos.embeds.shape[1] > 77 and pos.embeds.shape[1] % 77 == 0
    guider = _out(CFGGuider.execute(unet=chain["base"], positive=pos, negative=chain["neg"], cfg=7.0,
                                    threshold_percentile=0.95, threshold_max=1.5))
    assert guider.negative.embeds.shape == guider.positive.embeds.shape == pos.embeds.shape
    assert torch.equal(guider.negative.embeds[0, 77:154], chain["neg"].filler)  # padded with the "" chunk
    img = _out(Base64Sampler.execute(guider=guider, seed=0, steps=2, schedule="leading", sampler="ddpm", width=8,
                                     height=8, batch_size=1))
    assert img.shape == (1, 8, 8, 3)
