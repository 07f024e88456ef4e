"""The README's Python example runs as written, on tiny models (paths, step counts and sizes shrunk)."""
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3, "README lost its python examples (Cascade, ModelManager, stage by stage)"
    return blocks


def _run(code: str, replacements) -> dict:
    for real, tiny in replacements:
        assert real in code, f"README example no longer contains {real!r}: update this test with it"
        code = code.replace(real, tiny)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README, on purpose
    return scope


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    pytest.importorskip("diffusers")
    from tiny_models import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("readme"))


def test_readme_cascade_example_runs(tiny_root):
    """The first example: Cascade over the tiny IF-I (with its T5), IF-II and x4 upscaler, 8 -> 32 -> 128 px."""
    root = f"{tiny_root}/pixel_cascade"
    scope = _run(_examples()[0], [
        ('text_encoder="models/pixel_cascade/IF-I-XL-v1.0"', f'text_encoder="{root}/tiny-IF-I"'),
        ('base="models/pixel_cascade/IF-I-XL-v1.0"', f'base="{root}/tiny-IF-I"'),
        ("models/pixel_cascade/IF-II-L-v1.0", f"{root}/tiny-IF-II"),
        ("models/pixel_cascade/stable-diffusion-x4-upscaler", f"{root}/tiny-x4-upscaler"),
        ("seed=0)", "seed=0, size=8, steps=2)"), ("print(", "str(")])
    images = scope["images"]
    assert {k: tuple(v.shape) for k, v in images.items()} == {8: (1, 8, 8, 3), 32: (1, 32, 32, 3),
                                                             128: (1, 128, 128, 3)}
    report = scope["cascade"].report()
    assert [m.name for m in report.models] == ["text_encoder", "base", "sr", "upscaler", "upscaler_vae",
                                               "upscaler_text"]


def test_readme_python_example_runs(tiny_root):
    """The stage-by-stage example."""
    code = _examples()[2]
    scope = _run(code, [("models/pixel_cascade/IF-I-XL-v1.0", f"{tiny_root}/pixel_cascade/tiny-IF-I"),
                        ("models/pixel_cascade/IF-II-L-v1.0", f"{tiny_root}/pixel_cascade/tiny-IF-II"),
                        ('"smart100"', '"fast27"'), ('"smart50"', "4"),
                        ("height=256, width=256", "height=32, width=32")])
    assert tuple(scope["img64"].shape) == (1, 3, 64, 64)
    redo, start = scope["redo"], scope["img64"]
    outside = (scope["mask"] < 0.5).expand_as(redo)  # inpainting keeps the start image exactly outside the mask
    assert tuple(redo.shape) == (1, 3, 64, 64) and torch.equal(redo[outside], start[outside])
    assert tuple(scope["img256"].shape) == (1, 3, 32, 32)
