"""What a training run writes: the model folder ``load_unet`` reads, and the resume state.

``<output_dir>/unet/config.json`` + ``diffusion_pytorch_model.safetensors`` hold the EMA weights (the
model users load). ``<output_dir>/resume/`` holds everything needed to continue bit-for-bit: the raw
weights, the EMA weights, the optimizer state, the step and the RNG state. Every file is written to a
temporary name and renamed, so an interrupted save never leaves a torn checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["EMA", "save_model_folder", "save_resume_state", "load_resume_state", "has_resume_state"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers (decay warmed up as
    ``min(decay, (1 + step) / (10 + step))``)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(path, lambda p: save_file(contiguous, str(p), metadata=metadata))


_BETA_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear", "scaled_linear": "scaled_linear"}


def scheduler_config(schedule: str, prediction: str, learned_variance: bool) -> dict:
    """A diffusers ``DDPMScheduler`` config naming how the model was trained (as IF repos ship one)."""
    return {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000,
            "beta_schedule": _BETA_SCHEDULES.get(schedule, schedule), "prediction_type": prediction,
            "variance_type": "learned_range" if learned_variance else "fixed_small", "clip_sample": False,
            "thresholding": True, "dynamic_thresholding_ratio": 0.95, "sample_max_value": 1.5}


def save_model_folder(output_dir: Path, config: dict, weights: dict[str, torch.Tensor], dtype: str, *,
                      scheduler: dict | None = None) -> Path:
    """Write ``<output_dir>/unet/`` (diffusers layout) with ``weights`` cast to ``dtype`` and, if given,
    ``<output_dir>/scheduler/scheduler_config.json``; returns the unet folder."""
    if scheduler is not None:
        (output_dir / "scheduler").mkdir(parents=True, exist_ok=True)
        _atomic(output_dir / "scheduler" / "scheduler_config.json",
                lambda p: p.write_text(json.dumps(scheduler, indent=2) + "\n", encoding="utf-8"))
    folder = output_dir / "unet"
    folder.mkdir(parents=True, exist_ok=True)
    cast = {k: (v.to(_DTYPES[dtype]) if v.is_floating_point() else v) for k, v in weights.items()}
    _save_tensors(cast, folder / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    _atomic(folder / "config.json", lambda p: p.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8"))
    return folder


def has_resume_state(output_dir: Path) -> bool:
    return (output_dir / "resume" / "state.json").is_file()


def save_resume_state(output_dir: Path, *, step: int, model: nn.Module, ema: EMA, optimizer, extra: dict) -> None:
    """Everything to continue after ``step`` optimizer steps (``extra``: JSON-able run facts)."""
    folder = output_dir / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors(model.state_dict(), folder / "model.safetensors")
    _save_tensors(ema.state_dict(), folder / "ema.safetensors")
    _save_tensors({"torch_rng": torch.get_rng_state()}, folder / "rng.safetensors")
    _atomic(folder / "optimizer.pt", lambda p: torch.save(optimizer.state_dict(), p))
    state = {"step": step, **extra}
    _atomic(folder / "state.json", lambda p: p.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8"))


def load_resume_state(output_dir: Path, *, model: nn.Module, ema: EMA, optimizer) -> dict:
    """Restore what :func:`save_resume_state` wrote into the given objects; returns the state dict (``step``...)."""
    from safetensors.torch import load_file

    folder = output_dir / "resume"
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    ema.load_state_dict(load_file(str(folder / "ema.safetensors")))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_rng"])
    return state
