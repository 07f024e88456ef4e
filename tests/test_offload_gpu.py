"""On CUDA: block streaming with real side-stream copies from pinned memory equals the resident model; model
moves use pinned host copies and leave no weight behind."""
import copy

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _inputs(unet, size, device):
    g = torch.Generator().manual_seed(0)
    c = unet.config
    x = torch.randn(2, c.in_channels, size, size, generator=g)
    emb = torch.randn(2, 5, c.encoder_hid_dim or c.cross_attention_dim, generator=g)
    noise = torch.tensor([10, 200]) if c.is_super_resolution else None
    return [None if a is None else a.to(device) for a in (x, torch.tensor([10, 500]), emb, noise)]


@pytest.mark.parametrize("fixture, size", [("base", 8), ("sr", 16)])
def test_cuda_block_streaming_equals_resident(fixture, size, request):
    from cascade_core.offload import ModelManager
    from cascade_core.offload.tensors import module_bytes

    torch.backends.cudnn.benchmark = False
    unet = copy.deepcopy(request.getfixturevalue(fixture))
    resident = copy.deepcopy(unet).cuda()
    args = _inputs(unet, size, "cuda")
    with torch.no_grad():
        ref = resident(*args)
    m = ModelManager("block", device_budgets={"cuda:0": module_bytes(unet) // 3})
    m.add("u", unet, device="cuda", keep_resident=[unet.conv_in])
    with torch.no_grad(), m.using("u") as model:
        assert model.device.type == "cuda"  # conv_in is resident
        outs = [model(*args) for _ in range(3)]
    e = m._entries["u"]
    assert all(h.is_pinned() for h in e.home)
    assert all(torch.equal(o, ref) for o in outs)
    assert e.streamer.prefetch_hits >= 2 * len(e.streamer.units)
    m.offload("u")
    assert all(p.device.type == "cpu" for p in unet.parameters())


def test_cuda_model_policy_round_trip(base):
    from cascade_core.offload import ModelManager

    unet = copy.deepcopy(base)
    m = ModelManager("model", budget_gib=1, reserve_gib=0)
    m.add("u", unet, device="cuda")
    m.use("u")
    assert all(p.device.type == "cuda" for p in unet.parameters())
    m.offload("u")
    assert all(p.device.type == "cpu" and p.is_pinned() for p in unet.parameters())
    assert m.report().device_bytes == {"cuda:0": 0}
