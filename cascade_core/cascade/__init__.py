"""The whole cascade for Python users: ``Cascade(text_encoder=..., base=..., sr=..., upscaler=...)(prompts)``."""
from .pipeline import Cascade
from .settings import IF_STAGES, PIXEL_SR_STAGE, StageSettings

__all__ = ["Cascade", "StageSettings", "IF_STAGES", "PIXEL_SR_STAGE"]
