"""``load_upscaler``: the SD x4 upscaler from its diffusers repo folder or its original single file.

* Folder (``stabilityai/stable-diffusion-x4-upscaler`` layout): ``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/`` (+ ``low_res_scheduler/``, ``model_index.json``).
* Single file (``x4-upscaler-ema.safetensors``, as ComfyUI users keep it): LDM key names, mapped on load
  (:mod:`.ldm_keys`); the file has no tokenizer, so ``tokenizer=`` (a folder with ``vocab.json`` and
  ``merges.txt``), a ``tokenizer/`` folder beside the file, or ComfyUI's ``comfy/sd1_tokenizer`` is used.
  A file without the OpenCLIP tower needs ``text_encoder=`` (a folder with ``text_encoder/`` and
  ``tokenizer/``, e.g. the repo folder).

Everything is loaded strictly (names and shapes checked before reading), from safetensors only. The UNet
and text encoder take ``dtype``; the VAE decoder is always float32 (it overflows in float16).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..denoisers import PREDICTIONS
from ..schedules import ALPHA_SCHEDULES
from ..text.tokenizer import comfy_tokenizer_dir
from ..unet.config import UNetConfig
from ..unet.loading import default_device_dtype, load_unet
from ..unet.model import UNet
from ..weights import WeightFileError, file_sources, find_weight_files, load_sources, read_header
from .clip import ClipTextEncoder, clip_key, load_clip_text, load_clip_tokenizer, read_json
from .ldm_keys import is_ldm_checkpoint, ldm_clip, ldm_unet, ldm_vae
from .model import Upscaler
from .vae import VAEConfig, VAEDecoder, vae_key
from .vae_encoder import VAEEncoder, encoder_key

logger = logging.getLogger(__name__)

__all__ = ["load_upscaler", "X4_SCHEDULER", "X4_LOW_RES_SCHEDULER"]

# stabilityai/stable-diffusion-x4-upscaler scheduler configs (IF spec §1.7), used for the single file
X4_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02, num_train_timesteps=1000,
                    prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1)
X4_LOW_RES_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02,
                            num_train_timesteps=1000)
_IF_PIPELINES = {"IFPipeline": "a DeepFloyd IF stage I (64 px base) model",
                 "IFSuperResolutionPipeline": "a DeepFloyd IF stage II (256 px super-resolution) model"}
_NOT_X4 = ("; stage III needs the SD x4 upscaler (the stabilityai/stable-diffusion-x4-upscaler folder or "
           "x4-upscaler-ema.safetensors)")


def _alphas(cfg: dict, where: str) -> torch.Tensor:
    """alphas_cumprod [T] of a diffusers scheduler config."""
    schedule, steps = cfg.get("beta_schedule", "linear"), int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("trained_betas") is not None or schedule not in ALPHA_SCHEDULES:
        raise WeightFileError(f"{where}: beta_schedule={schedule!r} is not supported (supported: "
                              f"{sorted(ALPHA_SCHEDULES)}, no trained_betas)")
    if schedule in ("linear", "scaled_linear"):
        return ALPHA_SCHEDULES[schedule](steps, float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02)))
    return ALPHA_SCHEDULES[schedule](steps)


def _schedules(sampling: dict, low_res: dict, max_noise_level: int, where: str) -> dict:
    """The Upscaler keyword arguments that come from the scheduler configs."""
    prediction = sampling.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise WeightFileError(f"{where}: prediction_type={prediction!r} is not supported (supported: {PREDICTIONS})")
    return dict(alphas_cumprod=_alphas(sampling, where), noise_alphas_cumprod=_alphas(low_res, where),
                prediction=prediction, max_noise_level=max_noise_level,
                set_alpha_to_one=bool(sampling.get("set_alpha_to_one", True)),
                steps_offset=int(sampling.get("steps_offset", 0)))


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.to(memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)


def _load_vae(config: dict, sources: dict, device: torch.device, what: str) -> VAEDecoder:
    with torch.device("meta"):
        vae = VAEDecoder(VAEConfig.from_diffusers_config(config))
    load_sources(vae, sources, device=device, dtype=torch.float32, what=what)
    return _frozen(vae)


def _load_encoder(config: dict, sources: dict, device: torch.device, what: str) -> VAEEncoder | None:
    """The VAE encoder (image-to-image at stage III) when the files hold it, else None."""
    if not sources:
        return None
    with torch.device("meta"):
        encoder = VAEEncoder(VAEConfig.from_diffusers_config(config), quant_conv="quant_conv.weight" in sources)
    load_sources(encoder, sources, device=device, dtype=torch.float32, what=what)
    return _frozen(encoder)


def _text_from_folder(root: Path, device: torch.device, dtype: torch.dtype) -> ClipTextEncoder:
    """CLIP text encoder from ``root/text_encoder`` + ``root/tokenizer`` (or a bare text-encoder folder
    with its tokenizer files inside)."""
    folder = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    tok = root / "tokenizer" if (root / "tokenizer").is_dir() else folder
    variant = "fp16" if dtype in (torch.float16, torch.bfloat16) else None
    files = find_weight_files(folder, "model", variant=variant)
    return load_clip_text(read_json(folder / "config.json"), file_sources(files, rename=clip_key),
                          load_clip_tokenizer(tok), device=device, dtype=dtype, what=f"{folder} (CLIP text encoder)")


def _check_pipeline(root: Path) -> int:
    """Refuse folders of other pipelines; return ``max_noise_level`` from ``model_index.json`` (350)."""
    if (root / "config.json").is_file():
        raise WeightFileError(f"{root} is a single model folder; give the x4 upscaler repo folder (with unet/, vae/, "
                              "text_encoder/, tokenizer/, scheduler/)")
    index = read_json(root / "model_index.json") if (root / "model_index.json").is_file() else {}
    name = index.get("_class_name", "StableDiffusionUpscalePipeline")
    if name in _IF_PIPELINES:
        raise WeightFileError(f"{root} is {_IF_PIPELINES[name]}{_NOT_X4}")
    if name != "StableDiffusionUpscalePipeline":
        raise WeightFileError(f"{root} holds a {name}, not a StableDiffusionUpscalePipeline{_NOT_X4}")
    return int(index.get("max_noise_level", 350))


def _check_x4_unet(config: UNetConfig, where: str) -> None:
    if config.num_class_embeds is None or config.encoder_hid_dim is not None:
        kind = "an IF stage II" if config.class_embed_type else "an IF stage I"
        raise WeightFileError(f"{where} is {kind} UNet (T5-conditioned, pixel space){_NOT_X4}")


def _from_folder(root: Path, device: torch.device, dtype: torch.dtype) -> tuple:
    max_noise_level = _check_pipeline(root)
    for sub in ("unet", "vae", "scheduler"):
        if not (root / sub).is_dir():
            raise WeightFileError(f"{root} has no {sub}/ folder; expected the x4 upscaler repo layout")
    _check_x4_unet(UNetConfig.from_json_file(root / "unet" / "config.json"), str(root / "unet"))
    unet = load_unet(root / "unet", device=device, dtype=dtype)
    vae_files = find_weight_files(root / "vae", "diffusion_pytorch_model")
    vae_config = read_json(root / "vae" / "config.json")
    vae = _load_vae(vae_config, file_sources(vae_files, rename=vae_key), device, f"{root / 'vae'} (VAE decoder)")
    encoder = _load_encoder(vae_config, file_sources(vae_files, rename=encoder_key), device,
                            f"{root / 'vae'} (VAE encoder)")
    text = _text_from_folder(root, device, dtype) if (root / "text_encoder").is_dir() else None
    low_res = root / "low_res_scheduler" / "scheduler_config.json"
    schedules = _schedules(read_json(root / "scheduler" / "scheduler_config.json"),
                           read_json(low_res) if low_res.is_file() else X4_LOW_RES_SCHEDULER, max_noise_level,
                           str(root))
    return unet, vae, text, {**schedules, "encoder": encoder}


def _clip_tokenizer_for(path: Path, tokenizer: str | os.PathLike | None):
    """The CLIP tokenizer for a single file: ``tokenizer=``, ``tokenizer/`` beside it, or ComfyUI's copy."""
    candidates = [Path(tokenizer)] if tokenizer is not None else []
    candidates += [path.parent / "tokenizer", comfy_tokenizer_dir("sd1_tokenizer")]
    for folder in filter(None, candidates):
        if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
            return load_clip_tokenizer(folder, pad_token="!")  # OpenCLIP pads with token id 0, "!"
    looked = "; ".join(str(c) for c in candidates if c is not None)
    raise WeightFileError(f"no CLIP tokenizer for {path.name} (looked in: {looked}; ComfyUI's comfy/sd1_tokenizer "
                          "is used when ComfyUI is installed). Pass tokenizer=<folder with vocab.json and "
                          "merges.txt>, e.g. the tokenizer/ folder of stabilityai/stable-diffusion-x4-upscaler")


def _from_single_file(path: Path, device: torch.device, dtype: torch.dtype, tokenizer) -> tuple:
    header = read_header(path)
    names = set(header)
    if not is_ldm_checkpoint(names):
        raise WeightFileError(f"{path.name} is not the original x4 upscaler checkpoint (no model.diffusion_model.* "
                              f"tensors){_NOT_X4}")
    stem = header.get("model.diffusion_model.input_blocks.0.0.weight")
    if stem is None or stem.shape[1] != 7 or "model.diffusion_model.label_emb.weight" not in names:
        raise WeightFileError(f"{path.name} is a Stable Diffusion checkpoint but not the x4 upscaler (its UNet does "
                              f"not take 4 latent + 3 image channels with a noise-level embedding){_NOT_X4}")
    unet_config, unet_sources = ldm_unet(path, header)
    with torch.device("meta"):
        unet = UNet(UNetConfig.from_diffusers_config(unet_config))
    load_sources(unet, unet_sources, device=device, dtype=dtype, what=f"{path.name} (x4 UNet)")
    vae = _load_vae(*ldm_vae(path, header), device, f"{path.name} (VAE decoder)")
    clip = ldm_clip(path, header)
    text = None
    if clip is not None:
        text = load_clip_text(clip[0], clip[1], _clip_tokenizer_for(path, tokenizer), device=device, dtype=dtype,
                              what=f"{path.name} (OpenCLIP text encoder)")
    return _frozen(unet), vae, text, _schedules(X4_SCHEDULER, X4_LOW_RES_SCHEDULER, 350, str(path))


def load_upscaler(path: str | os.PathLike, *, device=None, dtype=None, text_encoder: str | os.PathLike | None = None,
                  tokenizer: str | os.PathLike | None = None) -> Upscaler:
    """Load the SD x4 upscaler (stage III) from its repo folder or ``x4-upscaler-ema.safetensors``.

    ``device``/``dtype`` default to cuda + bfloat16 with a GPU, else cpu + float32 (VAE: always float32).
    ``text_encoder``: a folder with ``text_encoder/`` and ``tokenizer/`` to use instead of (or, for a
    single file without one, in place of) the checkpoint's own CLIP text tower. ``tokenizer``: the CLIP
    tokenizer folder for a single file.
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"model path not found: {path}")
    device, dtype = default_device_dtype(device, dtype)
    if path.is_dir():
        unet, vae, text, schedules = _from_folder(path, device, dtype)
    else:
        unet, vae, text, schedules = _from_single_file(path, device, dtype, tokenizer)
    if text_encoder is not None:
        text = _text_from_folder(Path(text_encoder), device, dtype)
    hint = (f"{path.name} has no CLIP text tower; pass text_encoder=<folder with text_encoder/ and tokenizer/> "
            "(e.g. the stabilityai/stable-diffusion-x4-upscaler folder), or give prompt embeddings directly")
    logger.info("loaded the x4 upscaler from %s (%s, %s; text encoder: %s)", path, device, dtype,
                "yes" if text is not None else "no")
    return Upscaler(unet, vae, text, text_hint=hint, **schedules)
