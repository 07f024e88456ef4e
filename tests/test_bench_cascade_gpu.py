"""bench/cascade_gpu.py --dry-run: the end-to-end GPU speed benchmark's code on tiny CPU models (both sides, the
JSON layout a GPU run writes, the Markdown table)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("diffusers")


def test_cascade_gpu_bench_dry_run(tmp_path):
    from bench.cascade_gpu import main

    out = tmp_path / "gpu.json"
    result = main(["--dry-run", "--out", str(out)])
    on_disk = json.loads(out.read_text())
    assert on_disk["dry_run"] is True and on_disk["steps"] == {"64": 2, "256": 2, "1024": 2}
    assert set(on_disk["stages"]) == {"t5", "64", "256", "1024", "total"}
    for name, row in on_disk["stages"].items():
        assert row["ours_s"] > 0 and row["diffusers_s"] > 0 and row["flops"] > 0, name
        assert row["ratio"] == pytest.approx(row["ours_s"] / row["diffusers_s"]), name
    assert on_disk["ratio_total"] == result["stages"]["total"]["ratio"]
    assert on_disk["stages"]["64"]["flops_per_step"] > 0
    assert set(on_disk["vae_decode_profile"]) == {"ours", "diffusers"}
    assert set(on_disk["variants"]) == {"text_work_per_step_64", "preset_50_25_25_total", "cuda_graphs_total"}
    table = out.with_suffix(".md").read_text()
    assert "| 64 |" in table and "| total |" in table
