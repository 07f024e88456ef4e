"""The README's Python example runs as written, on tiny models (paths, step counts and sizes shrunk)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    return blocks[0]


def test_readme_python_example_runs(tmp_path):
    pytest.importorskip("diffusers")
    from tiny_models import write_tiny_models

    write_tiny_models(tmp_path)
    code = _example()
    for real, tiny in (("models/pixel_cascade/IF-I-XL-v1.0", f"{tmp_path}/pixel_cascade/tiny-IF-I"),
                       ("models/pixel_cascade/IF-II-L-v1.0", f"{tmp_path}/pixel_cascade/tiny-IF-II"),
                       ('"smart100"', '"fast27"'), ('"smart50"', "4"),
                       ("height=256, width=256", "height=32, width=32")):
        assert real in code, f"README example no longer contains {real!r}: update this test with it"
        code = code.replace(real, tiny)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README, on purpose
    assert tuple(scope["img64"].shape) == (1, 3, 64, 64)
    assert tuple(scope["img256"].shape) == (1, 3, 32, 32)
