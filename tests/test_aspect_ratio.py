"""Non-square images through every stage (issue 13, item 3): every tiny UNet config's forward equals diffusers' at
portrait and landscape sizes; stage I and II loops equal diffusers' IFPipeline and
IFSuperResolutionPipeline at fp32 on non-square tiny models (portrait and landscape); the x4 stage keeps the aspect
ratio, tiled or not, with tiles that do not divide the sides; the Cascade and the demo's generate take height and
width, each later stage 4x both sides, equal to the stage functions run at those sizes."""
import pytest
import torch

from _demo_models import require_demo
from cascade_core.guidance import CFGGuider, DynamicThreshold
from cascade_core.stage import sample_stage, schedule_sigmas, stage_sigmas, unet_denoiser, unet_guider
from cascade_core.upscaler.tiling import TiledDenoiser, tiled_map
from test_stage_parity import _embeds, _pair, _pipe_kwargs
from test_unet_parity import _ours_from
from tiny_unets import CONFIGS, MICRO_IF_I, MICRO_IF_II, diffusers_unet
from tiny_x4 import low_res_image

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a large red circle on the left, on a white background"]


# IF UNets need multiples of 2**(levels-1); the x4 family resamples by conv and takes any size (odd levels follow
# diffusers' forward_upsample_size): 10 x 22 halves to 5 x 11, so its up path meets odd skips
SIZES = {"x4": [(10, 22), (22, 10)], "micro_x4": [(10, 22), (22, 10)], "x4_conv_proj": [(10, 22)]}


@pytest.mark.parametrize("name,hw", [(n, hw) for n in CONFIGS for hw in SIZES.get(n, [(16, 40), (40, 16)])],
                         ids=lambda v: v if isinstance(v, str) else "x".join(map(str, v)))
def test_unet_forward_non_square_matches_diffusers(name, hw):
    """Every tiny UNet config (IF-I, IF-II, only-cross, x4, x4 with conv projections) at portrait and landscape
    sizes: no positional or square assumption anywhere (attention pooling of the text, attention over H*W tokens)."""
    cfg = CONFIGS[name]
    ref = diffusers_unet(cfg)
    ours = _ours_from(ref)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cfg["in_channels"], *hw, generator=g)
    text = torch.randn(2, 7, cfg.get("encoder_hid_dim") or cfg["cross_attention_dim"], generator=g)
    t = torch.tensor([999, 17])
    noise = torch.tensor([250, 20]) if cfg.get("class_embed_type") or cfg.get("num_class_embeds") else None
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=text, class_labels=noise).sample
        got = ours(x, t, text, noise)
    assert got.shape == expected.shape == (2, cfg["out_channels"], *hw)
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("height,width", [(24, 16), (16, 28)], ids=["portrait", "landscape"])
def test_stage_one_non_square_matches_if_pipeline(height, width):
    ref, ours = _pair(MICRO_IF_I)
    emb, neg = _embeds(16, batch=2)
    pipe = diffusers.IFPipeline(**_pipe_kwargs(ref, 1.5))
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=7.0, height=height,
                        width=width, num_inference_steps=10, output_type="pt",
                        generator=torch.Generator().manual_seed(0)).images
        den = unet_denoiser(ours)
        guider = CFGGuider(den, emb, neg, 7.0, post_cfg=[DynamicThreshold(0.95, 1.5)])
        got = sample_stage(guider, stage_sigmas(den, 10), batch_size=2, height=height, width=width,
                           generator=torch.Generator().manual_seed(0))
    assert got.shape == expected.shape == (2, 3, height, width)
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("low_hw", [(8, 12), (12, 8)], ids=["landscape", "portrait"])
def test_stage_two_non_square_matches_if_superresolution_pipeline(low_hw):
    """The low-res image is upsampled to (4h, 4w), not to a square, and conditions every step at that size."""
    ref, ours = _pair(MICRO_IF_II)
    emb, neg = _embeds(16)
    low = torch.rand(1, 3, *low_hw, generator=torch.Generator().manual_seed(9)) * 2 - 1
    height, width = 4 * low_hw[0], 4 * low_hw[1]
    noising = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    pipe = diffusers.IFSuperResolutionPipeline(**_pipe_kwargs(ref, 1.0), image_noising_scheduler=noising)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = pipe(image=low, prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=4.0,
                        num_inference_steps=8, noise_level=250, height=height, width=width, output_type="pt",
                        generator=torch.Generator().manual_seed(0)).images
        den = unet_denoiser(ours)
        guider = CFGGuider(den, emb, neg, 4.0, post_cfg=[DynamicThreshold(0.95, 1.0)])
        got = sample_stage(guider, stage_sigmas(den, 8), height=height, width=width, low_res=low, noise_level=250,
                           generator=torch.Generator().manual_seed(0))
    assert got.shape == expected.shape == (1, 3, height, width)
    assert (got - expected).abs().max().item() < 1e-4


# -- stage III (SD x4 upscaler) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def upscaler(x4_repo):
    from cascade_core.upscaler.loading import load_upscaler

    return load_upscaler(x4_repo[1], device="cpu", dtype=torch.float32)


def test_blending_is_exact_when_a_tile_covers_one_side_whole():
    """A 12 x 50 input, tile 16: one row of windows, four uneven columns; weights still a partition of unity."""
    x = torch.randn(1, 3, 12, 50)
    seen = []

    def double(t, _):
        seen.append(tuple(t.shape[-2:]))
        return 2 * t

    assert (tiled_map(double, x, 16, 4) - 2 * x).abs().max() < 1e-5
    assert set(seen) == {(12, 16)} and len(seen) == 4


def test_x4_stage_non_square_tiled_close_to_untiled(upscaler):
    """20 x 36 low-res (neither side a multiple of the 16-latent tile) -> 80 x 144; UNet tiles 16 / overlap 4 and
    VAE tiles 12 / overlap 4 stay close to the untiled run (the tiny random models are far less local than trained
    ones, hence the loose bound: measured mean |diff| 0.03)."""
    image = low_res_image(1, (20, 36), smooth=True)
    run = lambda **kw: upscaler_run(upscaler, image, **kw)  # noqa: E731
    full = run()
    tiled = run(tile=16, overlap=4, vae_tile=12, vae_overlap=4)
    assert full.shape == tiled.shape == (1, 3, 80, 144)
    assert bool(torch.isfinite(tiled).all())
    assert (tiled - full).abs().mean() < 0.1
    calls = []

    def denoiser(x, sigma, **extra):
        calls.append((tuple(x.shape[-2:]), tuple(extra["low_res"].shape[-2:])))
        return x

    x, low = torch.randn(1, 4, 20, 36), torch.randn(1, 3, 20, 36)
    assert (TiledDenoiser(denoiser, 16, 4)(x, torch.ones(1), low_res=low) - x).abs().max() < 1e-5
    assert {c for c in calls} == {((16, 16), (16, 16))} and len(calls) == 2 * 3  # 2 rows x 3 columns


def upscaler_run(upscaler, image, **tiles):
    from cascade_core.upscaler.stage import sample_x4_stage

    return sample_x4_stage(upscaler, image, "the cat", steps=3, generator=torch.Generator().manual_seed(0), **tiles)


# -- Cascade / demo ------------------------------------------------------------------------------------------
def _micro_unet(config: dict, seed: int):
    """A random micro UNet taking the demo T5's 128-wide states."""
    from cascade_core.unet.config import UNetConfig
    from cascade_core.unet.model import UNet

    torch.manual_seed(seed)
    return UNet(UNetConfig.from_diffusers_config(dict(config, encoder_hid_dim=128))).eval()


def _stage_reference(cascade, role: str, hw: tuple[int, int], positive, negative, low, *, seed: int, steps: int):
    """One IF stage of ``cascade`` straight from the stage functions at ``hw`` (no manager): pixels [B, 3, *hw]."""
    settings, unet = cascade.stages[role], getattr(cascade, role)
    guider = unet_guider(unet, positive, negative, settings.guidance,
                         threshold_percentile=settings.threshold_percentile, threshold_max=settings.threshold_max)
    extra = {} if low is None else {"low_res": low, "noise_level": settings.noise_level}
    return sample_stage(guider, schedule_sigmas(guider.denoiser, steps, settings.schedule), height=hw[0],
                        width=hw[1], batch_size=positive.shape[0], sampler=settings.sampler, device="cpu",
                        generator=torch.Generator().manual_seed(seed * 7919 + min(hw)), **extra)


@pytest.fixture(scope="module")
def micro_cascade():
    """Demo T5 + micro random IF-I / IF-II / pixel stage-III UNets as a Cascade (fast at any size)."""
    require_demo("t5")
    from cascade_core.cascade import Cascade
    from test_cascade import _own_t5

    cascade = Cascade(_own_t5(), _micro_unet(MICRO_IF_I, 0), _micro_unet(MICRO_IF_II, 1), _micro_unet(MICRO_IF_II, 2),
                      policy="keep", device="cpu")
    yield cascade
    cascade.close()


def test_cascade_non_square_equals_the_stage_functions(micro_cascade):
    """height=8, width=16 -> {8: 8x16, 32: 32x64, 128: 128x256} (keys: shorter sides, seeds by them), each stage
    equal to the stage functions at its size; Cascade.upscale takes the non-square images as they are."""
    from cascade_core.image import images_to_pixels, pixels_to_images

    cascade = micro_cascade
    steps = {8: 2, 32: 1, 128: 1}
    out = cascade(PROMPTS, seed=4, steps=steps, height=8, width=16)
    assert {k: tuple(v.shape) for k, v in out.items()} == {8: (1, 8, 16, 3), 32: (1, 32, 64, 3),
                                                          128: (1, 128, 256, 3)}
    portrait = cascade(PROMPTS, seed=4, steps=1, height=24, width=8, up_to=32)
    assert {k: tuple(v.shape) for k, v in portrait.items()} == {8: (1, 24, 8, 3), 32: (1, 96, 32, 3)}
    with torch.inference_mode():
        positive, negative = cascade.encode(PROMPTS)
        low = None
        for role, hw, key in (("base", (8, 16), 8), ("sr", (32, 64), 32), ("upscaler", (128, 256), 128)):
            low = _stage_reference(cascade, role, hw, positive, negative, low, seed=4, steps=steps[key])
            assert torch.equal(out[key], pixels_to_images(low)), role
        again = _stage_reference(cascade, "sr", (32, 64), positive, negative, images_to_pixels(out[8]), seed=4,
                                 steps=1)
    assert torch.equal(cascade.upscale(out[8], PROMPTS, "sr", seed=4, steps=1), pixels_to_images(again))


def test_cascade_with_the_x4_upscaler_keeps_the_aspect_ratio(x4_repo, upscaler):
    require_demo("t5")
    from cascade_core.cascade import Cascade
    from test_cascade import _own_t5

    cascade = Cascade(_own_t5(), _micro_unet(MICRO_IF_I, 0), _micro_unet(MICRO_IF_II, 1), upscaler, policy="keep",
                      device="cpu", upscaler_options={"tile": 16, "overlap": 4, "vae_tile": 16})
    try:
        out = cascade(PROMPTS, steps=1, height=8, width=12)
    finally:
        cascade.close()
    assert {k: tuple(v.shape) for k, v in out.items()} == {8: (1, 8, 12, 3), 32: (1, 32, 48, 3),
                                                          128: (1, 128, 192, 3)}
    assert all(bool(torch.isfinite(v).all()) for v in out.values())


def test_cascade_size_errors_name_the_input(micro_cascade):
    m = micro_cascade.base.config.size_multiple
    with pytest.raises(ValueError, match=rf"Cascade: width .* multiple of {m} .* got {m + 1}"):
        micro_cascade(PROMPTS, height=m, width=m + 1)
    with pytest.raises(ValueError, match=r"Cascade: height .* got 0"):
        micro_cascade(PROMPTS, height=0)
    with pytest.raises(ValueError, match=r"Cascade: up_to must be one of \[8, 32, 128\]"):
        micro_cascade(PROMPTS, height=8, width=16, up_to=16)


def test_demo_generate_non_square_base_stage():
    """demo generate(height=64, width=112, up_to=64): the 64 px stage at 64x112, equal to the stage functions;
    demo.upscale names the shorter-side rule."""
    require_demo("t5", "base64")
    from cascade_core.demo import pipeline, upscale
    from cascade_core.image import pixels_to_images
    from test_cascade import _encode

    out = pipeline.generate(PROMPTS, seed=2, steps=2, device="cpu", up_to=64, height=64, width=112)
    assert {k: tuple(v.shape) for k, v in out.items()} == {64: (1, 64, 112, 3)}
    cascade = pipeline.demo_cascade("cpu")
    with torch.inference_mode():
        positive, negative = _encode(pipeline.demo_models("cpu"), PROMPTS)
        base = _stage_reference(cascade, "base", (64, 112), positive, negative, None, seed=2, steps=2)
    assert torch.equal(out[64], pixels_to_images(base))
    with pytest.raises(ValueError, match="shorter side is 64 px"):
        upscale(torch.zeros(1, 256, 448, 3), PROMPTS, 256)
