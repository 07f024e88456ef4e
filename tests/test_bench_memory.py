"""bench/memory.py --dry-run: the GPU memory benchmark's code on tiny CPU models (rows, JSON layout, table)."""
import json

import pytest


def _check(result: dict, path, policies, budgets) -> None:
    on_disk = json.loads(path.read_text())
    assert on_disk["dry_run"] is True and on_disk["steps"] == result["steps"]
    ours = [r for r in on_disk["rows"] if r["impl"] == "ours"]
    assert {(r["policy"], r["budget_gib"]) for r in ours} == {(p, b) for p in policies for b in budgets}
    for r in on_disk["rows"]:
        assert {"policy", "budget_gib", "ok", "peak_gib", "seconds"} <= set(r)
    assert all(r["ok"] for r in ours), [r.get("error") for r in ours]
    assert set(on_disk["model_gib_real"]) == {"t5", "base", "sr", "x4"}
    assert 8 < on_disk["model_gib_real"]["t5"] < 9.5 and "reload_s_frozen" in on_disk["t5_offload"]


def test_memory_bench_dry_run_quick(tmp_path):
    from bench.memory import POLICIES, main

    out = tmp_path / "memory.json"
    result = main(["--dry-run", "--no-diffusers", "--budgets", "8,card", "--steps", "1", "--out", str(out)])
    _check(result, out, (*POLICIES, "auto+fp8"), [8.0, None])
    auto = {r["budget_gib"]: r["modes"] for r in result["rows"] if r["policy"] == "auto"}
    assert set(auto[None].values()) == {"keep"}
    wide = [(r["budget_gib"], r["height"], r["width"]) for r in result["rows"] if r.get("height") != r.get("width")]
    assert wide == [(None, 8, 16), (None, 12, 8), (8.0, 8, 16)]  # 112x64 and 64x96 scaled to the 8 px dry-run base


@pytest.mark.slow
def test_memory_bench_dry_run_full(tmp_path):
    from bench.memory import POLICIES, main

    out = tmp_path / "memory.json"
    result = main(["--dry-run", "--out", str(out)])
    _check(result, out, (*POLICIES, "auto+fp8"), [8.0, 16.0, None])
    diffusers = {r["policy"] for r in result["rows"] if r["impl"] == "diffusers"}
    assert diffusers == {"diffusers_no_offload", "diffusers_model_cpu_offload", "diffusers_sequential_cpu_offload"}
    assert next(r for r in result["rows"] if r["policy"] == "diffusers_no_offload")["ok"]
