"""A short run of ``bench/soak.py`` (its own ComfyUI server): prompts, interrupts and a SIGKILL all survived.

The full run (200 prompts, 50 interrupts, 3 kills; results in ``bench/results/soak.json``) is
``python bench/soak.py``; this one takes ~2-3 minutes on two cores, so it is marked ``slow`` as well as ``server``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _runtime import REPO

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_short_soak_survives_prompts_interrupts_and_kill(comfyui_dir, tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(REPO / "bench" / "soak.py"), "--prompts", "20", "--interrupts", "5", "--kills", "1",
           "--big", "1", "--steps", "2", "--comfyui-dir", str(comfyui_dir), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=420, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["soak"]["failures"] == []
    # a leak of a model or an image per prompt would be tens of MiB a prompt; the 5 % goal is the full run's
    assert r["soak"]["growth_pct_after_warmup"] < 50, r["soak"]["rss_mb_every_10"]
    assert r["interrupts"]["next_run_ok_and_bit_identical"] == 5, r["interrupts"]["bad"]
    assert r["kills"]["survived"] == 1, r["kills"]["records"]
    assert r["kills"]["undecodable_pngs"] == [] and r["kills"]["model_files_changed"] == []
