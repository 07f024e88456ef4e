"""T5 Encode: a prompt -> T5 embeddings (positive or negative conditioning)."""
from __future__ import annotations

from . import memory
from ._comfy import io
from .checks import CheckedNode, require_valid
from .loaders import CATEGORY
from .types import CONDITIONING, T5, ModelHandle, TextConditioning


class T5Encode(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeT5Encode", display_name="T5 Encode", category=CATEGORY,
            description="Encodes a prompt with T5 (77 tokens; longer prompts are truncated with a warning). Use "
                        "one for the positive prompt and one, usually empty, for the negative.",
            inputs=[
                T5.Input("t5", tooltip="The text encoder from a T5 Text Encoder Loader."),
                io.String.Input("text", multiline=True, default="",
                                tooltip="The prompt. Leave empty for the negative prompt: DeepFloyd IF uses the "
                                        "empty prompt's embedding as the unconditional one."),
                io.Boolean.Input("clean_caption", default=False,
                                 tooltip="Apply DeepFloyd IF's caption cleaning (strips URLs, HTML, handles and "
                                         "punctuation noise). Text is always lower-cased, as IF does."),
                io.Boolean.Input("long_prompt", default=False, optional=True,
                                 tooltip="Encode every token of a prompt longer than 77 tokens, in chunks of 77 "
                                         "(IF was trained on 77; off: the prompt is truncated with a warning)."),
            ],
            outputs=[CONDITIONING.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, t5: ModelHandle, text: str, clean_caption: bool, long_prompt: bool = False) -> io.NodeOutput:
        require_valid(cls, text=text)  # also when the text is wired from another node
        def encode():
            embeds, _ = t5.model.encode([text], clean_caption=clean_caption, long_prompt=long_prompt)
            return embeds, t5.model.filler()

        embeds, filler = memory.run_with_oom_retry(encode, [t5], "T5 Encode")
        return io.NodeOutput(TextConditioning(embeds=embeds.cpu(), prompt=text, encoder=t5.name, filler=filler.cpu()))
