"""``TextEncoder``: prompts → per-token T5 embeddings, as the IF UNets consume them.

``encode(prompts)`` returns ``(embeds [B, 77, D], mask [B, 77])``:

* ``embeds`` equal ``T5EncoderModel(input_ids, attention_mask).last_hidden_state`` for the tokenization
  ``tokenizer(text, padding="max_length", max_length=77, truncation=True)`` of the preprocessed prompt,
  in the encoder's compute dtype (:attr:`TextEncoder.dtype`), on :attr:`TextEncoder.device`. All 77
  rows are returned, padding included (the IF UNets use every row and no mask).
* ``mask`` is ``torch.long`` (1 = token or EOS, 0 = padding), as transformers tokenizers return it.
* The empty prompt ``""`` is valid: one EOS then padding. IF uses its embedding as the negative prompt.
* Longer prompts are truncated to 76 tokens + EOS, with a warning that says how many tokens were dropped
  (logged when the prompt is actually encoded, not on cache hits).
* ``long_prompt=True`` encodes every token instead: chunks of ≤ 76 tokens, each with its own EOS and
  padding (:mod:`.tokens`), encoded as independent 77-token sequences and concatenated along the token
  axis: ``[B, 77·k, D]`` and ``[B, 77·k]``. Within one call ``k`` is the largest chunk count of the
  batch; shorter prompts are filled up with chunks holding the embedding of ``""`` and a zero mask.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from .cache import EmbeddingCache
from .prompts import preprocess_prompt
from .tokens import Packed, pack_chunks, pack_truncated

__all__ = ["TextEncoder"]

log = logging.getLogger(__name__)

_MAX_SEQUENCES_PER_FORWARD = 16


class TextEncoder:
    """A frozen, eval-mode T5 encoder with its tokenizer (build it with ``load_text_encoder``)."""

    max_length: int = 77

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        identity: str,
        layout: str,
        dtype: torch.dtype,
        cache: EmbeddingCache | None = None,
    ):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.identity = identity
        self.layout = layout
        self.cache = cache
        self._dtype = dtype
        # where encode runs when a memory manager (ComfyUI's partial loading) may leave weights elsewhere;
        # None: where the token embedding is
        self.execution_device: torch.device | None = None

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype, also the dtype of the returned embeddings."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """Where encoding runs and ``encode`` returns its tensors: ``execution_device`` when set, else where the
        weights are."""
        return self.execution_device or self.model.shared.weight.device

    @property
    def hidden_size(self) -> int:
        """``D``: 4096 for T5-v1.1-XXL."""
        return self.model.config.d_model

    @property
    def parameter_bytes(self) -> int:
        """Bytes of all weights held (parameters + fp8 weight buffers and scales; tied ones once)."""
        tensors = [*self.model.parameters(), *(b for b in self.model.buffers() if b is not None)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: str | torch.device) -> TextEncoder:
        """Move the weights (for offloading); returns ``self``."""
        self.model.to(device)
        return self

    def __repr__(self) -> str:
        return (f"TextEncoder({self.identity}, layout={self.layout}, dtype={self.dtype}, device={self.device}, "
                f"{self.parameter_bytes / 1e9:.3f} GB)")

    # -- tokenization ---------------------------------------------------------------------------
    def pack(self, text: str, *, long_prompt: bool = False) -> Packed:
        """Token ids and mask (``k`` × 77) of one preprocessed prompt; warns about truncation."""
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        eos, pad = tok.eos_token_id, tok.pad_token_id
        if long_prompt:
            word_start = [t.startswith("\u2581") for t in tok.convert_ids_to_tokens(ids)]
            return pack_chunks(ids, eos=eos, pad=pad, word_start=word_start, max_length=self.max_length)
        packed = pack_truncated(ids, eos=eos, pad=pad, max_length=self.max_length)
        if packed.dropped:
            lost = tok.decode(ids[self.max_length - 1:])
            lost = lost if len(lost) <= 60 else lost[:57] + "…"
            log.warning(
                "prompt %r has %d tokens but T5 sees %d: the last %d tokens were dropped (%r). "
                "Shorten it or use the long-prompt mode.",
                text[:40] + ("…" if len(text) > 40 else ""), len(ids) + 1, self.max_length, packed.dropped, lost,
            )
        return packed

    # -- encoding -------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids``, ``mask`` ``[N, 77]`` → ``last_hidden_state [N, 77, D]`` (CPU, compute dtype)."""
        out = []
        with torch.inference_mode():
            for i in range(0, ids.shape[0], _MAX_SEQUENCES_PER_FORWARD):
                sl = slice(i, i + _MAX_SEQUENCES_PER_FORWARD)
                h = self.model(input_ids=ids[sl].to(self.device), attention_mask=mask[sl].to(self.device))
                out.append(h.last_hidden_state.to(self.dtype))
            hidden = torch.cat(out)
        return hidden.to("cpu", copy=True)  # a normal (non-inference) tensor

    def _encode_texts(self, texts: Sequence[str], long_prompt: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Encode distinct texts; returns a list of ``(embeds [77·k, D], mask [77·k])`` on the CPU."""
        packs = [self.pack(t, long_prompt=long_prompt) for t in texts]
        ids = torch.tensor([s for p in packs for s in p.ids], dtype=torch.long)
        mask = torch.tensor([m for p in packs for m in p.mask], dtype=torch.long)
        hidden = self._forward(ids, mask)
        results, row = [], 0
        for p in packs:
            k = len(p.ids)
            results.append((hidden[row:row + k].flatten(0, 1), mask[row:row + k].flatten()))
            row += k
        return results

    def _key(self, text: str, mode: str) -> tuple:
        return (self.identity, str(self.dtype), self.device.type, mode, text)

    def _lookup(self, texts: list[str], long_prompt: bool, use_cache: bool) -> dict[str, tuple]:
        """Embeddings of each distinct text, from the cache or freshly encoded (and then cached)."""
        mode = "long" if long_prompt else "77"
        found, todo = {}, []
        for text in dict.fromkeys(texts):
            hit = self.cache.get(self._key(text, mode)) if (use_cache and self.cache is not None) else None
            if hit is None:
                todo.append(text)
            else:
                found[text] = hit
        if todo:
            for text, value in zip(todo, self._encode_texts(todo, long_prompt)):
                found[text] = value
                if use_cache and self.cache is not None:
                    self.cache.put(self._key(text, mode), *value)
        return found

    def _filler(self, use_cache: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk for padding long prompts: the embedding of ``""`` ``[77, D]`` with a zero mask."""
        embeds, _ = self._lookup([""], False, use_cache)[""]
        return embeds, torch.zeros(self.max_length, dtype=torch.long)

    def filler(self) -> torch.Tensor:
        """The chunk long prompts are padded with: the embedding of ``""``, ``[77, D]`` on ``self.device``."""
        return self._filler(True)[0].to(self.device)

    def encode(
        self,
        prompts: Sequence[str] | str,
        *,
        clean_caption: bool = False,
        long_prompt: bool = False,
        use_cache: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → ``(embeds [B, 77·k, D] in self.dtype, mask [B, 77·k] long)`` on ``self.device``.

        ``k = 1`` unless ``long_prompt``. ``clean_caption`` applies the IF caption cleaner (otherwise
        only ``lower().strip()``). See the module docstring for truncation, chunking and ``""``.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise ValueError("encode() needs at least one prompt (use \"\" for the empty/negative prompt)")
        texts = [preprocess_prompt(p, clean=clean_caption) for p in prompts]
        found = self._lookup(texts, long_prompt, use_cache)
        pairs = [found[t] for t in texts]
        k = max(m.shape[0] for _, m in pairs) // self.max_length
        if long_prompt and any(m.shape[0] < k * self.max_length for _, m in pairs):
            fill_e, fill_m = self._filler(use_cache)
            pairs = [(torch.cat([e] + [fill_e] * (k - len(m) // self.max_length)),
                      torch.cat([m] + [fill_m] * (k - len(m) // self.max_length))) for e, m in pairs]
        embeds = torch.stack([e for e, _ in pairs]).to(self.device)
        mask = torch.stack([m for _, m in pairs]).to(self.device)
        return embeds, mask
