"""The shipped demo models (``cascade_core.demo.DEMO_DIR``) for tests that need them: skip with a clear reason
when they are absent, except under ``CI=true``, where a missing demo folder fails."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SUBFOLDERS = ("t5", "base64", "sr256", "sr1024", "git", "clip")


def require_demo(*names: str) -> Path:
    """DEMO_DIR, after checking that ``names`` (default: all six demo subfolders) are there."""
    from cascade_core.demo import DEMO_DIR

    missing = [n for n in names or SUBFOLDERS if not (Path(DEMO_DIR) / n).is_dir()]
    if missing:
        reason = (f"demo models {missing} not in {DEMO_DIR} (they ship with the pack; train them with "
                  "python -m cascade_core.train)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " (CI=true: failing instead of skipping)", pytrace=False)
        pytest.skip(reason)
    return Path(DEMO_DIR)
