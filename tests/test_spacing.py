"""Timestep spacings: equality with diffusers' DDPMScheduler.set_timesteps and DeepFloyd IF's respacing lists."""
import pytest
from diffusers import DDPMScheduler
from diffusers.pipelines.deepfloyd_if import timesteps as if_timesteps

from cascade_core.spacing import IF_STEP_STRINGS, respaced_timesteps, spaced_timesteps, timesteps_from_spec

NAMED = ["fast27", "smart27", "smart50", "smart100", "smart185", "super27", "super40", "super100"]


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps_offset", [0, 1])
def test_spaced_timesteps_equal_diffusers(spacing, steps_offset):
    scheduler = DDPMScheduler(timestep_spacing=spacing, steps_offset=steps_offset)
    for n in [1, 2, 3, 7, 25, 27, 48, 50, 75, 100, 150, 250, 333, 999]:
        scheduler.set_timesteps(n)
        ours = spaced_timesteps(n, spacing, steps_offset=steps_offset)
        assert ours == scheduler.timesteps.tolist(), (spacing, steps_offset, n)
        assert len(ours) == n


def test_spaced_timesteps_other_train_length():
    scheduler = DDPMScheduler(num_train_timesteps=500, timestep_spacing="leading", steps_offset=1)
    scheduler.set_timesteps(30)
    assert spaced_timesteps(30, "leading", num_train_timesteps=500, steps_offset=1) == scheduler.timesteps.tolist()


def test_trailing_drops_the_negative_timestep_diffusers_emits():
    # For N = 61 numpy's float arange yields 62 points and diffusers ends the list with -1 (an invalid timestep).
    scheduler = DDPMScheduler(timestep_spacing="trailing")
    scheduler.set_timesteps(61)
    ref = scheduler.timesteps.tolist()
    assert ref[-1] == -1 and len(ref) == 62
    assert spaced_timesteps(61, "trailing") == ref[:-1]


def test_spaced_timesteps_errors_name_the_argument():
    with pytest.raises(ValueError, match="spacing"):
        spaced_timesteps(10, "quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        spaced_timesteps(0)
    with pytest.raises(ValueError, match="num_steps"):
        spaced_timesteps(1001)
    with pytest.raises(ValueError, match="steps_offset"):
        spaced_timesteps(1000, "leading", steps_offset=1)


def test_named_strings_are_the_documented_ones():
    assert sorted(IF_STEP_STRINGS) == sorted(NAMED)
    assert IF_STEP_STRINGS["fast27"] == "10,10,3,2,2"
    assert IF_STEP_STRINGS["smart27"] == "7,4,2,1,2,4,7"


@pytest.mark.parametrize("name", NAMED)
def test_respaced_equals_diffusers_lists(name):
    ref = getattr(if_timesteps, f"{name}_timesteps")
    assert respaced_timesteps(name, flavour="diffusers") == ref
    original = respaced_timesteps(name)
    if name == "fast27":
        # The original code swaps the noisiest step 999 for 997; diffusers' shipped list keeps 999.
        assert original == sorted((set(ref) - {999}) | {997}, reverse=True)
    else:
        assert original == ref
    assert respaced_timesteps(IF_STEP_STRINGS[name], flavour="diffusers") == ref


def test_plain_number_is_one_section():
    steps = respaced_timesteps("100")
    assert steps == [round(k * 999 / 99) for k in range(99, -1, -1)]
    assert steps[:3] == [999, 989, 979] and steps[-1] == 0
    assert respaced_timesteps("1000") == list(range(999, -1, -1))


def test_respaced_errors():
    with pytest.raises(ValueError, match="flavour"):
        respaced_timesteps("smart27", flavour="k-diffusion")
    with pytest.raises(ValueError, match="smart27"):
        respaced_timesteps("smart28")
    with pytest.raises(ValueError, match="section"):
        respaced_timesteps("600,1")  # 600 steps cannot come out of a 500-step section


def test_timesteps_from_spec_dispatch():
    assert timesteps_from_spec(50) == spaced_timesteps(50)
    assert timesteps_from_spec("50", spacing="trailing") == spaced_timesteps(50, "trailing")
    assert timesteps_from_spec("smart27") == respaced_timesteps("smart27")
    assert timesteps_from_spec("10,10,3,2,2") == respaced_timesteps("10,10,3,2,2")
    with pytest.raises(ValueError, match="smart50"):
        timesteps_from_spec("smart51")
    with pytest.raises(ValueError):
        timesteps_from_spec(2.5)
