"""ModelManager placement and accounting under a simulated budget (device "cpu" with a device_budgets entry):
LRU eviction order, per-model placement, auto's choices, the report, fp8 byte counts."""
import logging

import pytest
import torch
from torch import nn

from _offload_models import Stack, stack_bytes
from cascade_core.offload import GIB, MemoryBudgetError, ModelManager, choose_modes

SIZE = stack_bytes()


def _manager(policy="model", models=3, budget=None, **kw):
    m = ModelManager(policy, device_budgets={"cpu": budget if budget is not None else 2 * SIZE}, **kw)
    for i in range(models):
        m.add(f"m{i}", Stack(seed=i), device="cpu")
    return m


def _states(m):
    r = m.report()
    return {p.name: p.state for p in r.models}


def test_sizes_counted_from_parameters_and_buffers():
    assert ModelManager().add("a", Stack(), device="cpu") is not None
    m = _manager(models=1)
    assert m.report().model("m0").weight_bytes == SIZE


def test_lru_eviction_order_under_a_simulated_budget(caplog):
    m = _manager()  # room for two of three
    m.use("m0")
    m.use("m1")
    assert _states(m) == {"m0": "resident", "m1": "resident", "m2": "offloaded"}
    m.use("m0")  # m1 is now the least recently used
    with caplog.at_level(logging.INFO, logger="cascade_core.offload.manager"):
        m.use("m2")
    assert _states(m) == {"m0": "resident", "m1": "offloaded", "m2": "resident"}
    ev = m.report().last_eviction
    assert (ev.evicted, ev.for_model, ev.device) == ("m1", "m2", "cpu")
    assert ev.needed_bytes == SIZE and ev.used_bytes == 2 * SIZE and ev.budget_bytes == 2 * SIZE
    assert "m1 left cpu to make room for m2" in ev.reason
    assert any("evicting" in r.message and "m1" in r.message for r in caplog.records)
    m.use("m1")  # m0 (used before m2) goes
    assert _states(m)["m0"] == "offloaded" and m.report().evictions == 2


def test_calling_a_model_loads_it_and_counts_as_use():
    m = _manager()
    m.use("m0")
    m.use("m1")
    module = m._entries["m2"].module
    module(torch.ones(1, 16))  # the forward pre-hook makes it ready: m0 is evicted
    assert _states(m) == {"m0": "offloaded", "m1": "resident", "m2": "resident"}


def test_held_models_are_not_evicted():
    m = _manager()
    with m.using("m0"):
        m.use("m1")
        m.use("m2")  # m0 is held: m1 goes although m0 is older
        assert _states(m) == {"m0": "resident", "m1": "offloaded", "m2": "resident"}


def test_model_policy_rejects_a_model_larger_than_the_budget():
    m = _manager(budget=SIZE // 2, models=1)
    with pytest.raises(MemoryBudgetError, match="m0.*block"):
        m.use("m0")
    assert _states(m)["m0"] == "offloaded"


def test_keep_ignores_the_budget_and_never_evicts():
    m = _manager("keep", budget=SIZE)
    for name in ("m0", "m1", "m2"):
        m.use(name)
    assert set(_states(m).values()) == {"resident"} and m.report().evictions == 0
    assert m.report().device_bytes == {"cpu": 3 * SIZE}


def test_per_model_placement_and_devices():
    m = ModelManager("model", device_budgets={"cpu": 10 * SIZE})
    m.add("t5", Stack(seed=1), device="cpu", policy="keep")
    m.add("base", Stack(seed=2), device="cpu")
    assert m.device_of("t5") == torch.device("cpu")
    assert m.mode_of("t5") == "keep" and m.mode_of("base") == "model"
    with pytest.raises(ValueError, match="already registered"):
        m.add("t5", Stack())
    with pytest.raises(KeyError, match="registered"):
        m.use("nope")
    with pytest.raises(TypeError, match="nn.Module"):
        m.add("x", object())
    with pytest.raises(ValueError, match="policy"):
        m.add("y", Stack(), policy="lazy")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            m.add("z", Stack(), device="cuda")


def test_cpu_without_a_budget_is_unlimited():
    m = ModelManager("auto", budget_gib=0.000001)  # applies to accelerators only
    m.add("a", Stack(), device="cpu")
    assert m.mode_of("a") == "keep" and m.report().budgets == {"cpu": None}


@pytest.mark.parametrize("sizes, usable, expected", [
    ({"t5": 9, "base": 8, "sr": 2}, None, {"t5": "keep", "base": "keep", "sr": "keep"}),
    ({"t5": 9, "base": 8, "sr": 2}, 20, {"t5": "keep", "base": "keep", "sr": "keep"}),
    ({"t5": 9, "base": 8, "sr": 2}, 10, {"t5": "model", "base": "model", "sr": "model"}),
    ({"t5": 9, "base": 8, "sr": 2}, 7, {"t5": "block", "base": "block", "sr": "model"}),
])
def test_auto_choices(sizes, usable, expected):
    assert choose_modes({k: v * GIB for k, v in sizes.items()}, None if usable is None else usable * GIB) == expected


def test_auto_resolves_per_device_from_budget_and_sizes():
    m = ModelManager("auto", device_budgets={"cpu": 2 * SIZE})
    m.add("small", Stack(width=8), device="cpu")
    m.add("big", Stack(width=32), device="cpu")
    assert stack_bytes(32) > 2 * SIZE
    assert m.mode_of("small") == "model" and m.mode_of("big") == "block"
    m2 = ModelManager("auto", device_budgets={"cpu": 100 * SIZE})
    m2.add("a", Stack(), device="cpu")
    m2.add("b", Stack(), device="cpu")
    assert m2.mode_of("a") == m2.mode_of("b") == "keep"


def test_report_contents_and_str():
    m = _manager()
    m.use("m0")
    m.use("m1")
    m.use("m2")
    r = m.report()
    assert r.policy == "model"
    assert r.device_bytes == {"cpu": 2 * SIZE} and r.budgets == {"cpu": 2 * SIZE}
    assert [(p.name, p.mode, p.state, p.device) for p in r.models] == [
        ("m0", "model", "offloaded", "cpu"), ("m1", "model", "resident", "cpu"), ("m2", "model", "resident", "cpu")]
    assert r.model("m1").device_bytes == SIZE and r.model("m0").device_bytes == 0
    text = str(r)
    assert "m0" in text and "offloaded" in text and "last: m0 left cpu" in text


def test_offload_and_remove():
    m = _manager("keep")
    module = m._entries["m0"].module
    m.use("m0")
    m.offload("m0")
    assert _states(m)["m0"] == "offloaded"
    assert m.remove("m0") is module and "m0" not in m
    module(torch.ones(1, 16))  # no hooks left
    assert "m0" not in m.names()


def test_fp8_weights_count_one_byte_per_element():
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("no float8 in this torch")
    module = nn.Module()
    module.register_buffer("weight", torch.zeros(64, 64, dtype=torch.float8_e4m3fn))
    module.register_buffer("scale", torch.ones(1))
    m = ModelManager("model", device_budgets={"cpu": 10_000})
    m.add("fp8", module, device="cpu")
    m.use("fp8")
    assert m.report().model("fp8").weight_bytes == 64 * 64 + 4


def test_a_module_has_one_manager():
    module = Stack()
    first = ModelManager("model")
    first.add("a", module, device="cpu")
    with pytest.raises(ValueError, match="another ModelManager"):
        ModelManager("model").add("b", module, device="cpu")
    first.remove("a")
    ModelManager("model").add("b", module, device="cpu")


def test_a_model_added_on_its_device_stays_there():
    """Registering a module already on its target device moves nothing (host copies are made on eviction)."""
    m = ModelManager("model", device_budgets={"cpu": 10 * SIZE})
    module = Stack()
    m.add("a", module, device="cpu")
    m.use("a")
    before = [p.data_ptr() for p in module.parameters()]
    m.offload("a")
    m.use("a")
    assert [p.data_ptr() for p in module.parameters()] == before  # CPU target: moves are no-ops
