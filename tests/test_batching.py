"""batch_size in the embedder: any number of images in chunks of batch_size (one forward pass each), same result."""
from __future__ import annotations

import pytest
import torch
from _vision_models import colour_clip, make_images, save_clip

from cascade_core.selection import best_of_n
from cascade_core.similarity import load_embedder


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return load_embedder(save_clip(tmp_path_factory.mktemp("clip") / "colour-clip", colour_clip()), device="cpu")


def test_embed_images_in_chunks(embedder, monkeypatch):
    images = make_images(17, 20, 24, seed=3)
    whole = embedder.embed_images(images, batch_size=32)
    sizes = []
    forward = embedder.model.get_image_features

    def counting(pixel_values):
        sizes.append(pixel_values.shape[0])
        return forward(pixel_values=pixel_values)

    monkeypatch.setattr(embedder.model, "get_image_features", counting)
    chunked = embedder.embed_images(images, batch_size=5)
    assert sizes == [5, 5, 5, 2]
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        embedder.embed_images(images, batch_size=0)


def test_best_of_n_on_a_real_embedder_is_the_argmax(embedder):
    images = make_images(16, 20, 20, seed=5)
    kept, sel = best_of_n(embedder, images, ["red"], keep=4, batch_size=3)
    cos = embedder.similarity(images, ["red"])[:, 0]
    assert sel.indices == torch.sort(cos, descending=True, stable=True).indices[:4].tolist()
    assert torch.equal(kept, images[sel.indices])
