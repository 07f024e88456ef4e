"""The channels-last GroupNorm path equals torch's GroupNorm."""
import pytest
import torch
import torch.nn.functional as F

from cascade_core.unet.norm import GroupNorm, group_norm_nhwc, set_group_norm_mode


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_nhwc_group_norm_matches_torch(dtype, atol):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 64, 8, 12, generator=g) * 3 + 5).to(dtype).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    expected = F.group_norm(x.float(), 8, w, b, 1e-5)
    got = group_norm_nhwc(x, 8, w.to(dtype), b.to(dtype), 1e-5)
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    assert (got.float() - expected).abs().max().item() < atol


def test_mode_validation_and_cpu_fallback():
    with pytest.raises(ValueError, match="group norm mode"):
        set_group_norm_mode("fast")
    norm = GroupNorm(4, 16)
    x = torch.randn(1, 16, 4, 4)
    assert torch.allclose(norm(x), F.group_norm(x, 4, norm.weight, norm.bias, norm.eps))
