"""bench/best_of_n.py's bookkeeping on made-up verdicts (no models): which candidates each rule keeps and the means."""
from __future__ import annotations

import pytest

from bench.best_of_n import picks, summarise


def _verdicts(scores: list[float]) -> list[dict]:
    keys = ("color", "shape", "position", "size")
    out = []
    for s in scores:
        right = round(s * 4)
        v = {k: float(i < right) for i, k in enumerate(keys)}
        out.append({**v, "score": right / 4, "all4": float(right == 4)})
    return out


def test_picks_and_summary():
    verdicts = _verdicts([0.25, 0.5, 1.0, 0.0])
    chosen = picks(verdicts, clip_order=[1, 2, 0, 3], k=2)
    assert chosen == {"first_k": [0, 1], "mean_of_n": [0, 1, 2, 3], "clip_best_k": [1, 2], "oracle_best_k": [2, 1]}
    records = [{"verdicts": verdicts, "picks": {"1": picks(verdicts, [1, 2, 0, 3], 1), "2": chosen}},
               {"verdicts": _verdicts([1.0, 0.0, 0.0, 0.0]),
                "picks": {"1": picks(_verdicts([1.0, 0, 0, 0]), [3, 0, 1, 2], 1),
                          "2": picks(_verdicts([1.0, 0, 0, 0]), [3, 0, 1, 2], 2)}}]
    summary = summarise(records, [1, 2])
    one = summary["1"]
    assert one["first_k"]["score"] == pytest.approx((0.25 + 1.0) / 2)
    assert one["clip_best_k"]["score"] == pytest.approx((0.5 + 0.0) / 2)
    assert one["oracle_best_k"]["score"] == pytest.approx(1.0) and one["oracle_best_k"]["all4"] == pytest.approx(1.0)
    assert one["gain"]["score"] == pytest.approx(one["clip_best_k"]["score"] - one["first_k"]["score"])
    assert one["gain_se"]["score"] == pytest.approx(0.625)  # gains +0.25, -1.0: sd 0.884, / sqrt(2)
    assert summary["2"]["mean_of_n"]["score"] == pytest.approx((1.75 / 4 + 0.25) / 2)
