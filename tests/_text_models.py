"""Tiny T5 encoders, tokenizers and checkpoint layouts for the text-encoder tests (built, never downloaded)."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

SUBJECTS = ["cat", "dog", "robot", "castle", "lighthouse", "teapot", "dragon", "bicycle"]
COLOURS = ["red", "blue", "green", "golden", "purple", "silver"]
PLACES = ["on a table", "in a forest", "under the sea", "on the moon", "in a small kitchen", "near a river"]
STYLES = ["oil painting", "photograph", "watercolor sketch", "pixel art", "studio portrait"]


def corpus() -> list[str]:
    lines = []
    for i, subject in enumerate(SUBJECTS):
        for j, place in enumerate(PLACES):
            colour, style = COLOURS[(i + j) % len(COLOURS)], STYLES[(i * j) % len(STYLES)]
            lines.append(f"a {style} of a {colour} {subject} {place}, highly detailed, soft light number {i * j}")
    return lines


TINY_CONFIG = {
    "model_type": "t5", "vocab_size": 320, "d_model": 64, "d_kv": 16, "num_heads": 4, "d_ff": 96,
    "num_layers": 3, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
}
XXL_CONFIG = {
    "model_type": "t5", "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "num_heads": 64, "d_ff": 10240,
    "num_layers": 24, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
}


def train_spiece(folder: Path) -> Path:
    """Train a small unigram sentencepiece model with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(folder / "spiece"), vocab_size=200,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        character_coverage=1.0, minloglevel=2, num_threads=1,
    )
    (folder / "spiece.vocab").unlink()
    return folder / "spiece.model"


def hf_tokenizer(folder: Path):
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(folder))


def reference_model(seed: int = 0, config: dict | None = None):
    """A transformers ``T5EncoderModel`` with random (transformers-initialised) fp32 weights."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    model = T5EncoderModel(T5Config.from_dict(config or TINY_CONFIG)).eval()
    with torch.no_grad():  # give layer norms non-trivial weights so a wrong norm would show
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model


def reference_encode(model, tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own path: tokenizer(..., max_length 77) → ``T5EncoderModel(...).last_hidden_state``."""
    enc = tokenizer([p.lower().strip() for p in prompts], padding="max_length", max_length=77,
                    truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    return out, enc["attention_mask"]


def encoder_state(model) -> dict[str, torch.Tensor]:
    """The encoder's tensors under transformers names, ``shared.weight`` only (as hub files store it)."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    sd.pop("encoder.embed_tokens.weight")
    return sd


def model_with_state(state: dict[str, torch.Tensor], config: dict | None = None):
    """A fp32 reference ``T5EncoderModel`` holding ``state`` (upcast to fp32)."""
    model = reference_model(config=config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model


def save_if_repo(model, spiece: Path, root: Path, *, fp16: bool = False) -> Path:
    """A DeepFloyd IF-style folder: sharded ``text_encoder/`` (fp32, or the fp16 variant) + ``tokenizer/``."""
    from transformers import T5EncoderModel

    te = root / "text_encoder"
    if fp16:
        tmp = root / "_fp32"
        model.save_pretrained(str(tmp))
        half = T5EncoderModel.from_pretrained(str(tmp), dtype=torch.float16)  # keeps wo in fp32
        half.save_pretrained(str(te), max_shard_size="60KB", variant="fp16")
        shutil.rmtree(tmp)
    else:
        model.save_pretrained(str(te), max_shard_size="60KB")
    (root / "tokenizer").mkdir(parents=True, exist_ok=True)
    shutil.copy(spiece, root / "tokenizer" / "spiece.model")
    return root


def save_single(state: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path
