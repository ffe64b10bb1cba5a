"""The one way the package turns an image reference into RGB uint8 pixels.

Decoding is the dominant cost of weight-free metrics, so ``max_side`` lets JPEG
decode in draft mode (DCT scaling by 1/2, 1/4 or 1/8) straight to about the size
a metric needs instead of decoding 24 MP and throwing most of it away.

Image files and record paths are untrusted input: every failure is a typed
:class:`ImageLoadError`, only regular files (under the dataset root, when there is
one) are opened, and the pixel limit is checked from the header before decoding.
"""

from __future__ import annotations

import functools
import math
import os
import re
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import (
    ImageLoadError,
    ImageMissing,
    ImageTooLarge,
    ImageTruncated,
    ImageUnreadable,
    NotAnImage,
    NotARegularFile,
    OutsideImageRoot,
)

#: Images with more pixels than this (from the header, before decoding) are refused.
#: Override per call or with ``PADDLEMIX_IQA_MAX_PIXELS``.
DEFAULT_MAX_PIXELS = 200_000_000
MAX_PIXELS_ENV = "PADDLEMIX_IQA_MAX_PIXELS"

#: Transparent pixels are composited onto this colour (what a viewer or a web page shows).
BACKGROUND = (255, 255, 255)

#: TIFF pages are counted up to this many: each costs an IFD parse (a 5 MB file can hold 50,000).
MAX_COUNTED_FRAMES = 1000

#: Big images are converted in bands of about this many pixels, so no conversion holds a
#: second full-size copy (a 100 MP 16-bit PNG once needed several GB in float64).
_BAND_PIXELS = 1 << 22

_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("LA", "PA", "RGBA", "La", "RGBa")
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
)
_QUIET_MODULES = r"(PIL|paddlemix_iqa\.io)(\.|$)"  # Pillow's warnings about damaged files; numpy's from here
_CONTEXT_WARNINGS = bool(getattr(sys.flags, "context_aware_warnings", False))


@dataclass
class DecodedImage:
    """Pixels plus what ops need to know about the file without decoding it again."""

    pixels: np.ndarray  # H x W x 3, uint8, RGB; long side <= the requested max_side
    width: int  # original width after EXIF orientation
    height: int  # original height after EXIF orientation
    path: str
    file_size: int
    format: str | None
    n_frames: int = 1  # TIFF pages are counted up to MAX_COUNTED_FRAMES
    #: derived copies (grey, grey at a working size) made once and shared by the ops of a chain
    views: dict = field(default_factory=dict, repr=False, compare=False)


# --- references -> paths ------------------------------------------------------------------


def resolve_path(ref: Any, root: str | os.PathLike | None = None, *, allow_outside_root: bool = False) -> str:
    """Turn an image reference from a record into a local path.

    ``ref`` is a path string / PathLike, or a dict as in the host's MIX schema
    (``{"url": ...}`` or ``{"path": ...}``). Relative paths are joined to ``root``
    (the dataset root); remote URLs are refused because scoring never touches the network.
    With a ``root``, the path (symlinks resolved) must lie under it unless
    ``allow_outside_root``. A leading ``~`` in ``ref`` is a literal name: expanding it
    would let a record read another user's home (``root`` itself is expanded).
    """
    if isinstance(ref, dict):
        ref = ref.get("path") or ref.get("url") or ref.get("image")
    if ref is None or (isinstance(ref, str) and not ref.strip()):
        raise ImageMissing("empty image reference")
    if not isinstance(ref, (str, os.PathLike)):
        raise ImageMissing(f"image reference of type {type(ref).__name__} is not a path")
    try:
        ref = os.fsdecode(os.fspath(ref))
    except Exception as exc:  # noqa: BLE001 - a PathLike is arbitrary code
        raise ImageUnreadable(f"invalid path: {_describe(exc)}") from None
    if ref.startswith("file://"):
        ref = ref[len("file://") :]
    elif "://" in ref:
        raise ImageUnreadable("remote URL; download images before scoring", ref)
    if "\x00" in ref:
        raise ImageUnreadable("invalid path: contains a NUL byte", ref.replace("\x00", "\\x00"))
    if root is None:
        return str(Path(ref))
    path, base = _joined(ref, os.fspath(root), os.environ.get("HOME"))
    if not allow_outside_root:
        _check_inside(path, base)
    return path


@functools.lru_cache(maxsize=4096)
def _joined(ref: str, root: str | bytes, home: str | None) -> tuple[str, str]:
    """``ref`` joined to ``root`` (``~`` expanded with ``home``) and the root, as pathlib writes them;
    strings only, no file system access, so remembered: a chain resolves each image once per op
    (pathlib's parsing was most of the runner's own time per record)."""
    base = _root_path(root)
    path = Path(ref)
    return str(path if path.is_absolute() else base / path), str(base)


def _root_path(root: str | os.PathLike) -> Path:
    try:
        base = Path(root).expanduser()
    except Exception as exc:  # noqa: BLE001 - e.g. RuntimeError for ~nosuchuser
        raise ImageUnreadable(f"invalid image root {root!r}: {_describe(exc)}") from None
    if "\x00" in str(base):
        raise ImageUnreadable(f"invalid image root {root!r}: contains a NUL byte")
    return base


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    """The image root with symlinks resolved, once per root: every image of every record is checked
    against it (an image's own path is resolved each time: a file swapped for a symlink is caught)."""
    return os.path.realpath(root)


def _check_inside(path: str, root: str) -> None:
    """Raise OutsideImageRoot unless ``path``, symlinks resolved, is ``root`` or under it."""
    try:
        real, real_root = os.path.realpath(path), _real_root(os.path.abspath(root))
    except (OSError, ValueError) as exc:
        raise ImageUnreadable(f"invalid path: {_describe(exc)}", _short(path)) from None
    # both are absolute and normalised by realpath: under the root means the root plus a separator
    inside = real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)
    if not inside:
        raise OutsideImageRoot(f"{_short(real)} is outside the image root {real_root}", _short(path))


def _short(path: str) -> str:
    return path if len(path) <= 300 else f"{path[:150]}...{path[-100:]}"


# --- the pixel limit -----------------------------------------------------------------------


def max_pixels_limit() -> int:
    """The pixel limit from ``PADDLEMIX_IQA_MAX_PIXELS`` (default 200 MP).

    Raises ValueError unless it is a positive whole number ("2e8" and "200_000_000" are
    fine), so a run can report a bad value once, as a config error.
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    value: int | None
    try:
        value = int(raw)
    except ValueError:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        value = int(number) if math.isfinite(number) and number.is_integer() else None
    if value is None or value <= 0:
        raise ValueError(
            f"{MAX_PIXELS_ENV} must be a positive whole number of pixels (e.g. 200000000), got {raw!r}"
        )
    return value


def _max_pixels(limit: int | None) -> tuple[int, str]:
    """The limit and where it came from (for the error text)."""
    if limit is not None:
        return int(limit), "max_pixels"
    return max_pixels_limit(), MAX_PIXELS_ENV


def _amount(pixels: int) -> str:
    """``900 MP`` for whole megapixels, else exact (``199,999,999 pixels``) so limits never look equal."""
    return f"{pixels // 1_000_000} MP" if pixels and pixels % 1_000_000 == 0 else f"{pixels:,} pixels"


def _check_pixels(img: Image.Image, path: str, limit: int, source: str) -> None:
    width, height = img.size
    if width * height > limit:
        raise ImageTooLarge(
            f"{width}x{height} = {_amount(width * height)} exceeds the limit of {_amount(limit)} ({source})",
            path,
        )


# --- process-wide Pillow state while decoding ----------------------------------------------

_session_lock = threading.Lock()
_session_limits: list[int] = []
_session_state: dict[str, Any] = {}


def _enter_session(limit: int) -> None:
    with _session_lock:
        if not _session_limits:
            _session_state["saved"] = Image.MAX_IMAGE_PIXELS
            if not _CONTEXT_WARNINGS:
                quiet = warnings.catch_warnings()
                quiet.__enter__()
                warnings.filterwarnings("ignore", module=_QUIET_MODULES)
                _session_state["quiet"] = quiet
        _session_limits.append(limit)
        _lift_pillow_limit()


def _leave_session(limit: int) -> None:
    with _session_lock:
        _session_limits.remove(limit)
        if _session_limits:
            _lift_pillow_limit()
            return
        if Image.MAX_IMAGE_PIXELS == _session_state.pop("ours", None):
            Image.MAX_IMAGE_PIXELS = _session_state["saved"]
        quiet = _session_state.pop("quiet", None)
        if quiet is not None:
            quiet.__exit__(None, None, None)


def _lift_pillow_limit() -> None:
    saved = _session_state["saved"]
    if not isinstance(saved, (int, float)):  # None: the user switched Pillow's check off
        return
    # Pillow refuses above 2 x MAX_IMAGE_PIXELS: half our limit makes its refusal coincide
    # with ours, and its own checks of frames, tiles and embedded images then apply at our limit
    wanted = max(saved, -(-max(_session_limits) // 2))
    Image.MAX_IMAGE_PIXELS = _session_state["ours"] = wanted


@contextmanager
def _session(limit: int) -> Iterator[None]:
    """While any decode runs: Pillow's bomb limit no lower than ours, and its warnings silenced.

    Pillow refuses images above 2 x ``Image.MAX_IMAGE_PIXELS`` (179 MP by default) when
    opening them, so a raised PADDLEMIX_IQA_MAX_PIXELS would not apply, and it warns about
    every damaged file. Both are process-wide state, so concurrent decodes (ops use threads)
    share one entry and the last one out restores them; per-call ``catch_warnings`` pairs
    would interleave across threads and could leave warnings silenced for good. Other
    threads' Pillow calls see the same settings meanwhile.
    """
    _enter_session(limit)
    try:
        if _CONTEXT_WARNINGS:  # Python 3.14+: catch_warnings is per thread/context
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", module=_QUIET_MODULES)
                yield
        else:
            yield
    finally:
        _leave_session(limit)


# --- opening and errors --------------------------------------------------------------------


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _path_error(exc: BaseException, path: str) -> ImageLoadError:
    if isinstance(exc, FileNotFoundError):  # the resolved path in the reason: a wrong root shows at once
        return ImageMissing(f"file not found: {_short(os.path.abspath(path))}", _short(path))
    if isinstance(exc, (PermissionError, NotADirectoryError, IsADirectoryError)):
        return ImageUnreadable(type(exc).__name__, _short(path))
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return ImageUnreadable(f"invalid path: {reason}", _short(path))
    return ImageUnreadable(f"invalid path: {_describe(exc)}", _short(path))


def _open_regular(path: str) -> tuple[BinaryIO, int]:
    """The file and its size; only regular files: a FIFO or /dev/zero would block or never end.

    Opened non-blocking and checked again with fstat, in case the path was swapped after stat.
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise _path_error(exc, path) from None
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(_kind(info.st_mode), path)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:
        raise _path_error(exc, path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(_kind(info.st_mode), path)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _message(exc: BaseException) -> str:
    """The message on one line and not too long (it ends up in rejected.jsonl)."""
    try:
        text = " ".join(str(exc).split())
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the real failure
        text = ""
    return text if len(text) <= 200 else text[:197] + "..."


def _describe(exc: BaseException) -> str:
    text = _message(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def _load_errors(path: str, limit: int, source: str) -> Iterator[None]:
    """Translate whatever Pillow, its plugins and the OS raise into typed :class:`ImageLoadError`.

    Plugins raise nearly anything on damaged files (IndexError, KeyError, TypeError,
    struct.error, RuntimeError, ...), so everything but BaseException-only exits is caught.
    """
    try:
        yield
    except ImageLoadError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as exc:
        raise _path_error(exc, path) from None
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        if pixels > limit:
            detail = f"{_amount(pixels)} exceeds the limit of {_amount(limit)} ({source})"
        else:  # a frame or tile bigger than the image (Pillow checks those too)
            detail = _describe(exc)
        raise ImageTooLarge(detail, path) from None
    except UnidentifiedImageError:
        raise NotAnImage("unknown format", path) from None
    except MemoryError:
        raise ImageTooLarge("out of memory while decoding", path) from None
    except Exception as exc:  # noqa: BLE001 - the loader boundary: damaged files raise anything
        text = _message(exc)
        if isinstance(exc, EOFError) or "truncated" in text.lower():
            raise ImageTruncated(text or type(exc).__name__, path) from None
        raise ImageUnreadable(_describe(exc), path) from None


#: Formats whose Pillow reader runs an external program (EPS: Ghostscript) are never opened:
#: a scraped file must not start a PostScript interpreter.
UNSAFE_FORMATS = frozenset({"EPS"})


@functools.cache
def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in Image.OPEN if f not in UNSAFE_FORMATS)


@contextmanager
def _opened(path: str, limit: int, source: str) -> Iterator[tuple[Image.Image, int]]:
    """The opened image and the file size, with every failure typed and Pillow's warnings silenced."""
    with _session(limit), _load_errors(path, limit, source):
        file, size = _open_regular(path)
        with file:
            if size == 0:
                raise NotAnImage("empty file", path)
            with Image.open(file, formats=_formats()) as img:
                yield img, size


# --- facts of the opened file --------------------------------------------------------------


def _orientation(img: Image.Image, header_only: bool = False) -> int:
    """The EXIF orientation (1: as stored; 5-8: width and height swap when shown).

    Damaged EXIF is metadata damage: the pixels are still shown as stored. With
    ``header_only``, a PNG without an early eXIf chunk is not decoded to look for a late one.
    """
    if header_only and img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any parse failure of the EXIF block
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _frame_count(img: Image.Image) -> int:
    """Frames in the file; TIFF pages only up to MAX_COUNTED_FRAMES (Pillow's count parses every
    IFD, quadratic in their number)."""
    if img.format != "TIFF":
        return int(getattr(img, "n_frames", 1))
    count = 1
    try:
        while count < MAX_COUNTED_FRAMES:
            img.seek(count)
            count += 1
    except EOFError:
        pass
    img.seek(0)
    return count


# --- pixels ---------------------------------------------------------------------------------


def _banded(img: Image.Image, convert: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """``convert`` applied to horizontal bands of a big image, written into one output array."""
    width, height = img.size
    if width * height <= _BAND_PIXELS:
        return np.ascontiguousarray(convert(img))
    rows = max(1, _BAND_PIXELS // max(1, width))
    out: np.ndarray | None = None
    for top in range(0, height, rows):
        part = convert(img.crop((0, top, width, min(height, top + rows))))
        if out is None:
            out = np.empty((height, *part.shape[1:]), part.dtype)
        out[top : top + part.shape[0]] = part
    assert out is not None
    return out


def _wide_scale(img: Image.Image) -> float:
    """Factor to 0..255 for 16-bit, 32-bit integer and float images (as the whole image needs)."""
    if img.mode.startswith("I;16"):
        return 1 / 257
    high = img.getextrema()[1]
    if img.mode == "I":  # 16-bit data that Pillow reports as I: anything above 255 means 16-bit
        return 1 / 257 if high > 255 else 1.0
    if isinstance(high, float) and math.isnan(high):  # Pillow's extrema start at the first pixel
        high = max(float(np.nanmax(b, initial=0.0)) for b in _bands_of(img))
    return 255.0 if high <= 1.0 else 1.0


def _bands_of(img: Image.Image) -> Iterator[np.ndarray]:
    width, height = img.size
    rows = max(1, _BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield np.asarray(img.crop((0, top, width, min(height, top + rows))))


def _scaled(values: np.ndarray, scale: float) -> np.ndarray:
    """One band of a wide-mode image to uint8: scaled, rounded, NaN -> 0, clipped (float32, band-sized)."""
    band = values.astype(np.float32)
    if values.dtype.kind == "f":
        np.copyto(band, 0.0, where=np.isnan(band))
    if scale != 1.0:
        band *= scale
    np.rint(band, out=band)
    np.clip(band, 0, 255, out=band)
    return band.astype(np.uint8)


def _composited(img: Image.Image) -> np.ndarray:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))


def _pixels(img: Image.Image) -> np.ndarray:
    """A loaded image as uint8: 2-D for gray sources (expanded to RGB after shrinking), else RGB.

    16-bit is scaled by 1/257 (65535 -> 255); alpha is composited onto BACKGROUND.
    """
    mode = img.mode
    if mode in _WIDE_MODES:
        scale = _wide_scale(img)
        return _banded(img, lambda band: _scaled(np.asarray(band), scale))
    if mode == "L":
        return _banded(img, np.asarray)
    if mode == "P" and "transparency" in img.info or mode in _ALPHA_MODES:
        return _banded(img, _composited)
    if mode == "RGB":
        return _banded(img, np.asarray)
    return _banded(img, lambda band: np.asarray(band.convert("RGB")))


def _shrink(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = pixels.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return pixels
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _shown(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels as EXIF says to show them (as ImageOps.exif_transpose, but after shrinking)."""
    turn = _ORIENT.get(orientation)
    return pixels if turn is None else np.ascontiguousarray(turn(pixels))


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels


def _draft_request(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size to ask JPEG's DCT scaling for: about ``max_side`` on the long side, never less."""
    scale = max_side / max(size)
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_REDUCED_GRAY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def _jpeg_complete(data: bytes) -> bool:
    """Whether the last scan of a JPEG stream ends with its end-of-image marker (scan data never
    holds FF D9: an FF byte there is stuffed with 00); libjpeg pads a truncated file with grey."""
    eoi = data.rfind(b"\xff\xd9")  # found in the last bytes of a whole file: both searches stay short
    return eoi >= 0 and data.find(b"\xff\xda", eoi) < 0  # no scan starts after it


def _jpeg_pixels(img: Image.Image, max_side: int | None) -> np.ndarray | None:
    """A baseline RGB or grey JPEG decoded by OpenCV's libjpeg straight into a numpy array (the same
    pixels as Pillow's, which decodes into its own buffer and copies: 1.2-1.6x slower), with the
    same DCT scaling as Pillow's ``draft``; None to let Pillow decode it (and report what is wrong)."""
    factor = 1
    if max_side and max(img.size) > max_side:
        want = _draft_request(img.size, max_side)
        fit = min(img.size[0] // want[0], img.size[1] // want[1])
        factor = next(f for f in (8, 4, 2, 1) if fit >= f)
    fp = img.fp
    if fp is None:
        return None
    fp.seek(0)
    data = fp.read()
    if not _jpeg_complete(data):
        return None
    flags = (_REDUCED if img.mode == "RGB" else _REDUCED_GRAY)[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    want_shape = (-(-img.size[1] // factor), -(-img.size[0] // factor))
    if pixels is None or pixels.shape[:2] != want_shape:
        return None
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels


# --- the public loader ---------------------------------------------------------------------


def decode_image(
    ref: Any,
    root: str | os.PathLike | None = None,
    max_side: int | None = None,
    max_pixels: int | None = None,
    *,
    allow_outside_root: bool = False,
) -> DecodedImage:
    """Decode an image reference to RGB uint8 with long side at most ``max_side``.

    Raises a subclass of :class:`ImageLoadError` (missing, unreadable, truncated, too_large,
    not_an_image, not_a_regular_file, outside_image_root); never anything else for bad files
    or paths. Only the first frame of an animation is decoded.
    """
    path = resolve_path(ref, root, allow_outside_root=allow_outside_root)
    limit, source = _max_pixels(max_pixels)
    with _opened(path, limit, source) as (img, file_size):
        _check_pixels(img, path, limit, source)
        width, height = img.size  # before draft() changes img.size
        n_frames = _frame_count(img)
        orientation = _orientation(img)
        pixels = _jpeg_pixels(img, max_side) if img.format == "JPEG" and img.mode in ("RGB", "L") else None
        if pixels is None:
            if max_side and img.format == "JPEG" and max(img.size) > max_side:
                img.draft(None, _draft_request(img.size, max_side))
            img.load()  # loading here surfaces truncation
            pixels = _pixels(img)
        pixels = _rgb(_shown(_shrink(pixels, max_side), orientation))
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(pixels, width, height, path, file_size, img.format, n_frames)


def decode_or_error(
    ref: Any,
    root: str | os.PathLike | None = None,
    max_side: int | None = None,
    pixels: bool = True,
    *,
    allow_outside_root: bool = False,
) -> DecodedImage | ImageLoadError:
    """:func:`decode_image` (or :func:`probe_image` when ``pixels`` is False) that returns the
    typed error instead of raising it, for batch code that records failures per image.

    The returned error carries no traceback: it would keep the failed decode's frames
    (and their pixel buffers) alive for as long as the batch holds the error.
    """
    try:
        if pixels:
            return decode_image(ref, root=root, max_side=max_side, allow_outside_root=allow_outside_root)
        return probe_image(ref, root=root, allow_outside_root=allow_outside_root)
    except ImageLoadError as exc:
        exc.__context__ = None
        return exc.with_traceback(None)


def load_image(
    ref: Any,
    root: str | os.PathLike | None = None,
    max_side: int | None = None,
    *,
    allow_outside_root: bool = False,
) -> np.ndarray:
    """Pixels of an image reference as an H x W x 3 RGB uint8 array (long side <= ``max_side``).

    Raises :class:`ImageLoadError` subclasses with a short ``reason``.
    """
    return decode_image(ref, root=root, max_side=max_side, allow_outside_root=allow_outside_root).pixels


def image_exif(path: str | os.PathLike) -> Image.Exif | None:
    """The EXIF block of an image file (header only, through the one safe opener), or None when the
    file has none or cannot be opened: metadata is never a reason to fail."""
    try:
        with _opened(os.fspath(path), max_pixels_limit(), "exif") as (img, _):
            exif = img.getexif()
            exif.get_ifd(0x8769)  # the Exif sub-IFD (capture time) is read while the file is open
            return exif
    except Exception:  # noqa: BLE001 - damaged or missing metadata: no EXIF
        return None


def probe_image(
    ref: Any, root: str | os.PathLike | None = None, *, allow_outside_root: bool = False
) -> DecodedImage:
    """Header-only facts (size, format, file size) without decoding pixels; ``pixels`` is empty."""
    path = resolve_path(ref, root, allow_outside_root=allow_outside_root)
    limit, source = _max_pixels(None)
    with _opened(path, limit, source) as (img, file_size):
        width, height = img.size
        if _orientation(img, header_only=True) in (5, 6, 7, 8):
            width, height = height, width
        return DecodedImage(
            np.zeros((0, 0, 3), np.uint8), width, height, path, file_size, img.format, _frame_count(img)
        )
