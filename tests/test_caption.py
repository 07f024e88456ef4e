"""GIT captioning through our loader equals transformers' own path (processor → model.generate → decode)."""
import pytest
import torch
from _vision_models import GIT_PREPROCESSOR, make_images, save_git, uint8_arrays

from cascade_core.captioning import load_captioner


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    from transformers import BertTokenizer, GitForCausalLM
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = save_git(tmp_path_factory.mktemp("git") / "git-base-coco")
    model = GitForCausalLM.from_pretrained(str(folder)).eval()
    tokenizer = BertTokenizer.from_pretrained(str(folder))
    processor = CLIPImageProcessorPil(**{k: v for k, v in GIT_PREPROCESSOR.items() if not k.endswith("_type")
                                         and k != "processor_class"})
    return folder, model, tokenizer, processor


def reference_ids(git, pixel_values: torch.Tensor, **options) -> torch.Tensor:
    _, model, _, _ = git
    with torch.no_grad():
        return model.generate(pixel_values=pixel_values, **options)


def reference_captions(git, images: torch.Tensor, **options) -> list[str]:
    """The documented transformers path: processor(images) → generate(pixel_values) → batch_decode."""
    _, _, tokenizer, processor = git
    pixels = processor(images=uint8_arrays(images), return_tensors="pt")["pixel_values"]
    return [t.strip() for t in tokenizer.batch_decode(reference_ids(git, pixels, **options), skip_special_tokens=True)]


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam3"])
def test_native_size_equals_transformers(git, num_beams):
    captioner = load_captioner(git[0])
    images = make_images(4, 32, 32, seed=11)
    expected = reference_captions(git, images, max_new_tokens=12, num_beams=num_beams)
    assert captioner.caption(images, max_new_tokens=12, num_beams=num_beams) == expected
    assert len(set(expected)) == 4 and all(len(c.split()) >= 2 for c in expected)  # the image matters


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam3"])
def test_processor_mode_equals_transformers_at_any_size(git, num_beams):
    captioner = load_captioner(git[0], preprocess="processor")
    images = make_images(3, 57, 41, smooth=False, seed=12)
    expected = reference_captions(git, images, max_new_tokens=10, num_beams=num_beams)
    assert captioner.caption(images, max_new_tokens=10, num_beams=num_beams) == expected


def test_torch_mode_generates_from_its_pixels(git):
    captioner = load_captioner(git[0])
    images = make_images(3, 57, 41, seed=13)
    pixels = captioner.pixel_values(images)
    ids = reference_ids(git, pixels, max_new_tokens=10)
    expected = [t.strip() for t in git[2].batch_decode(ids, skip_special_tokens=True)]
    assert captioner.caption(images, max_new_tokens=10, batch_size=2) == expected


def test_decoding_options_and_prompt(git):
    captioner = load_captioner(git[0], device="cpu", dtype=torch.float32)
    images = make_images(2, 32, 32, seed=14)
    options = dict(max_new_tokens=8, min_new_tokens=8, repetition_penalty=1.3)
    assert captioner.caption(images, **options) == reference_captions(git, images, **options)
    tokenizer = git[2]
    prompt_ids = [tokenizer.cls_token_id] + tokenizer("a photo of", add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([prompt_ids] * 2)
    pixels = git[3](images=uint8_arrays(images), return_tensors="pt")["pixel_values"]
    ids = reference_ids(git, pixels, input_ids=input_ids, max_new_tokens=6)[:, len(prompt_ids):]
    expected = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert captioner.caption(images, prompt="  a photo of ", max_new_tokens=6) == expected


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(git):
    captioner = load_captioner(git[0])
    images = make_images(2, 32, 32, seed=15)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = captioner.caption(images, do_sample=True, seed=7, temperature=1.5, max_new_tokens=10)
    assert torch.equal(torch.get_rng_state(), state)
    assert captioner.caption(images, do_sample=True, seed=7, temperature=1.5, max_new_tokens=10) == first
    assert captioner.caption(images, do_sample=True, seed=8, temperature=1.5, max_new_tokens=10) != first
    torch.manual_seed(7)  # transformers' sampling draws from the global generator
    assert first == reference_captions(git, images, do_sample=True, temperature=1.5, top_p=1.0, max_new_tokens=10)


def test_captioner_basics(git):
    captioner = load_captioner(git[0])
    assert captioner.device == torch.device("cpu") and captioner.dtype == torch.float32
    tensors = [*git[1].parameters(), *git[1].buffers()]
    assert captioner.parameter_bytes == sum(t.numel() * t.element_size() for t in tensors)
    assert captioner.to("cpu") is captioner and "git-base-coco" in repr(captioner)
    assert not any(p.requires_grad for p in captioner.model.parameters()) and not captioner.model.training
    half = load_captioner(git[0], dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and len(half.caption(make_images(1, 32, 32), max_new_tokens=3)) == 1
    for bad in (dict(max_new_tokens=0), dict(num_beams=0), dict(top_p=0.0, do_sample=True), dict(batch_size=0),
                dict(min_new_tokens=40)):
        with pytest.raises(ValueError):
            captioner.caption(make_images(1, 32, 32), **bad)
