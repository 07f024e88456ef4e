"""Micro checkpoints in ComfyUI's model folders, built by the test session (random weights, never committed).

Layout written under ``<base>/models``::

    pixel_cascade/tiny-IF-I/   unet/ (diffusers IF-I) + text_encoder/ (T5EncoderModel) + tokenizer/ (spiece.model)
    pixel_cascade/tiny-IF-II/  unet/ (diffusers IF-II super-resolution)
    diffusion_models/tiny-if-i.safetensors   single-file IF-I, config inferred from shapes (IF conventions)
    text_encoders/tiny-t5.safetensors        single-file T5 (full T5 vocabulary: ComfyUI's shipped tokenizer)
    pixel_cascade/tiny-git/    transformers GitForCausalLM folder (caption node)
    pixel_cascade/tiny-clip/   transformers CLIPModel folder (similarity node)
    pixel_cascade/tiny-x4-upscaler/  diffusers StableDiffusionUpscalePipeline folder (stage III)

Every UNet's ``encoder_hid_dim`` equals the T5s' ``d_model``, so any T5 drives any UNet. The sizes keep a
64→256 cascade with 10+10 steps at a few seconds on two CPU cores.
"""
from __future__ import annotations

from pathlib import Path

from _text_models import TINY_CONFIG, encoder_state, reference_model, save_if_repo, save_single, train_spiece
from tiny_unets import FILE_IF_I, MICRO_IF_I, MICRO_IF_II, diffusers_unet

T5_DIM = TINY_CONFIG["d_model"]
REPO_T5 = dict(TINY_CONFIG, num_layers=2)
FILE_T5 = dict(TINY_CONFIG, vocab_size=32128, num_layers=2)  # T5 v1.1 vocabulary size, like t5xxl files
# attention only at the lowest resolution: 16×16 for IF-I at 64 px, 32×32 for IF-II at 256 px
_I_BLOCKS = dict(down_block_types=["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
                 up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"])
_II_BLOCKS = dict(down_block_types=["ResnetDownsampleBlock2D"] * 3 + ["SimpleCrossAttnDownBlock2D"],
                  up_block_types=["SimpleCrossAttnUpBlock2D"] + ["ResnetUpsampleBlock2D"] * 3)
TINY_IF_I = dict(MICRO_IF_I, **_I_BLOCKS, encoder_hid_dim=T5_DIM)
TINY_IF_II = dict(MICRO_IF_II, **_II_BLOCKS, encoder_hid_dim=T5_DIM)
SINGLE_IF_I = dict(FILE_IF_I, **_I_BLOCKS, encoder_hid_dim=T5_DIM)

# names the tests put in place of the shipped workflows' real checkpoint names
REPO_IF_I = "tiny-IF-I/"
REPO_IF_II = "tiny-IF-II/"
FILE_UNET = "tiny-if-i.safetensors"
FILE_T5_NAME = "tiny-t5.safetensors"
REPO_GIT = "tiny-git/"
REPO_CLIP = "tiny-clip/"
REPO_X4 = "tiny-x4-upscaler/"


def _unet_folder(config: dict, folder: Path, seed: int) -> None:
    diffusers_unet(config, seed=seed).save_pretrained(str(folder / "unet"))


def build_models(models: Path) -> dict[str, Path]:
    """Write every micro checkpoint under ``models`` (a ComfyUI models dir); return name → path."""
    repo_i, repo_ii = models / "pixel_cascade" / "tiny-IF-I", models / "pixel_cascade" / "tiny-IF-II"
    _unet_folder(TINY_IF_I, repo_i, seed=1)
    spiece = train_spiece(models / "_spiece")
    save_if_repo(reference_model(seed=2, config=REPO_T5), spiece, repo_i)
    _unet_folder(TINY_IF_II, repo_ii, seed=3)
    single = diffusers_unet(SINGLE_IF_I, seed=4)
    unet_file = save_single({k: v for k, v in single.state_dict().items()}, models / "diffusion_models" / FILE_UNET)
    t5_file = save_single(encoder_state(reference_model(seed=5, config=FILE_T5)),
                          models / "text_encoders" / FILE_T5_NAME)
    for p in (models / "_spiece").iterdir():
        p.unlink()
    (models / "_spiece").rmdir()
    from _vision_models import colour_clip, save_clip, save_git

    git = save_git(models / "pixel_cascade" / REPO_GIT.rstrip("/"))
    clip = save_clip(models / "pixel_cascade" / REPO_CLIP.rstrip("/"), colour_clip())
    from tiny_x4 import x4_pipeline

    x4 = models / "pixel_cascade" / REPO_X4.rstrip("/")
    x4_pipeline(models / "_x4_tokenizer").save_pretrained(str(x4))
    return {REPO_IF_I: repo_i, REPO_IF_II: repo_ii, FILE_UNET: unet_file, FILE_T5_NAME: t5_file, REPO_GIT: git,
            REPO_CLIP: clip, REPO_X4: x4}
