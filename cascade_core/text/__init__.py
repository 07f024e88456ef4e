"""The frozen T5 text encoder of the cascade (DeepFloyd IF / Imagen conditioning).

Modules, one concern each:

* :mod:`.layout`: which files a checkpoint path means (IF folder, transformers folder, single file);
* :mod:`.keys`: stored tensor names → model keys, config inference from shapes, completeness checks;
* :mod:`.precision`, :mod:`.fp8`: compute/storage dtypes, fp8 weights with per-layer upcast;
* :mod:`.loading`: :func:`load_text_encoder`;
* :mod:`.tokenizer`, :mod:`.tokens`: tokenizer lookup, truncation and long-prompt chunking;
* :mod:`.prompts`: ``lower().strip()`` and the optional IF caption cleaner;
* :mod:`.encoder`: :class:`TextEncoder` (``encode(prompts) -> (embeds [B, 77, D], mask [B, 77])``);
* :mod:`.cache`: the embedding cache.

Importing this package does not import transformers (that happens on load).
"""
from __future__ import annotations

from .cache import DEFAULT_CACHE, EmbeddingCache, clear_embedding_cache
from .encoder import TextEncoder
from .fp8 import Fp8Linear
from .keys import NotT5Error
from .loading import build_t5_encoder, load_text_encoder
from .prompts import clean_caption, preprocess_prompt
from .tokenizer import TokenizerNotFoundError
from .tokens import pad_chunks

__all__ = [
    "DEFAULT_CACHE",
    "EmbeddingCache",
    "Fp8Linear",
    "NotT5Error",
    "TextEncoder",
    "TokenizerNotFoundError",
    "build_t5_encoder",
    "clean_caption",
    "clear_embedding_cache",
    "load_text_encoder",
    "pad_chunks",
    "preprocess_prompt",
]
