"""The bad-input corpus (``_bad_inputs.CASES``) through ``POST /prompt`` on a real server: every case ends in a
validation error (HTTP 400 with ``node_errors`` for the right node) or a run-time error of the right node, whose
message names the input or file and is not a bare library exception; odd but valid input succeeds; and after
every case a known-good graph still runs (the server survived, nothing it holds was broken)."""
from __future__ import annotations

import itertools

import pytest
from _bad_inputs import CASES, actionable, write_broken_files
from _checkpoints import FILE_T5_NAME, FILE_UNET, REPO_CLIP, REPO_GIT, REPO_IF_I, REPO_X4
from _client import PromptRejected
from _graphs import base_graph

pytestmark = pytest.mark.server
_SEEDS = itertools.count(1000)


@pytest.fixture(scope="module")
def broken(comfy):
    """The corpus's broken files in the server's model folders, removed again afterwards."""
    import shutil

    models = comfy.base / "models"
    good = {FILE_UNET: models / "diffusion_models" / FILE_UNET, FILE_T5_NAME: models / "text_encoders" / FILE_T5_NAME,
            REPO_IF_I: models / "pixel_cascade" / REPO_IF_I.rstrip("/"),
            REPO_GIT: models / "pixel_cascade" / REPO_GIT.rstrip("/"),
            REPO_CLIP: models / "pixel_cascade" / REPO_CLIP.rstrip("/"),
            REPO_X4: models / "pixel_cascade" / REPO_X4.rstrip("/")}
    before = {p for p in models.rglob("*")}
    write_broken_files(models, good)
    yield
    for p in sorted(set(models.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


@pytest.fixture(scope="module")
def display_names(comfy) -> dict:
    info = comfy.get("/object_info")
    return {k: v["display_name"] for k, v in info.items()}


def _check_rejected(case, body: dict) -> None:
    errors = body.get("node_errors") or {}
    assert case.node in errors, f"{case.name}: no error for node {case.node}: {body}"
    for error in errors[case.node]["errors"]:
        text = f"{error.get('details', '')} {error.get('extra_info', {}).get('input_name', '')}"
        problem = actionable(text, case.names)
        assert problem is None, f"{case.name}: validation message {problem}: {error}"


def _check_failed(case, run, display_names: dict) -> None:
    assert run.status == "error", f"{case.name}: expected an error, got {run.status}"
    error = run.error()
    assert error["node_id"] == case.node, f"{case.name}: error from node {error['node_id']}: {error}"
    message = error["exception_message"]
    problem = actionable(message, case.names, error.get("exception_type"))
    assert problem is None, f"{case.name}: run-time message {problem}: {message!r} ({error.get('exception_type')})"
    assert display_names.get(error["node_type"], error["node_type"]) in message, \
        f"{case.name}: the message does not name the node: {message!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_explained_and_the_server_survives(comfy, broken, display_names, case):
    try:
        run = comfy.run(case.graph({}), timeout=240)
    except PromptRejected as rejected:
        assert not case.ok, f"{case.name}: valid input rejected: {rejected.body}"
        assert rejected.status == 400
        _check_rejected(case, rejected.body)
    else:
        if case.ok:
            assert run.status == "success", f"{case.name}: {run.of_type('execution_error')}"
        else:
            _check_failed(case, run, display_names)
    after = comfy.run(base_graph(steps=1, width=32, height=32, seed=next(_SEEDS)))
    assert after.status == "success", f"after {case.name}: {after.of_type('execution_error')}\n{comfy.log_tail()}"


def test_corpus_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


def test_rapid_duplicate_submissions_all_succeed(comfy):
    graph = base_graph(steps=2, width=32, height=32, seed=next(_SEEDS))
    ids = [comfy.post_prompt(graph) for _ in range(6)]
    for prompt_id in ids:
        entry = comfy.history(prompt_id, timeout=120)
        assert entry["status"]["status_str"] == "success", entry["status"]
