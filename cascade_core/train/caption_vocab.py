"""Tokenizer files for the demo GIT and CLIP models, built from the words of the shapes captions.

* :func:`write_wordpiece_vocab`: a BERT ``vocab.txt`` (``[PAD] [UNK] [CLS] [SEP] [MASK]``, punctuation, every
  caption word, single letters/digits and their ``##`` continuations) + ``tokenizer_config.json`` for
  transformers' ``BertTokenizer``, as GIT checkpoints ship it.
* :func:`write_clip_bpe`: CLIP's ``vocab.json`` + ``merges.txt`` trained with the ``tokenizers`` library's
  BPE (``</w>`` end-of-word suffix, ``<|startoftext|>`` / ``<|endoftext|>``), enough merges for every caption
  word to be one token, + ``tokenizer_config.json`` for ``CLIPTokenizer``.

Also :func:`one_attribute_variants`, the "differs in exactly one attribute" captions used as CLIP's hard
negatives and for the retrieval measurement.
"""
from __future__ import annotations

import json
import random
import string
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from . import shapes
from .text_common import caption_words

__all__ = ["BERT_SPECIALS", "CLIP_BOS", "CLIP_EOS", "write_wordpiece_vocab", "write_clip_bpe",
           "one_attribute_variants", "VARIANT_ATTRIBUTES"]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
_CHARS = string.ascii_lowercase + string.digits
_PUNCT = list(".,-'!?;:()")


def write_wordpiece_vocab(texts: Sequence[str], folder: Path, *, max_length: int = 64) -> list[str]:
    """Write ``folder/vocab.txt`` and ``tokenizer_config.json``; return the vocabulary (id order)."""
    words = [w for w in caption_words(texts) if w not in _PUNCT]
    vocab = list(dict.fromkeys(BERT_SPECIALS + _PUNCT + words + list(_CHARS) + ["##" + c for c in _CHARS]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_length,
              "processor_class": "GitProcessor", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
              "unk_token": "[UNK]", "mask_token": "[MASK]"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return vocab


def write_clip_bpe(texts: Sequence[str], folder: Path, *, max_length: int = 32) -> dict[str, int]:
    """Train a CLIP-format BPE on ``texts``, write ``vocab.json``/``merges.txt``/``tokenizer_config.json``.

    Returns the vocabulary (token → id). Raises ``RuntimeError`` if some caption word is not one token.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    words = [w for w in caption_words(texts) if w not in _PUNCT]
    letters = sum(len(w) for w in words)  # upper bound on the merges needed to make every word one token
    tok = Tokenizer(models.BPE(unk_token=CLIP_EOS, end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = list(_CHARS) + _PUNCT
    trainer = trainers.BpeTrainer(vocab_size=2 * len(alphabet) + letters + 2, min_frequency=1, show_progress=False,
                                  special_tokens=[CLIP_BOS, CLIP_EOS], initial_alphabet=alphabet,
                                  end_of_word_suffix="</w>")
    corpus = list(texts) + [" ".join(alphabet)]  # every character also as a whole word ("a</w>")
    tok.train_from_iterator(corpus, trainer=trainer)
    split = [w for w in words if len(tok.encode(w).tokens) != 1]
    if split:
        raise RuntimeError(f"internal error: the CLIP BPE splits caption words {split[:5]}")
    folder.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(folder))  # vocab.json + merges.txt ("#version: 0.2" header), CLIP's format
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": CLIP_BOS,
              "eos_token": CLIP_EOS, "pad_token": CLIP_EOS, "unk_token": CLIP_EOS, "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return tok.get_vocab()


VARIANT_ATTRIBUTES = ("color", "color", "shape", "shape", "size", "position", "background")


def one_attribute_variants(scene: shapes.Scene, rng: random.Random,
                           attributes: Sequence[str] = VARIANT_ATTRIBUTES) -> list[shapes.Scene]:
    """One scene per entry of ``attributes``, equal to ``scene`` except for that attribute (all distinct).

    Colours avoid the background and the detail colour; backgrounds avoid the shape's colour. The default
    gives the 7 negatives of the "true caption among 8" retrieval test: 2 colours, 2 shapes, size, position
    and background.
    """
    out: list[shapes.Scene] = []
    taken = {scene}
    for attr in attributes:
        current = getattr(scene, attr)
        if attr == "color":
            options = [c for c, rgb in shapes.COLORS.items()
                       if rgb != shapes.BACKGROUNDS[scene.background] and c not in (scene.outline, scene.stripes)]
        elif attr == "background":
            options = [b for b, rgb in shapes.BACKGROUNDS.items() if rgb != shapes.COLORS[scene.color]
                       and b not in (scene.outline, scene.stripes)]
        else:
            options = list({"shape": shapes.SHAPES, "size": shapes.SIZES, "position": shapes.POSITIONS}[attr])
        candidates = [replace(scene, **{attr: o}) for o in options if o != current]
        candidates = [c for c in candidates if c not in taken]
        if not candidates:
            raise ValueError(f"no variant of {scene} left that changes only {attr!r}")
        pick = rng.choice(candidates)
        taken.add(pick)
        out.append(pick)
    return out
