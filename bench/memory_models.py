"""The models of bench/memory.py: the real cascade's shapes with random weights (IF-I-XL, IF-II-L, the SD x4
upscaler with its OpenCLIP-H text tower and VAE, T5-v1.1-XXL), or tiny ones for ``--dry-run``; and diffusers'
pipelines built on the very same weight tensors (no second copy).

Random weights: each UNet's ``conv_out`` is zeroed so every stage stays finite (the compute is unchanged).
Tokenizers are small stand-ins (a trained 200-piece SentencePiece, a 60-token CLIP BPE): token ids only index
the embedding tables, so timing and memory do not depend on them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from cascade_core.schedules import scaled_linear_alphas_cumprod  # noqa: E402
from cascade_core.text import build_t5_encoder  # noqa: E402
from cascade_core.text.encoder import TextEncoder  # noqa: E402
from cascade_core.unet.config import UNetConfig  # noqa: E402
from cascade_core.unet.model import UNet  # noqa: E402
from cascade_core.unet.presets import PRESETS, SD_X4_UPSCALER  # noqa: E402
from cascade_core.upscaler.clip import ClipTextEncoder, build_clip_text_model, load_clip_tokenizer  # noqa: E402
from cascade_core.upscaler.model import Upscaler  # noqa: E402
from cascade_core.upscaler.vae import VAEConfig, VAEDecoder  # noqa: E402

X4_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, down_block_types=["DownEncoderBlock2D"] * 3,
              up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[128, 256, 512], layers_per_block=2,
              norm_num_groups=32, act_fn="silu", sample_size=256, scaling_factor=0.08333)
OPENCLIP_H_TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                       num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", bos_token_id=1,
                       eos_token_id=2, pad_token_id=0, projection_dim=1024)
IF_SCHED = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                prediction_type="epsilon", thresholding=True, dynamic_thresholding_ratio=0.95, clip_sample=True)


@dataclass(frozen=True)
class Configs:
    t5: dict
    base: dict
    sr: dict
    x4: dict
    vae: dict
    clip: dict


def configs(tiny: bool) -> Configs:
    if not tiny:
        from _text_models import XXL_CONFIG

        return Configs(XXL_CONFIG, PRESETS["IF-I-XL"], PRESETS["IF-II-L"], SD_X4_UPSCALER, X4_VAE, OPENCLIP_H_TEXT)
    from _text_models import TINY_CONFIG
    from tiny_models import NODE_IF_I, NODE_IF_II
    from tiny_unets import MICRO_X4
    from tiny_x4 import MICRO_VAE, VOCAB

    clip = dict(OPENCLIP_H_TEXT, vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, projection_dim=16)
    return Configs(TINY_CONFIG, NODE_IF_I, NODE_IF_II, MICRO_X4, dict(MICRO_VAE), clip)


@dataclass
class Models:
    t5: TextEncoder
    base: UNet
    sr: UNet
    upscaler: Upscaler

    def sizes(self) -> dict[str, int]:
        def nbytes(m):
            return sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])

        up = self.upscaler
        return {"t5": nbytes(self.t5.model), "base": nbytes(self.base), "sr": nbytes(self.sr),
                "x4": nbytes(up.unet) + nbytes(up.vae) + nbytes(up.text.model)}


def real_sizes_gib() -> dict[str, float]:
    """Weight GiB of the real-size models in bf16 (VAE fp32), counted on the meta device (no memory)."""
    c = configs(False)
    with torch.device("meta"):
        numel = {"t5": sum(p.numel() for p in build_t5_encoder(c.t5).parameters()),
                 "base": sum(p.numel() for p in UNet(UNetConfig.from_diffusers_config(c.base)).parameters()),
                 "sr": sum(p.numel() for p in UNet(UNetConfig.from_diffusers_config(c.sr)).parameters()),
                 "x4": sum(p.numel() for p in UNet(UNetConfig.from_diffusers_config(c.x4)).parameters())}
        vae = sum(p.numel() for p in VAEDecoder(VAEConfig.from_diffusers_config(c.vae)).parameters())
        clip = sum(p.numel() for p in build_clip_text_model(c.clip).parameters())
    out = {k: v * 2 / 2**30 for k, v in numel.items()}
    out["x4"] += (vae * 4 + clip * 2) / 2**30
    return out


def _unet(cfg: dict, dtype: torch.dtype, device: str) -> UNet:
    unet = UNet(UNetConfig.from_diffusers_config(cfg), dtype=dtype, device=device).eval().requires_grad_(False)
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.zero_()
    return unet.to("cpu")


def build_models(tiny: bool, workdir: Path, *, build_device: str, dtype: torch.dtype) -> Models:
    """Random-weight models, built on ``build_device`` (fast init on the GPU), returned in host memory."""
    from _text_models import hf_tokenizer, train_spiece
    from tiny_x4 import write_tokenizer

    c = configs(tiny)
    torch.manual_seed(0)
    t5_model = build_t5_encoder(c.t5, device=build_device).to(dtype).to("cpu").eval()
    t5 = TextEncoder(t5_model, hf_tokenizer(train_spiece(workdir / "spm").parent), identity="bench-random",
                     layout="transformers", dtype=dtype, cache=None)
    base, sr = _unet(c.base, dtype, build_device), _unet(c.sr, dtype, build_device)
    x4 = _unet(c.x4, dtype, build_device)
    vae = VAEDecoder(VAEConfig.from_diffusers_config(c.vae), device=build_device).eval().requires_grad_(False)
    clip_model = build_clip_text_model(c.clip, device=build_device).to(dtype).to("cpu").eval()
    write_tokenizer(workdir / "clip_tokenizer")
    text = ClipTextEncoder(clip_model, load_clip_tokenizer(workdir / "clip_tokenizer", pad_token="!"))
    ac = scaled_linear_alphas_cumprod()
    upscaler = Upscaler(x4, vae.to("cpu"), text, alphas_cumprod=ac, noise_alphas_cumprod=ac)
    return Models(t5, base, sr, upscaler)


def _twin_unet(ours: UNet, cfg: dict):
    """diffusers' UNet2DConditionModel holding our UNet's tensors (same names, no copy)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        ref = UNet2DConditionModel(**cfg)
    ref.load_state_dict(ours.state_dict(), strict=True, assign=True)
    return ref.eval()


def diffusers_pipelines(models: Models, tiny: bool) -> tuple:
    """``(IFPipeline, IFSuperResolutionPipeline, StableDiffusionUpscalePipeline)`` on our models' tensors."""
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, IFPipeline, IFSuperResolutionPipeline,
                           StableDiffusionUpscalePipeline)

    c = configs(tiny)
    vae = AutoencoderKL(**c.vae).eval()
    missing = vae.load_state_dict(models.upscaler.vae.state_dict(), strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    te, tok = models.t5.model, models.t5.tokenizer
    common = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    first = IFPipeline(tokenizer=tok, text_encoder=te, unet=_twin_unet(models.base, c.base),
                       scheduler=DDPMScheduler(**IF_SCHED, sample_max_value=1.5), **common)
    second = IFSuperResolutionPipeline(tokenizer=None, text_encoder=None, unet=_twin_unet(models.sr, c.sr),
                                       scheduler=DDPMScheduler(**IF_SCHED, sample_max_value=1.0),
                                       image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
                                       **common)
    low = DDPMScheduler(beta_schedule="scaled_linear", beta_start=1e-4, beta_end=0.02)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=1e-4, beta_end=0.02, clip_sample=False,
                          prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1)
    third = StableDiffusionUpscalePipeline(vae=vae, text_encoder=models.upscaler.text.model,
                                           tokenizer=models.upscaler.text.tokenizer,
                                           unet=_twin_unet(models.upscaler.unet, c.x4), low_res_scheduler=low,
                                           scheduler=sched, safety_checker=None, feature_extractor=None,
                                           watermarker=None, max_noise_level=350)
    for pipe in (first, second, third):
        pipe.set_progress_bar_config(disable=True)
    return first, second, third
