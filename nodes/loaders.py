"""Loader nodes: the T5 text encoder and the cascade UNets (base IF-I, super-resolution IF-II)."""
from __future__ import annotations

import torch

from cascade_core.text import load_text_encoder
from cascade_core.text.norm import tolerate_host_norms
from cascade_core.unet.inference import describe
from cascade_core.unet.loading import load_unet

from . import memory, model_files
from .checks import CheckedNode
from ._comfy import io, model_management
from .types import T5, UNET

CATEGORY = "Pixel Cascade"
UNET_DTYPES = ["default", "bfloat16", "float16", "float32"]
T5_DTYPES = UNET_DTYPES + ["float8_e4m3fn"]
WEIGHT_DTYPES = ["default", "float8_e4m3fn"]


class UNetLoader(CheckedNode):
    MODEL_FOLDERS = {"unet_name": "models/pixel_cascade/<repo>/ or models/diffusion_models/"}

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeUNetLoader", display_name="Cascade UNet Loader", category=CATEGORY,
            description="Loads a DeepFloyd IF UNet: a base model (IF-I-XL/L/M, 64 px) or a super-resolution "
                        "model (IF-II-L/M, 64 -> 256); or one of the built-in demo cascade's (demo/...).",
            inputs=[
                io.Combo.Input("unet_name", options=model_files.unet_choices(),
                               tooltip="demo/base64, demo/sr256, demo/sr1024: the built-in demo cascade's stages; "
                                       "or a repo folder in models/pixel_cascade (e.g. IF-I-XL-v1.0/, holding "
                                       "unet/) or a single .safetensors UNet file in models/diffusion_models."),
                io.Combo.Input("dtype", options=UNET_DTYPES, default="default",
                               tooltip="Compute precision (and of the weights unless weight_dtype says otherwise). "
                                       "default: bfloat16 on GPUs that support it, else float16; float32 on the "
                                       "CPU."),
                io.Combo.Input("weight_dtype", options=WEIGHT_DTYPES, default="default", optional=True,
                               tooltip="Storage of the weights. default: as dtype. float8_e4m3fn: 8-bit weights, "
                                       "half the memory of bfloat16 (IF-I-XL 8.6 -> 4.3 GB), each layer cast to "
                                       "dtype when it runs; images change slightly (see the README)."),
            ],
            outputs=[UNET.Output(display_name="unet")],
        )

    @classmethod
    def execute(cls, unet_name: str, dtype: str, weight_dtype: str = "default") -> io.NodeOutput:
        path = model_files.resolve(unet_name, model_files.UNET_FILES)
        load_device, offload = model_management.get_torch_device(), model_management.unet_offload_device()
        torch_dtype = memory.default_dtype(dtype, load_device)
        if weight_dtype == "float8_e4m3fn" and torch_dtype == torch.float32 and load_device.type != "cpu":
            torch_dtype = torch.bfloat16  # fp8 storage is for memory: compute in bf16 on the GPU
        stored = torch.float8_e4m3fn if weight_dtype == "float8_e4m3fn" else torch_dtype

        def build() -> tuple:
            unet = load_unet(path, device=offload, dtype=torch_dtype, weight_dtype=stored)
            memory.adopt_comfy_ops(unet, always_cast=stored != torch_dtype)  # ComfyUI's casting layers
            return unet, unet, f"{unet_name} ({describe(unet.config.to_dict())})"

        return io.NodeOutput(memory.load_managed(
            "unet", path, build, dtype=torch_dtype, load_device=load_device, offload_device=offload,
            where=f"Cascade UNet Loader: input 'unet_name' ({unet_name})",
            options=(stored,), partial=True, manual_cast_dtype=torch_dtype if stored != torch_dtype else None))


class T5Loader(CheckedNode):
    MODEL_FOLDERS = {"t5_name": "models/pixel_cascade/<repo>/ or models/text_encoders/"}

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeT5Loader", display_name="T5 Text Encoder Loader", category=CATEGORY,
            description="Loads the frozen T5-v1.1-XXL text encoder the IF stages are conditioned on.",
            inputs=[
                io.Combo.Input("t5_name", options=model_files.t5_choices(),
                               tooltip="demo/t5: the built-in demo's small T5; or an IF repo folder in "
                                       "models/pixel_cascade (holding text_encoder/ and tokenizer/) or a single file "
                                       "such as t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors in "
                                       "models/text_encoders."),
                io.Combo.Input("device", options=["default", "cpu"], default="default",
                               tooltip="default: ComfyUI's text-encoder device (the GPU unless --lowvram/--novram "
                                       "say otherwise). On a card smaller than T5 (9.5 GB in bf16, 4.9 GB in fp8) "
                                       "its layers that do not fit stream through the GPU as they run (usually "
                                       "faster than the CPU). cpu keeps T5 off the GPU entirely."),
                io.Combo.Input("dtype", options=T5_DTYPES, default="default",
                               tooltip="default: bfloat16 on GPU, float32 on CPU. float16 keeps the feed-forward "
                                       "output layers in float32 (T5 overflows otherwise). float8_e4m3fn stores "
                                       "weights in 8 bits (about 4.9 GB) and computes in bfloat16."),
            ],
            outputs=[T5.Output(display_name="t5")],
        )

    @classmethod
    def execute(cls, t5_name: str, device: str, dtype: str) -> io.NodeOutput:
        path = model_files.resolve(t5_name, model_files.T5_FILES)
        if device == "cpu":
            load_device = offload = torch.device("cpu")
        else:
            load_device = model_management.text_encoder_device()
            offload = model_management.text_encoder_offload_device()
        fp8 = dtype == "float8_e4m3fn"
        compute = memory.default_dtype("default" if fp8 else dtype, load_device, role="text")
        if fp8 and compute == torch.float32:
            compute = torch.bfloat16
        weight_dtype = torch.float8_e4m3fn if fp8 else None

        def build() -> tuple:
            encoder = load_text_encoder(path, device=offload, dtype=compute, weight_dtype=weight_dtype)
            memory.adopt_comfy_ops(encoder.model)  # Linear/Embedding: ComfyUI's casting layers
            tolerate_host_norms(encoder.model)  # T5's RMS norms: correct wherever a partial load leaves them
            encoder.execution_device = load_device
            return encoder, encoder.model, t5_name

        return io.NodeOutput(memory.load_managed("t5", path, build, dtype=compute, load_device=load_device,
                                                 where=f"T5 Text Encoder Loader: input 't5_name' ({t5_name})",
                                                 offload_device=offload, options=(weight_dtype,), partial=True))
