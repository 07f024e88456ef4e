"""Stage III nodes: the SD x4 upscaler loader and SR Upsampler 1024 (image -> 4x with its own CLIP prompt)."""
from __future__ import annotations

import torch
from torch import nn

from cascade_core.image import images_to_pixels, pixels_to_images, preview
from cascade_core.samplers import SAMPLERS
from cascade_core.upscaler.loading import load_upscaler
from cascade_core.upscaler.stage import sample_x4_stage

from . import memory, model_files
from ._comfy import ProgressBar, io, model_management
from .loaders import CATEGORY, UNET_DTYPES
from .types import UPSCALER, ModelHandle

CHECKPOINTS = "checkpoints"


def upscaler_choices() -> list[str]:
    """Repo folders holding the x4 upscaler (unet/ + vae/ + low_res_scheduler/), then checkpoint files."""
    return model_files.repo_folders("low_res_scheduler") + model_files.files(CHECKPOINTS)


class UpscalerLoader(io.ComfyNode):
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
    def validate_inputs(cls, upscaler_name: str) -> bool | str:
        return model_files.check_choice(upscaler_name, upscaler_choices(), "upscaler_name",
                                        "models/pixel_cascade/<repo>/ or models/checkpoints/")

    @classmethod
    def execute(cls, upscaler_name: str, dtype: str) -> io.NodeOutput:
        path = model_files.resolve(upscaler_name, CHECKPOINTS)
        load_device, offload = model_management.get_torch_device(), model_management.unet_offload_device()
        torch_dtype = memory.default_dtype(dtype, load_device)

        def build() -> tuple:
            model = load_upscaler(path, device=offload, dtype=torch_dtype)
            parts = nn.ModuleDict({"unet": model.unet, "vae": model.vae})
            if model.text is not None:
                parts["text"] = model.text.model
            return model, parts, upscaler_name

        return io.NodeOutput(memory.load_managed("upscaler", path, build, dtype=torch_dtype, load_device=load_device,
                                                 offload_device=offload))


class SRUpsampler1024(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeSRUpsampler1024", display_name="SR Upsampler 1024", category=CATEGORY,
            description="Stage III: 4x super-resolution (256 -> 1024) of any image with the SD x4 upscaler and "
                        "its own CLIP prompt.",
            inputs=[
                UPSCALER.Input("upscaler", tooltip="The x4 upscaler from x4 Upscaler Loader."),
                io.Image.Input("image", tooltip="The image to upscale (stage II's 256 px output, or any image with "
                                                "sides that are multiples of 4)."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What the image shows; encoded by the upscaler's own CLIP text encoder."),
                io.String.Input("negative_prompt", multiline=True, default="",
                                tooltip="What to avoid (empty by default)."),
                io.Int.Input("steps", default=75, min=1, max=1000, tooltip="Denoising steps (IF / diffusers: 75)."),
                io.Float.Input("guidance", default=9.0, min=1.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance scale (9 as IF uses)."),
                io.Int.Input("noise_level", default=100, min=0, max=350,
                             tooltip="Noise added to the input before upscaling (IF docs: 100; at most 350). Higher "
                                     "values invent more detail."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Random seed."),
                io.Combo.Input("sampler", options=list(SAMPLERS), default="ddim",
                               tooltip="ddim is the upscaler's reference sampler."),
                io.Boolean.Input("tiling", default=False,
                                 tooltip="Denoise and decode in overlapping tiles: much less GPU memory, a little "
                                         "slower. Turn on if you run out of memory."),
                io.Int.Input("tile_size", default=64, min=16, max=512, step=8,
                             tooltip="Tile size in input pixels (x4 in the output) when tiling is on."),
            ],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, upscaler: ModelHandle, image: torch.Tensor, prompt: str, negative_prompt: str, steps: int,
                guidance: float, noise_level: int, seed: int, sampler: str, tiling: bool,
                tile_size: int) -> io.NodeOutput:
        low = images_to_pixels(image)
        if low.shape[2] % 4 or low.shape[3] % 4:
            raise ValueError(f"SR Upsampler 1024: input 'image' is {low.shape[3]}x{low.shape[2]}; the x4 upscaler "
                             "needs sides that are multiples of 4: resize or crop the image first.")
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
                                    generator=torch.Generator().manual_seed(seed), **tiles),
            [upscaler], "SR Upsampler 1024")
        return io.NodeOutput(pixels_to_images(out))
