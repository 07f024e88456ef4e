"""Prompt preprocessing before tokenization.

Default (``clean=False``): ``text.lower().strip()``, which is what diffusers' ``IFPipeline.encode_prompt``
does with ``clean_caption=False``, so our token ids equal diffusers' for the same prompt.

Opt-in (``clean=True``): an IF-style caption cleaner for web-scraped captions, written with ``re`` and
``html`` only (no network, no ``bs4``; ``ftfy.fix_text`` is used when ``ftfy`` happens to be installed).
It lowercases, URL-unquotes, removes URLs, HTML tags and entities, @handles, CJK characters, IP
addresses, file names, ``#123`` ids, long digit runs, size strings like ``1920x1080`` and stock-photo
spam ("free shipping", "click to download"), unifies dashes and quotes, collapses whitespace and trims
surrounding quotes and punctuation. Like DeepFloyd's original it is applied twice. It is a best-effort
equivalent of DeepFloyd's cleaner, not a byte-exact copy.
"""
from __future__ import annotations

import html
import importlib.util
import re
import urllib.parse as ul

__all__ = ["preprocess_prompt", "clean_caption"]

_RULES: list[tuple[re.Pattern, str]] = [(re.compile(p, re.IGNORECASE), r) for p, r in [
    (r"<\s*person\s*>", "person"),
    (r"\b(?:https?|ftp)://\S+", " "),                              # URLs with a scheme
    (r"\bwww\.\S+", " "),                                          # bare www. links
    (r"\b[\w.-]+\.(?:com|net|org|co|ru|io|info|de|uk)(?:/\S*)?\b", " "),  # bare domains
    (r"<[^<>]{0,200}>", " "),                                      # HTML tags
    (r"(?<!\w)@[\w.-]+", " "),                                     # @handles
    (r"[\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3200-\u32ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+", " "),
    (r"[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]", "-"),             # dashes and minus signs
    (r"[\u201c\u201d\u201e\u00ab\u00bb\u2033]", '"'),               # double quotes
    (r"[\u2018\u2019\u201a\u2032`\u00b4]", "'"),                    # single quotes
    (r"\b\d{1,3}(?:\.\d{1,3}){3}\b", " "),                          # IPv4 addresses
    (r"\b[\w-]+\.(?:jpe?g|png|gif|bmp|webp|tiff?|svg|eps|pdf|apk|mp4|zip|exe)\b", " "),  # file names
    (r"#\d+\b", " "),                                               # "#12345" ids
    (r"\b\d{6,}\b", " "),                                           # long digit runs (ids, phone numbers)
    (r"\b\d+(?:\.\d+)?\s*[x×х]\s*\d+(?:\.\d+)?\b", " "),            # sizes like 1920x1080
    (r"\b(?:free\s+shipping|click\s+(?:here|to\s+\w+|for\s+\w+)|download\s+now)\b", " "),
    (r"\bpage\s+\d+\b", " "),
    (r"\b(?:[a-z]{1,4}\d{3,}[a-z\d]*|\d+[a-z]+\d{2,}[a-z\d]*)\b", " "),  # catalogue codes: jc6640vc
    (r"([\"'.,!?_*-])\1{2,}", r"\1"),                               # runs of the same punctuation
    (r"\s+([.,;:!?])", r"\1"),                                      # space before punctuation
    (r"\s+", " "),
]]
_TRIM_QUOTES = re.compile(r"^([\"'])(.+)\1$")
_TRIM_EDGES = re.compile(r"^[\s_,;:+-]+|[\s_,;:+-]+$")


def _fix_text(text: str) -> str:
    """``ftfy.fix_text`` when ftfy is installed, else the text unchanged."""
    if importlib.util.find_spec("ftfy") is None:
        return text
    import ftfy

    return ftfy.fix_text(text)


def _clean_once(text: str) -> str:
    text = ul.unquote_plus(str(text)).strip().lower()
    text = html.unescape(html.unescape(_fix_text(text)))
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    text = text.strip()
    text = _TRIM_QUOTES.sub(r"\2", text)
    return _TRIM_EDGES.sub("", text).strip()


def clean_caption(text: str) -> str:
    """IF-style caption cleaning (see the module docstring); applied twice, as DeepFloyd does."""
    return _clean_once(_clean_once(text))


def preprocess_prompt(text: str, *, clean: bool = False) -> str:
    """The text T5 will see: ``lower().strip()``, or :func:`clean_caption` when ``clean``."""
    if not isinstance(text, str):
        raise TypeError(f"prompts must be strings, got {type(text).__name__}")
    return clean_caption(text) if clean else text.lower().strip()
