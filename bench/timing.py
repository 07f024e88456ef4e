"""Timing helpers shared by the GPU benchmarks: synchronised medians, so GPU work is counted, not queued."""
from __future__ import annotations

import statistics
import time

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def median_time(fn, *, device: str, warmup: int = 3, reps: int = 10) -> float:
    """Median wall time of fn() in seconds over ``reps`` runs after ``warmup`` runs, synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
