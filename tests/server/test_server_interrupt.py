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


@pytest.mark.parametrize("stage,node", [("sr256", "10"), ("x4", "31")])
def test_interrupt_at_each_later_stage(comfy, stage, node):
    """An interrupt during the SR stages ends the run too, and the same graph then runs to the end."""
    from _graphs import empty_image, sr_graph, x4_graph

    make = (lambda steps: sr_graph(empty_image(16, 16), steps=steps)) if stage == "sr256" else \
        (lambda steps: x4_graph(empty_image(16, 16), steps=steps))
    sent: list[bool] = []

    def interrupt(server, run, kind, data):
        if kind == "progress" and data.get("node") == node and not sent:
            sent.append(server.request("POST", "/interrupt", {})[0] == 200)

    run = comfy.run(make(900), on_message=interrupt, timeout=300)
    assert sent == [True], f"no progress from node {node}"
    assert run.of_type("execution_interrupted") and run.status == "error"
    after = comfy.run(make(2))
    assert after.status == "success", after.of_type("execution_error")
