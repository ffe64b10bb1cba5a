"""Deterministic synthetic labelled sets from a folder of clean photos (``paddlemix-iqa make-eval-set``).

For every readable photo under SRC_DIR (searched recursively, sorted) the set holds:

- ``clean/<name>``: the source file itself, byte for byte (a clean false-positive rate is
  measured on real files, not on re-encodes);
- ``<class>/<stem>__<subset>.<ext>``: degraded copies, one class per recipe:

  ========== =============================================================================
  recipe     what it makes (subsets)
  ========== =============================================================================
  blur       PaddleClas's PULC clarity_assessment blur (``ppcls/data/preprocess/ops/
             operators.py``, ``BlurImage``): ``cv2.GaussianBlur(img, (k, k), 0)`` for k in
             5, 7, 9, 11 (``gaussian_k5`` ...) and its motion blur of length k at a random
             whole-degree angle in [-45, 45) (``motion_k5`` ...): 8 images per photo
  defocus    a disk (pill-box) kernel of radius 2-6 px (``defocus_r2`` ...)
  jpeg       JPEG at a random quality in 5-10, 11-20, 21-30 (``jpeg_q5-10`` ...)
  noise      additive Gaussian noise, sigma in 5-10, 10-20, 20-35 grey levels (``noise_s5-10`` ...)
  downscale  down by 2, 3, 4 (area) and back up (bicubic) (``down_x2`` ...)
  codes      a QR / EAN-13 / Code-128 / DataMatrix code (zxing-cpp) pasted as a white label at
             a random size, angle and blur from the option lists (``qr_s80_a30_b1``), class ``code``
  ========== =============================================================================

- ``labels.jsonl``: one row per image (clean included) with ``image``, ``label`` (the class),
  ``subset``, ``degradation``, ``params`` (the exact parameters) and ``source`` (path relative
  to SRC_DIR); it loads with :func:`paddlemix_iqa.evaluation.labelled.load_labelled`, and so
  does the folder itself (a folder per class);
- ``README.md``: what was made, the command and the seed, counts per class and subset.

Each image's random numbers come from (seed, source path relative to SRC_DIR, recipe, copy),
so the same sources, seed and options give byte-identical files (with the same OpenCV,
numpy and zxing-cpp) whatever ``--workers`` and whatever order the files are listed in.

The library functions take and return RGB uint8 arrays (H x W x 3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import EvalError

log = logging.getLogger(__name__)

#: recipes in the order they are made; the class (folder and label) each one fills
RECIPES = ("blur", "defocus", "jpeg", "noise", "downscale", "codes")
CLASS_OF = {
    "blur": "blur",
    "defocus": "defocus",
    "jpeg": "jpeg",
    "noise": "noise",
    "downscale": "downscale",
    "codes": "code",
}
_RECIPE_ALIASES = {"code": "codes", "down": "downscale", "gaussian_noise": "noise"}
CLEAN = "clean"

#: source files looked for under SRC_DIR (case-insensitive suffixes)
SOURCE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# --- PaddleClas BlurImage (PULC clarity_assessment): kernel sizes np.arange(5, 12, 2), angles np.arange(-45, 45)
GAUSSIAN_KSIZES = (5, 7, 9, 11)
MOTION_KSIZES = (5, 7, 9, 11)
MOTION_MAX_ANGLE = 45

DEFOCUS_RADII = (2, 3, 4, 5, 6)
JPEG_BANDS = ((5, 10), (11, 20), (21, 30))
NOISE_BANDS = ((5.0, 10.0), (10.0, 20.0), (20.0, 35.0))
DOWN_FACTORS = (2, 3, 4)

CODE_KINDS = ("qr", "ean13", "code128", "datamatrix")
CODE_SIZES = (40, 60, 80, 120, 200)
CODE_ANGLES = (0.0, 15.0, 30.0, 45.0)
CODE_BLURS = (0.0, 1.0, 2.0)
_ZXING_FORMAT = {"qr": "QRCode", "ean13": "EAN13", "code128": "Code128", "datamatrix": "DataMatrix"}
#: white margin, in modules, that every pasted code has at least on each side (zxing's own quiet zone when larger)
QUIET_MODULES = 2
#: px between the label and the photo's border when the photo has to be enlarged for it
_FIT_MARGIN = 2

PNG_COMPRESSION = 1  # zlib level: as small as 3-6 on photos, faster
_TMP_MARK = ".tmp-"
_EXIT_NO_IMAGES = 4  # as the CLI's EXIT_NO_IMAGES: no source could be read


# --- degradations ---------------------------------------------------------------------------------


def _odd_ksize(k: int) -> int:
    k = int(k)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {k}")
    return k


def gaussian_sigma(k: int) -> float:
    """The sigma OpenCV uses for a ``k`` x ``k`` Gaussian kernel when sigma is 0 (``getGaussianKernel``)."""
    return 0.3 * ((_odd_ksize(k) - 1) * 0.5 - 1) + 0.8


def gaussian_blur(img: np.ndarray, k: int) -> np.ndarray:
    """``cv2.GaussianBlur(img, (k, k), 0)``: PaddleClas's Gaussian blur with a square kernel."""
    import cv2

    k = _odd_ksize(k)
    return cv2.GaussianBlur(img, (k, k), 0)


def motion_kernel(k: int, angle: float) -> np.ndarray:
    """PaddleClas's motion-blur kernel: the k x k diagonal line, rotated ``angle`` degrees, divided by k.

    As PaddleClas's ``BlurImage._motion_blur`` builds it: ``np.diag(np.ones(k))`` (a 45-degree
    line, top left to bottom right) turned by ``cv2.getRotationMatrix2D((k / 2, k / 2), angle, 1)``
    with ``cv2.warpAffine`` (bilinear, zero border), then divided by k. Angle 0 is the diagonal,
    +45 horizontal, -45 vertical (the line lies at ``angle - 45`` degrees, counter-clockwise as
    seen). The rotation centre is half a pixel off the kernel's centre and the line's ends leave
    the k x k box, so the sum is 1 at angle 0 and down to about 0.64 elsewhere; PaddleClas does
    not renormalise the kernel but stretches the blurred image to 0..255 (see :func:`motion_blur`).
    """
    import cv2

    k = int(k)
    if k < 1:
        raise ValueError(f"motion kernel length must be positive, got {k}")
    rotation = cv2.getRotationMatrix2D((k / 2, k / 2), float(angle), 1)
    line = cv2.warpAffine(np.diag(np.ones(k)), rotation, (k, k))
    return line / k


def _motion_blur(img: np.ndarray, k: int, angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`motion_blur` and the blurred image's (min, max) before the stretch to 0..255."""
    import cv2

    blurred = cv2.filter2D(img, -1, motion_kernel(k, angle))
    low, high = int(blurred.min()), int(blurred.max())
    blurred = cv2.normalize(blurred, blurred, 0, 255, cv2.NORM_MINMAX)
    return np.asarray(blurred, dtype=np.uint8), (low, high)


def motion_blur(img: np.ndarray, k: int, angle: float) -> np.ndarray:
    """PaddleClas's motion blur: ``cv2.filter2D`` with :func:`motion_kernel`, then min-max to 0..255.

    The ``cv2.normalize(..., 0, 255, NORM_MINMAX)`` stretch is PaddleClas's (over all channels
    at once); it undoes the darkening of a kernel that sums to less than 1 (and makes a flat
    image black, as there).
    """
    return _motion_blur(img, k, angle)[0]


def disk_kernel(radius: float) -> np.ndarray:
    """A normalised disk of ``radius`` px (defocus, pill-box PSF), edge pixels weighted by their coverage."""
    r = float(radius)
    if not r > 0:
        raise ValueError(f"defocus radius must be positive, got {radius}")
    n = int(np.ceil(r - 1e-9))
    sub = 8  # 8 x 8 samples per pixel for the coverage of the disk's edge
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    centres = np.arange(-n, n + 1, dtype=np.float64)
    ys = centres[:, None, None, None] + offsets[None, None, :, None]
    xs = centres[None, :, None, None] + offsets[None, None, None, :]
    cover = (xs**2 + ys**2 <= r * r).mean(axis=(2, 3))
    return cover / cover.sum()


def defocus_blur(img: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: ``img`` convolved with :func:`disk_kernel` (reflected border)."""
    import cv2

    return cv2.filter2D(img, -1, disk_kernel(radius))


def _jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()


def _decode_jpeg(data: bytes) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` after a JPEG round trip at ``quality`` (OpenCV / libjpeg, 4:2:0)."""
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    return _decode_jpeg(_jpeg_bytes(img, quality))


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``img`` plus Gaussian noise of ``sigma`` grey levels, independent per pixel and channel, rounded and clipped."""
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= np.float32(sigma)
    noise += img
    np.rint(noise, out=noise)
    np.clip(noise, 0, 255, out=noise)
    return noise.astype(np.uint8)


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """``img`` shrunk by ``factor`` (area average) and enlarged back to its size (bicubic)."""
    import cv2

    if not factor >= 1:
        raise ValueError(f"downscale factor must be at least 1, got {factor}")
    h, w = img.shape[:2]
    small = cv2.resize(
        img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# --- pasted codes ---------------------------------------------------------------------------------


def _code_text(kind: str, rng: np.random.Generator) -> str:
    if kind == "ean13":  # 12 digits; the writer adds the check digit
        return "".join(str(d) for d in rng.integers(0, 10, 12))
    if kind == "code128":  # digits: code set C, about as wide as an EAN-13
        return "".join(str(d) for d in rng.integers(0, 10, 10))
    if kind == "datamatrix":
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), int(rng.integers(6, 25))))
    if kind == "qr":
        letters = "abcdefghijklmnopqrstuvwxyz"
        tail = "".join(letters[i] for i in rng.integers(0, len(letters), int(rng.integers(4, 40))))
        return "https://example.com/" + tail
    raise ValueError(f"unknown code kind {kind!r} (one of {', '.join(CODE_KINDS)})")


def make_code(kind: str, rng: np.random.Generator, scale: int = 8) -> tuple[np.ndarray, str]:
    """A code of ``kind`` (qr, ean13, code128, datamatrix) with random content, made by zxing-cpp.

    Returns the gray uint8 image (``scale`` px per module, white quiet zone of at least
    :data:`QUIET_MODULES` modules on every side) and the code's text as a reader returns it
    (EAN-13 with its check digit).
    """
    import cv2
    import zxingcpp

    text = _code_text(kind, rng)
    code = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, _ZXING_FORMAT[kind]))
    img = np.ascontiguousarray(np.asarray(code.to_image(scale=int(scale))), dtype=np.uint8)
    if img.ndim == 3:
        img = np.ascontiguousarray(img[:, :, 0])
    dark = np.argwhere(img < 128)
    top, left = dark.min(0)
    bottom, right = np.array(img.shape) - dark.max(0) - 1
    quiet = QUIET_MODULES * int(scale)
    pads = [max(0, quiet - int(v)) for v in (top, bottom, left, right)]
    if any(pads):
        img = cv2.copyMakeBorder(img, *pads, cv2.BORDER_CONSTANT, value=255)
    return img, code.text


def paste_code(
    photo_rgb: np.ndarray,
    code_gray: np.ndarray,
    size: int,
    angle: float,
    blur: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[list[float]]]:
    """``photo_rgb`` with ``code_gray`` pasted as a white label at a random position.

    The symbol (the code's dark modules, without quiet zone) is scaled so that its long
    side is ``size`` px, the label turned ``angle`` degrees counter-clockwise, and the whole
    image then blurred with a Gaussian of sigma ``blur`` px (0: none). A photo too small for
    the label is enlarged (bicubic) so the label fits; the code is never cropped. Returns
    the image and the symbol's corners in it, ``[[x, y], ...]`` (top left, top right, bottom
    right, bottom left of the unrotated symbol; pixel-edge coordinates).
    """
    import cv2

    dark = np.argwhere(code_gray < 128)
    if not len(dark):
        raise ValueError("the code image has no dark modules")
    (y0, x0), (y1, x1) = dark.min(0), dark.max(0) + 1
    scale = float(size) / max(x1 - x0, y1 - y0)
    h0, w0 = code_gray.shape
    w, h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    label = cv2.resize(code_gray, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sx, sy = w / w0, h / h0
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle), 1.0)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    bw, bh = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    rotation[:, 2] += (bw / 2 - w / 2, bh / 2 - h / 2)
    label = cv2.warpAffine(label, rotation, (bw, bh), flags=cv2.INTER_LINEAR, borderValue=255)
    mask = cv2.warpAffine(np.ones((h, w), np.float32), rotation, (bw, bh), flags=cv2.INTER_LINEAR)

    ph, pw = photo_rgb.shape[:2]
    grow = max(1.0, (bh + 2 * _FIT_MARGIN) / ph, (bw + 2 * _FIT_MARGIN) / pw)
    if grow > 1:
        size_up = (int(np.ceil(pw * grow)), int(np.ceil(ph * grow)))
        photo_rgb = cv2.resize(photo_rgb, size_up, interpolation=cv2.INTER_CUBIC)
        ph, pw = photo_rgb.shape[:2]
    y = int(rng.integers(0, ph - bh + 1))
    x = int(rng.integers(0, pw - bw + 1))

    out = photo_rgb.astype(np.float32)
    region = out[y : y + bh, x : x + bw]
    alpha = mask[..., None]
    region *= 1 - alpha
    region += label[..., None].astype(np.float32) * alpha
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    out = out.astype(np.uint8)
    if blur and blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), float(blur))

    corners = np.array([[x0 * sx, y0 * sy], [x1 * sx, y0 * sy], [x1 * sx, y1 * sy], [x0 * sx, y1 * sy]])
    placed = corners @ rotation[:, :2].T + rotation[:, 2] + (x, y)
    return out, [[round(float(px), 2), round(float(py), 2)] for px, py in placed]


# --- options ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    seed: int
    recipes: tuple[str, ...]
    per_image: int
    fmt: str
    jpeg_quality: int
    code_kinds: tuple[str, ...] = CODE_KINDS
    code_sizes: tuple[int, ...] = CODE_SIZES
    code_angles: tuple[float, ...] = CODE_ANGLES
    code_blurs: tuple[float, ...] = CODE_BLURS
    code_jpeg_quality: int | None = None

    @property
    def ext(self) -> str:
        return self.fmt


def _items_of(value: str | Iterable[Any], what: str) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    try:
        return list(value)
    except TypeError:
        raise EvalError(f"{what}: expected a comma-separated list, got {value!r}") from None


def _numbers(value: Any, what: str, kind: type, low: float, high: float) -> tuple:
    out = []
    for item in _items_of(value, what):
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise EvalError(f"{what}: {item!r} is not a number") from None
        if kind is int:
            if not number.is_integer():
                raise EvalError(f"{what}: {item!r} is not a whole number")
            number = int(number)
        if not low <= number <= high:
            raise EvalError(f"{what}: {item!r} is outside {low:g}..{high:g}")
        out.append(number)
    if not out:
        raise EvalError(f"{what}: empty list")
    return tuple(dict.fromkeys(out))


def _whole(value: Any, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise EvalError(f"{what} must be a whole number, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f"at least {low}"
        raise EvalError(f"{what} must be {bound}, got {value}")
    return value


def _recipes(value: Any) -> tuple[str, ...]:
    names = []
    for item in _items_of(value, "recipes"):
        name = str(item).strip().lower()
        name = _RECIPE_ALIASES.get(name, name)
        if name == "all":
            names.extend(RECIPES)
            continue
        if name not in CLASS_OF:
            raise EvalError(f"unknown recipe {item!r} (choose from {', '.join(RECIPES)})")
        names.append(name)
    if not names:
        raise EvalError(f"no recipe given (choose from {', '.join(RECIPES)})")
    chosen = set(names)
    return tuple(r for r in RECIPES if r in chosen)


_CODE_OPTIONS = ("code_kinds", "code_sizes", "code_angles", "code_blurs", "code_jpeg_quality")


def _options(
    seed: Any,
    recipes: Any,
    per_image: Any,
    fmt: Any,
    jpeg_quality: Any,
    code_options: dict[str, Any],
) -> _Options:
    unknown = sorted(set(code_options) - set(_CODE_OPTIONS))
    if unknown:
        raise EvalError(f"unknown option(s) {', '.join(unknown)} (code options: {', '.join(_CODE_OPTIONS)})")
    fmt = str(fmt).lower().lstrip(".")
    fmt = {"jpeg": "jpg"}.get(fmt, fmt)
    if fmt not in ("png", "jpg"):
        raise EvalError(f"format must be png or jpg, got {fmt!r}")
    kinds = []
    for item in _items_of(code_options.get("code_kinds", CODE_KINDS), "code kinds"):
        kind = str(item).strip().lower().replace("-", "")
        kind = {"qrcode": "qr", "code_128": "code128", "dm": "datamatrix"}.get(kind, kind)
        if kind not in CODE_KINDS:
            raise EvalError(f"unknown code kind {item!r} (choose from {', '.join(CODE_KINDS)})")
        kinds.append(kind)
    if not kinds:
        raise EvalError("code kinds: empty list")
    code_jpeg = code_options.get("code_jpeg_quality")
    if code_jpeg is not None:
        code_jpeg = _whole(code_jpeg, "code JPEG quality", 1, 100)
    return _Options(
        seed=_whole(seed, "seed", 0, 2**63 - 1),
        recipes=_recipes(recipes),
        per_image=_whole(per_image, "per-image", 1, 1000),
        fmt=fmt,
        jpeg_quality=_whole(jpeg_quality, "JPEG quality", 1, 100),
        code_kinds=tuple(dict.fromkeys(kinds)),
        code_sizes=_numbers(code_options.get("code_sizes", CODE_SIZES), "code sizes", int, 8, 20000),
        code_angles=_numbers(code_options.get("code_angles", CODE_ANGLES), "code angles", float, -360, 360),
        code_blurs=_numbers(code_options.get("code_blurs", CODE_BLURS), "code blurs", float, 0, 100),
        code_jpeg_quality=code_jpeg,
    )


# --- recipes ------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One degraded image: its subset, degradation, exact parameters and pixels (or ready-made file bytes)."""

    subset: str
    degradation: str
    params: dict[str, Any]
    pixels: np.ndarray | None
    data: bytes | None = field(default=None, repr=False)


def _num(value: float) -> str:
    """3 for 3.0, 2.5 for 2.5 (subset names)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _blur_items(img: np.ndarray, rng: np.random.Generator, opts: _Options) -> list[_Item]:
    items = [
        _Item(
            f"gaussian_k{k}",
            "gaussian",
            {"ksize": k, "sigma": round(gaussian_sigma(k), 4), "recipe": "paddleclas_pulc_clarity"},
            gaussian_blur(img, k),
        )
        for k in GAUSSIAN_KSIZES
    ]
    for k in MOTION_KSIZES:
        angle = int(rng.integers(-MOTION_MAX_ANGLE, MOTION_MAX_ANGLE))  # as np.arange(-45, 45)
        pixels, (low, high) = _motion_blur(img, k, angle)
        params = {
            "ksize": k,
            "angle": angle,
            "line_deg": angle - 45,
            "kernel_sum": round(float(motion_kernel(k, angle).sum()), 6),
            "stretched_from": [low, high],
            "recipe": "paddleclas_pulc_clarity",
        }
        items.append(_Item(f"motion_k{k}", "motion", params, pixels))
    return items


def _defocus_items(img: np.ndarray, rng: np.random.Generator, opts: _Options) -> list[_Item]:
    return [
        _Item(f"defocus_r{_num(r)}", "defocus", {"radius": r, "kernel": "disk"}, defocus_blur(img, r))
        for r in DEFOCUS_RADII
    ]


def _jpeg_items(img: np.ndarray, rng: np.random.Generator, opts: _Options) -> list[_Item]:
    items = []
    for low, high in JPEG_BANDS:
        quality = int(rng.integers(low, high + 1))
        data = _jpeg_bytes(img, quality)
        params = {"quality": quality, "encoder": "opencv"}
        if opts.fmt == "jpg":  # the file is the compressed JPEG itself, not a re-encode of it
            items.append(_Item(f"jpeg_q{low}-{high}", "jpeg", params, None, data))
        else:
            items.append(_Item(f"jpeg_q{low}-{high}", "jpeg", params, _decode_jpeg(data)))
    return items


def _noise_items(img: np.ndarray, rng: np.random.Generator, opts: _Options) -> list[_Item]:
    items = []
    for low, high in NOISE_BANDS:
        sigma = round(float(rng.uniform(low, high)), 2)
        items.append(
            _Item(
                f"noise_s{_num(low)}-{_num(high)}",
                "gaussian_noise",
                {"sigma": sigma},
                add_noise(img, sigma, rng),
            )
        )
    return items


def _downscale_items(img: np.ndarray, rng: np.random.Generator, opts: _Options) -> list[_Item]:
    return [
        _Item(
            f"down_x{_num(f)}",
            "down_up",
            {"factor": f, "down": "area", "up": "bicubic"},
            down_up(img, f),
        )
        for f in DOWN_FACTORS
    ]


def _code_items(img: np.ndarray, rng: np.random.Generator, opts: _Options) -> list[_Item]:
    items = []
    for kind in opts.code_kinds:
        code, text = make_code(kind, rng)
        size = opts.code_sizes[int(rng.integers(len(opts.code_sizes)))]
        angle = opts.code_angles[int(rng.integers(len(opts.code_angles)))]
        blur = opts.code_blurs[int(rng.integers(len(opts.code_blurs)))]
        pixels, polygon = paste_code(img, code, size, angle, blur, rng)
        subset = f"{kind}_s{size}_a{_num(angle)}_b{_num(blur)}"
        params: dict[str, Any] = {
            "kind": kind,
            "text": text,
            "size": size,
            "angle": angle,
            "blur": blur,
            "jpeg_quality": opts.code_jpeg_quality,
            "polygon": polygon,
            "photo_scale": round(pixels.shape[1] / img.shape[1], 6),
        }
        data = None
        if opts.code_jpeg_quality is not None:
            subset += f"_q{opts.code_jpeg_quality}"
            encoded = _jpeg_bytes(pixels, opts.code_jpeg_quality)
            if opts.fmt == "jpg":  # saved as this JPEG, not re-encoded
                pixels, data = None, encoded
            else:
                pixels = _decode_jpeg(encoded)
        items.append(_Item(subset, kind, params, pixels, data))
    return items


_RECIPE_FUNCS: dict[str, Callable[[np.ndarray, np.random.Generator, _Options], list[_Item]]] = {
    "blur": _blur_items,
    "defocus": _defocus_items,
    "jpeg": _jpeg_items,
    "noise": _noise_items,
    "downscale": _downscale_items,
    "codes": _code_items,
}


def _fs_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def image_rng(seed: int, source: str, recipe: str, copy: int) -> np.random.Generator:
    """The random numbers of one source's ``recipe`` copy: from (seed, relative path, recipe, copy) only."""
    return np.random.default_rng(
        [int(seed), zlib.crc32(_fs_bytes(source)), zlib.crc32(recipe.encode()), int(copy)]
    )


# --- files ----------------------------------------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _encode(pixels: np.ndarray, fmt: str, jpeg_quality: int) -> bytes:
    import cv2

    bgr = np.ascontiguousarray(pixels[:, :, ::-1])
    if fmt == "png":
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    else:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {fmt}")
    return data.tobytes()


def _list_files(root: Path) -> list[Path]:
    """Every file under ``root`` (any order; sorted by the caller)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, f) for f in files if not f.startswith("."))
    return found


def find_sources(src: str | os.PathLike, limit: int | None = None) -> list[tuple[Path, str]]:
    """(path, path relative to ``src`` in POSIX form) of the image files under ``src``, sorted by relative path."""
    root = Path(src)
    sources = []
    for path in _list_files(root):
        if path.suffix.lower() in SOURCE_SUFFIXES and path.is_file():
            sources.append((path, path.relative_to(root).as_posix()))
    sources.sort(key=lambda s: _fs_bytes(s[1]))
    return sources if limit is None else sources[:limit]


def _keys(rels: Sequence[str]) -> list[str]:
    """A file stem per source, unique even when two sources share a stem (a/x.jpg, b/x.jpg, x.png)."""
    stems = [rel.rsplit(".", 1)[0].replace("/", "_") for rel in rels]
    counts = Counter(s.lower() for s in stems)
    return [
        f"{stem}_{zlib.crc32(_fs_bytes(rel)):08x}" if counts[stem.lower()] > 1 else stem
        for stem, rel in zip(stems, rels, strict=True)
    ]


@dataclass(frozen=True)
class _Task:
    index: int
    path: str
    rel: str
    key: str
    out: str
    opts: _Options


def _build_source(task: _Task) -> dict[str, Any]:
    """Every output of one source: its clean copy and degraded images written, their rows returned."""
    from ..io import ImageLoadError, load_image

    try:
        img = load_image(task.path)
    except ImageLoadError as exc:
        return {"index": task.index, "rel": task.rel, "skipped": exc.reason}
    out, opts = Path(task.out), task.opts
    suffix = Path(task.path).suffix
    clean_name = f"{CLEAN}/{task.key}{suffix}"
    _write_bytes(out / clean_name, Path(task.path).read_bytes())
    h, w = img.shape[:2]
    rows: list[dict[str, Any]] = [
        {
            "image": clean_name,
            "label": CLEAN,
            "subset": CLEAN,
            "degradation": "none",
            "params": {"width": w, "height": h},
            "source": task.rel,
        }
    ]
    for recipe in opts.recipes:
        cls = CLASS_OF[recipe]
        for copy in range(opts.per_image):
            rng = image_rng(opts.seed, task.rel, recipe, copy)
            for item in _RECIPE_FUNCS[recipe](img, rng, opts):
                tag = f"_c{copy}" if opts.per_image > 1 else ""
                name = f"{cls}/{task.key}__{item.subset}{tag}.{opts.ext}"
                data = (
                    item.data if item.data is not None else _encode(item.pixels, opts.fmt, opts.jpeg_quality)
                )
                _write_bytes(out / name, data)
                row = {
                    "image": name,
                    "label": cls,
                    "subset": item.subset,
                    "degradation": item.degradation,
                    "params": item.params,
                    "source": task.rel,
                }
                if opts.per_image > 1:
                    row["copy"] = copy
                rows.append(row)
    return {"index": task.index, "rel": task.rel, "rows": rows}


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run_tasks(tasks: list[_Task], workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(tasks) <= 1:
        return [_build_source(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold OpenCV threads
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_init_worker) as pool:
        results = []
        for n, result in enumerate(pool.map(_build_source, tasks, chunksize=1), 1):
            results.append(result)
            if n % 50 == 0:
                log.info("make-eval-set: %d / %d sources", n, len(tasks))
        return results


# --- the output folder ------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_dirs(src: Path, out: Path, force: bool) -> tuple[Path, Path]:
    if not src.is_dir():
        raise EvalError(f"source folder {src} does not exist or is not a folder")
    if out.exists() and not out.is_dir():
        raise EvalError(f"output {out} exists and is not a folder")
    real_src, real_out = src.resolve(), out.resolve()
    if _inside(real_out, real_src):
        raise EvalError(f"output folder {out} is SRC_DIR or inside it; choose a folder outside {src}")
    if _inside(real_src, real_out):
        raise EvalError(f"output folder {out} contains SRC_DIR {src}; choose a folder outside it")
    if out.exists() and any(out.iterdir()) and not force:
        raise EvalError(
            f"output folder {out} exists and is not empty; choose a new folder, or --force to replace "
            "a previous make-eval-set build there"
        )
    return real_src, real_out


def _clear_previous(out: Path, src: Path) -> int:
    """Remove a previous build's files (those listed in its labels.jsonl, its README and labels, and
    temporary files of an interrupted build) from ``out``; nothing else. Returns how many were removed."""
    removed = 0

    def remove(path: Path) -> None:
        nonlocal removed
        try:
            real = path.resolve()
        except OSError:
            return
        if not _inside(real, out) or real == out or _inside(real, src) or not path.is_file():
            return
        path.unlink()
        removed += 1

    labels = out / "labels.jsonl"
    if labels.is_file():
        with labels.open(encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                image = record.get("image") if isinstance(record, dict) else None
                if isinstance(image, str) and image and not os.path.isabs(image):
                    remove(out / image)
    for name in ("labels.jsonl", "README.md"):
        remove(out / name)
    for cls in (CLEAN, *CLASS_OF.values()):
        folder = out / cls
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and _TMP_MARK in path.name:
                remove(path)
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
    for path in out.iterdir():
        if path.name.startswith(".") and _TMP_MARK in path.name:
            remove(path)
    return removed


def _json_line(row: dict[str, Any]) -> str:
    try:
        line = json.dumps(row, ensure_ascii=False)
        line.encode("utf-8")
        return line
    except UnicodeEncodeError:  # an undecodable file name: escaped, still valid JSON
        return json.dumps(row, ensure_ascii=True)


def _command(src: Any, out: Any, opts: _Options, limit: int | None) -> str:
    parts = [
        "paddlemix-iqa",
        "make-eval-set",
        str(src),
        str(out),
        "--seed",
        str(opts.seed),
        "--recipes",
        ",".join(opts.recipes),
        "--per-image",
        str(opts.per_image),
    ]
    if limit is not None:
        parts += ["--limit", str(limit)]
    parts += ["--format", opts.fmt]
    if opts.fmt == "jpg":
        parts += ["--jpeg-quality", str(opts.jpeg_quality)]
    if "codes" in opts.recipes:
        parts += [
            "--code-kinds",
            ",".join(opts.code_kinds),
            "--code-sizes",
            ",".join(str(s) for s in opts.code_sizes),
            "--code-angles",
            ",".join(_num(a) for a in opts.code_angles),
            "--code-blurs",
            ",".join(_num(b) for b in opts.code_blurs),
        ]
        if opts.code_jpeg_quality is not None:
            parts += ["--code-jpeg-quality", str(opts.code_jpeg_quality)]
    return " ".join(shlex.quote(p) for p in parts)


def _versions() -> str:
    import cv2

    from .._version import __version__ as ours

    try:
        from importlib.metadata import version

        zxing = version("zxing-cpp")
    except Exception:  # noqa: BLE001 - only for the README
        zxing = "unknown"
    return f"paddlemix_iqa {ours}, OpenCV {cv2.__version__}, numpy {np.__version__}, zxing-cpp {zxing}"


_RECIPE_TEXT = {
    "blur": (
        "PaddleClas's blur for PULC clarity_assessment training (`BlurImage` in "
        "ppcls/data/preprocess/ops/operators.py), one image per kernel size and kind: "
        "`gaussian_k{5,7,9,11}` is `cv2.GaussianBlur(img, (k, k), 0)` (OpenCV's sigma for k: "
        "1.1, 1.4, 1.7, 2.0); `motion_k{5,7,9,11}` is PaddleClas's motion blur: `np.diag(np.ones(k))` "
        "rotated by a random whole-degree angle in [-45, 45) about (k/2, k/2) with `cv2.warpAffine`, "
        "divided by k, applied with `cv2.filter2D`, then `cv2.normalize(..., 0, 255, NORM_MINMAX)` "
        "(params: `angle`, `line_deg` = angle - 45, `kernel_sum`, `stretched_from`)."
    ),
    "defocus": "Disk (pill-box) kernel of radius 2-6 px, edge pixels weighted by coverage (`defocus_r2` ... `defocus_r6`).",
    "jpeg": "OpenCV JPEG at a random quality in each band (`jpeg_q5-10`, `jpeg_q11-20`, `jpeg_q21-30`; params: `quality`).",
    "noise": (
        "Additive Gaussian noise, independent per pixel and channel, sigma (grey levels) random in each "
        "band (`noise_s5-10`, `noise_s10-20`, `noise_s20-35`; params: `sigma`)."
    ),
    "downscale": "Shrunk by 2, 3, 4 (area average) and enlarged back (bicubic) (`down_x2` ... `down_x4`).",
    "codes": (
        "A code made by zxing-cpp with random content (one per kind per photo), pasted as a white label "
        "(quiet zone at least 2 modules) at a random position; size (symbol long side, px), angle (degrees, "
        "counter-clockwise) and blur (Gaussian sigma over the whole image) drawn from the option lists; a "
        "photo too small for the label is enlarged (params: `photo_scale`). Subset `<kind>_s<size>_a<angle>_b<blur>`; "
        "params hold `text` and the symbol's corners in the image (`polygon`)."
    ),
}


def _readme(
    src: Any,
    out: Any,
    opts: _Options,
    limit: int | None,
    rows: list[dict],
    skipped: list[dict],
    n_sources: int,
) -> str:
    counts: dict[str, Counter] = {}
    for row in rows:
        counts.setdefault(row["label"], Counter())[row["subset"]] += 1
    used = n_sources - len(skipped)
    lines = [
        "# Synthetic evaluation set",
        "",
        f"Made by `paddlemix-iqa make-eval-set` from {used} photos under `{src}` "
        f"(seed {opts.seed}, {opts.per_image} cop{'y' if opts.per_image == 1 else 'ies'} per photo and recipe):",
        "",
        "```",
        _command(src, out, opts, limit),
        "```",
        "",
        "The same sources, seed and options give byte-identical files with the same libraries "
        f"({_versions()}), whatever `--workers`.",
        "",
        "- `clean/`: the source photos, byte-for-byte copies of the files.",
        f"- `<class>/<photo>__<subset>.{opts.ext}`: the degraded copies "
        + (
            "(PNG, lossless)."
            if opts.fmt == "png"
            else f"(JPEG quality {opts.jpeg_quality}; the `jpeg` class keeps its own quality)."
        ),
        "- `labels.jsonl`: one row per image: `image`, `label` (the class), `subset`, `degradation`, "
        "`params` (exact parameters), `source` (path relative to the source folder).",
        "",
        "Use it as `load_labelled('labels.jsonl', positive='blur')` (eval / calibrate take the file or "
        "this folder; classes not named are left out), and split results by `subset`.",
        "",
        "## Recipes",
        "",
    ]
    lines += [f"- **{CLASS_OF[r]}** ({r}): {_RECIPE_TEXT[r]}" for r in opts.recipes]
    lines += ["", "## Counts", "", "| class | images |", "|---|---|"]
    order = [CLEAN, *(CLASS_OF[r] for r in opts.recipes)]
    for cls in order:
        lines.append(f"| {cls} | {sum(counts.get(cls, Counter()).values())} |")
    lines += [f"| total | {len(rows)} |", ""]
    for cls in order[1:]:
        subsets = counts.get(cls, Counter())
        if not subsets:
            continue
        if cls == "code":
            by: dict[str, Counter] = {
                "kind": Counter(),
                "size": Counter(),
                "angle": Counter(),
                "blur": Counter(),
            }
            for row in rows:
                if row["label"] == "code":
                    p = row["params"]
                    by["kind"][p["kind"]] += 1
                    by["size"][str(p["size"])] += 1
                    by["angle"][_num(p["angle"])] += 1
                    by["blur"][_num(p["blur"])] += 1
            lines += [f"### {cls} ({len(subsets)} subsets)", ""]
            order_of = {"kind": list(opts.code_kinds)}
            for name, counter in by.items():
                keys = order_of.get(name) or sorted(counter, key=float)
                cells = ", ".join(f"{k}: {counter[k]}" for k in keys if counter[k])
                lines.append(f"- by {name}: {cells}")
            lines.append("")
            continue
        lines += [f"### {cls}", "", "| subset | images |", "|---|---|"]
        lines += [f"| {subset} | {n} |" for subset, n in subsets.items()]
        lines.append("")
    if skipped:
        lines += [f"## Skipped sources ({len(skipped)}, unreadable)", ""]
        lines += [f"- `{s['source']}`: {s['reason']}" for s in skipped]
        lines.append("")
    return "\n".join(lines)


# --- the build --------------------------------------------------------------------------------------


def make_eval_set(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    recipes: str | Sequence[str] = RECIPES,
    per_image: int = 1,
    limit: int | None = None,
    fmt: str = "png",
    workers: int = 2,
    jpeg_quality: int = 95,
    force: bool = False,
    **code_options: Any,
) -> dict[str, Any]:
    """Build a labelled set in ``out`` from the photos under ``src``; returns a summary.

    ``code_options``: ``code_kinds``, ``code_sizes``, ``code_angles``, ``code_blurs`` (lists or
    comma-separated strings) and ``code_jpeg_quality`` (None: no JPEG step). Raises
    :class:`EvalError` for bad arguments, a missing ``src``, ``out`` equal to / inside /
    containing ``src``, a non-empty ``out`` without ``force`` (which replaces only a previous
    build's own files), or a ``src`` without image files. Unreadable sources are skipped with a
    warning and counted (``summary["skipped"]``).
    """
    start = time.perf_counter()
    opts = _options(seed, recipes, per_image, fmt, jpeg_quality, code_options)
    workers = _whole(workers, "workers", 1, 1024)
    if limit is not None:
        limit = _whole(limit, "limit", 1)
    src_dir, out_dir = _check_dirs(Path(src), Path(out), bool(force))
    sources = find_sources(src_dir, limit)
    if not sources:
        raise EvalError(f"no image files under {src} ({', '.join(sorted(SOURCE_SUFFIXES))})")

    if out_dir.exists() and force:
        removed = _clear_previous(out_dir, src_dir)
        if removed:
            log.info("make-eval-set: removed %d files of a previous build in %s", removed, out)
        others = sum(1 for _ in out_dir.rglob("*") if _.is_file())
        if others:
            log.warning(
                "make-eval-set: %s holds %d files that are not from a previous build; they are left in place",
                out,
                others,
            )
    for cls in (CLEAN, *(CLASS_OF[r] for r in opts.recipes)):
        (out_dir / cls).mkdir(parents=True, exist_ok=True)

    keys = _keys([rel for _, rel in sources])
    tasks = [
        _Task(i, str(path), rel, key, str(out_dir), opts)
        for i, ((path, rel), key) in enumerate(zip(sources, keys, strict=True))
    ]
    results = sorted(_run_tasks(tasks, workers), key=lambda r: r["index"])

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for result in results:
        if "skipped" in result:
            log.warning("make-eval-set: skipped %s: %s", result["rel"], result["skipped"])
            skipped.append({"source": result["rel"], "reason": result["skipped"]})
        else:
            rows.extend(result["rows"])
    _write_bytes(out_dir / "labels.jsonl", "".join(_json_line(r) + "\n" for r in rows).encode("utf-8"))
    readme = _readme(src, out, opts, limit, rows, skipped, len(sources))
    _write_bytes(out_dir / "README.md", readme.encode("utf-8", "surrogateescape"))

    classes: dict[str, int] = Counter(r["label"] for r in rows)
    subsets: dict[str, dict[str, int]] = {}
    for row in rows:
        subsets.setdefault(row["label"], Counter())[row["subset"]] += 1
    return {
        "src": str(src),
        "out": str(out),
        "seed": opts.seed,
        "sources": len(sources),
        "used": len(sources) - len(skipped),
        "skipped": len(skipped),
        "skipped_sources": skipped,
        "images": len(rows),
        "classes": dict(classes),
        "subsets": {k: dict(v) for k, v in subsets.items()},
        "seconds": round(time.perf_counter() - start, 3),
    }


# --- the command ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``make-eval-set`` command's arguments."""
    parser.description = (
        "Build a labelled evaluation set from a folder of clean photos: byte-for-byte clean copies plus "
        "blurred (PaddleClas PULC recipe), defocused, JPEG-compressed, noisy, down-up-scaled and "
        "code-pasted copies, with labels.jsonl (image, label, subset, degradation, params, source) and a "
        "README. Same sources + seed + options give byte-identical files."
    )
    parser.add_argument("src", metavar="SRC_DIR", help="folder of clean photos (searched recursively)")
    parser.add_argument("out", metavar="OUT_DIR", help="new (or empty) output folder, outside SRC_DIR")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help=f"comma-separated degradations to make (default: all: {','.join(RECIPES)})",
    )
    parser.add_argument(
        "--per-image",
        type=int,
        default=1,
        metavar="N",
        help="copies per photo and recipe, each with new random draws",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N photos (sorted by path)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("png", "jpg"),
        default="png",
        help="degraded images' format (default png, lossless)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=95, help="quality of --format jpg (default 95)")
    parser.add_argument(
        "--workers", type=int, default=2, help="processes (default 2; outputs do not depend on it)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="build into a non-empty OUT_DIR, replacing a previous build's files",
    )
    parser.add_argument(
        "--code-kinds",
        default=",".join(CODE_KINDS),
        help=f"codes to paste, one of each per photo (default {','.join(CODE_KINDS)})",
    )
    parser.add_argument(
        "--code-sizes",
        default=",".join(str(s) for s in CODE_SIZES),
        help="symbol long sides in px to draw from (default %(default)s)",
    )
    parser.add_argument(
        "--code-angles",
        default=",".join(_num(a) for a in CODE_ANGLES),
        help="label rotations in degrees to draw from (default %(default)s)",
    )
    parser.add_argument(
        "--code-blurs",
        default=",".join(_num(b) for b in CODE_BLURS),
        help="Gaussian sigmas (px) to draw from, 0 for none (default %(default)s)",
    )
    parser.add_argument(
        "--code-jpeg-quality", type=int, metavar="Q", help="also JPEG-compress the code images at quality Q"
    )


def run(args: argparse.Namespace) -> int:
    """``paddlemix-iqa make-eval-set``: build the set, print a summary; exit 4 when no photo could be read."""
    summary = make_eval_set(
        args.src,
        args.out,
        seed=args.seed,
        recipes=args.recipes,
        per_image=args.per_image,
        limit=args.limit,
        fmt=args.fmt,
        workers=args.workers,
        jpeg_quality=args.jpeg_quality,
        force=args.force,
        code_kinds=args.code_kinds,
        code_sizes=args.code_sizes,
        code_angles=args.code_angles,
        code_blurs=args.code_blurs,
        code_jpeg_quality=args.code_jpeg_quality,
    )
    classes = ", ".join(f"{cls} {n}" for cls, n in summary["classes"].items())
    print(
        f"made {summary['images']} images from {summary['used']} photos in {summary['out']} "
        f"in {summary['seconds']:.1f} s ({classes}); labels: {Path(summary['out']) / 'labels.jsonl'}"
    )
    if summary["skipped"]:
        print(f"skipped {summary['skipped']} unreadable source(s); see README.md", file=sys.stderr)
    if not summary["used"]:
        print(
            f"paddlemix-iqa make-eval-set: error: none of the {summary['sources']} sources could be read",
            file=sys.stderr,
        )
        return _EXIT_NO_IMAGES
    return 0
