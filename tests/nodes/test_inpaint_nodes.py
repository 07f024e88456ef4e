"""Image-to-image and inpainting through the sampler nodes (in-process, tiny models): optional start_image / mask /
denoise inputs, batch rules, exact pixels outside the mask, and named errors."""
from __future__ import annotations

import pytest
import torch
from test_nodes import _out, chain  # noqa: F401 (the shared fixture)

BASE = dict(seed=3, steps=4, schedule="leading", sampler="ddpm", width=16, height=8, batch_size=1)
SR = dict(noise_level=250, seed=4, steps=3, schedule="leading", sampler="ddpm")


def _base(chain, **kw):  # noqa: F811
    from pixel_cascade.nodes.sampling import Base64Sampler

    return _out(Base64Sampler.execute(guider=chain["base_guider"], **{**BASE, **kw}))


def _mask(batch=1, h=8, w=16):
    m = torch.zeros(batch, h, w)
    for i in range(batch):
        m[i, 1 + i:5 + i, 3:11] = 1.0
    return m


def test_base_inpainting_keeps_the_start_image_outside_the_mask(chain):  # noqa: F811
    import comfy.utils

    start = torch.rand(1, 8, 16, 3, generator=torch.Generator().manual_seed(0))
    calls = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append((value, total)))
    try:
        out = _base(chain, start_image=start, mask=_mask(2), denoise=0.5)  # one image, two masks -> batch 2
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    assert out.shape == (2, 8, 16, 3)
    assert calls == [(1, 2), (2, 2)]  # int(4 * 0.5) steps run
    for i, m in enumerate(_mask(2)):
        keep = m < 0.5
        assert torch.equal(out[i][keep], start[0][keep])
        assert not torch.equal(out[i][~keep], start[0][~keep])
    # two images, one mask; an all-one mask is plain image-to-image
    two = torch.rand(2, 8, 16, 3, generator=torch.Generator().manual_seed(1))
    assert _base(chain, start_image=two, mask=_mask(1)).shape == (2, 8, 16, 3)
    full = _base(chain, start_image=two, mask=torch.ones(1, 8, 16))
    assert torch.equal(full, _base(chain, start_image=two))


def test_other_sizes_are_resized_and_sr_inpaints(chain):  # noqa: F811
    from pixel_cascade.nodes.sampling import SRUpsampler256

    big = torch.rand(1, 32, 64, 3, generator=torch.Generator().manual_seed(2))  # 4x the output: stretched down
    out = _base(chain, start_image=big, mask=_mask(1, 32, 64), denoise=0.75)
    assert out.shape == (1, 8, 16, 3)
    low = torch.rand(1, 8, 16, 3)
    start = torch.rand(1, 32, 64, 3, generator=torch.Generator().manual_seed(3))
    mask = _mask(1, 8, 16)  # a 64 px mask for the 256 px stage: enlarged 4x
    up = _out(SRUpsampler256.execute(guider=chain["sr_guider"], image=low, start_image=start, mask=mask, **SR))
    keep = torch.nn.functional.interpolate(mask[:, None], (32, 64), mode="bilinear")[0, 0] < 0.5
    assert up.shape == (1, 32, 64, 3) and torch.equal(up[0][keep], start[0][keep])


@pytest.mark.parametrize("inputs,match", [
    (dict(mask=_mask()), "input 'mask' needs a 'start_image'"),
    (dict(denoise=0.5), "input 'denoise' is 0.5 but no 'start_image'"),
    (dict(start_image=torch.rand(1, 8, 16, 3), denoise=1.5), "input 'denoise' is 1.5, above its maximum 1.0"),
    (dict(start_image=torch.rand(1, 8, 16, 3), denoise=0.1), "input 'denoise'.*runs no step"),
    (dict(start_image=torch.rand(1, 8, 16, 3), mask=torch.zeros(1, 8, 16)), "input 'mask' is all zeros"),
    (dict(start_image=torch.rand(1, 8, 16, 3), mask=torch.ones(8, 16)), "input 'mask' has shape \\(8, 16\\)"),
    (dict(start_image=torch.rand(2, 8, 16, 3), mask=_mask(3)),
     "batch sizes do not match \\(start image 2, mask 3, batch_size 1\\)"),
    (dict(start_image=torch.rand(2, 8, 16, 3), batch_size=3),
     "batch sizes do not match \\(start image 2, batch_size 3\\)"),
    (dict(start_image=torch.rand(1, 8, 16)), "input 'start_image'"),
])
def test_bad_start_inputs_are_named(chain, inputs, match):  # noqa: F811
    with pytest.raises(ValueError, match=f"Base 64 Sampler: .*{match}"):
        _base(chain, **inputs)
