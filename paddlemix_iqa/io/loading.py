"""The one way the package turns an image reference into RGB uint8 pixels.

Decoding is the dominant cost of weight-free metrics, so ``max_side`` lets JPEG
decode in draft mode (DCT scaling by 1/2, 1/4 or 1/8) straight to about the size
a metric needs instead of decoding 24 MP and throwing most of it away.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    ImageLoadError,
    ImageMissing,
    ImageTooLarge,
    ImageTruncated,
    ImageUnreadable,
    NotAnImage,
)

#: Images with more pixels than this (from the header, before decoding) are refused.
#: Override per call or with ``PADDLEMIX_IQA_MAX_PIXELS``.
DEFAULT_MAX_PIXELS = 200_000_000

#: Transparent pixels are composited onto this colour (what a viewer or a web page shows).
BACKGROUND = (255, 255, 255)


@dataclass
class DecodedImage:
    """Pixels plus what ops need to know about the file without decoding it again."""

    pixels: np.ndarray  # H x W x 3, uint8, RGB; long side <= the requested max_side
    width: int  # original width after EXIF orientation
    height: int  # original height after EXIF orientation
    path: str
    file_size: int
    format: str | None
    n_frames: int = 1


def resolve_path(ref: Any, root: str | os.PathLike | None = None) -> str:
    """Turn an image reference from a record into a local path.

    ``ref`` is a path string / PathLike, or a dict as in the host's MIX schema
    (``{"url": ...}`` or ``{"path": ...}``). Relative paths are joined to ``root``
    (the dataset root); remote URLs are refused because scoring never touches the network.
    """
    if isinstance(ref, dict):
        ref = ref.get("path") or ref.get("url") or ref.get("image")
    if ref is None or (isinstance(ref, str) and not ref.strip()):
        raise ImageMissing("empty image reference")
    if not isinstance(ref, (str, os.PathLike)):
        raise ImageMissing(f"image reference of type {type(ref).__name__} is not a path")
    ref = os.fspath(ref)
    if ref.startswith("file://"):
        ref = ref[len("file://") :]
    elif "://" in ref:
        raise ImageUnreadable("remote URL; download images before scoring", ref)
    path = Path(ref).expanduser()
    if root is not None and not path.is_absolute():
        path = Path(root).expanduser() / path
    return str(path)


def _max_pixels(limit: int | None) -> int:
    if limit is not None:
        return int(limit)
    return int(os.environ.get("PADDLEMIX_IQA_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode to RGB uint8 (16-bit scaled down, alpha composited onto BACKGROUND)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
            gray = np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255)
        else:  # 16-bit (PIL may report it as I); anything above 255 means a 16-bit range
            wide = mode.startswith("I;16") or int(arr.max(initial=0)) > 255
            gray = arr.astype(np.float64) / 257.0 if wide else arr
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in img.info or mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _shrink(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = pixels.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return pixels
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


@contextmanager
def _load_errors(path: str) -> Iterator[None]:
    """Translate what PIL and the OS raise for bad files into typed :class:`ImageLoadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageMissing("file not found", path) from None
    except (IsADirectoryError, PermissionError, NotADirectoryError) as exc:
        raise ImageUnreadable(type(exc).__name__, path) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc).split(",")[0], path) from None
    except UnidentifiedImageError:
        detail = "empty file" if os.path.isfile(path) and os.path.getsize(path) == 0 else "unknown format"
        raise NotAnImage(detail, path) from None
    except MemoryError:
        raise ImageTooLarge("out of memory while decoding", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text or isinstance(exc, EOFError):
            raise ImageTruncated(text, path) from None
        raise ImageUnreadable(text, path) from None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored; 5-8: width and height swap when shown)."""
    return img.getexif().get(0x0112, 1)


def _described(img: Image.Image, path: str, pixels: np.ndarray) -> DecodedImage:
    """Pixels plus the facts of the opened file (size as shown, i.e. after EXIF orientation)."""
    width, height = (img.height, img.width) if _orientation(img) in (5, 6, 7, 8) else img.size
    return DecodedImage(
        pixels=pixels,
        width=width,
        height=height,
        path=path,
        file_size=os.path.getsize(path),
        format=img.format,
        n_frames=getattr(img, "n_frames", 1),
    )


def decode_image(
    ref: Any,
    root: str | os.PathLike | None = None,
    max_side: int | None = None,
    max_pixels: int | None = None,
) -> DecodedImage:
    """Decode an image reference to RGB uint8 with long side at most ``max_side``.

    Raises a subclass of :class:`ImageLoadError` (missing, unreadable, truncated,
    too_large, not_an_image); never anything else for bad files.
    """
    path = resolve_path(ref, root)
    limit = _max_pixels(max_pixels)
    with _load_errors(path), Image.open(path) as img:
        if img.width * img.height > limit:
            raise ImageTooLarge(f"{img.width}x{img.height} exceeds {limit} pixels", path)
        header = _described(img, path, np.zeros((0, 0, 3), np.uint8))  # before draft() changes img.size
        if max_side and img.format == "JPEG" and max(img.size) > max_side:
            scale = max_side / max(img.size)
            img.draft(None, (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        img.load()  # the first frame of an animation; loading here surfaces truncation
        shown = (
            ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
        )  # transpose copies: skip if upright
        header.pixels = _shrink(_to_rgb(shown), max_side)
        return header


def decode_or_error(
    ref: Any, root: str | os.PathLike | None = None, max_side: int | None = None, pixels: bool = True
) -> DecodedImage | ImageLoadError:
    """:func:`decode_image` (or :func:`probe_image` when ``pixels`` is False) that returns the
    typed error instead of raising it, for batch code that records failures per image."""
    try:
        return decode_image(ref, root=root, max_side=max_side) if pixels else probe_image(ref, root=root)
    except ImageLoadError as exc:
        return exc


def load_image(ref: Any, root: str | os.PathLike | None = None, max_side: int | None = None) -> np.ndarray:
    """Pixels of an image reference as an H x W x 3 RGB uint8 array (long side <= ``max_side``).

    Raises :class:`ImageLoadError` subclasses with a short ``reason``.
    """
    return decode_image(ref, root=root, max_side=max_side).pixels


def probe_image(ref: Any, root: str | os.PathLike | None = None) -> DecodedImage:
    """Header-only facts (size, format, file size) without decoding pixels; ``pixels`` is empty."""
    path = resolve_path(ref, root)
    with _load_errors(path), Image.open(path) as img:
        return _described(img, path, np.zeros((0, 0, 3), np.uint8))
