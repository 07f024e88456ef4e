"""GraphedDenoiser: off CUDA a plain pass-through; on CUDA (``-m gpu``) whole sampling loops replayed from graphs
equal the eager loop, and a stage whose step cannot be captured falls back to eager with the reason kept."""
from __future__ import annotations

import pytest
import torch
from tiny_unets import MICRO_IF_I, MICRO_IF_II

from cascade_core.cuda_graphs import GraphedDenoiser
from cascade_core.stage import run_sampler, stage_sigmas, unet_guider
from cascade_core.unet.config import UNetConfig
from cascade_core.unet.model import UNet

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _loop(config: dict, sampler: str, device: str, graphs: bool, size: int = 8) -> torch.Tensor:
    torch.manual_seed(0)
    unet = UNet(UNetConfig.from_diffusers_config(config)).eval().to(device)
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, 5, unet.config.text_dim, generator=g).to(device)
    guider = unet_guider(unet, text, torch.zeros_like(text), 4.0)
    sigmas = stage_sigmas(guider.denoiser, 5)
    x = (torch.randn(2, 3, size, size, generator=g) * float(sigmas[0])).to(device)
    extra = {}
    if unet.config.is_super_resolution:
        extra = {"low_res": (torch.rand(2, 3, size, size, generator=g) * 2 - 1).to(device),
                 "noise_level": torch.full((2,), 100, dtype=torch.long, device=device)}
    model = GraphedDenoiser(guider) if graphs else guider
    with torch.no_grad():
        return run_sampler(model, x, sigmas, extra=extra, sampler=sampler,
                           randn=lambda shape: torch.randn(shape, generator=g).to(device))


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp_2m"])
def test_off_cuda_it_is_the_wrapped_denoiser(sampler):
    torch.testing.assert_close(_loop(MICRO_IF_I, sampler, "cpu", True), _loop(MICRO_IF_I, sampler, "cpu", False),
                               rtol=0, atol=0)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("config", [MICRO_IF_I, MICRO_IF_II], ids=["base", "sr"])
@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp_2m", "euler_ancestral"])
def test_graphed_loop_equals_eager_loop(config, sampler):
    size = 16 if config is MICRO_IF_II else 8
    eager = _loop(config, sampler, "cuda", False, size)
    graphed = _loop(config, sampler, "cuda", True, size)
    assert ((graphed - eager).norm() / eager.norm()).item() < 1e-5


@pytest.mark.gpu
@cuda
def test_uncapturable_step_falls_back_to_eager():
    def syncing(x, sigma, **extra):  # a host read inside the step cannot be captured
        if float(x.abs().max()) > 1e9:
            raise AssertionError
        return x * 0.5

    model = GraphedDenoiser(syncing)
    x = torch.ones(1, 3, 4, 4, device="cuda")
    out = model(x, torch.ones(1, device="cuda"))
    assert torch.equal(out, x * 0.5) and model.eager_reason is not None
