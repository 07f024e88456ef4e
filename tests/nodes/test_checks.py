"""nodes/checks.py, the one place node inputs are checked: combos, numbers (NaN/inf, range), text, in-process."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("values,needle", [
    ({"dtype": "bogus"}, "input 'dtype' is 'bogus', not one of its choices"),
    ({"dtype": 3}, "input 'dtype' is 3"),
    ({"unet_name": "nope/"}, "input 'unet_name' is 'nope/': no such model. Put the file or repo folder in models/"),
    ({"weight_dtype": "int4"}, "input 'weight_dtype'"),
])
def test_loader_combos(pack, model_dirs, values, needle):
    from pixel_cascade.nodes.loaders import UNetLoader

    message = UNetLoader.validate_inputs(**{"unet_name": "tiny-IF-I/", "dtype": "default", **values})
    assert isinstance(message, str) and message.startswith("Cascade UNet Loader: ") and needle in message


@pytest.mark.parametrize("name,value,needle", [
    ("cfg", float("nan"), "not a finite number"),
    ("cfg", float("inf"), "not a finite number"),
    ("cfg", 0.5, "below its minimum 1.0"),
    ("threshold_max", 11.0, "above its maximum 10.0"),
    ("cfg", "7", "not a number"),
    ("cfg", True, "not a number"),
])
def test_numbers(pack, name, value, needle):
    from pixel_cascade.nodes.guidance import CFGGuider

    message = CFGGuider.validate_inputs(**{name: value})
    assert isinstance(message, str) and f"input '{name}'" in message and needle in message


def test_text_and_wired_values(pack):
    from pixel_cascade.nodes.checks import MAX_TEXT_CHARS, require_valid
    from pixel_cascade.nodes.text import T5Encode

    assert T5Encode.validate_inputs(text="🦊 a fox\x00", clean_caption=False) is True
    assert T5Encode.validate_inputs(t5=None, text=None) is True  # wired inputs are None at validation
    assert "lone UTF-16 surrogate" in T5Encode.validate_inputs(text="a \ud800 fox")
    assert "characters long" in T5Encode.validate_inputs(text="x" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(ValueError, match="T5 Encode: input 'text' holds an invalid character at position 2"):
        require_valid(T5Encode, text="a \udfff")
