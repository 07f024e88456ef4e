"""Image captioning with GIT (Generative Image-to-text Transformer, Wang et al. 2022).

``load_captioner(folder)`` loads a transformers GIT folder (``GitForCausalLM`` + its processor files:
microsoft/git-base-coco, git-large-coco, git-base-textcaps, …) and ``Captioner.caption(images)`` turns a
ComfyUI IMAGE ``[B, H, W, C]`` in 0..1 into ``B`` strings. It calls the model classes directly
(``model.generate(pixel_values=…)``), not the removed ``image-to-text`` pipeline; the images are
preprocessed by :class:`~cascade_core.preprocess.Preprocessor` from the folder's processor config.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

import torch

from .hf_folder import FrozenModel, WrongModelError, check_processor_files, load_model, read_config
from .image import check_images
from .preprocess import Preprocessor, load_image_processor
from .unet.loading import default_device_dtype

__all__ = ["Captioner", "load_captioner"]

log = logging.getLogger(__name__)

_GIT = {"git": "a GIT captioning model (GitForCausalLM, e.g. microsoft/git-base-coco)"}
_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.txt",))
_WHAT = "the GIT captioner"


class Captioner(FrozenModel):
    """A frozen GIT model, its tokenizer and image preprocessing (build it with :func:`load_captioner`)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, preprocessor: Preprocessor, *, name: str = "git"):
        self.model = model
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.name = name

    def __repr__(self) -> str:
        return f"Captioner({self.name}, dtype={self.dtype}, device={self.device}, {self.parameter_bytes / 1e9:.3f} GB)"

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """ComfyUI ``images [B, H, W, C]`` in 0..1 → the model's ``pixel_values [B, 3, h, w]`` (device, dtype)."""
        with torch.inference_mode():
            return self.preprocessor(images, device=self.device, dtype=self.dtype)

    def prompt_ids(self, prompt: str, batch: int, max_new_tokens: int = 0) -> torch.Tensor | None:
        """``[batch, 1 + n]`` ids ``[CLS] + prompt`` (GIT's VQA / caption-prefix input), ``None`` for no prompt.
        Raises ``ValueError`` when the prompt and ``max_new_tokens`` together exceed GIT's text positions."""
        prompt = prompt.strip()
        if not prompt:
            return None
        ids = [self.tokenizer.cls_token_id] + self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        if limit and len(ids) + max_new_tokens > limit:
            raise ValueError(f"prompt is {len(ids) - 1} tokens long and max_new_tokens is {max_new_tokens}, but this "
                             f"GIT model reads at most {limit} text tokens in all: shorten the prompt to under "
                             f"{max(limit - max_new_tokens - 1, 0)} tokens or lower max_new_tokens")
        return torch.tensor([ids] * batch, dtype=torch.long, device=self.device)

    def caption(
        self,
        images: torch.Tensor,
        *,
        max_new_tokens: int = 30,
        num_beams: int = 1,
        do_sample: bool = False,
        seed: int = 0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_new_tokens: int = 0,
        repetition_penalty: float = 1.0,
        prompt: str = "",
        batch_size: int = 8,
    ) -> list[str]:
        """One caption per image of ``images [B, H, W, C]`` (0..1), stripped.

        ``num_beams=1`` without sampling is greedy decoding. ``do_sample`` draws with ``temperature``
        and ``top_p`` (and transformers' default ``top_k`` 50) from the RNG seeded with ``seed`` inside a
        fork, so the same seed gives the same captions and the caller's RNG state is restored.
        ``prompt`` is a text prefix the caption continues (or a question, for the VQA checkpoints); it is
        not repeated in the result. ``batch_size`` images are generated together.
        """
        options = _generation_options(max_new_tokens, num_beams, do_sample, temperature, top_p, min_new_tokens,
                                      repetition_penalty)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        check_images(images)
        captions: list[str] = []
        with _seeded(seed if do_sample else None, self.device), torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                chunk = self.pixel_values(images[start:start + batch_size])
                input_ids = self.prompt_ids(prompt, chunk.shape[0], max_new_tokens)
                ids = self.model.generate(pixel_values=chunk, input_ids=input_ids, **options)
                if input_ids is not None:
                    ids = ids[:, input_ids.shape[1]:]
                captions += [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return captions


def _generation_options(max_new_tokens: int, num_beams: int, do_sample: bool, temperature: float, top_p: float,
                        min_new_tokens: int, repetition_penalty: float) -> dict[str, Any]:
    """Validated keyword arguments for ``model.generate``."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1 (1 = greedy), got {num_beams}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(f"min_new_tokens must be in 0..max_new_tokens ({max_new_tokens}), got {min_new_tokens}")
    if repetition_penalty <= 0 or temperature <= 0 or not 0 < top_p <= 1:
        raise ValueError("repetition_penalty and temperature must be > 0 and top_p in (0, 1]; got "
                         f"{repetition_penalty}, {temperature}, {top_p}")
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample,
                                   min_new_tokens=min_new_tokens, repetition_penalty=repetition_penalty)
    if do_sample:
        options.update(temperature=temperature, top_p=top_p)
    return options


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork the CPU RNG (and ``device``'s, for CUDA) and seed it; a no-op for ``seed=None``."""
    if seed is None:
        yield
        return
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else (torch.cuda.current_device() if cuda else 0)
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def load_captioner(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    preprocess: str = "torch",
) -> Captioner:
    """Load a GIT captioner from a transformers folder (config.json, model.safetensors, tokenizer, processor).

    ``device``/``dtype`` default to CUDA + bf16 when available, else CPU + fp32. ``preprocess``:
    ``"torch"`` (on-device, float) or ``"processor"`` (transformers' PIL processor on uint8 images);
    see :mod:`cascade_core.preprocess`. Raises :class:`~cascade_core.hf_folder.ModelFolderError`
    (a ``ValueError``) for a missing or incomplete folder and ``WrongModelError`` for another model type.
    """
    folder, config = read_config(path, _GIT, _WHAT)
    if config.get("num_image_with_embedding"):
        raise WrongModelError(
            f"{folder} is a video GIT model (num_image_with_embedding={config['num_image_with_embedding']}, e.g. "
            "git-*-vatex) that captions frame stacks; use an image model such as microsoft/git-base-coco")
    check_processor_files(folder, _TOKENIZER_FILES, _WHAT)
    device, dtype = default_device_dtype(device, dtype)
    from transformers import AutoTokenizer, GitForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    preprocessor = Preprocessor(load_image_processor(folder), preprocess)
    model = load_model(GitForCausalLM, folder, device=device, dtype=dtype)
    captioner = Captioner(model, tokenizer, preprocessor, name=folder.name)
    log.info("loaded %r (preprocess=%s)", captioner, preprocessor.mode)
    return captioner
