"""Stage III nodes: the SD x4 upscaler loader and SR Upsampler 1024 (image -> 4x with the x4 upscaler and its own
CLIP prompt, or with a guider holding a pixel-space SR UNet such as the demo's stage III)."""
from __future__ import annotations

import torch
from torch import nn

from cascade_core.image import images_to_pixels, pixels_to_images, preview
from cascade_core.inpaint import strength_steps
from cascade_core.samplers import SAMPLERS
from cascade_core.upscaler.loading import load_upscaler
from cascade_core.upscaler.stage import sample_x4_stage, untiled_working_bytes

from . import memory, model_files
from ._comfy import ProgressBar, io, model_management
from .checks import CheckedNode
from .loaders import CATEGORY, UNET_DTYPES
from .sampling import SAMPLER_TIP, eta_input, prepare_start, sampler_options, start_inputs, upsample_x4
from .types import GUIDER, UPSCALER, GuiderSpec, ModelHandle

CHECKPOINTS = "checkpoints"


def upscaler_choices() -> list[str]:
    """Repo folders holding the x4 upscaler (unet/ + vae/ + low_res_scheduler/), then checkpoint files."""
    return model_files.repo_folders("low_res_scheduler") + model_files.files(CHECKPOINTS)


class UpscalerLoader(CheckedNode):
    MODEL_FOLDERS = {"upscaler_name": "models/pixel_cascade/<repo>/ or models/checkpoints/"}

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeUpscalerLoader", display_name="x4 Upscaler Loader (stage III)", category=CATEGORY,
            description="Loads the Stable Diffusion x4 upscaler (UNet, VAE decoder and CLIP text encoder), the "
                        "256 -> 1024 stage of the DeepFloyd IF cascade.",
            inputs=[
                io.Combo.Input("upscaler_name", options=upscaler_choices(),
                               tooltip="The stable-diffusion-x4-upscaler repo folder in models/pixel_cascade, or "
                                       "x4-upscaler-ema.safetensors in models/checkpoints."),
                io.Combo.Input("dtype", options=UNET_DTYPES, default="default",
                               tooltip="UNet and text-encoder precision (the VAE always decodes in float32, "
                                       "float16 overflows there)."),
            ],
            outputs=[UPSCALER.Output(display_name="upscaler")],
        )

    @classmethod
    def execute(cls, upscaler_name: str, dtype: str) -> io.NodeOutput:
        path = model_files.resolve(upscaler_name, CHECKPOINTS)
        load_device, offload = model_management.get_torch_device(), model_management.unet_offload_device()
        torch_dtype = memory.default_dtype(dtype, load_device)

        def build() -> tuple:
            model = load_upscaler(path, device=offload, dtype=torch_dtype)
            parts = nn.ModuleDict({"unet": model.unet, "vae": model.vae})
            if model.encoder is not None:
                parts["vae_encoder"] = model.encoder
            if model.text is not None:
                parts["text"] = model.text.model
            return model, parts, upscaler_name

        where = f"x4 Upscaler Loader (stage III): input 'upscaler_name' ({upscaler_name})"
        return io.NodeOutput(memory.load_managed("upscaler", path, build, dtype=torch_dtype, load_device=load_device,
                                                 offload_device=offload, where=where))


X4_ONLY = " x4 upscaler only (ignored with 'guider')."
X4_NO_START = ("this x4 upscaler was loaded from a single file, which the pack reads decoder-only (no VAE "
               "encoder), so it cannot start from an image: load the stable-diffusion-x4-upscaler repo folder "
               "instead, or disconnect them.")
X4_START = (" x4 upscaler: in latent space (the start image VAE-encoded; a latent pixel is repainted when any of "
            "its 4x4 pixels is masked; pixels outside the mask are still kept exactly); needs the repo folder.")
WIRING = ("Wire exactly one of: 'upscaler' <- x4 Upscaler Loader (the SD x4 upscaler, latent space, its own CLIP "
          "prompt), or 'guider' <- Cascade CFG Guider <- Cascade UNet Loader with a pixel-space 256 -> 1024 SR UNet "
          "(e.g. demo/sr1024, the built-in demo's stage III; T5 conditioning as for stage II).")


def _wiring_error(upscaler_connected: bool, guider_connected: bool) -> str | None:
    if upscaler_connected == guider_connected:
        got = "both are connected" if upscaler_connected else "neither is connected"
        return f"SR Upsampler 1024: inputs 'upscaler' and 'guider': {got}. {WIRING}"
    return None


class SRUpsampler1024(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeSRUpsampler1024", display_name="SR Upsampler 1024", category=CATEGORY,
            description="Stage III: 4x super-resolution (256 -> 1024) of any image. " + WIRING + " The x4 upscaler "
                        "uses prompt, guidance and tiling; the guider path uses the guider's prompt and cfg with "
                        "noise_level, steps (leading spacing), seed and sampler.",
            inputs=[
                UPSCALER.Input("upscaler", optional=True,
                               tooltip="The SD x4 upscaler from x4 Upscaler Loader (leave 'guider' unconnected)."),
                GUIDER.Input("guider", optional=True,
                             tooltip="A Cascade CFG Guider holding a pixel-space SR UNet such as demo/sr1024 (leave "
                                     "'upscaler' unconnected)."),
                io.Image.Input("image", tooltip="The image to upscale (stage II's 256 px output, or any image with "
                                                "sides that are multiples of 4)."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What the image shows; encoded by the upscaler's own CLIP text encoder." +
                                        X4_ONLY),
                io.String.Input("negative_prompt", multiline=True, default="",
                                tooltip="What to avoid (empty by default)." + X4_ONLY),
                io.Int.Input("steps", default=75, min=1, max=999,
                             tooltip="Denoising steps (x4 upscaler: 75 as IF / diffusers use; at most 999, its "
                                     "schedule's offset leaves no more; guider: diffusers' leading spacing, e.g. 8 "
                                     "for demo/sr1024)."),
                io.Float.Input("guidance", default=9.0, min=1.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance scale (9 as IF uses)." + X4_ONLY +
                                       " The guider path takes the Cascade CFG Guider's cfg."),
                io.Int.Input("noise_level", default=100, min=0, max=350,
                             tooltip="Noise added to the input before upscaling (IF docs: 100; at most 350). Higher "
                                     "values invent more detail. Used by both paths."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Random seed."),
                io.Combo.Input("sampler", options=list(SAMPLERS), default="ddim",
                               tooltip="ddim is the x4 upscaler's reference sampler; ddpm the demo stage III's. "
                                       + SAMPLER_TIP),
                io.Boolean.Input("tiling", default=False,
                                 tooltip="Denoise and decode in overlapping tiles: much less GPU memory, a little "
                                         "slower. Turn on if you run out of memory." + X4_ONLY),
                io.Int.Input("tile_size", default=64, min=16, max=512, step=8,
                             tooltip="Tile size in input pixels (x4 in the output) when tiling is on." + X4_ONLY),
            ] + start_inputs(X4_START) + [eta_input()],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def extra_problems(cls, values: dict) -> list[str]:
        # linked inputs arrive as None at validation time; unconnected optional ones not at all
        error = _wiring_error("upscaler" in values, "guider" in values)
        return [error] if error else []

    @classmethod
    def execute(cls, image: torch.Tensor, prompt: str, negative_prompt: str, steps: int, guidance: float,
                noise_level: int, seed: int, sampler: str, tiling: bool, tile_size: int,
                upscaler: ModelHandle | None = None, guider: GuiderSpec | None = None,
                start_image: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                denoise: float = 1.0, eta: float = 0.0) -> io.NodeOutput:
        error = _wiring_error(upscaler is not None, guider is not None)
        if error:
            raise ValueError(error)
        if guider is not None:
            return io.NodeOutput(upsample_x4(guider, image, "SR Upsampler 1024", noise_level=noise_level, seed=seed,
                                             steps=steps, schedule="leading", sampler=sampler, start=start_image,
                                             mask=mask, denoise=denoise, node_cls=cls, eta=eta))
        node = "SR Upsampler 1024"
        low = images_to_pixels(image)
        if low.shape[2] % 4 or low.shape[3] % 4:
            raise ValueError(f"SR Upsampler 1024: input 'image' is {low.shape[3]}x{low.shape[2]}; the x4 upscaler "
                             "needs sides that are multiples of 4: resize or crop the image first.")
        begin, batch = prepare_start(cls, node, 4 * low.shape[2], 4 * low.shape[3], low.shape[0], start_image,
                                     mask, denoise)
        if begin is not None:
            if upscaler.model.encoder is None:
                raise ValueError(f"{node}: input 'start_image': " + X4_NO_START)
            if strength_steps(steps, denoise) < 1:
                raise ValueError(f"{node}: input 'denoise' {denoise} runs no step of {steps} (int({steps} * "
                                 f"{denoise}) = 0): raise denoise or steps.")
        start = {} if begin is None else dict(init_image=begin.pixels, mask=begin.mask, strength=denoise)
        if not tiling:
            h, w = low.shape[2:]
            memory.check_fits(f"SR Upsampler 1024: a {w}x{h} input (batch {batch}) without tiling",
                              untiled_working_bytes(upscaler.model, batch, h, w), upscaler.device,
                              "turn on 'tiling' (and lower tile_size), or use a smaller image")
        bar = ProgressBar(steps)

        def callback(info: dict) -> None:
            model_management.throw_exception_if_processing_interrupted()
            look = preview(upscaler.model.preview(info["denoised"]))
            bar.update_absolute(info["i"] + 1, info["total"], ("JPEG", look, 512))

        tiles = dict(tile=tile_size, overlap=tile_size // 4, vae_tile=tile_size, vae_overlap=tile_size // 8) \
            if tiling else {}
        out = memory.run_with_oom_retry(
            lambda: sample_x4_stage(upscaler.model, low, prompt, negative_prompt, steps=steps, guidance=guidance,
                                    noise_level=noise_level, sampler=sampler, callback=callback,
                                    sampler_options=sampler_options(sampler, eta),
                                    generator=torch.Generator().manual_seed(seed), **tiles, **start),
            [upscaler], "SR Upsampler 1024")
        out = pixels_to_images(out)
        return io.NodeOutput(out if begin is None else begin.finish(out))
