"""DistributedDataParallel through torchrun: 2 gloo processes take exactly the single-process step on the
concatenated batch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from _train_fixtures import tiny_t5_repo, train_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_file(tmp_path, t5, name: str) -> str:
    # Adam's first step is lr * g / (|g| + eps): with the default eps 1e-8 it is ~lr * sign(g), which turns the
    # last-bit differences of a gradient all-reduce into lr-sized ones where g is ~0; a large eps keeps the step
    # proportional to the gradient, so the comparison measures DDP, not that amplification.
    values = train_config(tmp_path, t5, name, steps=1, batch_size=4, adam_eps=1.0, lr=1e-2, warmup_steps=0).to_dict()
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"kind": "unet", **values}))
    return str(path)


def test_two_gloo_processes_equal_one_process_on_the_whole_batch(tmp_path):
    from safetensors.torch import load_file

    t5 = tiny_t5_repo(tmp_path / "t5")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    single = subprocess.run([sys.executable, "-m", "cascade_core.train", _config_file(tmp_path, t5, "single")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "cascade_core.train",
                          _config_file(tmp_path, t5, "ddp")], env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_file(str(tmp_path / "single" / "resume" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "resume" / "model.safetensors"))
    start = load_file(str(tmp_path / "single" / "resume" / "ema.safetensors"))
    assert a.keys() == b.keys()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a if a[k].is_floating_point())
    assert moved > 0
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff <= 1e-6, f"DDP step differs from the single-process step by {diff}"
    assert json.loads((tmp_path / "ddp" / "train_record.json").read_text())["world_size"] == 2
