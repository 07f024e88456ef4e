"""Save Image With Captions: each image as a PNG and its caption as a ``.txt`` of the same name, the way ComfyUI's
Save Image names and places files (a training-set folder in one node)."""
from __future__ import annotations

import os
from typing import Any

import torch

from cascade_core.caption_files import CaptionCountError, match_captions, save_pairs

from ._comfy import comfy_args, folder_paths, io
from .checks import CheckedNode, require_valid
from .loaders import CATEGORY

NAME = "Save Image With Captions"


def prefix_problem(filename_prefix: str) -> str | None:
    """Why ``filename_prefix`` would save outside ComfyUI's output folder (Save Image's own rule), or None."""
    output_dir = folder_paths.get_output_directory()
    folder = os.path.abspath(os.path.join(output_dir, os.path.dirname(os.path.normpath(filename_prefix))))
    if os.path.commonpath((output_dir, folder)) != output_dir:
        return (f"is {filename_prefix!r}, which points outside ComfyUI's output folder ({output_dir}); files may "
                "only be saved inside it: use a relative prefix such as 'dataset/img' without '..'")
    if not os.path.basename(os.path.normpath(filename_prefix)).strip():
        return f"is {filename_prefix!r}: it needs a file name part, e.g. 'dataset/img'"
    return None


def _single(value: Any) -> Any:
    """With ``is_input_list`` every input comes as a list: a widget's value is its first element."""
    return value[0] if isinstance(value, list) and value else value


def _pnginfo(hidden: Any) -> Any:
    """The PNG metadata Save Image writes (the prompt and the workflow), unless ComfyUI runs --disable-metadata."""
    if comfy_args.disable_metadata or hidden is None:
        return None
    import json

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if hidden.prompt is not None:
        info.add_text("prompt", json.dumps(hidden.prompt))
    for key, value in (hidden.extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    return info


class SaveImageWithCaptions(CheckedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PixelCascadeSaveImageWithCaptions", display_name=NAME, category=CATEGORY, is_output_node=True,
            is_input_list=True,
            description="Saves each image as <prefix>_<counter>_.png in the output folder, exactly as Save Image "
                        "names it, and its caption beside it as <prefix>_<counter>_.txt (a captioned dataset). "
                        "Files are written whole or not at all; existing files are never overwritten.",
            inputs=[
                io.Image.Input("images", tooltip="The images to save (one batch, or several batches in order)."),
                io.String.Input("captions", force_input=True,
                                tooltip="One caption per image, in order (GIT Caption's list output), or a single "
                                        "caption for every image."),
                io.String.Input("filename_prefix", default="PixelCascade/dataset",
                                tooltip="Where to save, inside ComfyUI's output folder: 'folder/name' gives "
                                        "folder/name_00001_.png + .txt. The same tokens as Save Image (%date:...%, "
                                        "%batch_num%) work."),
            ],
            outputs=[],
        )

    @classmethod
    def validate_inputs(cls, **values: Any) -> bool | str:
        # widget values come as one-element lists (is_input_list); inputs from links are not resolved yet
        single = {k: v[0] for k, v in values.items() if isinstance(v, list) and len(v) == 1}
        problems = super().validate_inputs(**single)
        prefix = single.get("filename_prefix")
        problem = prefix_problem(prefix) if isinstance(prefix, str) else None
        if problem:
            return (problems + " " if problems is not True else "") + f"{NAME}: input 'filename_prefix' {problem}."
        return problems

    @classmethod
    def execute(cls, images: list[torch.Tensor], captions: list[str], filename_prefix: list[str]) -> io.NodeOutput:
        prefix = _single(filename_prefix)
        require_valid(cls, filename_prefix=prefix)
        bad = next((i for i, c in enumerate(captions) if not isinstance(c, str)), None)
        if bad is not None:
            raise ValueError(f"{NAME}: input 'captions' item {bad} is a {type(captions[bad]).__name__}, not text.")
        problem = prefix_problem(prefix)
        if problem:
            raise ValueError(f"{NAME}: input 'filename_prefix' {problem}.")
        total = sum(int(batch.shape[0]) for batch in images)
        try:
            captions = match_captions(captions, total)
        except CaptionCountError as e:
            raise ValueError(f"{NAME}: inputs 'images' and 'captions': {e}.") from None
        output_dir, pnginfo = folder_paths.get_output_directory(), _pnginfo(cls.hidden)
        saved, start = [], 0
        for batch in images:
            folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
                prefix, output_dir, batch.shape[2], batch.shape[1])
            names = save_pairs(folder, filename, counter, batch, captions[start:start + batch.shape[0]],
                               pnginfo=pnginfo)
            saved += [{"filename": name, "subfolder": subfolder, "type": "output"} for name in names]
            start += batch.shape[0]
        return io.NodeOutput(ui={"images": saved, "text": captions})
