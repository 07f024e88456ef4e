"""Classifier-free guidance as a denoiser wrapper, plus post-CFG functions such as dynamic thresholding."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .denoisers import denoise_pair
from .unet.text_context import tensor_version

__all__ = ["CFGGuider", "DynamicThreshold", "PostCFG"]

PostCFG = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class DynamicThreshold:
    """Imagen dynamic thresholding (Saharia et al. 2022, sec. 2.3) of x0: denoised [B, C, H, W] -> same."""

    percentile: float = 0.95
    max_value: float = 1.5

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile <= 1.0:
            raise ValueError(f"percentile must be in (0, 1], got {self.percentile}")
        if not self.max_value >= 1.0:
            raise ValueError(f"max_value must be >= 1, got {self.max_value}")

    def __call__(self, denoised: Tensor, x: Tensor | None = None, sigma: Tensor | None = None) -> Tensor:
        """Per sample s = quantile(|x0|, p) clamped to [1, max_value]; x0 <- clamp(x0, -s, s) / s (in float32)."""
        flat = denoised.to(torch.float32).reshape(denoised.shape[0], -1)
        s = torch.quantile(flat.abs(), self.percentile, dim=1).clamp(1.0, self.max_value).unsqueeze(1)
        return (torch.clamp(flat, -s, s) / s).reshape(denoised.shape).to(denoised.dtype)


def _batch_embeds(name: str, embeds: Tensor, batch: int) -> Tensor:
    """Broadcast text embeddings [1 or B, L, D] to [B, L, D]; ValueError naming `name` otherwise."""
    if embeds.shape[0] == batch:
        return embeds
    if embeds.shape[0] == 1:
        return embeds.expand(batch, *embeds.shape[1:])
    raise ValueError(f"{name} embeddings have batch {embeds.shape[0]} but x has batch {batch} (expected 1 or {batch})")


class CFGGuider:
    """Classifier-free guidance (Ho & Salimans 2022) on x0 around a denoiser; itself a denoiser x [B, C, H, W]."""

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        positive: Tensor,
        negative: Tensor | None = None,
        scale: float = 7.0,
        post_cfg: Sequence[PostCFG] = (),
        cond_key: str = "text_embeds",
    ) -> None:
        self.denoiser = denoiser
        self.positive = positive
        self.negative = negative
        self.scale = float(scale)
        self.post_cfg = tuple(post_cfg)
        self.cond_key = cond_key
        self._check_embeds()
        self._text: tuple[tuple, Tensor] | None = None  # (key, the batch _text_batch made for it)

    @property
    def uses_uncond(self) -> bool:
        """Whether the unconditional pass runs (skipped at scale 1, as ComfyUI and diffusers do)."""
        return not math.isclose(self.scale, 1.0)

    def _check_embeds(self) -> None:
        """Validate the positive/negative pair once, at construction."""
        for name, value in (("positive", self.positive), ("negative", self.negative)):
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} embeddings contain NaN or infinite values (a text encoder run in float16 "
                                 "overflows: use bfloat16 or float32)")
        if self.negative is None:
            if self.uses_uncond:
                raise ValueError(
                    f"CFG scale {self.scale} needs negative embeddings: encode the empty prompt \"\" as the "
                    "negative (as DeepFloyd IF does), or use scale 1.0"
                )
            return
        pos, neg = self.positive.shape, self.negative.shape
        if pos[1:] != neg[1:]:
            raise ValueError(
                f"positive embeddings {tuple(pos)} and negative embeddings {tuple(neg)} must have equal token "
                "length and width (no padding is done here; encode both to the same max_length)"
            )
        if pos[0] != neg[0] and 1 not in (pos[0], neg[0]):
            raise ValueError(f"positive batch {pos[0]} and negative batch {neg[0]} differ (each must be 1 or equal)")

    def _double_extra(self, extra: dict, batch: int) -> dict:
        """Duplicate every tensor whose first dim is the batch (uncond half, cond half); pass the rest as is."""
        return {
            k: torch.cat([v, v]) if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == batch else v
            for k, v in extra.items()
        }

    def __call__(self, x: Tensor, sigma: Tensor, **extra) -> Tensor:
        """Guided x0 = u + scale * (c - u) over one [uncond, cond] batch: x [B, C, H, W], sigma [B] -> x0."""
        return self._guided(x, sigma, False, extra)[0]

    def denoise_with_variance(self, x: Tensor, sigma: Tensor, **extra) -> tuple[Tensor, Tensor | None]:
        """``(guided x0, the cond half's learned-range fraction or None)``: what the DDPM sampler needs."""
        return self._guided(x, sigma, True, extra)

    def _inner(self, x: Tensor, sigma: Tensor, with_variance: bool, extra: dict) -> tuple[Tensor, Tensor | None]:
        """One denoiser call with embeddings under cond_key: (denoised, variance or None)."""
        return denoise_pair(self.denoiser, x, sigma, extra, with_variance)

    def _text_batch(self, batch: int) -> Tensor:
        """What the denoiser gets under ``cond_key``: [negative; positive] [2B, L, D] with CFG, else positive
        [B, L, D]. Built once and handed out again while the batch size and embeddings stay the same: the same
        tensor every step lets the UNet reuse its text work (``cascade_core.unet.text_context``)."""
        key = (batch, self.uses_uncond, id(self.positive), tensor_version(self.positive),
               id(self.negative), None if self.negative is None else tensor_version(self.negative))
        if self._text is None or self._text[0] != key:
            positive = _batch_embeds("positive", self.positive, batch)
            text = torch.cat([_batch_embeds("negative", self.negative, batch), positive]) if self.uses_uncond \
                else positive
            self._text = (key, text)
        return self._text[1]

    def _guided(self, x: Tensor, sigma: Tensor, with_variance: bool, extra: dict) -> tuple[Tensor, Tensor | None]:
        B = x.shape[0]
        text = self._text_batch(B)
        if self.uses_uncond:
            extra = {**self._double_extra(extra, B), self.cond_key: text}
            sigma2 = torch.cat([sigma, sigma]) if sigma.ndim > 0 and sigma.shape[0] == B else sigma
            out, variance = self._inner(torch.cat([x, x]), sigma2, with_variance, extra)
            uncond, cond = out.chunk(2)
            denoised = uncond + self.scale * (cond - uncond)
            variance = None if variance is None else variance[B:]
        else:
            denoised, variance = self._inner(x, sigma, with_variance, {**extra, self.cond_key: text})
        for fn in self.post_cfg:
            denoised = fn(denoised, x, sigma)
        return denoised, variance
