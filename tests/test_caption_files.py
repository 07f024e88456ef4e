"""Caption prefix/suffix rule and image + caption pairs saved atomically (cascade_core.caption_files)."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cascade_core import caption_files
from cascade_core.caption_files import CaptionCountError, atomic_write, decorate_caption, match_captions, save_pairs


@pytest.mark.parametrize("caption,prefix,suffix,want", [
    ("a dog on grass", "", "", "a dog on grass"),
    ("a dog on grass", "ohwx", "", "ohwx, a dog on grass"),
    ("a dog on grass", "ohwx, ", "", "ohwx, a dog on grass"),
    (" a dog ", "  ohwx style,", ", 4k, sharp", "ohwx style, a dog, 4k, sharp"),
    ("", "ohwx", "photo", "ohwx, photo"),
    ("a cat", " ", " ", "a cat"),
])
def test_decorate_caption(caption, prefix, suffix, want):
    assert decorate_caption(caption, prefix, suffix) == want


def test_match_captions():
    assert match_captions(["a", "b"], 2) == ["a", "b"]
    assert match_captions(["all"], 3) == ["all"] * 3
    with pytest.raises(CaptionCountError, match="2 captions for 3 images"):
        match_captions(["a", "b"], 3)


def test_pairs_names_content_and_pixels(tmp_path):
    images = torch.rand(17, 5, 7, 3, generator=torch.Generator().manual_seed(0))
    captions = [f"caption {i}, ünïcode" for i in range(17)]
    names = save_pairs(tmp_path, "img", 3, images, captions)
    assert names == [f"img_{c:05}_.png" for c in range(3, 20)]
    assert sorted(os.listdir(tmp_path)) == sorted(names + [n.replace(".png", ".txt") for n in names])
    for i, name in enumerate(names):
        assert (tmp_path / name).with_suffix(".txt").read_bytes() == captions[i].encode("utf-8")
        with Image.open(tmp_path / name) as im:
            want = np.clip(255.0 * images[i].numpy(), 0, 255).astype(np.uint8)  # ComfyUI SaveImage's encoding
            assert np.array_equal(np.asarray(im), want)


def test_existing_files_are_never_overwritten(tmp_path):
    (tmp_path / "img_00001_.txt").write_text("someone else's")
    (tmp_path / "img_00002_.png").write_bytes(b"not ours")
    names = save_pairs(tmp_path, "img", 1, torch.rand(2, 4, 4, 3), ["a", "b"])
    assert names == ["img_00003_.png", "img_00004_.png"]
    assert (tmp_path / "img_00001_.txt").read_text() == "someone else's"
    assert (tmp_path / "img_00002_.png").read_bytes() == b"not ours"


def test_batch_num_token_and_gray_rgba(tmp_path):
    names = save_pairs(tmp_path, "b%batch_num%", 1, torch.rand(2, 4, 4, 4), ["x", "y"])
    assert names == ["b0_00001_.png", "b1_00002_.png"]
    with Image.open(tmp_path / names[0]) as im:
        assert im.mode == "RGBA"
    save_pairs(tmp_path, "g", 1, torch.rand(1, 4, 4, 1), ["z"])
    with Image.open(tmp_path / "g_00001_.png") as im:
        assert im.mode == "L"


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if str(dst).endswith(".png"):
            raise OSError("disk full")
        real_replace(src, dst)

    save_pairs(tmp_path, "ok", 1, torch.rand(1, 4, 4, 3), ["saved before"])
    monkeypatch.setattr(caption_files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_pairs(tmp_path, "img", 1, torch.rand(1, 4, 4, 3), ["a caption"])
    # the caption went in first, then the PNG failed: its caption is taken back, no temporary file is left,
    # and the pair saved before stays
    assert [str(c).rsplit("/", 1)[-1] for c in calls] == ["img_00001_.txt", "img_00001_.png"]
    assert sorted(os.listdir(tmp_path)) == ["ok_00001_.png", "ok_00001_.txt"]


def test_atomic_write_keeps_the_old_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write(target, b"old")

    def boom(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(caption_files.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new content")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.txt"]


def test_png_bytes_round_trip():
    image = torch.rand(3, 5, 3)
    with Image.open(io.BytesIO(caption_files.png_bytes(image))) as im:
        assert im.size == (5, 3)
