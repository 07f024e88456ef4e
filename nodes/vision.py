"""Caption and similarity nodes: GIT loader + GIT Caption, CLIP loader + Embedding Similarity."""
from __future__ import annotations

import json

import torch

from cascade_core.caption_files import decorate_caption
from cascade_core.captioning import load_captioner
from cascade_core.similarity import best_matches, load_embedder, rank

from . import memory, model_files
from ._comfy import io, model_management
from .checks import CheckedNode, require_valid
from .loaders import CATEGORY
from .types import CAPTIONER, EMBEDDER, ModelHandle

GIT_TYPES, EMBEDDER_TYPES = ("git",), ("clip", "siglip")
BATCH_SIZE = 16  # images per forward pass of the caption / embedding models (the batch_size inputs' default)
DEVICE_TIP = "default: ComfyUI's GPU (or the CPU with --cpu); cpu keeps the model off the GPU."
DTYPE_TIP = "default: float16/bfloat16 on the GPU, float32 on the CPU."


def batch_size_input(what: str) -> io.Int.Input:
    """The ``batch_size`` input of the caption / similarity / best-of-N nodes (optional: older workflows lack it)."""
    return io.Int.Input("batch_size", default=BATCH_SIZE, min=1, max=256, optional=True,
                        tooltip=f"Images {what} per forward pass: any number of images works; lower it if the "
                                "GPU runs out of memory, raise it for speed.")


def _load(kind: str, name: str, device: str, dtype: str, loader, node: str) -> ModelHandle:
    """Load a transformers folder from models/pixel_cascade under ComfyUI's memory management (reused if loaded)."""
    path = model_files.resolve(name, model_files.PACK_FOLDER)
    load_device = torch.device("cpu") if device == "cpu" else model_management.get_torch_device()
    offload = torch.device("cpu") if device == "cpu" else model_management.unet_offload_device()
    torch_dtype = memory.default_dtype(dtype, load_device)

    def build() -> tuple:
        model = loader(path, device=offload, dtype=torch_dtype)
        return model, model.model, name

    return memory.load_managed(kind, path, build, dtype=torch_dtype, load_device=load_device, offload_device=offload,
                               where=f"{node}: input 'model_name' ({name})")


class _FolderLoader(CheckedNode):
    """A loader of transformers folders from models/pixel_cascade filtered by ``config.json``'s model_type."""

    NODE_ID, DISPLAY, WHAT, MODEL_TYPES, KIND, OUTPUT, LOAD = "", "", "", (), "", None, None

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.DISPLAY, category=CATEGORY,
            description=f"Loads a {cls.WHAT} model folder (transformers layout) from models/pixel_cascade.",
            inputs=[
                io.Combo.Input("model_name", options=model_files.hf_folders(cls.MODEL_TYPES),
                               tooltip=f"A {cls.WHAT} folder in models/pixel_cascade (config.json, model.safetensors,"
                                       " tokenizer and preprocessor files), e.g. git-base-coco/ or "
                                       "clip-vit-base-patch32/; demo/git and demo/clip are the built-in demo's."),
                io.Combo.Input("device", options=["default", "cpu"], default="default", tooltip=DEVICE_TIP),
                io.Combo.Input("dtype", options=["default", "float32", "float16", "bfloat16"], default="default",
                               tooltip=DTYPE_TIP),
            ],
            outputs=[cls.OUTPUT.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model_name: str, device: str, dtype: str) -> io.NodeOutput:
        return io.NodeOutput(_load(cls.KIND, model_name, device, dtype, cls.LOAD, cls.DISPLAY))


class GITLoader(_FolderLoader):
    NODE_ID, DISPLAY, WHAT, MODEL_TYPES = "PixelCascadeGITLoader", "GIT Caption Model Loader", "GIT", GIT_TYPES
    MODEL_FOLDERS = {"model_name": "models/pixel_cascade/<folder>/ (a GIT model)"}
    KIND, OUTPUT, LOAD = "git", CAPTIONER, staticmethod(load_captioner)


class CLIPLoader(_FolderLoader):
    NODE_ID, DISPLAY, WHAT = "PixelCascadeCLIPLoader", "CLIP Embedding Model Loader", "CLIP or SigLIP"
    MODEL_FOLDERS = {"model_name": "models/pixel_cascade/<folder>/ (a CLIP or SigLIP model)"}
    MODEL_TYPES, KIND, OUTPUT, LOAD = EMBEDDER_TYPES, "embedder", EMBEDDER, staticmethod(load_embedder)


class GITCaption(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeGITCaption", display_name="GIT Caption", category=CATEGORY, is_output_node=True,
            description="Describes each image in words with a GIT model (one caption per image).",
            inputs=[
                CAPTIONER.Input("model", tooltip="A GIT model from GIT Caption Model Loader."),
                io.Image.Input("image", tooltip="Images to caption (a batch gives one caption each)."),
                io.Int.Input("max_new_tokens", default=30, min=1, max=256,
                             tooltip="Longest caption, in tokens (about 0.75 words each)."),
                io.Int.Input("num_beams", default=1, min=1, max=16,
                             tooltip="1 = greedy decoding; more beams search harder for a likely caption."),
                io.Float.Input("repetition_penalty", default=1.0, min=1.0, max=3.0, step=0.05,
                               tooltip="Values above 1 discourage repeated words."),
                io.String.Input("prompt", default="", tooltip="Optional text the caption continues (for the "
                                                              "VQA checkpoints: a question)."),
                io.String.Input("prefix", default="", optional=True,
                                tooltip="Put before every caption, e.g. a LoRA trigger word. Prefix, caption and "
                                        "suffix are trimmed and joined with ', ' (empty parts left out)."),
                io.String.Input("suffix", default="", optional=True,
                                tooltip="Put after every caption (e.g. style tags), joined with ', '."),
                batch_size_input("captioned"),
            ],
            outputs=[io.String.Output(display_name="caption", is_output_list=True,
                                      tooltip="One caption per image, as a list: a node taking a STRING runs once "
                                              "per caption.")],
        )

    @classmethod
    def execute(cls, model: ModelHandle, image: torch.Tensor, max_new_tokens: int, num_beams: int,
                repetition_penalty: float, prompt: str, prefix: str = "", suffix: str = "",
                batch_size: int = BATCH_SIZE) -> io.NodeOutput:
        require_valid(cls, prompt=prompt, prefix=prefix, suffix=suffix, batch_size=batch_size)
        try:
            model.model.prompt_ids(prompt, 1, max_new_tokens)
        except ValueError as e:
            raise ValueError(f"GIT Caption: input 'prompt': {e}.") from None
        captions = memory.run_with_oom_retry(
            lambda: model.model.caption(image, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                        repetition_penalty=repetition_penalty, prompt=prompt,
                                        batch_size=batch_size),
            [model], "GIT Caption")
        captions = [decorate_caption(c, prefix, suffix) for c in captions]
        return io.NodeOutput(captions, ui={"text": captions})


class EmbeddingSimilarity(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeEmbeddingSimilarity", display_name="Embedding Similarity", category=CATEGORY,
            is_output_node=True,
            description="Scores how well images match texts (or other images) in a CLIP-style embedding space.",
            inputs=[
                EMBEDDER.Input("model", tooltip="A CLIP or SigLIP model from CLIP Embedding Model Loader."),
                io.Image.Input("image", tooltip="The images to score (rows of the score matrix)."),
                io.String.Input("texts", multiline=True, default="",
                                tooltip="Texts to score against, one per line (empty lines are ignored)."),
                io.Image.Input("image_b", optional=True,
                               tooltip="Optional second image batch to score against (image-to-image similarity)."),
                io.Combo.Input("score", options=["cosine", "logits", "softmax"], default="cosine",
                               tooltip="cosine: similarity in -1..1; logits: the model's scaled scores; softmax: "
                                       "probability of each text per image (texts only)."),
                batch_size_input("embedded"),
            ],
            outputs=[
                io.Float.Output(display_name="score", tooltip="Score of the first image against the first column."),
                io.String.Output(display_name="matrix_json", tooltip="All scores as JSON (rows, columns, scores)."),
                io.String.Output(display_name="best_match", is_output_list=True,
                                 tooltip="For each image, the best-scoring text (or image_b index)."),
                io.String.Output(display_name="ranking", tooltip="Every image's columns from best to worst."),
            ],
        )

    @classmethod
    def execute(cls, model: ModelHandle, image: torch.Tensor, texts: str, score: str,
                image_b: torch.Tensor | None = None, batch_size: int = BATCH_SIZE) -> io.NodeOutput:
        require_valid(cls, texts=texts, batch_size=batch_size)
        lines = [t.strip() for t in texts.splitlines() if t.strip()]
        if not lines and image_b is None:
            raise ValueError("Embedding Similarity: nothing to compare with. Write texts (one per line) in 'texts' "
                             "or connect 'image_b'.")
        if image_b is not None and score != "cosine":
            raise ValueError("Embedding Similarity: input 'score' must be cosine when 'image_b' is connected "
                             "(logits and softmax are defined for texts).")
        scores = memory.run_with_oom_retry(lambda: _score_matrix(model.model, image, lines, image_b, score,
                                                                 batch_size),
                                           [model], "Embedding Similarity")
        columns = lines + ([f"image_b[{i}]" for i in range(image_b.shape[0])] if image_b is not None else [])
        rows = [f"image[{i}]" for i in range(scores.shape[0])]
        best = [m[0][1] for m in best_matches(scores, columns)]
        order = rank(scores).tolist()
        values = scores.tolist()
        ranking = "\n".join(f"{rows[i]}: " + ", ".join(f"{columns[j]} ({values[i][j]:.4f})" for j in row)
                            for i, row in enumerate(order))
        matrix = json.dumps({"rows": rows, "columns": columns, "score": score, "scores": values})
        return io.NodeOutput(float(values[0][0]), matrix, best, ranking, ui={"text": [ranking]})


def _score_matrix(embedder, image: torch.Tensor, texts: list[str], image_b, score: str,
                  batch_size: int) -> torch.Tensor:
    """[images, texts + image_b] scores; cosine for image pairs, the chosen kind for texts."""
    image_embeds = embedder.embed_images(image, batch_size=batch_size)
    parts = []
    if texts:
        parts.append(embedder.scores(image_embeds, embedder.embed_texts(texts, batch_size=batch_size),
                                     scale=score == "logits", softmax=score == "softmax"))
    if image_b is not None:
        parts.append(embedder.scores(image_embeds, embedder.embed_images(image_b, batch_size=batch_size)))
    return torch.cat(parts, dim=1).cpu()
