"""Default sampling settings of the demo cascade: ``generate`` and the shipped demo workflow use these."""
from __future__ import annotations

from ..cascade.settings import StageSettings

__all__ = ["StageSettings", "STAGES", "NEGATIVE_PROMPT", "DEFAULT_PROMPT"]


# model folder (under DEMO_DIR) -> settings; the order is the cascade's
STAGES: dict[str, StageSettings] = {
    "base64": StageSettings(steps=25, guidance=4.0, threshold_max=1.5),
    "sr256": StageSettings(steps=15, guidance=2.0, threshold_max=1.0, noise_level=100),
    "sr1024": StageSettings(steps=8, guidance=1.0, threshold_max=1.0, noise_level=100),
}
NEGATIVE_PROMPT = ""
DEFAULT_PROMPT = "a large red circle on the left, on a white background"
