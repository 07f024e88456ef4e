"""load_upscaler: the hub folder and the original single file (LDM names) load strictly to the same model."""
import shutil

import pytest
import torch
from safetensors.torch import save_file

from cascade_core.upscaler.loading import load_upscaler
from cascade_core.weights import WeightFileError
from tiny_unets import FILE_IF_I, diffusers_unet
from tiny_x4 import LDM_VAE, LDM_X4, to_ldm_state, write_tokenizer, x4_pipeline

diffusers = pytest.importorskip("diffusers")


def _clip_states(pipe, prompts):
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids).last_hidden_state


def _outputs(up, width):
    """UNet v, VAE decode and CLIP states of a loaded upscaler on fixed inputs."""
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 7, 16, 8, generator=g), torch.randn(2, 77, width, generator=g)
    z = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        return up.unet(x, torch.tensor([3, 990]), text, torch.tensor([0, 350])), up.decode(z), \
            up.encode_prompt(["the cat", "a dog"])


def _reference(pipe, width):
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 7, 16, 8, generator=g), torch.randn(2, 77, width, generator=g)
    z = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        v = pipe.unet(x, torch.tensor([3, 990]), encoder_hidden_states=text, class_labels=torch.tensor([0, 350])).sample
        return v, pipe.vae.decode(z).sample, _clip_states(pipe, ["the cat", "a dog"])


def test_folder_matches_diffusers_components(x4_repo):
    pipe, repo = x4_repo
    up = load_upscaler(repo, device="cpu", dtype=torch.float32)
    for got, want in zip(_outputs(up, 16), _reference(pipe, 16)):
        assert got.shape == want.shape and (got - want).abs().max().item() < 1e-4
    assert up.scaling_factor == 0.08333 and up.max_noise_level == 350 and up.prediction == "v_prediction"
    assert torch.equal(up.alphas_cumprod, pipe.scheduler.alphas_cumprod)
    assert torch.equal(up.noise_alphas_cumprod, pipe.low_res_scheduler.alphas_cumprod)
    assert not any(p.requires_grad for p in up.unet.parameters()) and not up.unet.training


def test_half_precision_keeps_the_vae_in_float32(x4_repo):
    up = load_upscaler(x4_repo[1], device="cpu", dtype=torch.bfloat16)
    assert up.unet.dtype == torch.bfloat16 and up.text.model.dtype == torch.bfloat16
    assert up.vae.decoder.conv_in.weight.dtype == torch.float32
    assert up.decode(torch.randn(1, 4, 4, 4, dtype=torch.bfloat16)).dtype == torch.float32


@pytest.fixture(scope="module")
def ldm(tmp_path_factory):
    """A tiny x4 pipeline following the LDM conventions, its folder, and its single file under LDM names."""
    root = tmp_path_factory.mktemp("ldm")
    pipe = x4_pipeline(root, LDM_X4, LDM_VAE, clip_heads=1)
    pipe.save_pretrained(root / "repo")
    state = to_ldm_state(pipe)
    (root / "file").mkdir()
    save_file(state, str(root / "file" / "x4-upscaler-ema.safetensors"))
    return pipe, root, state


def test_test_generated_ldm_names_are_what_diffusers_converts(ldm):
    """The single-file names this test writes convert back exactly with diffusers' own converters."""
    from diffusers.loaders import single_file_utils as sf

    pipe, _, state = ldm
    unet = sf.convert_ldm_unet_checkpoint(state, dict(pipe.unet.config))
    assert unet.keys() == pipe.unet.state_dict().keys()
    assert all(torch.equal(unet[k], v) for k, v in pipe.unet.state_dict().items())
    vae = sf.convert_ldm_vae_checkpoint(state, dict(pipe.vae.config))
    for k, v in pipe.vae.state_dict().items():
        if k.startswith(("decoder.", "post_quant_conv.")):
            assert torch.equal(vae[k].reshape(v.shape), v), k
    converted = sf.convert_open_clip_checkpoint(pipe.text_encoder, state)
    clip = {k.removeprefix("text_model."): v for k, v in converted.items()}
    for k, v in pipe.text_encoder.state_dict().items():
        if "position_ids" not in k:
            assert torch.equal(clip[k.removeprefix("text_model.")], v), k


def test_single_file_loads_to_identical_outputs(ldm):
    pipe, root, _ = ldm
    from_file = load_upscaler(root / "file" / "x4-upscaler-ema.safetensors", tokenizer=root / "tok", device="cpu",
                              dtype=torch.float32)
    from_folder = load_upscaler(root / "repo", device="cpu", dtype=torch.float32)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(from_file.unet) == shapes(from_folder.unet) and shapes(from_file.vae) == shapes(from_folder.vae)
    for a, b, ref in zip(_outputs(from_file, 64), _outputs(from_folder, 64), _reference(pipe, 64)):
        assert torch.equal(a, b)
        assert (a - ref).abs().max().item() < 1e-4
    assert from_file.max_noise_level == 350 and torch.equal(from_file.alphas_cumprod, from_folder.alphas_cumprod)


def test_single_file_tokenizer_lookup(ldm, tmp_path, monkeypatch):
    import cascade_core.upscaler.loading as loading

    monkeypatch.setattr(loading, "comfy_tokenizer_dir", lambda name: None)  # as outside ComfyUI (node tests import it)
    _, root, state = ldm
    path = tmp_path / "x4-upscaler-ema.safetensors"
    shutil.copy(root / "file" / "x4-upscaler-ema.safetensors", path)
    with pytest.raises(WeightFileError, match="no CLIP tokenizer.*tokenizer="):
        load_upscaler(path, device="cpu")
    write_tokenizer(tmp_path / "tokenizer", pad_token=None)  # beside the file, padding as OpenCLIP: "!"
    up = load_upscaler(path, device="cpu")
    assert up.text.tokenizer.pad_token_id == 0
    assert up.encode_prompt("the cat").shape == (1, 77, 64)


def test_single_file_without_text_tower_needs_text_encoder(ldm, tmp_path):
    pipe, root, state = ldm
    path = tmp_path / "unet_vae_only.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("cond_stage_model.")}, str(path))
    up = load_upscaler(path, device="cpu")
    with pytest.raises(ValueError, match="text_encoder="):
        up.encode_prompt("a cat")
    up = load_upscaler(path, device="cpu", text_encoder=root / "repo")
    assert torch.equal(up.encode_prompt(["the cat", "a dog"]), _clip_states(pipe, ["the cat", "a dog"]))


def test_foreign_files_are_refused(ldm, tmp_path):
    _, _, state = ldm
    if_file = tmp_path / "if_unet.safetensors"
    save_file({k: v.contiguous() for k, v in diffusers_unet(FILE_IF_I).state_dict().items()}, str(if_file))
    with pytest.raises(WeightFileError, match="not the original x4 upscaler"):
        load_upscaler(if_file, device="cpu")
    sd = dict(state)
    sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 4, 3, 3)  # a 4-channel SD 2 UNet
    save_file(sd, str(tmp_path / "sd2.safetensors"))
    with pytest.raises(WeightFileError, match="not the x4 upscaler"):
        load_upscaler(tmp_path / "sd2.safetensors", device="cpu")
    with pytest.raises(WeightFileError, match="pickle"):
        (tmp_path / "x4.ckpt").write_bytes(b"\x80\x02")
        load_upscaler(tmp_path / "x4.ckpt", device="cpu")
