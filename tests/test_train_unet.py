"""The stage trainer: loss goes down, runs resume bit-for-bit, text embeddings are cached, output folders load."""
from __future__ import annotations

import json

import pytest
import torch
from _train_fixtures import tiny_t5_repo, train_config

from cascade_core.train.unet_trainer import StageTrainer, run


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return tiny_t5_repo(tmp_path_factory.mktemp("t5"))


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_steps_on_a_fixed_batch_reduce_the_loss(t5, tmp_path, one_torch_thread):
    trainer = StageTrainer(train_config(tmp_path, t5, lr=2e-3, warmup_steps=0))
    inputs = trainer.batch_inputs(0)
    before = float(trainer.loss(inputs).detach())
    for _ in range(5):
        loss = trainer.loss(inputs)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    assert float(trainer.loss(inputs).detach()) < before


@pytest.mark.parametrize("sr", [False, True], ids=["base", "sr"])
def test_resume_reproduces_an_uninterrupted_run(t5, tmp_path, sr, one_torch_thread):
    straight = run(train_config(tmp_path, t5, "straight", sr=sr, steps=4))
    run(train_config(tmp_path, t5, "resumed", sr=sr, steps=2))
    resumed = run(train_config(tmp_path, t5, "resumed", sr=sr, steps=4))
    for part in ("resume/model.safetensors", "resume/ema.safetensors", "unet/diffusion_pytorch_model.safetensors"):
        a, b = _state(straight / part), _state(resumed / part)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert json.loads((resumed / "resume" / "state.json").read_text())["step"] == 4


def test_embeddings_are_cached_and_hit_on_the_second_epoch(t5, tmp_path, one_torch_thread):
    config = train_config(tmp_path, t5, steps=4, batch_size=4, num_samples=8)  # 2 epochs
    first = StageTrainer(config)
    unique = len(set(first.source.captions) | {""})
    assert first.store.misses == unique and first.store.hits == 0
    assert first.store.encoder is None  # T5 is released before the first step
    for _ in range(4):
        first.step()
    again = StageTrainer(config)  # a new run (or epoch) reads the shards written by the first
    assert again.store.misses == 0 and again.store.hits == unique
    assert list((tmp_path / "cache").rglob("shard-*.safetensors"))


def test_the_output_folder_loads_and_samples(t5, tmp_path, one_torch_thread):
    from cascade_core import load_unet
    from cascade_core.guidance import CFGGuider
    from cascade_core.stage import sample_stage, stage_sigmas, unet_denoiser

    out = run(train_config(tmp_path, t5, steps=2, sample_every=2, sample_steps=2))
    unet = load_unet(out)
    assert (out / "samples" / "step_000002.png").is_file()
    assert (out / "unet" / "config.json").is_file() and (out / "train_record.json").is_file()
    den = unet_denoiser(unet)
    text = torch.randn(1, 77, unet.config.text_dim)
    img = sample_stage(CFGGuider(den, text, text, 1.0), stage_sigmas(den, 2), height=16, width=16,
                       generator=torch.Generator().manual_seed(0))
    assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all()


def test_fine_tuning_starts_from_init_from(t5, tmp_path, one_torch_thread):
    first = run(train_config(tmp_path, t5, "first", steps=1))
    tuned = StageTrainer(train_config(tmp_path, t5, "tuned", init_from=str(first), architecture="unused"))
    stored = _state(first / "unet" / "diffusion_pytorch_model.safetensors")
    own = tuned.unet.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in stored.items())


def test_config_errors_name_the_field(tmp_path):
    from cascade_core.train.config import UNetTrainConfig

    with pytest.raises(ValueError, match="loss"):
        UNetTrainConfig(loss="l1")
    with pytest.raises(ValueError, match="unknown UNet training config keys"):
        UNetTrainConfig.from_dict({"stepz": 3})


def test_v_prediction_is_recorded_and_read_back(t5, tmp_path, one_torch_thread):
    from cascade_core import load_unet
    from cascade_core.stage import unet_denoiser

    out = run(train_config(tmp_path, t5, prediction="v_prediction", steps=1))
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction" and scheduler["variance_type"] == "learned_range"
    unet = load_unet(out)
    assert unet.prediction_type == "v_prediction"
    assert unet_denoiser(unet).prediction == "v_prediction"


def test_v_target_and_epsilon_recovery_agree():
    from cascade_core.train.losses import epsilon_from, prediction_target

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    ac = torch.tensor([0.3, 0.9]).reshape(-1, 1, 1, 1)
    x_t = ac.sqrt() * x0 + (1 - ac).sqrt() * eps
    v = prediction_target("v_prediction", eps, x0, ac)
    assert torch.allclose(epsilon_from("v_prediction", v, x_t, ac), eps, atol=1e-6)
