"""CLIP / SigLIP embeddings through our loader equal transformers' features; scores and ranking."""
import pytest
import torch
import torch.nn.functional as F
from _text_models import train_spiece
from _vision_models import colour_clip, colour_images, make_images, save_clip, save_siglip, uint8_arrays

from cascade_core.similarity import TextInputError, best_matches, load_embedder, rank

TEXTS = ["a photo of a cat", "two dogs sitting on the grass", "", "a red car, and a blue sky with a red car " * 4]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = save_clip(tmp_path_factory.mktemp("clip") / "clip-vit-base-patch32")
    model = CLIPModel.from_pretrained(str(folder)).eval()
    return folder, model, CLIPTokenizer.from_pretrained(str(folder)), CLIPImageProcessorPil.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    from transformers import SiglipModel, SiglipTokenizer
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    root = tmp_path_factory.mktemp("siglip")
    folder = save_siglip(root / "siglip-base-patch16-224", train_spiece(root / "spm"))
    model = SiglipModel.from_pretrained(str(folder)).eval()
    return folder, model, SiglipTokenizer.from_pretrained(str(folder)), SiglipImageProcessorPil.from_pretrained(
        str(folder))


def reference(ref, images, texts, **text_options):
    """transformers' documented path: processor/tokenizer → get_*_features → normalise; and the forward's logits."""
    _, model, tokenizer, processor = ref
    pixels = processor(images=uint8_arrays(images), return_tensors="pt")["pixel_values"]
    tokens = tokenizer(texts, truncation=True, return_tensors="pt", **text_options)
    with torch.no_grad():
        image = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        text = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
        logits = model(pixel_values=pixels, **tokens).logits_per_image
    return image, text, logits


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_embeddings_and_scores_equal_transformers(family, clip, siglip):
    ref = clip if family == "clip" else siglip
    text_options = dict(padding=True) if family == "clip" else dict(padding="max_length", max_length=64)
    images = make_images(3, 32, 32, seed=21)  # native size: preprocessing is exact, see test_caption_preprocess
    image, text, logits = reference(ref, images, TEXTS, **text_options)
    embedder = load_embedder(ref[0])
    got_image, got_text = embedder.embed_images(images, batch_size=2), embedder.embed_texts(TEXTS, batch_size=3)
    dim = 16 if family == "clip" else 32  # CLIP: projection_dim; SigLIP: hidden size (no projection)
    assert got_image.shape == (3, dim) and got_text.shape == (4, dim) and got_text.dtype == torch.float32
    assert (got_image - image).abs().max() <= 1e-5 and (got_text - text).abs().max() <= 1e-5
    assert torch.allclose(got_image.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert (embedder.similarity(images, TEXTS) - image @ text.T).abs().max() <= 1e-5
    assert (embedder.similarity(images, TEXTS, scale=True) - logits).abs().max() <= 1e-4
    probs = embedder.similarity(images, TEXTS, softmax=True)
    assert (probs - logits.softmax(dim=-1)).abs().max() <= 1e-5
    assert embedder.family == family and embedder.max_length == (77 if family == "clip" else 64)


def test_resized_images_and_processor_mode(clip):
    images = make_images(2, 61, 45, seed=22)
    image, _, _ = reference(clip, images, ["x"], padding=True)
    exact = load_embedder(clip[0], preprocess="processor").embed_images(images)
    assert (exact - image).abs().max() <= 1e-5
    embedder = load_embedder(clip[0])
    with torch.no_grad():
        features = clip[1].get_image_features(pixel_values=embedder.pixel_values(images)).pooler_output
    assert (embedder.embed_images(images) - F.normalize(features, dim=-1)).abs().max() <= 1e-5
    assert (embedder.embed_images(images) - image).abs().max() <= 0.05  # only the 8-bit rounding differs


def test_long_text_is_truncated_with_a_warning(clip, caplog):
    embedder = load_embedder(clip[0])
    long = " ".join(["red car"] * 60)
    _, text, _ = reference(clip, make_images(1, 32, 32), [long], padding=True, max_length=77)
    with caplog.at_level("WARNING", logger="cascade_core.similarity"):
        got = embedder.embed_texts([long])
    assert "122 tokens long" in caplog.text and "first 77" in caplog.text
    assert (got - text).abs().max() <= 1e-5


def test_ranking_on_a_constructed_case(tmp_path):
    folder = save_clip(tmp_path / "colour-clip", colour_clip())
    embedder = load_embedder(folder)
    images = colour_images([(0.1, 0.1, 0.95), (0.95, 0.05, 0.05), (0.05, 0.9, 0.1)])  # blue, red, green
    texts = ["a photo of a red car", "green grass", "the blue sky", "a cat"]
    scores = embedder.similarity(images, texts)
    assert rank(scores)[:, 0].tolist() == [2, 0, 1]  # best text per image
    assert rank(scores, dim=0)[:, :3].T[:, 0].tolist() == [1, 2, 0]  # best image per colour text
    best = best_matches(scores, texts, k=2)
    assert [row[0][1] for row in best] == ["the blue sky", "a photo of a red car", "green grass"]
    assert best[0][0][2] == pytest.approx(scores[0, 2].item()) and len(best[0]) == 2
    probs = embedder.similarity(images, texts, softmax=True)
    assert torch.allclose(probs.sum(dim=-1), torch.ones(3)) and (probs.max(dim=-1).values > 0.9).all()
    assert embedder.logit_scale == pytest.approx(100.0, rel=1e-5) and embedder.logit_bias == 0.0


def test_rank_and_best_matches_are_pure_helpers():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9], [0.3, -0.2, 0.8, 0.0]])
    assert rank(scores).tolist() == [[1, 3, 2, 0], [2, 0, 3, 1]]  # ties keep their order
    assert rank(scores, dim=0).tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert best_matches(scores, list("abcd"), k=9)[1] == [(2, "c", pytest.approx(0.8)), (0, "a", pytest.approx(0.3)),
                                                          (3, "d", 0.0), (1, "b", pytest.approx(-0.2))]
    with pytest.raises(ValueError, match="4 labels"):
        best_matches(scores[:, :3], list("abcd"))


def test_bad_texts_and_images(clip):
    embedder = load_embedder(clip[0])
    with pytest.raises(TextInputError, match="at least one text"):
        embedder.embed_texts([])
    with pytest.raises(ValueError, match="must be strings"):
        embedder.embed_texts(["a cat", None])
    assert embedder.embed_texts("a cat").shape == (1, 16)
    with pytest.raises(ValueError, match="empty"):
        embedder.embed_images(torch.zeros(0, 32, 32, 3))
    gray, rgba = make_images(2, 32, 32, channels=1, seed=23), make_images(2, 32, 32, channels=4, seed=24)
    assert torch.equal(embedder.embed_images(gray), embedder.embed_images(gray.expand(-1, -1, -1, 3)))
    on_white = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
    assert (embedder.embed_images(rgba) - embedder.embed_images(on_white)).abs().max() <= 1e-6
