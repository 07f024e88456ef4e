"""Bad UNet inputs become ValueErrors that name the problem."""
import pytest
import torch


def test_wrong_channel_count(base, sr):
    with pytest.raises(ValueError, match="4 channels; this model takes 3"):
        base(torch.zeros(1, 4, 8, 8), 10, torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match="super-resolution models take"):
        sr(torch.zeros(1, 3, 16, 16), 10, torch.zeros(1, 3, 16), torch.tensor([250]))


def test_size_not_multiple(base, sr):
    with pytest.raises(ValueError, match="multiple of 4"):
        base(torch.zeros(1, 3, 10, 8), 10, torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match="multiple of 8"):
        sr(torch.zeros(1, 6, 12, 16), 10, torch.zeros(1, 3, 16), torch.tensor([250]))


def test_batch_and_width_mismatch(base):
    with pytest.raises(ValueError, match="batch 1 does not match the image batch 2"):
        base(torch.zeros(2, 3, 8, 8), 10, torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match=r"\[B, L, 16\]"):
        base(torch.zeros(1, 3, 8, 8), 10, torch.zeros(1, 3, 32))
    with pytest.raises(ValueError, match="timestep"):
        base(torch.zeros(2, 3, 8, 8), torch.tensor([1, 2, 3]), torch.zeros(2, 3, 16))


def test_nan_inputs(base):
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        base(x, 10, torch.zeros(1, 3, 16))
    text = torch.zeros(1, 3, 16)
    text[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="text_embeds contains NaN"):
        base(torch.zeros(1, 3, 8, 8), 10, text)


def test_noise_level_rules(base, sr):
    with pytest.raises(ValueError, match="noise_level .* is required"):
        sr(torch.zeros(1, 6, 16, 16), 10, torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match="base .* takes no noise_level"):
        base(torch.zeros(1, 3, 8, 8), 10, torch.zeros(1, 3, 16), torch.tensor([250]))
    out = sr(torch.zeros(2, 6, 16, 16), 10, torch.zeros(2, 3, 16), 250)  # scalar level broadcasts
    assert out.shape == (2, 6, 16, 16)


def test_channels_last_output_and_determinism(base):
    x, text = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 16)
    with torch.no_grad():
        a, b = base(x, torch.tensor([5, 900]), text), base(x, torch.tensor([5, 900]), text)
    assert torch.equal(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)
