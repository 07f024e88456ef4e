"""Per-stage sampling settings of a :class:`~cascade_core.cascade.Cascade` and DeepFloyd IF's defaults."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StageSettings", "IF_STAGES", "PIXEL_SR_STAGE", "ROLES"]

ROLES = ("base", "sr", "upscaler")  # the cascade's stages in order: 64 px, x4 (256), x4 (1024)


@dataclass(frozen=True)
class StageSettings:
    """One stage's sampling settings (``noise_level``: SR stages' augmentation level of the low-res input;
    ``schedule``: a diffusers spacing using ``steps``, or an IF step string such as ``smart100``)."""

    steps: int
    guidance: float
    sampler: str = "ddpm"
    schedule: str = "leading"
    threshold_percentile: float = 0.95
    threshold_max: float = 1.5
    noise_level: int = 0


# DeepFloyd IF's published settings (diffusers' IFPipeline / IFSuperResolutionPipeline defaults; the x4 upscaler
# as the IF docs run it); the "upscaler" entry applies to the SD x4 upscaler, PIXEL_SR_STAGE to a pixel-space UNet
IF_STAGES: dict[str, StageSettings] = {
    "base": StageSettings(steps=100, guidance=7.0, threshold_max=1.5),
    "sr": StageSettings(steps=50, guidance=4.0, threshold_max=1.0, noise_level=250),
    "upscaler": StageSettings(steps=75, guidance=9.0, sampler="ddim", noise_level=100),
}
PIXEL_SR_STAGE = StageSettings(steps=50, guidance=4.0, threshold_max=1.0, noise_level=250)
