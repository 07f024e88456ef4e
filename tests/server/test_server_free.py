"""``POST /free`` (ComfyUI's "Unload models" / "Free model and node cache") empties our models too, and the next
run loads them again from disk and succeeds."""
from __future__ import annotations

import time

import pytest
from _workflows import BASIC, api_path, for_tests, load

pytestmark = pytest.mark.server


def _count(comfy, text: str) -> int:
    return comfy.log.read_text(errors="replace").count(text)


def _wait_for(comfy, text: str, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _count(comfy, text) < at_least:
        assert time.monotonic() < deadline, f"no {text!r} in the server log after {timeout} s\n{comfy.log_tail()}"
        time.sleep(0.2)


def _free(comfy) -> None:
    status, _ = comfy.request("POST", "/free", {"unload_models": True, "free_memory": True})
    assert status == 200


def test_free_unloads_our_models_and_the_next_run_reloads_them(comfy):
    api = for_tests(load(api_path(BASIC)), steps=2, prefix="free")
    _free(comfy)  # a clean slate: what earlier tests loaded is released
    time.sleep(2)
    loaded, released = _count(comfy, "Pixel Cascade: loaded "), _count(comfy, "Pixel Cascade: released ")
    assert comfy.run(api).status == "success", comfy.log_tail()
    n = _count(comfy, "Pixel Cascade: loaded ") - loaded
    assert n >= 2, comfy.log_tail()  # at least T5 and a UNet

    _free(comfy)
    _wait_for(comfy, "Pixel Cascade: released ", released + n)  # every model that run loaded is gone

    run = comfy.run(api)
    assert run.status == "success", f"{run.of_type('execution_error')}\n{comfy.log_tail()}"
    assert _count(comfy, "Pixel Cascade: loaded ") == loaded + 2 * n  # loaded again from disk, each once
