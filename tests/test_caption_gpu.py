"""GPU checks of captioning and similarity (run with ``pytest -m gpu``): default CUDA + bf16 loads and runs,
torch preprocessing on the GPU equals the CPU result, fp32 CUDA embeddings equal the CPU ones."""
import pytest
import torch
from _vision_models import make_images, save_clip, save_git

from cascade_core.captioning import load_captioner
from cascade_core.similarity import load_embedder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    return save_git(root / "git"), save_clip(root / "clip")


def test_defaults_are_cuda_bf16_and_preprocessing_matches_cpu(folders):
    captioner = load_captioner(folders[0])
    assert captioner.device.type == "cuda" and captioner.dtype == torch.bfloat16
    images = make_images(3, 75, 51, seed=41)
    on_gpu = load_captioner(folders[0], dtype=torch.float32).pixel_values(images).cpu()
    on_cpu = load_captioner(folders[0], device="cpu").pixel_values(images)
    assert (on_gpu - on_cpu).abs().max() <= 1e-4
    captions = captioner.caption(images, max_new_tokens=8, num_beams=2)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert captioner.to("cpu").device.type == "cpu"


def test_fp32_cuda_embeddings_equal_cpu(folders):
    images, texts = make_images(2, 40, 40, seed=42), ["a red car", "two dogs"]
    gpu = load_embedder(folders[1], dtype=torch.float32)
    cpu = load_embedder(folders[1], device="cpu")
    assert gpu.device.type == "cuda"
    assert (gpu.similarity(images, texts).cpu() - cpu.similarity(images, texts)).abs().max() <= 1e-4
    half = load_embedder(folders[1])
    assert half.dtype == torch.bfloat16 and half.embed_images(images).dtype == torch.float32
