"""Default sampling settings of the demo cascade: ``generate`` and the shipped demo workflow use these."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSettings:
    """One stage's sampling settings (``noise_level``: SR stages' augmentation level of the low-res input)."""

    steps: int
    guidance: float
    sampler: str = "ddpm"
    schedule: str = "leading"
    threshold_percentile: float = 0.95
    threshold_max: float = 1.5
    noise_level: int = 0


# model folder (under DEMO_DIR) -> settings; the order is the cascade's
STAGES: dict[str, StageSettings] = {
    "base64": StageSettings(steps=25, guidance=4.0, threshold_max=1.5),
    "sr256": StageSettings(steps=15, guidance=2.0, threshold_max=1.0, noise_level=100),
    "sr1024": StageSettings(steps=8, guidance=1.0, threshold_max=1.0, noise_level=100),
}
NEGATIVE_PROMPT = ""
DEFAULT_PROMPT = "a large red circle on the left, on a white background"
