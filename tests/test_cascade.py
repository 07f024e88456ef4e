"""cascade_core.Cascade on the demo models: equal to the stage-by-stage demo path and to demo.generate, the same
under block streaming with a simulated budget; construction errors name the input."""
import pytest
import torch

from _demo_models import require_demo

STEPS = {64: 2, 256: 1, 1024: 1}
PROMPTS = ["a large red circle on the left, on a white background"]


def _own_t5():
    """A TextEncoder of the demo T5 of its own (a module has one manager)."""
    from cascade_core.demo import DEMO_DIR
    from cascade_core.text import load_text_encoder

    return load_text_encoder(DEMO_DIR / "t5", device="cpu", cache=None)


def _stages():
    from cascade_core.demo.settings import STAGES

    return {"base": STAGES["base64"], "sr": STAGES["sr256"], "upscaler": STAGES["sr1024"]}


def _encode(models: dict, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from cascade_core.demo.settings import NEGATIVE_PROMPT

    embeds, _ = models["t5"].encode(prompts + [NEGATIVE_PROMPT])
    return embeds[:-1], embeds[-1:].expand_as(embeds[:-1])


def _run(models: dict, size: int, positive, negative, low_res, *, seed: int) -> torch.Tensor:
    """One demo stage straight from the stage functions (no Cascade, no manager): pixels [B, 3, size, size]."""
    from cascade_core.demo.settings import STAGES
    from cascade_core.stage import sample_stage, schedule_sigmas, unet_guider

    name = {64: "base64", 256: "sr256", 1024: "sr1024"}[size]
    settings, unet = STAGES[name], models[name]
    guider = unet_guider(unet, positive, negative, settings.guidance,
                         threshold_percentile=settings.threshold_percentile, threshold_max=settings.threshold_max)
    sigmas = schedule_sigmas(guider.denoiser, STEPS[size], settings.schedule)
    extra = {} if low_res is None else {"low_res": low_res, "noise_level": settings.noise_level}
    return sample_stage(guider, sigmas, batch_size=positive.shape[0], height=size, width=size, sampler=settings.sampler,
                        generator=torch.Generator().manual_seed(seed * 7919 + size), device=unet.device, **extra)


@pytest.fixture(scope="module")
def reference():
    """The demo cascade run stage by stage from the stage functions (no Cascade, no manager)."""
    require_demo("t5", "base64", "sr256", "sr1024")
    from cascade_core.demo import pipeline
    from cascade_core.image import pixels_to_images

    torch.set_num_threads(1)
    models = pipeline.demo_models("cpu")
    with torch.inference_mode():
        positive, negative = _encode(models, PROMPTS)
        out, low = {}, None
        for size in (64, 256):
            low = _run(models, size, positive, negative, low, seed=3)
            out[size] = pixels_to_images(low)
    return out


def test_demo_generate_uses_cascade_and_is_unchanged(reference):
    from cascade_core.cascade import Cascade
    from cascade_core.demo import pipeline

    out = pipeline.generate(PROMPTS, seed=3, steps=STEPS, device="cpu", up_to=256)
    assert sorted(out) == [64, 256]
    for size in out:
        assert out[size].shape == (1, size, size, 3) and torch.equal(out[size], reference[size])
    cascade = pipeline.demo_cascade("cpu")
    assert isinstance(cascade, Cascade)
    report = cascade.report()
    assert {m.name: m.mode for m in report.models} == {"text_encoder": "keep", "base": "keep", "sr": "keep",
                                                      "upscaler": "keep"}


@pytest.mark.slow
def test_demo_generate_to_1024_equals_the_stage_by_stage_path(reference):
    """The public cascade_core.demo.generate (through Cascade) against the stage functions, all three stages."""
    from cascade_core.demo import generate, pipeline
    from cascade_core.image import pixels_to_images

    out = generate(PROMPTS, seed=3, steps=STEPS, device="cpu")
    models = pipeline.demo_models("cpu")
    with torch.inference_mode():
        positive, negative = _encode(models, PROMPTS)
        low = _run(models, 256, positive, negative, _run(models, 64, positive, negative, None, seed=3), seed=3)
        ref1024 = pixels_to_images(_run(models, 1024, positive, negative, low, seed=3))
    assert torch.equal(out[64], reference[64]) and torch.equal(out[256], reference[256])
    assert torch.equal(out[1024], ref1024)


def test_cascade_from_paths_streamed_under_a_simulated_budget(reference):
    """policy="block" with a 2 MB CPU budget (UNets loaded from their folders): every stage streams, the
    results are identical (the 1024 stage runs the same code as 256; left out for time)."""
    from cascade_core.cascade import Cascade
    from cascade_core.demo import DEMO_DIR

    cascade = Cascade(_own_t5(), DEMO_DIR / "base64", DEMO_DIR / "sr256", DEMO_DIR / "sr1024", policy="block",
                      device="cpu", device_budgets={"cpu": 2_000_000}, stages=_stages())
    out = cascade(PROMPTS, seed=3, steps=STEPS, up_to=256)
    for size in out:
        assert torch.equal(out[size], reference[size]), size
    report = cascade.report()
    assert {m.mode for m in report.models} == {"block"}
    assert report.model("sr").state == "streamed" and report.model("upscaler").state == "offloaded"
    assert report.evictions >= 2  # each stage's resident weights and blocks left room for the next one
    assert all(cascade.manager._entries[n].streamer.prefetch_hits > 0 for n in ("text_encoder", "base", "sr"))


def test_cascade_model_policy_evicts_between_stages(reference):
    from cascade_core.cascade import Cascade
    from cascade_core.demo import DEMO_DIR
    from cascade_core.unet.loading import load_unet

    t5 = _own_t5()
    unets = [load_unet(DEMO_DIR / n, device="cpu") for n in ("base64", "sr256", "sr1024")]
    biggest = max(sum(t.numel() * t.element_size() for t in m.state_dict().values()) for m in [t5.model, *unets])
    cascade = Cascade(t5, *unets, policy="model", device="cpu", stages=_stages(),
                      device_budgets={"cpu": int(biggest * 1.2)})
    out = cascade(PROMPTS, seed=3, steps=STEPS, up_to=256)
    assert torch.equal(out[256], reference[256])
    report = cascade.report()
    assert report.model("sr").state == "resident" and report.model("base").state == "offloaded"
    assert report.last_eviction.for_model == "sr"
    cascade.close()
    assert cascade.manager.names() == []
    Cascade(t5, *unets, policy="keep", device="cpu")  # closed: the models may join another cascade


def test_cascade_input_errors(base, sr):
    from cascade_core.cascade import Cascade

    with pytest.raises(ValueError, match="needs an sr"):
        Cascade(object(), base, upscaler=sr)
    with pytest.raises(TypeError, match="text_encoder must be a TextEncoder"):
        Cascade(object(), base)
    require_demo("t5")
    t5 = _own_t5()
    with pytest.raises(ValueError, match="base must be a base UNet"):
        Cascade(t5, sr)
    with pytest.raises(TypeError, match="sr must be a UNet"):
        Cascade(t5, base, sr="x".encode())


def test_demo_upscale_is_the_cascade_stage(reference):
    """demo.upscale (through Cascade.upscale) equals the stage functions run on the same low-res images."""
    from cascade_core.demo import pipeline, upscale
    from cascade_core.image import images_to_pixels, pixels_to_images

    models = pipeline.demo_models("cpu")
    got = upscale(reference[64], PROMPTS, 256, seed=3, steps=STEPS)
    with torch.inference_mode():
        positive, negative = _encode(models, PROMPTS)
        want = pixels_to_images(_run(models, 256, positive, negative, images_to_pixels(reference[64]), seed=3))
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="1 images but 2 prompts"):
        upscale(reference[64], PROMPTS * 2, 256)
