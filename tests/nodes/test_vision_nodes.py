"""GIT Caption and Embedding Similarity nodes, in-process against ComfyUI's modules."""
from __future__ import annotations

import json

import pytest
import torch
from _vision_models import colour_images


def _load(node, name):
    return node.execute(model_name=name, device="default", dtype="default").result[0]


def test_caption_node_equals_core_and_shows_text(pack, model_dirs):
    from cascade_core.captioning import load_captioner
    from pixel_cascade.nodes.vision import GITCaption, GITLoader

    model = _load(GITLoader, "tiny-git/")
    images = torch.rand(3, 24, 20, 3, generator=torch.Generator().manual_seed(0))
    out = GITCaption.execute(model=model, image=images, max_new_tokens=8, num_beams=2, repetition_penalty=1.0,
                             prompt="")
    captions = out.result[0]
    direct = load_captioner(model_dirs / "pixel_cascade" / "tiny-git", device="cpu").caption(
        images, max_new_tokens=8, num_beams=2)
    assert captions == direct and len(captions) == 3
    assert out.ui == {"text": captions}
    assert GITCaption.define_schema().outputs[0].is_output_list


def test_similarity_node_ranks_colours(pack, model_dirs):
    from pixel_cascade.nodes.vision import CLIPLoader, EmbeddingSimilarity

    model = _load(CLIPLoader, "tiny-clip/")
    images = colour_images([(1, 0, 0), (0, 0, 1)])
    out = EmbeddingSimilarity.execute(model=model, image=images, texts="blue\n\n green \nred", score="softmax")
    score, matrix, best, ranking = out.result
    assert best == ["red", "blue"]
    data = json.loads(matrix)
    assert data["columns"] == ["blue", "green", "red"] and data["rows"] == ["image[0]", "image[1]"]
    assert score == pytest.approx(data["scores"][0][0]) and sum(data["scores"][0]) == pytest.approx(1, abs=1e-5)
    assert ranking.splitlines()[0].startswith("image[0]: red")
    pairs = EmbeddingSimilarity.execute(model=model, image=images, texts="", score="cosine",
                                        image_b=colour_images([(0, 0, 1), (1, 0, 0)]))
    assert pairs.result[2] == ["image_b[1]", "image_b[0]"]


def test_vision_node_errors(pack, model_dirs):
    from pixel_cascade.nodes.vision import CLIPLoader, EmbeddingSimilarity, GITCaption, GITLoader

    assert "model_name" in GITLoader.validate_inputs(model_name="tiny-clip/")  # a CLIP folder is no GIT model
    assert CLIPLoader.validate_inputs(model_name="tiny-clip/") is True
    clip = _load(CLIPLoader, "tiny-clip/")
    with pytest.raises(ValueError, match="nothing to compare with"):
        EmbeddingSimilarity.execute(model=clip, image=torch.rand(1, 8, 8, 3), texts=" \n", score="cosine")
    git = _load(GITLoader, "tiny-git/")
    with pytest.raises(ValueError, match="empty"):
        GITCaption.execute(model=git, image=torch.rand(0, 8, 8, 3), max_new_tokens=4, num_beams=1,
                           repetition_penalty=1.0, prompt="")
