"""The one place the pack checks node inputs: every widget value against the node's own schema.

ComfyUI 0.3.75 does not check V3 combo values, lets NaN through its min/max checks (every comparison with NaN is
false) and hands lone UTF-16 surrogates (valid in JSON) to the tokenizers, which fail with bare library errors.
:class:`CheckedNode` (the base of all our nodes) answers ComfyUI's validation with messages that name the node,
the input and what to do; values wired from other nodes arrive only at run time, where :func:`require_valid`
applies the same checks.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

from ._comfy import io

MAX_TEXT_CHARS = 20_000  # a prompt longer than this is a mistake (a pasted file?), not a prompt
_SHOWN = 8


def _choices(options: list) -> str:
    shown = ", ".join(repr(o) for o in options[:_SHOWN])
    return shown + (f", ... ({len(options)} in all)" if len(options) > _SHOWN else "")


def text_problem(value: Any, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Why ``value`` cannot be used as text, or None: not a string, lone surrogates, far too long."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not text"
    bad = next((i for i, c in enumerate(value) if 0xD800 <= ord(c) <= 0xDFFF), None)
    if bad is not None:
        return (f"holds an invalid character at position {bad} (a lone UTF-16 surrogate, {value[bad]!r}, which "
                "no text encoding can represent): remove it or paste the text again")
    if len(value) > max_chars:
        return f"is {len(value):,} characters long; at most {max_chars:,} are accepted: shorten it"
    return None


def _number_problem(inp, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {value!r}, not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"is {value}, not a finite number"
    low, high = getattr(inp, "min", None), getattr(inp, "max", None)
    if low is not None and value < low:
        return f"is {value}, below its minimum {low}"
    if high is not None and value > high:
        return f"is {value}, above its maximum {high}"
    return None


def input_problems(node: type[io.ComfyNode], values: dict[str, Any]) -> list[str]:
    """Messages for the values in ``values`` that ``node``'s schema does not allow (None values, i.e. inputs
    wired from other nodes at validation time, are skipped)."""
    schema = node.define_schema()
    hints: dict[str, str] = getattr(node, "MODEL_FOLDERS", {})
    problems = []
    for inp in schema.inputs:
        name = inp.id
        if values.get(name) is None:
            continue
        value = values[name]
        if isinstance(inp, io.Combo.Input):
            options = list(inp.options or [])
            if value in options:
                continue
            if name in hints:
                problem = (f"is {value!r}: no such model. Put the file or repo folder in {hints[name]} and refresh "
                           f"(available: {_choices(options) if options else 'none found'})")
            else:
                problem = f"is {value!r}, not one of its choices ({_choices(options)})"
        elif isinstance(inp, (io.Int.Input, io.Float.Input)):
            problem = _number_problem(inp, value)
        elif isinstance(inp, io.String.Input):
            problem = text_problem(value)
        elif isinstance(inp, io.Boolean.Input):
            problem = None if isinstance(value, bool) else f"is {value!r}, not true or false"
        else:
            problem = None
        if problem:
            problems.append(f"{schema.display_name}: input '{name}' {problem}.")
    return problems


def require_valid(node: type[io.ComfyNode], **values: Any) -> None:
    """Raise a ``ValueError`` naming the node and input for the first value the schema does not allow (the
    run-time twin of validation, for values wired from other nodes)."""
    problems = input_problems(node, values)
    if problems:
        raise ValueError(problems[0])


class CheckedNode(io.ComfyNode):
    """Base of the pack's nodes: ComfyUI's validation step checks every widget value with :func:`input_problems`.
    ``MODEL_FOLDERS``: model-name inputs -> where their files go (for the message when a name is not found);
    subclasses add node-specific checks in :meth:`extra_problems`."""

    MODEL_FOLDERS: ClassVar[dict[str, str]] = {}

    @classmethod
    def extra_problems(cls, values: dict[str, Any]) -> list[str]:
        """Node-specific problems beyond the schema (e.g. wiring rules); ``values`` as ComfyUI validates them."""
        return []

    @classmethod
    def validate_inputs(cls, **values: Any) -> bool | str:
        problems = input_problems(cls, values) + cls.extra_problems(values)
        return True if not problems else " ".join(problems)
