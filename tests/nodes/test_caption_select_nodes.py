"""Best of N, GIT Caption's prefix/suffix/batch_size and Save Image With Captions, in-process against ComfyUI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from _vision_models import colour_images
from PIL import Image


def _load(node, name):
    return node.execute(model_name=name, device="default", dtype="default").result[0]


@pytest.fixture()
def output_dir(tmp_path, pack):
    import folder_paths

    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path / "output"))
    os.makedirs(tmp_path / "output")
    yield tmp_path / "output"
    folder_paths.set_output_directory(old)


def test_best_of_n_returns_the_argmax_of_embedding_similarity(pack, model_dirs):
    from pixel_cascade.nodes.selection import BestOfN
    from pixel_cascade.nodes.vision import CLIPLoader, EmbeddingSimilarity

    clip = _load(CLIPLoader, "tiny-clip/")
    colours = [(0, 0, 1), (0.6, 0.2, 0.2), (0, 1, 0), (1, 0, 0), (0.3, 0.3, 0.3), (0.9, 0.1, 0.3)]
    images = colour_images(colours)
    out = BestOfN.execute(model=clip, image=images, texts="red\n", keep=3, batch_size=4)
    kept, scores, text, indices = out.result
    sim = EmbeddingSimilarity.execute(model=clip, image=images, texts="red", score="cosine").result[1]
    cos = torch.tensor(json.loads(sim)["scores"])[:, 0]
    assert indices[0] == int(cos.argmax())
    assert indices == torch.sort(cos, descending=True, stable=True).indices[:3].tolist()
    assert scores == pytest.approx(cos[indices].tolist(), abs=1e-5) and scores == sorted(scores, reverse=True)
    assert torch.equal(kept, images[indices])
    assert text.startswith(f"#1: image[{indices[0]}]")
    assert out.ui["scores"] == scores and out.ui["indices"] == indices and out.ui["text"] == [text]
    schema = BestOfN.define_schema()
    assert [o.is_output_list for o in schema.outputs] == [False, True, False, True]


def test_best_of_n_errors(pack, model_dirs):
    from pixel_cascade.nodes.selection import BestOfN
    from pixel_cascade.nodes.vision import CLIPLoader

    clip = _load(CLIPLoader, "tiny-clip/")
    with pytest.raises(ValueError, match=r"Best of N: input 'keep' is 3 but input 'image' holds only 2 images \(N < K"):
        BestOfN.execute(model=clip, image=torch.rand(2, 16, 16, 3), texts="red", keep=3)
    with pytest.raises(ValueError, match="Best of N: input 'texts' is empty"):
        BestOfN.execute(model=clip, image=torch.rand(2, 16, 16, 3), texts=" \n ", keep=1)
    assert "batch_size" in BestOfN.validate_inputs(keep=1, batch_size=0)


def test_git_caption_prefix_suffix_batch_size(pack, model_dirs):
    from pixel_cascade.nodes.vision import GITCaption, GITLoader

    git = _load(GITLoader, "tiny-git/")
    images = torch.rand(5, 24, 20, 3, generator=torch.Generator().manual_seed(0))
    args = dict(model=git, image=images, max_new_tokens=6, num_beams=1, repetition_penalty=1.0, prompt="")
    plain = GITCaption.execute(**args).result[0]
    batched = GITCaption.execute(**args, batch_size=2).result[0]
    assert batched == plain and len(plain) == 5
    tagged = GITCaption.execute(**args, prefix="ohwx,", suffix=" photo ", batch_size=3)
    assert tagged.result[0] == [", ".join(p for p in ("ohwx", c, "photo") if p) for c in plain]
    assert tagged.ui == {"text": tagged.result[0]}
    assert "batch_size" in GITCaption.validate_inputs(batch_size=0)


def test_save_image_with_captions_names_like_save_image(pack, output_dir):
    import nodes as comfy_nodes
    from pixel_cascade.nodes.saving import SaveImageWithCaptions

    images = torch.rand(18, 6, 10, 3, generator=torch.Generator().manual_seed(1))
    captions = [f"ohwx, caption {i}" for i in range(18)]
    ours = SaveImageWithCaptions.execute(images=[images[:10], images[10:]], captions=captions,
                                         filename_prefix=["set/cap"])
    theirs = comfy_nodes.SaveImage().save_images(images, filename_prefix="ref/cap")["ui"]["images"]
    saved = ours.ui["images"]
    assert [s["filename"] for s in saved] == [t["filename"] for t in theirs]  # the same names Save Image gives
    assert {s["subfolder"] for s in saved} == {"set"} and {s["type"] for s in saved} == {"output"}
    for i, s in enumerate(saved):
        png = output_dir / "set" / s["filename"]
        assert png.with_suffix(".txt").read_text(encoding="utf-8") == captions[i]
        with Image.open(png) as a, Image.open(output_dir / "ref" / theirs[i]["filename"]) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert ours.ui["text"] == captions
    again = SaveImageWithCaptions.execute(images=[images[:1]], captions=["one more"], filename_prefix=["set/cap"])
    assert again.ui["images"][0]["filename"] == "cap_00019_.png"  # the counter goes on, nothing overwritten
    assert not [n for n in os.listdir(output_dir / "set") if n.startswith(".")]  # no temporary files left


def test_save_image_with_captions_errors(pack, output_dir):
    from pixel_cascade.nodes.saving import SaveImageWithCaptions

    bad = SaveImageWithCaptions.validate_inputs(filename_prefix=["../escape/x"])
    assert "Save Image With Captions: input 'filename_prefix'" in bad and "outside" in bad
    assert "outside" in SaveImageWithCaptions.validate_inputs(filename_prefix=["/tmp/abs/x"])
    assert SaveImageWithCaptions.validate_inputs(filename_prefix=["ok/x"]) is True
    assert SaveImageWithCaptions.validate_inputs(filename_prefix=["ok/x"], captions=("14", 0), images=None) is True
    with pytest.raises(ValueError, match="input 'filename_prefix'.*outside ComfyUI's output folder"):
        SaveImageWithCaptions.execute(images=[torch.rand(1, 4, 4, 3)], captions=["a"],
                                      filename_prefix=["../../escape"])
    with pytest.raises(ValueError, match="inputs 'images' and 'captions': 2 captions for 3 images"):
        SaveImageWithCaptions.execute(images=[torch.rand(3, 4, 4, 3)], captions=["a", "b"], filename_prefix=["x"])
    assert os.listdir(output_dir) == []
    one = SaveImageWithCaptions.execute(images=[torch.rand(3, 4, 4, 3)], captions=["same"], filename_prefix=["x"])
    assert len(one.ui["images"]) == 3 and (output_dir / "x_00003_.txt").read_text() == "same"
