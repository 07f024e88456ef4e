"""Sampler nodes: Base 64 Sampler (text -> 64 px) and SR Upsampler 256 (image -> 4x); the shared SR helper."""
from __future__ import annotations

import torch

from cascade_core.image import images_to_pixels, pixels_to_images, preview
from cascade_core.inpaint import StartImage, match_batches, prepare_mask, start_image, strength_sigmas
from cascade_core.samplers import SAMPLERS
from cascade_core.spacing import IF_STEP_STRINGS
from cascade_core.stage import sample_stage, schedule_sigmas, unet_guider
from cascade_core.unet.footprint import activation_bytes

from . import memory
from ._comfy import ProgressBar, io, model_management
from .checks import CheckedNode, require_valid
from .loaders import CATEGORY
from .types import GUIDER, GuiderSpec

SCHEDULES = ["leading", "trailing", "linspace", "dpm", *IF_STEP_STRINGS]
SCHEDULE_TIP = ("How the steps are spread over the 1000 training timesteps: leading/trailing/linspace use 'steps' "
                "(diffusers' spacings); dpm uses 'steps' as diffusers' DPM-Solver does for IF (linspace, skipping "
                "the noisiest end): pair it with dpmpp_2m, e.g. 25 steps; smart27 ... super100 are DeepFloyd IF's "
                "tuned step lists and ignore 'steps'.")
SAMPLER_TIP = ("ddpm is IF's reference sampler (learned variance); dpmpp_2m is a second-order solver for fewer steps "
               "(with the dpm schedule); ddim is deterministic at eta 0 (the same update as euler) and adds fresh "
               "noise each step at eta 1 (the same as euler_ancestral): see 'eta'.")
ETA_TIP = ("ddim only: how much fresh noise each step adds, 0 = deterministic (= euler), 1 = as much as DDPM's "
           "posterior (= euler_ancestral). The other samplers ignore it.")
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


START_TIPS = {
    "start_image": "Optional start image (image-to-image / inpainting, as diffusers' IF img2img pipelines). It is "
                   "stretched (bilinear) to this stage's output size if it has another size. One image for the "
                   "whole batch, or one per image.",
    "mask": "Optional inpainting mask (needs start_image): ComfyUI MASK, 1 = repaint, 0 = keep (LoadImage's MASK: "
            "its transparent pixels, e.g. painted in the mask editor). Resized to the output size "
            "(area-weighted), then binarised at 0.5; outside it the output keeps the start image's pixels "
            "exactly. An all-one mask repaints everything (plain image-to-image); an all-zero mask is an error "
            "(nothing to repaint).",
    "denoise": "Strength 0..1 with a start image: how much of the schedule runs (int(steps * denoise) steps; the "
               "start image is noised to the first of them). 1.0 runs every step; lower keeps more of the image. "
               "Without a start image leave it at 1.0.",
}


def eta_input() -> io.Float.Input:
    """The optional ``eta`` input of the sampler nodes (DDIM's stochasticity)."""
    return io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.05, optional=True, tooltip=ETA_TIP)


def sampler_options(sampler: str, eta: float) -> dict | None:
    """The sampler's extra arguments a node passes: DDIM's eta, nothing for the others."""
    return {"eta": float(eta)} if sampler == "ddim" else None


def start_inputs(note: str = "") -> list:
    """The optional img2img / inpainting inputs shared by the three sampler nodes (``note`` ends each tooltip)."""
    return [io.Image.Input("start_image", optional=True, tooltip=START_TIPS["start_image"] + note),
            io.Mask.Input("mask", optional=True, tooltip=START_TIPS["mask"] + note),
            io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                           tooltip=START_TIPS["denoise"] + note)]


def prepare_start(node_cls: type, node: str, height: int, width: int, batch: int, start: torch.Tensor | None,
                  mask: torch.Tensor | None, denoise: float) -> tuple[StartImage | None, int]:
    """Check the optional start inputs and bring them to the output size: (StartImage or None, batch)."""
    require_valid(node_cls, denoise=denoise)
    if start is None:
        if mask is not None:
            raise ValueError(f"{node}: input 'mask' needs a 'start_image' (the picture to inpaint): connect the "
                             "image the mask was painted on (e.g. the same LoadImage), or disconnect the mask.")
        if denoise != 1.0:
            raise ValueError(f"{node}: input 'denoise' is {denoise} but no 'start_image' is connected: denoise "
                             "applies to a start image; connect one or set denoise to 1.0.")
        return None, batch
    if mask is not None and mask.ndim != 3:
        raise ValueError(f"{node}: input 'mask' has shape {tuple(mask.shape)}; a ComfyUI MASK is [B, H, W] (from "
                         "LoadImage, the mask editor or a mask node): convert it with a mask node first.")
    try:
        begin = start_image(start, height, width)
    except ValueError as e:
        raise ValueError(f"{node}: input 'start_image': {e}") from None
    if mask is not None:
        try:
            begin = StartImage(begin.pixels, begin.images, prepare_mask(mask, height, width))
        except ValueError as e:
            raise ValueError(f"{node}: input 'mask': {e}") from None
        if not bool(begin.mask.any()):
            raise ValueError(f"{node}: input 'mask' is all zeros at {width}x{height}: nothing to repaint (1 = "
                             "repaint). LoadImage gives an all-zero mask for an image without transparency: paint "
                             "the region in the mask editor, or disconnect 'mask' to vary the whole image.")
    try:
        pixels, masks, batch = match_batches(batch, begin.pixels, begin.mask)
    except ValueError as e:
        raise ValueError(f"{node}: inputs 'start_image' / 'mask' / batch: {e}") from None
    return StartImage(pixels, begin.images, masks), batch


def _run_stage(spec: GuiderSpec, node: str, *, seed: int, steps: int, schedule: str, sampler: str,
               begin: StartImage | None = None, denoise: float = 1.0, eta: float = 0.0, **stage) -> torch.Tensor:
    """Load the model, build the guider on its device, sample with progress/previews/interrupts -> IMAGE
    (from ``begin``'s start image and mask at strength ``denoise`` when given)."""
    unet = spec.unet.model
    batch = stage.get("batch_size") or stage["low_res"].shape[0]
    if begin is not None:
        batch = max(batch, begin.pixels.shape[0])
        stage.update(init_image=begin.pixels, mask=begin.mask, batch_size=batch)
    room = activation_bytes(unet.config, 2 * batch, stage["height"], stage["width"], unet.dtype)  # 2x: CFG
    size = f"{stage['width']}x{stage['height']}"
    memory.check_fits(f"{node}: a {size} output (batch {batch})", room, spec.unet.device,
                      "use a smaller image or batch (IF-II is made for 64 -> 256)")

    def go() -> torch.Tensor:
        device = spec.unet.device
        guider = unet_guider(unet, spec.positive.embeds.to(device), spec.negative.embeds.to(device), spec.scale,
                             threshold_percentile=spec.threshold_percentile, threshold_max=spec.threshold_max)
        sigmas = schedule_sigmas(guider.denoiser, steps, schedule)
        if begin is not None:  # trimmed here (not in sample_stage) so the progress bar counts the steps that run
            try:
                sigmas = strength_sigmas(sigmas, denoise)
            except ValueError as e:
                raise ValueError(f"{node}: input 'denoise': {e}.") from None
        bar = ProgressBar(len(sigmas) - 1)

        def callback(info: dict) -> None:
            model_management.throw_exception_if_processing_interrupted()
            bar.update_absolute(info["i"] + 1, info["total"], ("JPEG", preview(info["denoised"]), 512))

        x = sample_stage(guider, sigmas, sampler=sampler, generator=torch.Generator().manual_seed(seed),
                         device=device, callback=callback, sampler_options=sampler_options(sampler, eta), **stage)
        out = pixels_to_images(x)
        return out if begin is None else begin.finish(out)

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
                io.Int.Input("batch_size", default=1, min=1, max=64,
                             tooltip="Images generated at once (with a start image or mask batch: 1 follows "
                                     "their batch, else it must equal it)."),
            ] + start_inputs() + [eta_input()],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, guider: GuiderSpec, seed: int, steps: int, schedule: str, sampler: str, width: int,
                height: int, batch_size: int, start_image: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, denoise: float = 1.0, eta: float = 0.0) -> io.NodeOutput:
        node = "Base 64 Sampler"
        _check_kind(guider, node, want_sr=False)
        m = guider.unet.model.config.size_multiple
        if width % m or height % m:
            raise ValueError(f"Base 64 Sampler: inputs 'width' and 'height' must be multiples of {m} for this model "
                             f"(got {width}x{height}).")
        begin, batch_size = prepare_start(cls, node, height, width, batch_size, start_image, mask, denoise)
        image = _run_stage(guider, node, seed=seed, steps=steps, schedule=schedule, sampler=sampler,
                           batch_size=batch_size, height=height, width=width, begin=begin, denoise=denoise, eta=eta)
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
            ] + _common_inputs(50) + start_inputs() + [eta_input()],
            outputs=[io.Image.Output(display_name="image")],
        )

    @classmethod
    def execute(cls, guider: GuiderSpec, image: torch.Tensor, noise_level: int, seed: int, steps: int,
                schedule: str, sampler: str, start_image: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, denoise: float = 1.0, eta: float = 0.0) -> io.NodeOutput:
        return io.NodeOutput(upsample_x4(guider, image, "SR Upsampler 256", noise_level=noise_level, seed=seed,
                                         steps=steps, schedule=schedule, sampler=sampler, start=start_image,
                                         mask=mask, denoise=denoise, node_cls=cls, eta=eta))


def upsample_x4(spec: GuiderSpec, image: torch.Tensor, node: str, *, noise_level: int, seed: int, steps: int,
                schedule: str, sampler: str, start: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                denoise: float = 1.0, node_cls: type | None = None, eta: float = 0.0) -> torch.Tensor:
    """4x pixel-space super-resolution of ComfyUI ``image`` [B, h, w, C] with a guider holding an SR UNet
    (IF-II, or the demo's stage III) -> IMAGE [B, 4h, 4w, 3]; shared by SR Upsampler 256 and 1024. ``start`` /
    ``mask`` / ``denoise``: the optional image-to-image / inpainting inputs (at the 4x output size)."""
    _check_kind(spec, node, want_sr=True)
    low = images_to_pixels(image)
    h, w = 4 * low.shape[2], 4 * low.shape[3]
    m = spec.unet.model.config.size_multiple
    if h % m or w % m:
        raise ValueError(f"{node}: input 'image' is {low.shape[3]}x{low.shape[2]}; this model needs sides that are "
                         f"multiples of {max(m // 4, 1)}: resize the image first.")
    begin, _ = prepare_start(node_cls or SRUpsampler256, node, h, w, low.shape[0], start, mask, denoise)
    return _run_stage(spec, node, seed=seed, steps=steps, schedule=schedule, sampler=sampler, low_res=low,
                      noise_level=noise_level, height=h, width=w, begin=begin, denoise=denoise, eta=eta)
