"""Files the shipped workflows' LoadImage nodes read from ComfyUI's ``input/`` folder in the server tests."""
from __future__ import annotations

from pathlib import Path

# example.png (ComfyUI ships one in input/; ours has alpha so LoadImage's MASK is not empty): 256 x 256 RGB
# gradient, transparent (mask 1 = repaint) in the square MASK_BOX = (top, left, bottom, right)
MASK_BOX = (80, 96, 176, 192)


DEMO_SOURCE = "demo_red_circle.png"  # the demo's "a large red circle on the left, on a white background", 64 px


def demo_source():
    """(RGB uint8 [64, 64, 3] of the rendered red circle, mask box (top, left, bottom, right) around it)."""
    from cascade_core.demo.oracle import measure
    from cascade_core.train.shapes import Scene, render

    rgb = render(Scene("red", "circle", "large", "left", "white"), 64).permute(1, 2, 0)
    m = measure(rgb)
    (cx, cy), half = m.centroid, m.bbox_side * 32 + 3
    box = (max(0, int(cy * 64 - half)), max(0, int(cx * 64 - half)), int(cy * 64 + half) + 1,
           int(cx * 64 + half) + 1)
    return (rgb * 255).round().to(dtype=__import__("torch").uint8).numpy(), box


def write_input_images(folder: Path) -> None:
    """Write ``example.png`` and the demo's source image (alpha 0 = repaint) into ``folder`` (ComfyUI's input
    directory of the test server)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:256, 0:256]
    rgba = np.stack([x, y, 255 - x, np.full_like(x, 255)], axis=-1).astype(np.uint8)
    top, left, bottom, right = MASK_BOX
    rgba[top:bottom, left:right, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "example.png")
    rgb, (top, left, bottom, right) = demo_source()
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    alpha[top:bottom, left:right] = 0
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(folder / DEMO_SOURCE)
