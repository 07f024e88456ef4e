"""The built-in demo cascade (trained with cascade_core.train on the procedural shapes data)."""
from pathlib import Path

DEMO_DIR = Path(__file__).parent / "models"  # t5/ base64/ sr256/ sr1024/ git/ clip/: ordinary model folders
