"""Timestep spacings: diffusers-style leading/trailing/linspace and DeepFloyd IF's section respacing.

All functions return plain descending ``list[int]`` of training timesteps (0 .. T-1); turn them into
a sigma array with ``cascade_core.schedules.sigmas_for_timesteps``.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["DPM_LAMBDA_MIN", "IF_STEP_STRINGS", "SPACINGS", "lambda_clipped_timesteps", "respaced_timesteps",
           "spaced_timesteps", "timesteps_from_spec"]

# DPM-Solver's clip for the cosine schedule (Lu et al.'s fix, diffusers' ``lambda_min_clipped`` as used for IF):
# the noisiest end, where lambda = log(alpha_t / sigma_t) < -5.1 (cosine: t > ~967), is skipped, since the
# solver's steps in lambda blow up there
DPM_LAMBDA_MIN = -5.1

SPACINGS = ("leading", "trailing", "linspace")

# Named respacings of the original DeepFloyd IF code (per-section step counts over 1000 steps).
IF_STEP_STRINGS: dict[str, str] = {
    "fast27": "10,10,3,2,2",
    "smart27": "7,4,2,1,2,4,7",
    "smart50": "10,6,4,3,2,2,3,4,6,10",
    "smart100": "1,1,1,1,2,2,2,2,2,2,3,3,4,4,5,5,6,7,7,8,9,10,13",
    "smart185": "1,1,2,2,2,3,3,3,4,5,6,7,8,9,10,11,12,13,14,15,16,18,20",
    "super27": "1,1,1,1,1,1,1,2,5,13",
    "super40": "2,2,2,2,2,2,3,4,6,15",
    "super100": "4,4,6,6,8,8,10,10,14,30",
}

_FLAVOURS = ("original", "diffusers")


def spaced_timesteps(
    num_steps: int, spacing: str = "leading", *, num_train_timesteps: int = 1000, steps_offset: int = 0
) -> list[int]:
    """Timesteps of Lin et al. (2023) Table 2 spacings, as diffusers' DDPMScheduler.set_timesteps -> [num_steps]."""
    T = num_train_timesteps
    if not isinstance(num_steps, int) or not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be an int in [1, {T}], got {num_steps!r}")
    if spacing == "leading":
        # Integer stride T // N from 0, shifted by steps_offset (the only spacing that uses it, as in diffusers).
        steps = np.arange(num_steps, dtype=np.int64)[::-1] * (T // num_steps) + steps_offset
    elif spacing == "trailing":
        # Float stride T / N counted down from T, minus 1; numpy's arange/round kept for bit-equal rounding.
        steps = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
        steps = steps[steps >= 0]  # arange can emit one extra point (-> -1) from float accumulation
    elif spacing == "linspace":
        steps = np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    result = [int(t) for t in steps]
    if result[0] >= T or result[-1] < 0:
        raise ValueError(f"steps_offset={steps_offset} moves timesteps out of [0, {T - 1}]: {result[0]}..{result[-1]}")
    return result


def _section_steps(start: int, size: int, count: int) -> list[int]:
    """Pick `count` of `size` steps with fractional stride (size-1)/(count-1) (Nichol & Dhariwal 2021, respacing)."""
    if count > size:
        raise ValueError(f"cannot take {count} steps from a section of {size} timesteps")
    stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
    picked, position = [], 0.0
    for _ in range(count):
        picked.append(start + round(position))
        position += stride  # accumulated, not multiplied: the original rounds the running sum
    return picked


def _respace_counts(counts: list[int], num_train_timesteps: int) -> list[int]:
    """Union over K equal sections (earlier ones get the remainder) of each section's picks -> descending list."""
    if not counts or any(c < 0 for c in counts):
        raise ValueError(f"section counts must be a non-empty list of non-negative ints, got {counts}")
    size_per, extra = divmod(num_train_timesteps, len(counts))
    steps: set[int] = set()
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        steps.update(_section_steps(start, size, count))
        start += size
    return sorted(steps, reverse=True)


def _parse_counts(spec: str) -> list[int]:
    """Parse "10,10,3" into [10, 10, 3]; ValueError naming the spec otherwise."""
    try:
        return [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"spec {spec!r} is neither a named IF respacing {sorted(IF_STEP_STRINGS)} nor a comma list of ints"
        ) from None


def respaced_timesteps(spec: str, *, num_train_timesteps: int = 1000, flavour: str = "original") -> list[int]:
    """DeepFloyd IF / improved-diffusion `space_timesteps` for a named mode, "a,b,c" counts or "N" -> descending."""
    if flavour not in _FLAVOURS:
        raise ValueError(f"flavour must be one of {_FLAVOURS}, got {flavour!r}")
    spec = str(spec).strip()
    counts = _parse_counts(IF_STEP_STRINGS.get(spec, spec))
    steps = _respace_counts(counts, num_train_timesteps)
    if spec == "fast27" and flavour == "original":
        # The original replaces the noisiest step T-1 by T-3 ("reduce DDIM artifacts"); diffusers' list keeps T-1.
        steps = sorted((set(steps) - {num_train_timesteps - 1}) | {num_train_timesteps - 3}, reverse=True)
    return steps


def lambda_clipped_timesteps(num_steps: int, alphas_cumprod: torch.Tensor, *,
                             lambda_min: float = DPM_LAMBDA_MIN) -> list[int]:
    """diffusers' DPMSolverMultistepScheduler timesteps (``linspace``, ``lambda_min_clipped``): ``num_steps``
    integers from the last timestep whose lambda >= ``lambda_min`` down towards 0, t = 0 itself excluded (the
    solver's last step goes from there to sigma 0); alphas_cumprod [T] -> [num_steps]."""
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
    lambdas = torch.log(torch.sqrt(ac)) - torch.log(torch.sqrt(1 - ac))
    last = ac.shape[0] - int(torch.searchsorted(torch.flip(lambdas, [0]), lambda_min))
    if not isinstance(num_steps, int) or not 1 <= num_steps < last:
        raise ValueError(f"num_steps must be an int in [1, {last - 1}] for the lambda-clipped schedule (timesteps "
                         f"0..{last - 1}), got {num_steps!r}")
    steps = np.linspace(0, last - 1, num_steps + 1).round()[::-1][:-1].astype(np.int64)
    return [int(t) for t in steps]


def timesteps_from_spec(
    steps: int | str, *, spacing: str = "leading", num_train_timesteps: int = 1000
) -> list[int]:
    """An int (or "N") -> spaced_timesteps(N, spacing); a named IF mode or comma list -> respaced_timesteps."""
    if isinstance(steps, bool):
        raise ValueError(f"steps must be an int or a string, got {steps!r}")
    if isinstance(steps, int):
        return spaced_timesteps(steps, spacing, num_train_timesteps=num_train_timesteps)
    if not isinstance(steps, str):
        raise ValueError(f"steps must be an int or a string, got {type(steps).__name__}")
    text = steps.strip()
    if text.isdigit():
        return spaced_timesteps(int(text), spacing, num_train_timesteps=num_train_timesteps)
    if text in IF_STEP_STRINGS or "," in text:
        return respaced_timesteps(text, num_train_timesteps=num_train_timesteps)
    raise ValueError(
        f"unknown steps {steps!r}: use an int, a comma list of section counts, or one of {sorted(IF_STEP_STRINGS)}"
    )
