"""Train one cascade stage (the base UNet or a 4x super-resolution UNet) with the inference code's own
UNet class, noise schedule and denoiser wrapper (:func:`cascade_core.stage.unet_denoiser`).

One optimizer step: a global batch of (caption, image) samples; per sample a timestep, noise, a CFG
text dropout draw and (SR) a noise-augmentation level, all from a generator seeded by (seed, step, sample),
so a run is reproducible, resumable bit-for-bit, and identical whether it runs in one process or split
across DDP ranks. See :class:`~cascade_core.train.config.UNetTrainConfig` for the settings.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import torch

from ..schedules import ALPHA_SCHEDULES
from ..stage import noise_augment, unet_denoiser
from ..unet.config import UNetConfig
from ..unet.model import UNet
from .checkpoint import (EMA, has_resume_state, load_resume_state, save_model_folder, save_resume_state,
                         scheduler_config)
from .config import UNetTrainConfig
from .data import collate, epoch_order, make_source
from .distributed import World, init_world, shutdown_world
from .embedding_store import EmbeddingStore
from .losses import LOSSES
from .progress import Progress
from .samples import write_sample_grid

__all__ = ["run", "build_unet", "StageTrainer"]

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> Path:
    """``demo:<name>`` -> the demo folder of that name; anything else is a path."""
    if name.startswith("demo:"):
        from ..demo import DEMO_DIR

        return DEMO_DIR / name[len("demo:"):]
    return Path(name)


def build_unet(config: UNetTrainConfig) -> UNet:
    """A trainable float32 UNet: ``init_from``'s weights (any format ``load_unet`` reads) or a fresh seeded init."""
    if config.init_from:
        from ..unet.loading import load_unet

        unet = load_unet(resolve_model_path(config.init_from), device="cpu", dtype=torch.float32)
        return unet.requires_grad_(True).train()
    arch = config.architecture
    if isinstance(arch, str):
        from ..demo.architectures import UNETS

        if arch not in UNETS:
            raise ValueError(f"config 'architecture': unknown name {arch!r} (known: {sorted(UNETS)}, or give a "
                             "diffusers UNet config dict)")
        arch = UNETS[arch]
    torch.manual_seed(config.seed)
    return UNet(UNetConfig.from_diffusers_config(arch)).train()


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of sample ``index`` of the global batch at optimizer step ``step``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + index)


class StageTrainer:
    """Holds the model, optimizer, EMA, data and text embeddings of one run; :meth:`step` does one update."""

    def __init__(self, config: UNetTrainConfig, world: World | None = None, device: torch.device | None = None):
        self.config = c = config
        self.device = device or torch.device("cpu")
        self.world = world or World()
        self.unet = build_unet(c).to(self.device, memory_format=torch.channels_last)
        if c.prediction is not None:
            self.unet.prediction_type = c.prediction
        self.denoiser = unet_denoiser(self.unet, schedule=c.schedule)
        self.sr = self.unet.config.is_super_resolution
        self.alphas_cumprod = self.denoiser.alphas_cumprod
        self.aug_alphas = ALPHA_SCHEDULES["cosine"](1000)  # the SR augmentation schedule the stage runner uses
        self.source = make_source(c.data, c.num_samples, c.seed)
        self.store = self._embeddings()
        self.empty = self.store.get([""])[0]
        self.model = self.denoiser.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, eps=c.adam_eps)
        self.ema = EMA(self.unet, c.ema_decay)
        self.scaler = torch.amp.GradScaler("cuda") if self._autocast_dtype() == torch.float16 else None
        self.step_count = 0
        self.seconds_before = 0.0  # training wall time of earlier (resumed) runs
        self.seconds = 0.0  # this run's, updated by run()

    def _embeddings(self) -> EmbeddingStore:
        from ..text import load_text_encoder

        encoder = load_text_encoder(resolve_model_path(self.config.text_encoder), device="cpu", dtype=torch.float32,
                                    cache=None)
        width = self.unet.config.text_dim
        if encoder.hidden_size != width:
            raise ValueError(f"text encoder {self.config.text_encoder} has d_model {encoder.hidden_size} but the UNet "
                             f"expects text_dim {width}: use the encoder the UNet is conditioned on")
        distributed = self.world.distributed
        if distributed and not self.world.is_main:
            torch.distributed.barrier()  # rank 0 fills the cache first; the others then only read it
        store = EmbeddingStore(self.config.cache_path, encoder)
        store.ensure(list(self.source.captions) + [""] + list(self.config.sample_prompts))
        if distributed and self.world.is_main:
            torch.distributed.barrier()
        store.encoder = None  # everything is cached: T5 is not needed while training
        return store

    def _autocast_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or self.config.precision == "fp32":
            return None
        return torch.bfloat16 if self.config.precision == "bf16" else torch.float16

    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr``, then constant."""
        warm = self.config.warmup_steps
        return self.config.lr * min(1.0, (step + 1) / warm) if warm > 0 else self.config.lr

    def _indices(self, step: int) -> list[int]:
        c, n = self.config, len(self.source)
        first = step * c.batch_size
        order, epoch = None, -1
        out = []
        for k in range(first, first + c.batch_size):
            if k // n != epoch:
                epoch = k // n
                order = epoch_order(n, c.seed, epoch)
            out.append(int(order[k % n]))
        return out

    def batch_inputs(self, step: int) -> dict:
        """This rank's inputs for ``step``: x0, noise, t, text embeddings and (SR) conditioning, on the device."""
        c = self.config
        part = self.world.local_slice(c.batch_size)
        indices = self._indices(step)[part]
        gens = [sample_generator(c.seed, step, j) for j in range(c.batch_size)[part]]
        batch = collate(self.source, indices, resolution=c.resolution, crop=c.crop, sr=self.sr, generators=gens)
        x0 = batch.images
        t = torch.stack([torch.randint(0, len(self.alphas_cumprod), (), generator=g) for g in gens])
        drop = torch.stack([torch.rand((), generator=g) < c.cfg_dropout for g in gens])
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens])
        text = self.store.get(batch.captions)
        text[drop] = self.empty
        ac = self.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        x_t = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
        cond = {}
        if self.sr:
            levels = torch.stack([torch.randint(0, max(c.noise_aug_max, 1), (), generator=g) for g in gens])
            aug_noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens])
            cond = {"low_res": noise_augment(batch.low_res, levels, self.aug_alphas, aug_noise), "noise_level": levels}
        move = dict(device=self.device)
        cl = dict(memory_format=torch.channels_last)
        return {"x0": x0.to(**move).contiguous(**cl), "x_t": x_t.to(**move).contiguous(**cl),
                "noise": noise.to(**move), "t": t.to(**move), "text": text.to(**move),
                "cond": {k: v.to(**move) for k, v in cond.items()}}

    def loss(self, inputs: dict) -> torch.Tensor:
        """Mean loss of this rank's batch (autocast on GPU)."""
        dtype = self._autocast_dtype()
        ctx = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            out = self.model(inputs["x_t"], inputs["t"], inputs["text"], **inputs["cond"])
        per_sample = LOSSES[self.config.loss](out.float(), inputs["noise"], x0=inputs["x0"], x_t=inputs["x_t"],
                                              t=inputs["t"], alphas_cumprod=self.alphas_cumprod,
                                              prediction=self.unet.prediction_type)
        return per_sample.mean()

    def step(self) -> float:
        """One optimizer step; returns this rank's loss."""
        step = self.step_count
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step)
        loss = self.loss(self.batch_inputs(step))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(self.unet, step)
        self.step_count += 1
        return float(loss.detach())

    # -- saving ----------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the model folder (EMA weights) and the resume state (main rank only)."""
        if not self.world.is_main:
            return
        out = self.config.output_path
        save_model_folder(out, self.unet.config.to_dict(), self.ema.state_dict(), self.config.save_dtype,
                          scheduler=scheduler_config(self.config.schedule, self.unet.prediction_type,
                                                     self.config.loss == "learned_variance"))
        save_resume_state(out, step=self.step_count, model=self.unet, ema=self.ema, optimizer=self.optimizer,
                          extra={"config": self.config.to_dict(),
                                 "seconds_total": round(self.seconds_before + self.seconds, 1)})

    def resume(self) -> bool:
        """Continue from ``<output_dir>/resume`` if it exists; returns whether it did."""
        if not has_resume_state(self.config.output_path):
            return False
        state = load_resume_state(self.config.output_path, model=self.unet, ema=self.ema, optimizer=self.optimizer)
        self.step_count = int(state["step"])
        self.seconds_before = float(state.get("seconds_total", 0.0))
        log.info("resumed %s at step %d", self.config.output_dir, self.step_count)
        return True

    def write_samples(self) -> Path | None:
        if not self.world.is_main or self.config.sample_every <= 0:
            return None
        return write_sample_grid(self, self.config.output_path / "samples" / f"step_{self.step_count:06d}.png")


def _device(config: UNetTrainConfig) -> torch.device:
    if config.device:
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run(config: UNetTrainConfig, *, resume: bool = True) -> Path:
    """Train (or continue training) one stage; returns ``<output_dir>`` (``unet/`` inside is the model)."""
    device = _device(config)
    world = init_world(device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    trainer = StageTrainer(config, world, device)
    if resume:
        trainer.resume()
    started = time.time()
    progress = Progress(config.steps, trainer.step_count, config.batch_size, enabled=world.is_main)
    try:
        while trainer.step_count < config.steps:
            loss = trainer.step()
            trainer.seconds = time.time() - started
            progress.update(trainer.step_count, loss)
            if config.checkpoint_every and trainer.step_count % config.checkpoint_every == 0:
                trainer.save()
            if config.sample_every and trainer.step_count % config.sample_every == 0:
                trainer.write_samples()
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {trainer.step_count}: lower 'lr' "
                                         "or use precision 'bf16'/'fp32'")
    finally:
        progress.close()
    trainer.save()
    trainer.write_samples()
    if world.is_main:
        _write_run_record(config, trainer, time.time() - started, progress)
    shutdown_world(world)
    return config.output_path


def _write_run_record(config: UNetTrainConfig, trainer: StageTrainer, seconds: float, progress: Progress) -> None:
    import json
    import platform

    record = {"steps": trainer.step_count, "seconds_this_run": round(seconds, 1),
              "seconds_total": round(trainer.seconds_before + trainer.seconds, 1), "final_loss": progress.smoothed,
              "images_per_second": progress.rate, "device": str(trainer.device),
              "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "world_size": trainer.world.size, "parameters": sum(p.numel() for p in trainer.unet.parameters())}
    (config.output_path / "train_record.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
