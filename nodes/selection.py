"""Best of N: keep the K candidates that match the prompt best (score with a CLIP/SigLIP model), before upscaling."""
from __future__ import annotations

import torch

from cascade_core.selection import SelectionError, best_of_n

from . import memory
from ._comfy import io
from .checks import CheckedNode, require_valid
from .loaders import CATEGORY
from .types import EMBEDDER, ModelHandle
from .vision import BATCH_SIZE, batch_size_input

NAME = "Best of N"


class BestOfN(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeBestOfN", display_name=NAME, category=CATEGORY, is_output_node=True,
            description="Scores a batch of candidate images against the prompt with a CLIP-style model and keeps "
                        "the best K, best first: generate many cheap 64 px drafts, upscale only the best.",
            inputs=[
                EMBEDDER.Input("model", tooltip="A CLIP or SigLIP model from CLIP Embedding Model Loader."),
                io.Image.Input("image", tooltip="The N candidates (e.g. Base 64 Sampler with batch_size N)."),
                io.String.Input("texts", multiline=True, default="",
                                tooltip="The prompt to score against. Several lines: several texts, and an image's "
                                        "score is its mean cosine similarity over them (empty lines ignored)."),
                io.Int.Input("keep", default=2, min=1, max=4096,
                             tooltip="K: how many images to keep. More than the batch holds is an error."),
                batch_size_input("scored"),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The K best images, best first."),
                io.Float.Output(display_name="scores", is_output_list=True,
                                tooltip="Their cosine similarities to the texts, best first (a list of K)."),
                io.String.Output(display_name="scores_text",
                                 tooltip="Kept images with their scores, then the others' scores."),
                io.Int.Output(display_name="indices", is_output_list=True,
                              tooltip="The kept images' positions in the input batch (0-based), best first."),
            ],
        )

    @classmethod
    def execute(cls, model: ModelHandle, image: torch.Tensor, texts: str, keep: int,
                batch_size: int = BATCH_SIZE) -> io.NodeOutput:
        require_valid(cls, texts=texts, keep=keep, batch_size=batch_size)
        lines = [t.strip() for t in texts.splitlines() if t.strip()]
        if not lines:
            raise ValueError(f"{NAME}: input 'texts' is empty: connect the prompt (or write it), one text per line.")
        if image.ndim == 4 and image.shape[0] < keep:
            raise ValueError(f"{NAME}: input 'keep' is {keep} but input 'image' holds only {image.shape[0]} "
                             f"image{'s' if image.shape[0] != 1 else ''} (N < K): lower keep or raise the batch_size "
                             "of the node that makes the images.")
        try:
            images, selection = memory.run_with_oom_retry(
                lambda: best_of_n(model.model, image, lines, keep, batch_size=batch_size), [model], NAME)
        except SelectionError as e:
            raise ValueError(f"{NAME}: {e}.") from None
        summary = selection.summary()
        ui = {"text": [summary], "scores": selection.scores, "indices": selection.indices,
              "all_scores": selection.all_scores}
        return io.NodeOutput(images, selection.scores, summary, selection.indices, ui=ui)
