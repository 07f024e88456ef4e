"""Pre-train the demo T5 text encoder on the shapes captions with T5's span-corruption objective.

1. A SentencePiece unigram tokenizer with T5's special ids (pad 0, EOS 1, unk 2, no BOS) is trained on the
   captions (every phrasing) of train *and* held-out scenes, so that every word of the grammar is known;
   each caption word is forced to be one piece (``▁red``), single characters cover any other input.
2. A tiny T5 v1.1-style ``T5ForConditionalGeneration`` (gated-GELU, untied embeddings, vocabulary = pieces
   + 100 sentinels, rounded up to a multiple of 8) learns span corruption (15 % noise, mean span 3) on the
   captions of **train-split** scenes only.
3. Only the encoder is saved, as a transformers ``T5EncoderModel`` folder (``config.json``,
   ``model.safetensors``, ``spiece.model`` + the fast tokenizer files) that
   :func:`cascade_core.load_text_encoder` reads unchanged. ``train_info.json`` records the run.

Run: ``python -m cascade_core.train cascade_core/demo/configs/t5.json``.
"""
from __future__ import annotations

import logging
import string
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .span_corruption import collate, corrupt
from .text_common import Progress, all_phrasings, caption_words, cosine_lr, scenes, seed_everything, write_json

__all__ = ["T5PretrainConfig", "run", "train_tokenizer"]

log = logging.getLogger(__name__)

EXTRA_IDS = 100
_CHARS = string.ascii_lowercase + string.digits + ".,-'!?;:()"


@dataclass
class T5PretrainConfig:
    """Everything one T5 pre-training run depends on (JSON-loadable: ``T5PretrainConfig(**fields)``)."""

    kind: str = "t5"
    output_dir: str = "cascade_core/demo/models/t5"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    threads: int = 1
    train_scenes: int = 20000  # captions (all phrasings) of this many train-split scenes
    tokenizer_scenes: int = 4000  # train and as many held-out scenes for the tokenizer vocabulary only
    noise_density: float = 0.15
    mean_span: float = 3.0
    d_model: int = 128
    d_kv: int = 32
    num_heads: int = 4
    num_layers: int = 3
    num_decoder_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    log_every: int = 100


def train_tokenizer(texts: list[str], folder: Path) -> Path:
    """Train ``folder/spiece.model`` (unigram, T5 special ids) in which every word of ``texts`` is one piece.

    SentencePiece's EM prunes whole words of such a tiny, repetitive corpus back to characters, so the
    caption words are given as user-defined pieces (``▁word``); lines of single characters make every
    letter, digit and common punctuation mark a piece, so other input never becomes ``<unk>``. Training is
    deterministic (one thread, no sampling). No Unicode normalisation table (``identity``): the captions are
    plain ASCII and the pack lower-cases prompts; this keeps ``spiece.model`` a few KB instead of 240.
    """
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    words = [w for w in caption_words(texts) if w.isalnum()]
    chars = [" ".join(_CHARS), _CHARS] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts) + chars), model_prefix=str(folder / "spiece"), model_type="unigram",
        vocab_size=len(words) + len(_CHARS) + 16, hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        user_defined_symbols=["\u2581" + w for w in words], character_coverage=1.0, num_threads=1, minloglevel=2,
        normalization_rule_name="identity",
    )
    (folder / "spiece.vocab").unlink(missing_ok=True)
    return folder / "spiece.model"


def _hf_tokenizer(folder: Path) -> Any:
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(folder), extra_ids=EXTRA_IDS)


def _t5_config(cfg: T5PretrainConfig, vocab: int) -> Any:
    from transformers import T5Config

    return T5Config(
        vocab_size=-(-vocab // 8) * 8, d_model=cfg.d_model, d_kv=cfg.d_kv, num_heads=cfg.num_heads,
        num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers, d_ff=cfg.d_ff,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=cfg.dropout,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )


def _corpora(cfg: T5PretrainConfig) -> tuple[list[str], list[str]]:
    """``(tokenizer texts, training texts)``: the training texts come from train-split scenes only."""
    train = [c for s in scenes(cfg.train_scenes, cfg.seed) for c in all_phrasings(s)]
    vocab = [c for s in scenes(cfg.tokenizer_scenes, cfg.seed) for c in all_phrasings(s)]
    vocab += [c for s in scenes(cfg.tokenizer_scenes, cfg.seed, "heldout") for c in all_phrasings(s)]
    return vocab, train


def save_encoder(model: torch.nn.Module, tokenizer: Any, spiece: Path, folder: Path) -> None:
    """Write the encoder half of ``model`` (a ``T5ForConditionalGeneration``) as a ``T5EncoderModel`` folder."""
    from transformers import T5EncoderModel

    encoder = T5EncoderModel(model.config)
    missing, _ = encoder.load_state_dict(model.state_dict(), strict=False)
    if [k for k in missing if k != "encoder.embed_tokens.weight"]:
        raise RuntimeError(f"internal error: encoder tensors not in the trained model: {missing[:5]}")
    encoder.config.architectures = ["T5EncoderModel"]
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    (folder / "spiece.model").write_bytes(spiece.read_bytes())


def run(config: T5PretrainConfig) -> Path:
    """Train the tokenizer and the T5, save the encoder folder to ``config.output_dir`` and return its path."""
    from transformers import T5ForConditionalGeneration

    if config.kind != "t5":
        raise ValueError(f"T5PretrainConfig.kind must be 't5', got {config.kind!r}")
    seed_everything(config.seed, config.threads)
    out = Path(config.output_dir)
    vocab_texts, train_texts = _corpora(config)
    with tempfile.TemporaryDirectory() as tmp:
        spiece = train_tokenizer(vocab_texts, Path(tmp))
        tok = _hf_tokenizer(Path(tmp))
        spiece_bytes = spiece.read_bytes()
    sentinels = tok.convert_tokens_to_ids([f"<extra_id_{k}>" for k in range(EXTRA_IDS)])
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in dict.fromkeys(train_texts)]
    ids = [x for x in ids if len(x) >= 2]
    log.info("t5: tokenizer of %d pieces (+%d sentinels), %d distinct training captions (%d scenes)",
             len(tok) - EXTRA_IDS, EXTRA_IDS, len(ids), config.train_scenes)

    torch.manual_seed(config.seed)
    model = T5ForConditionalGeneration(_t5_config(config, len(tok))).train()
    with torch.no_grad():  # transformers' untied lm_head init (std 1) starts at a loss of ~40 for d_model 128
        model.lm_head.weight.normal_(0.0, config.d_model**-0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    progress = Progress("t5", config.steps, config.log_every)
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = config.lr * cosine_lr(step, config.steps, config.warmup)
        pick = rng.integers(len(ids), size=config.batch_size)
        pairs = [corrupt(ids[i], sentinels, tok.eos_token_id, config.noise_density, config.mean_span, rng)
                 for i in pick]
        loss = model(**collate(pairs, tok.pad_token_id)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        progress.update(step + 1, loss.item(), config.batch_size)

    with tempfile.TemporaryDirectory() as tmp:
        spiece = Path(tmp) / "spiece.model"
        spiece.write_bytes(spiece_bytes)
        save_encoder(model.eval(), tok, spiece, out)
    write_json(out / "train_info.json", {
        "config": asdict(config), "wall_s": round(progress.elapsed, 1), "loss_history": progress.history,
        "threads": torch.get_num_threads(), "pieces": len(tok) - EXTRA_IDS, "vocab_size": model.config.vocab_size})
    log.info("t5: saved the encoder to %s (%.0f s, final loss %.4f)", out, progress.elapsed,
             progress.history[-1][1] if progress.history else float("nan"))
    return out
