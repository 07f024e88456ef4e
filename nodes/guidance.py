"""CFG Guider: model + positive + negative + scale + dynamic thresholding -> a guider for a sampler node."""
from __future__ import annotations

from dataclasses import replace

from cascade_core.text import pad_chunks

from ._comfy import io
from .checks import CheckedNode
from .loaders import CATEGORY
from .types import CONDITIONING, GUIDER, UNET, GuiderSpec, ModelHandle, TextConditioning


class CFGGuider(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeCFGGuider", display_name="Cascade CFG Guider", category=CATEGORY,
            description="Classifier-free guidance with Imagen's dynamic thresholding for one cascade stage.",
            inputs=[
                UNET.Input("unet", tooltip="The stage's model: a base model for Base 64 Sampler, an IF-II "
                                           "super-resolution model for SR Upsampler 256."),
                CONDITIONING.Input("positive", tooltip="T5 Encode of the prompt."),
                CONDITIONING.Input("negative", tooltip="T5 Encode of the negative prompt (empty by default)."),
                io.Float.Input("cfg", default=7.0, min=1.0, max=30.0, step=0.1,
                               tooltip="Guidance scale. IF recommends 7 for the base stage and 4 for stage II; 1 "
                                       "switches guidance off (and skips the negative pass)."),
                io.Float.Input("threshold_percentile", default=0.95, min=0.5, max=1.0, step=0.005,
                               tooltip="Dynamic thresholding percentile p: each step's predicted image is clipped "
                                       "to its p-th absolute-value quantile (IF: 0.95)."),
                io.Float.Input("threshold_max", default=1.5, min=1.0, max=10.0, step=0.05,
                               tooltip="Dynamic thresholding maximum s: the clip level never exceeds it (IF: 1.5 "
                                       "for the base stage, 1.0 for stage II)."),
            ],
            outputs=[GUIDER.Output(display_name="guider")],
        )

    @classmethod
    def execute(cls, unet: ModelHandle, positive: TextConditioning, negative: TextConditioning, cfg: float,
                threshold_percentile: float, threshold_max: float) -> io.NodeOutput:
        if not positive.prompt.strip():
            raise ValueError("Cascade CFG Guider: the 'positive' conditioning comes from an empty prompt. Write a "
                             "prompt in the T5 Encode node wired to 'positive' (an empty prompt only makes sense as "
                             "the negative).")
        width = unet.model.config.text_dim
        for role, cond in (("positive", positive), ("negative", negative)):
            if cond.embeds.shape[-1] != width:
                raise ValueError(f"Cascade CFG Guider: the '{role}' embeddings are {cond.embeds.shape[-1]} wide but "
                                 f"this UNet takes {width}: encode with the T5 model that belongs to it.")
        chunks = max(c.embeds.shape[1] for c in (positive, negative)) // positive.filler.shape[0]
        positive, negative = (replace(c, embeds=pad_chunks(c.embeds, chunks, c.filler)) for c in (positive, negative))
        return io.NodeOutput(GuiderSpec(unet, positive, negative, cfg, threshold_percentile, threshold_max))
