"""The sampler nodes' eta (DDIM's fresh noise per step) and dpm schedule, in-process on tiny models: ddim at eta 0
is euler, at eta 1 euler_ancestral, other samplers ignore eta; dpm + dpmpp_2m runs its step count."""
from __future__ import annotations

import torch
from test_nodes import _out, chain  # noqa: F401 (the shared fixture)

BASE = dict(seed=3, steps=4, schedule="leading", width=16, height=8, batch_size=1)


def _base(chain, **kw):  # noqa: F811
    from pixel_cascade.nodes.sampling import Base64Sampler

    return _out(Base64Sampler.execute(guider=chain["base_guider"], **{**BASE, **kw}))


def test_ddim_eta_spans_euler_and_euler_ancestral(chain):  # noqa: F811
    assert torch.equal(_base(chain, sampler="ddim", eta=0.0), _base(chain, sampler="euler"))
    assert torch.equal(_base(chain, sampler="ddim", eta=1.0), _base(chain, sampler="euler_ancestral"))
    halfway = _base(chain, sampler="ddim", eta=0.5)
    assert not torch.equal(halfway, _base(chain, sampler="euler"))
    assert torch.equal(_base(chain, sampler="ddpm", eta=0.7), _base(chain, sampler="ddpm"))  # ignored


def test_dpm_schedule_with_dpmpp_2m(chain):  # noqa: F811
    out = _base(chain, sampler="dpmpp_2m", schedule="dpm", steps=6)
    assert out.shape == (1, 8, 16, 3) and bool(torch.isfinite(out).all())
