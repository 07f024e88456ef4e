"""Micro checkpoints in every layout the nodes list: IF repo folders and single files (built, never shipped)."""
from __future__ import annotations

from pathlib import Path

import _text_models as text_models
import _vision_models as vision_models
from tiny_unets import MICRO_IF_I, MICRO_IF_II, diffusers_unet

T5_WIDTH = text_models.TINY_CONFIG["d_model"]
NODE_IF_I = dict(MICRO_IF_I, encoder_hid_dim=T5_WIDTH, addition_embed_type_num_heads=2)
NODE_IF_II = dict(MICRO_IF_II, encoder_hid_dim=T5_WIDTH, addition_embed_type_num_heads=2)


def write_tiny_models(root: Path) -> Path:
    """root/pixel_cascade/tiny-IF-I/ (unet/, text_encoder/, tokenizer/), root/pixel_cascade/tiny-IF-II/ (unet/),
    root/diffusion_models/tiny_if_i.safetensors, root/text_encoders/tiny_t5.safetensors, and the transformers
    folders root/pixel_cascade/tiny-git/ (GIT) and tiny-clip/ (a CLIP wired to see colour), and a diffusers
    StableDiffusionUpscalePipeline folder root/pixel_cascade/tiny-x4-upscaler/ (stage III)."""
    from cascade_core.unet.loading import load_unet, save_single_file

    repo = root / "pixel_cascade" / "tiny-IF-I"
    spiece = text_models.train_spiece(root / "_spm")
    t5 = text_models.reference_model()
    text_models.save_if_repo(t5, spiece, repo)
    diffusers_unet(NODE_IF_I).save_pretrained(repo / "unet")
    diffusers_unet(NODE_IF_II, seed=1).save_pretrained(root / "pixel_cascade" / "tiny-IF-II" / "unet")
    (root / "diffusion_models").mkdir(parents=True, exist_ok=True)
    save_single_file(load_unet(repo / "unet", device="cpu"), root / "diffusion_models" / "tiny_if_i.safetensors")
    text_models.save_single(text_models.encoder_state(t5), root / "text_encoders" / "tiny_t5.safetensors")
    (root / "text_encoders" / "tokenizer").mkdir(exist_ok=True)
    (root / "text_encoders" / "tokenizer" / "spiece.model").write_bytes(spiece.read_bytes())
    vision_models.save_git(root / "pixel_cascade" / "tiny-git")
    vision_models.save_clip(root / "pixel_cascade" / "tiny-clip", vision_models.colour_clip())
    from tiny_x4 import x4_pipeline

    x4_pipeline(root / "_x4tok").save_pretrained(str(root / "pixel_cascade" / "tiny-x4-upscaler"))
    return root
