"""``POST /interrupt`` during a long sampling run ends it early (``execution_interrupted``), and the next
prompt runs normally."""
from __future__ import annotations

import time

import pytest
from _graphs import base_graph

pytestmark = pytest.mark.server

LONG = 1000  # steps: far more than can run in the time the interrupt takes to land


def test_interrupt_ends_sampling_and_server_recovers(comfy):
    interrupted_at: list[float] = []

    def interrupt_on_first_step(server, run, kind, data):
        if kind == "progress" and data.get("node") == "6" and not interrupted_at:
            status, _ = server.request("POST", "/interrupt", {})
            assert status == 200
            interrupted_at.append(time.monotonic())

    run = comfy.run(base_graph(steps=LONG, seed=1), on_message=interrupt_on_first_step, timeout=300)
    assert interrupted_at, f"no progress from the sampler before it ended: {[t for t, _ in run.messages]}"
    assert run.of_type("execution_interrupted"), [t for t, _ in run.messages]
    assert not run.of_type("execution_success")
    assert run.status == "error"
    ended = time.monotonic() - interrupted_at[0]
    steps_run = max(d["value"] for d in run.of_type("progress") if d.get("node") == "6")
    assert steps_run < LONG, "sampling ran to the end despite the interrupt"
    assert ended < 30, f"interrupt took {ended:.1f} s to end the run"

    after = comfy.run(base_graph(steps=2, seed=2))
    assert after.status == "success", after.of_type("execution_error")
    assert comfy.get("/queue") == {"queue_running": [], "queue_pending": []}
