"""Best-of-N selection (cascade_core.selection): the arg-max, descending order, stable ties, named errors."""
from __future__ import annotations

import pytest
import torch

from cascade_core.selection import Selection, SelectionError, best_of_n, image_scores, select_best


def test_select_best_is_the_argmax_in_descending_order():
    scores = torch.tensor([0.1, 0.7, -0.2, 0.5, 0.3])
    sel = select_best(scores, 1)
    assert sel.indices == [int(scores.argmax())] and sel.scores == [pytest.approx(0.7)]
    sel = select_best(scores, 3)
    assert sel.indices == [1, 3, 4]
    assert sel.scores == sorted(sel.scores, reverse=True)
    assert sel.all_scores == pytest.approx(scores.tolist())


def test_random_scores_match_topk():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        scores = torch.randn(9, generator=g)
        assert select_best(scores, 4).indices == torch.topk(scores, 4).indices.tolist()


def test_ties_keep_the_lower_index_first():
    assert select_best([0.5, 0.9, 0.5, 0.9, 0.5], 4).indices == [1, 3, 0, 2]


def test_keep_all_and_errors():
    assert select_best([1.0, 2.0], 2).indices == [1, 0]
    with pytest.raises(SelectionError, match="keep is 3 but only 2 images came in"):
        select_best([1.0, 2.0], 3)
    with pytest.raises(SelectionError, match="keep must be at least 1"):
        select_best([1.0], 0)
    with pytest.raises(SelectionError, match=r"\[N\]"):
        select_best(torch.zeros(2, 2), 1)
    with pytest.raises(SelectionError, match="NaN at images \\[1\\]"):
        select_best([0.0, float("nan")], 1)


def test_several_texts_score_is_the_mean():
    sim = torch.tensor([[0.2, 0.4], [0.5, 0.0], [0.1, 0.1]])
    assert image_scores(sim).tolist() == pytest.approx([0.3, 0.25, 0.1])
    with pytest.raises(SelectionError):
        image_scores(torch.zeros(3, 0))


class _FakeEmbedder:
    """Scores each image by its mean red value (image-dependent, text-independent)."""

    def __init__(self):
        self.calls = []

    def similarity(self, images, texts, *, batch_size):
        self.calls.append((images.shape[0], list(texts), batch_size))
        return images[..., 0].mean(dim=(1, 2))[:, None].expand(-1, len(texts))


def test_best_of_n_returns_the_best_images_best_first():
    red = torch.tensor([0.2, 0.9, 0.1, 0.6, 0.9])
    images = red[:, None, None, None].expand(5, 4, 6, 3).clone()
    images[..., 1] = torch.arange(5.0)[:, None, None]  # tag each image with its index
    emb = _FakeEmbedder()
    kept, sel = best_of_n(emb, images, ["a red thing", "red"], keep=3, batch_size=2)
    assert sel.indices == [1, 4, 3] and kept.shape == (3, 4, 6, 3)
    assert kept[:, 0, 0, 1].tolist() == [1.0, 4.0, 3.0]
    assert emb.calls == [(5, ["a red thing", "red"], 2)]
    assert isinstance(sel, Selection) and sel.summary().splitlines()[0] == "#1: image[1] 0.9000"


def test_best_of_n_checks_k_before_scoring():
    emb = _FakeEmbedder()
    with pytest.raises(SelectionError, match="keep is 4 but only 2 images"):
        best_of_n(emb, torch.rand(2, 4, 4, 3), ["x"], keep=4)
    assert emb.calls == []
