"""Tiny GIT / CLIP / SigLIP folders in transformers layout, built here (random init, never downloaded).

Each folder holds what the hub repositories hold: ``config.json`` + ``model.safetensors`` from
``save_pretrained``, tokenizer files written by hand (a WordPiece ``vocab.txt`` for GIT's
``BertTokenizer``, a byte-level BPE ``vocab.json`` + ``merges.txt`` for CLIP, a sentencepiece
``spiece.model`` for SigLIP) and a ``preprocessor_config.json`` with the settings of
microsoft/git-base-coco, openai/clip-vit-base-patch32 and google/siglip-base-patch16-224, scaled to 32 px.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE = 32  # vision tower input size of every tiny model
WORDS = ["a", "the", "photo", "of", "cat", "dog", "red", "green", "blue", "car", "on", "grass", "sky", "thing",
         "two", "sitting", "table", "with", "and", "in", "picture"]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

GIT_PREPROCESSOR = {  # microsoft/git-base-coco, sizes 224 -> 32
    "crop_size": {"height": IMAGE, "width": IMAGE}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
    "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "processor_class": "GitProcessor",
    "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": IMAGE},
}
CLIP_PREPROCESSOR = {  # openai/clip-vit-base-patch32 (old-style integer sizes), 224 -> 32
    "crop_size": IMAGE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
    "resample": 3, "size": IMAGE,
}
SIGLIP_PREPROCESSOR = {  # google/siglip-base-patch16-224, 224 -> 32
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor", "resample": 3, "rescale_factor": 1 / 255,
    "size": {"height": IMAGE, "width": IMAGE},
}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1))


# -- images -------------------------------------------------------------------------------------------
def make_images(batch: int, height: int, width: int, *, seed: int = 0, smooth: bool = True,
                channels: int = 3) -> torch.Tensor:
    """ComfyUI IMAGE ``[B, H, W, C]`` with 8-bit values (k/255), smooth blobs or per-pixel noise."""
    g = torch.Generator().manual_seed(seed)
    if smooth:
        low = torch.rand(batch, channels, height // 8 + 2, width // 8 + 2, generator=g)
        x = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    else:
        x = torch.rand(batch, channels, height, width, generator=g)
    return ((x * 255).round() / 255).permute(0, 2, 3, 1).contiguous()


def uint8_arrays(images: torch.Tensor) -> list[np.ndarray]:
    """What a user hands transformers' processor: uint8 ``[H, W, C]`` arrays of the same images."""
    return [a for a in (images * 255).round().to(torch.uint8).numpy()]


# -- GIT ------------------------------------------------------------------------------------------------
def bert_vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + letters + ["##" + c for c in letters] + WORDS


def git_model(seed: int = 0):
    from transformers import GitConfig, GitForCausalLM

    vocab = bert_vocab()
    config = GitConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=64, bos_token_id=vocab.index("[CLS]"), eos_token_id=vocab.index("[SEP]"),
        pad_token_id=0, initializer_range=0.2,
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=IMAGE, patch_size=8, initializer_range=0.2),
    )
    torch.manual_seed(seed)
    model = GitForCausalLM(config).eval()
    with torch.no_grad():  # keep "[SEP]" (end of caption) unlikely so captions have several tokens
        model.output.bias[config.eos_token_id] -= 3.0
    return model


def save_git(folder: Path, seed: int = 0) -> Path:
    """A git-base-coco-like folder: config, safetensors, vocab.txt + tokenizer_config.json, preprocessor config."""
    git_model(seed).save_pretrained(str(folder))
    (folder / "vocab.txt").write_text("\n".join(bert_vocab()) + "\n")
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512,
        "processor_class": "GitProcessor"})
    _write_json(folder / "preprocessor_config.json", GIT_PREPROCESSOR)
    return folder


# -- CLIP ----------------------------------------------------------------------------------------------
def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges by rank (lowest first), as the tokenizer does."""
    while len(pieces) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank_, i = min(pairs)
        if rank_ == 1 << 30:
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
    return pieces


def clip_vocab() -> tuple[dict[str, int], list[str]]:
    """Byte-level BPE vocab where every word of :data:`WORDS` is one token (``word</w>``)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [",", "."]
    tokens = letters + [c + "</w>" for c in letters]
    ranks: dict[tuple[str, str], int] = {}
    for word in WORDS:
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(pieces) > 1:  # new merges rank after all earlier ones, so earlier words are unaffected
            ranks[(pieces[0], pieces[1])] = len(ranks)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            tokens.append(pieces[0])
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, [f"{a} {b}" for a, b in ranks]


def clip_config(vocab: dict[str, int], projection_dim: int = 16):
    from transformers import CLIPConfig

    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, projection_dim=projection_dim, max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"])
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE, patch_size=8, projection_dim=projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def clip_model(seed: int = 0):
    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(clip_config(clip_vocab()[0])).eval()
    with torch.no_grad():  # transformers' init leaves tiny random projections; make them matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def write_clip_processor(folder: Path) -> None:
    vocab, merges = clip_vocab()
    _write_json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    _write_json(folder / "tokenizer_config.json", {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77})
    _write_json(folder / "preprocessor_config.json", CLIP_PREPROCESSOR)


def save_clip(folder: Path, model=None) -> Path:
    (model if model is not None else clip_model()).save_pretrained(str(folder))
    write_clip_processor(folder)
    return folder


def colour_clip():
    """A CLIPModel wired by hand so that embeddings encode colour: a red image is closest to the text "red".

    Vision: each patch embeds its mean normalised (R, G, B) in dims 0..2; one layer with zero query/key
    weights averages all tokens into the class token; the other layer and the MLPs add nothing; the
    projection keeps dims 0..2. Text: "red"/"green"/"blue" embed as the matching colour's sign pattern,
    every other token as 0; the same averaging brings them to the pooled (end-of-text) token.
    """
    vocab, _ = clip_vocab()
    model = clip_model()
    hidden, proj = 32, 16
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for tower in (model.vision_model, model.text_model):
            for norm in [m for m in tower.modules() if isinstance(m, torch.nn.LayerNorm)]:
                norm.weight.fill_(1.0)
            attn = tower.encoder.layers[0].self_attn
            attn.v_proj.weight.copy_(torch.eye(hidden))
            attn.out_proj.weight.copy_(torch.eye(hidden))
        patch = model.vision_model.embeddings.patch_embedding.weight  # [hidden, 3, 8, 8]
        for c in range(3):
            patch[c, c] = 1.0 / 64
        tokens = model.text_model.embeddings.token_embedding.weight
        for c, word in enumerate(("red</w>", "green</w>", "blue</w>")):
            tokens[vocab[word]] = -1.0
            tokens[vocab[word], c] = 2.0
            tokens[vocab[word], 3:] = 0.0
        for projection in (model.visual_projection, model.text_projection):
            projection.weight[:3, :3] = torch.eye(3)
        model.logit_scale.fill_(np.log(100.0))
    assert proj >= 3
    return model


def colour_images(colours: list[tuple[float, float, float]], size: int = 40) -> torch.Tensor:
    """``[B, size, size, 3]`` flat colours with a little texture."""
    g = torch.Generator().manual_seed(1)
    base = torch.tensor(colours, dtype=torch.float32)[:, None, None, :]
    return (base * 0.9 + 0.1 * torch.rand(len(colours), size, size, 3, generator=g)).clamp(0, 1)


# -- SigLIP --------------------------------------------------------------------------------------------
def save_siglip(folder: Path, spiece: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipModel

    text = dict(vocab_size=220, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, pad_token_id=1, bos_token_id=1, eos_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE, patch_size=8)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.logit_scale.fill_(np.log(10.0))
        model.logit_bias.fill_(-2.5)
    model.save_pretrained(str(folder))
    (folder / "spiece.model").write_bytes(spiece.read_bytes())
    _write_json(folder / "tokenizer_config.json", {"tokenizer_class": "SiglipTokenizer", "model_max_length": 64})
    _write_json(folder / "preprocessor_config.json", SIGLIP_PREPROCESSOR)
    return folder
