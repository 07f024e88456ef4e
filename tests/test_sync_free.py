"""No host-device synchronisation inside any sampling loop, proven on the CPU.

Every tensor of the loop (model weights, state, text, low-res image) lives on the ``meta`` device, which has
shapes but no values: any read of a device value on the host (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``,
``.cpu()``) raises there. On a GPU each such read is a synchronisation that stalls the queue every step, so a loop
that runs to the end on meta tensors queues all of its GPU work without waiting. Sigmas stay CPU tensors, as
the samplers keep them (reading them costs nothing).
"""
from __future__ import annotations

import pytest
import torch
from tiny_unets import MICRO_IF_I, MICRO_IF_II, MICRO_X4

from cascade_core.inpaint import MaskedDenoiser
from cascade_core.samplers import SAMPLERS
from cascade_core.stage import stage_sigmas, unet_denoiser, unet_guider
from cascade_core.unet.checks import finite_checks
from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet
from cascade_core.upscaler.tiling import TiledDenoiser

META = torch.device("meta")


def _meta_guider(config: dict, schedule: str = "cosine"):
    """A CFG guider (dynamic thresholding on) over a meta-device UNet; embeddings checked on the CPU first (the
    construction-time check is a read, once per stage), then swapped for meta ones."""
    cfg = UNetConfig.from_diffusers_config(config)
    unet = UNet(cfg, device=META, dtype=torch.float32)
    text = torch.zeros(1, 7, cfg.text_dim)
    guider = unet_guider(unet, text, text, 5.0, schedule=schedule)
    guider.positive = guider.negative = torch.empty(1, 7, cfg.text_dim, device=META)
    return guider


def _run(denoiser, sampler: str, shape: tuple, extra: dict, sigmas: torch.Tensor) -> torch.Tensor:
    x = torch.empty(shape, device=META)
    with torch.no_grad(), finite_checks(False):  # run_sampler switches the per-call input checks off the same way
        return SAMPLERS[sampler](denoiser, x, sigmas, extra_args=extra,
                                 noise_sampler=lambda sigma, sigma_next: torch.empty(shape, device=META))


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_base_stage_loop_never_reads_the_device(sampler):
    guider = _meta_guider(MICRO_IF_I)
    out = _run(guider, sampler, (2, 3, 8, 8), {}, stage_sigmas(guider.denoiser, 3))
    assert out.device == META and out.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_super_resolution_loop_never_reads_the_device(sampler):
    extra = {"low_res": torch.empty(2, 3, 16, 16, device=META),
             "noise_level": torch.full((2,), 250, dtype=torch.long, device=META)}
    guider = _meta_guider(MICRO_IF_II)
    out = _run(guider, sampler, (2, 3, 16, 16), extra, stage_sigmas(guider.denoiser, 3))
    assert out.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_tiled_x4_loop_never_reads_the_device(sampler):
    guider = _meta_guider(MICRO_X4, schedule="scaled_linear")
    extra = {"low_res": torch.empty(1, 3, 24, 16, device=META),
             "noise_level": torch.full((1,), 20, dtype=torch.long, device=META)}
    out = _run(TiledDenoiser(guider, tile=16, overlap=8), sampler, (1, 4, 24, 16), extra,
               stage_sigmas(guider.denoiser, 3))
    assert out.shape == (1, 4, 24, 16)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_inpainting_loop_never_reads_the_device(sampler):
    guider = _meta_guider(MICRO_IF_I)
    masked = MaskedDenoiser(guider, torch.empty(2, 3, 8, 8, device=META), torch.empty(2, 1, 8, 8, device=META))
    out = _run(masked, sampler, (2, 3, 8, 8), {}, stage_sigmas(guider.denoiser, 3))
    assert out.shape == (2, 3, 8, 8)


def test_the_detector_detects_a_read():
    """The premise: a host read of a meta tensor raises (else the tests above would prove nothing)."""
    denoiser = unet_denoiser(UNet(UNetConfig.from_diffusers_config(MICRO_IF_I), device=META))

    def reading(x, sigma, **extra):
        out = denoiser(x, sigma, **extra)
        float(out.abs().max())  # what a per-step NaN check or a printed statistic would do
        return out

    with pytest.raises(RuntimeError, match="meta"):
        _run(reading, "euler", (1, 3, 8, 8), {"text_embeds": torch.empty(1, 7, 16, device=META)},
             stage_sigmas(denoiser, 3))
