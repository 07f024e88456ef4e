"""Sampler nodes: Base 64 Sampler (text -> 64 px) and SR Upsampler 256 (image -> 4x); the shared SR helper."""
from __future__ import annotations

import torch

from cascade_core.image import images_to_pixels, pixels_to_images, preview
from cascade_core.samplers import SAMPLERS
from cascade_core.spacing import IF_STEP_STRINGS
from cascade_core.stage import sample_stage, schedule_sigmas, unet_guider
from cascade_core.unet.footprint import activation_bytes

from . import memory
from ._comfy import ProgressBar, io, model_management
from .checks import CheckedNode
from .loaders import CATEGORY
from .types import GUIDER, GuiderSpec

SCHEDULES = ["leading", "trailing", "linspace", *IF_STEP_STRINGS]
SCHEDULE_TIP = ("How the steps are spread over the 1000 training timesteps: leading/trailing/linspace use 'steps' "
                "(diffusers' spacings); smart27 ... super100 are DeepFloyd IF's tuned step lists and ignore 'steps'.")
SAMPLER_TIP = ("ddpm is IF's reference sampler (learned variance); dpmpp_2m is a second-order solver; ddim and euler "
               "are the same deterministic update (DDIM at eta 0), euler_ancestral is DDIM at eta 1 (fresh noise "
               "each step).")
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def _common_inputs(steps: int) -> list:
    return [
        io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                     tooltip="Random seed: the same seed, settings and models give the same image."),
        io.Int.Input("steps", default=steps, min=1, max=1000,
                     tooltip=f"Number of denoising steps for leading/trailing/linspace schedules (IF: {steps})."),
        io.Combo.Input("schedule", options=SCHEDULES, default="leading", tooltip=SCHEDULE_TIP),
        io.Combo.Input("sampler", options=list(SAMPLERS), default="ddpm", tooltip=SAMPLER_TIP),
    ]


def _run_stage(spec: GuiderSpec, node: str, *, seed: int, steps: int, schedule: str, sampler: str,
               **stage) -> torch.Tensor:
    """Load the model, build the guider on its device, sample with progress/previews/interrupts -> IMAGE."""
    unet = spec.unet.model
    batch = stage.get("batch_size") or stage["low_res"].shape[0]
    room = activation_bytes(unet.config, 2 * batch, stage["height"], stage["width"], unet.dtype)  # 2x: CFG
    size = f"{stage['width']}x{stage['height']}"
    memory.check_fits(f"{node}: a {size} output (batch {batch})", room, spec.unet.device,
                      "use a smaller image or batch (IF-II is made for 64 -> 256)")

    def go() -> torch.Tensor:
        device = spec.unet.device
        guider = unet_guider(unet, spec.positive.embeds.to(device), spec.negative.embeds.to(device), spec.scale,
                             threshold_percentile=spec.threshold_percentile, threshold_max=spec.threshold_max)
        sigmas = schedule_sigmas(guider.denoiser, steps, schedule)
        bar = ProgressBar(len(sigmas) - 1)

        def callback(info: dict) -> None:
            model_management.throw_exception_if_processing_interrupted()
            bar.update_absolute(info["i"] + 1, info["total"], ("JPEG", preview(info["denoised"]), 512))

        x = sample_stage(guider, sigmas, sampler=sampler, generator=torch.Generator().manual_seed(seed),
                         device=device, callback=callback, **stage)
        return pixels_to_images(x)

    return memory.run_with_oom_retry(go, [spec.unet], node, memory_required=room)


def _check_kind(spec: GuiderSpec, node: str, want_sr: bool) -> None:
    config = spec.unet.model.config
    if config.is_super_resolution != want_sr:
        kind = "a super-resolution (IF-II) model" if config.is_super_resolution else "a base (IF-I) model"
        fix = ("wire a base model (e.g. IF-I-XL-v1.0/) into the CFG Guider feeding this node, or use SR Upsampler 256"
               if want_sr is False else "wire a super-resolution model (e.g. IF-II-L-v1.0/) into the CFG Guider "
               "feeding this node, or use Base 64 Sampler")
        raise ValueError(f"{node}: input 'guider' holds {spec.unet.name}, {kind}: {fix}.")


class Base64Sampler(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeBase64Sampler", display_name="Base 64 Sampler", category=CATEGORY,
            description="Stage I: generates 64x64 images (other sizes in multiples of 8) from a base-model guider.",
            inputs=[GUIDER.Input("guider", tooltip="A Cascade CFG Guider holding a base model (IF-I).")]
            + _common_inputs(100) + [
                io.Int.Input("width", default=64, min=8, max=512, step=8,
                             tooltip="Width in pixels, a multiple of 8. IF-I is trained at 64; for other aspect "
                                     "ratios keep the short side 64 (e.g. 112x64 for 16:9)."),
                io.Int.Input("height", default=64, min=8, max=512, step=8,
                             tooltip="Height in pixels, a multiple of 8 (see width)."),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Images generated at once."),
            ],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, guider: GuiderSpec, seed: int, steps: int, schedule: str, sampler: str, width: int,
                height: int, batch_size: int) -> io.NodeOutput:
        _check_kind(guider, "Base 64 Sampler", want_sr=False)
        m = guider.unet.model.config.size_multiple
        if width % m or height % m:
            raise ValueError(f"Base 64 Sampler: inputs 'width' and 'height' must be multiples of {m} for this model "
                             f"(got {width}x{height}).")
        image = _run_stage(guider, "Base 64 Sampler", seed=seed, steps=steps, schedule=schedule, sampler=sampler,
                           batch_size=batch_size, height=height, width=width)
        return io.NodeOutput(image)


class SRUpsampler256(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeSRUpsampler256", display_name="SR Upsampler 256", category=CATEGORY,
            description="Stage II: 4x super-resolution (64 -> 256) of any image with an IF-II guider.",
            inputs=[
                GUIDER.Input("guider", tooltip="A Cascade CFG Guider holding a super-resolution model (IF-II)."),
                io.Image.Input("image", tooltip="The low-resolution image: the Base 64 Sampler's output or any "
                                                "image whose sides are multiples of 4 (the output is 4x larger)."),
                io.Int.Input("noise_level", default=250, min=0, max=999,
                             tooltip="Noise added to the low-res image before conditioning (IF: 250). Higher "
                                     "values let the model invent more detail and depart more from the input."),
            ] + _common_inputs(50),
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, guider: GuiderSpec, image: torch.Tensor, noise_level: int, seed: int, steps: int,
                schedule: str, sampler: str) -> io.NodeOutput:
        return io.NodeOutput(upsample_x4(guider, image, "SR Upsampler 256", noise_level=noise_level, seed=seed,
                                         steps=steps, schedule=schedule, sampler=sampler))


def upsample_x4(spec: GuiderSpec, image: torch.Tensor, node: str, *, noise_level: int, seed: int, steps: int,
                schedule: str, sampler: str) -> torch.Tensor:
    """4x pixel-space super-resolution of ComfyUI ``image`` [B, h, w, C] with a guider holding an SR UNet
    (IF-II, or the demo's stage III) -> IMAGE [B, 4h, 4w, 3]; shared by SR Upsampler 256 and 1024."""
    _check_kind(spec, node, want_sr=True)
    low = images_to_pixels(image)
    h, w = 4 * low.shape[2], 4 * low.shape[3]
    m = spec.unet.model.config.size_multiple
    if h % m or w % m:
        raise ValueError(f"{node}: input 'image' is {low.shape[3]}x{low.shape[2]}; this model needs sides that are "
                         f"multiples of {max(m // 4, 1)}: resize the image first.")
    return _run_stage(spec, node, seed=seed, steps=steps, schedule=schedule, sampler=sampler, low_res=low,
                      noise_level=noise_level, height=h, width=w)
