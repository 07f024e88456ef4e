"""Captions people can use: a prefix/suffix rule and image + caption pairs written atomically beside each other.

**Prefix/suffix rule** (:func:`decorate_caption`): the prefix, the caption and the suffix are each trimmed (spaces
and a trailing / leading comma), empty parts are dropped, and the rest are joined with ``", "``:
``decorate_caption("a dog", "ohwx,", "")`` is ``"ohwx, a dog"``.

**Pairs** (:func:`save_pairs`): image ``i`` of a batch becomes ``<stem>.png`` and its caption ``<stem>.txt``
(UTF-8, the caption exactly, no trailing newline) in the same folder, with ComfyUI's SaveImage stems
``<filename>_<counter:05>_`` (``%batch_num%`` in the filename replaced by ``i``), counters counting up from the
one the caller found free. A counter whose ``.png`` or ``.txt`` already exists is skipped, so nothing is
overwritten. Every file is written to a hidden temporary file in the same folder and moved into place with
``os.replace`` (atomic on one file system): a crash leaves either the whole file or none, never a partial one
(the temporary file is removed). The ``.txt`` is moved in before its ``.png`` (so a saved image always has its
caption) and removed again if the ``.png`` fails: the pairs already saved stay, no half pair is left.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from .image import check_images

__all__ = ["CaptionCountError", "atomic_write", "decorate_caption", "match_captions", "png_bytes", "save_pairs"]


class CaptionCountError(ValueError):
    """The number of captions fits neither the number of images nor the one-caption-for-all rule."""


def _trim(part: str, *, leading: bool, trailing: bool) -> str:
    part = part.strip()
    if trailing:
        part = part.rstrip(",").rstrip()
    if leading:
        part = part.lstrip(",").lstrip()
    return part


def decorate_caption(caption: str, prefix: str = "", suffix: str = "") -> str:
    """``prefix, caption, suffix`` with each part trimmed and empty parts dropped (see the module docstring)."""
    parts = [_trim(prefix, leading=False, trailing=True), caption.strip(), _trim(suffix, leading=True, trailing=False)]
    return ", ".join(p for p in parts if p)


def match_captions(captions: Sequence[str], count: int) -> list[str]:
    """``count`` captions, one per image: as given when there are ``count``; one caption is used for every image.
    Raises :class:`CaptionCountError` otherwise."""
    captions = list(captions)
    if len(captions) == count:
        return captions
    if len(captions) == 1:
        return captions * count
    raise CaptionCountError(f"{len(captions)} captions for {count} images: give one caption per image (e.g. GIT "
                            "Caption on the same batch) or a single caption for all of them")


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``: readers see the
    old file or the whole new one, never a partial one; on any error the temporary file is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def png_bytes(image: torch.Tensor, pnginfo: Any = None, compress_level: int = 4) -> bytes:
    """One image ``[H, W, C]`` in 0..1 → PNG bytes encoded as ComfyUI's SaveImage encodes them (``255 · x``
    clipped to 0..255 and truncated to uint8; gray, RGB or RGBA kept), with the optional PIL ``PngInfo``."""
    import numpy as np
    from PIL import Image

    array = np.clip(255.0 * image.detach().float().cpu().numpy(), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
        buffer, format="PNG", pnginfo=pnginfo, compress_level=compress_level)
    return buffer.getvalue()


def save_pairs(folder: str | os.PathLike, filename: str, counter: int, images: torch.Tensor,
               captions: Sequence[str], *, pnginfo: Any = None, compress_level: int = 4) -> list[str]:
    """Save ``images [B, H, W, C]`` and one caption each as ``<stem>.png`` + ``<stem>.txt`` in ``folder`` (see the
    module docstring for names and atomicity) → the ``.png`` file names, in batch order."""
    check_images(images)
    captions = match_captions(captions, images.shape[0])
    folder = Path(folder)
    names = []
    for i, (image, caption) in enumerate(zip(images, captions)):
        stem_base = filename.replace("%batch_num%", str(i))
        while any((folder / f"{stem_base}_{counter:05}_{ext}").exists() for ext in (".png", ".txt")):
            counter += 1
        stem = f"{stem_base}_{counter:05}_"
        data = png_bytes(image, pnginfo, compress_level)
        atomic_write(folder / f"{stem}.txt", caption.encode("utf-8"))
        try:
            atomic_write(folder / f"{stem}.png", data)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / f"{stem}.txt")  # no caption without its image
            raise
        names.append(f"{stem}.png")
        counter += 1
    return names
