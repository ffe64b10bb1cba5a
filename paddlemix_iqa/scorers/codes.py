"""Weight-free QR / DataMatrix / bar-code detector: decoded codes, and likely codes that do not decode.

Decoded codes are certain (none on clean photos): each was decoded by zxing-cpp or,
for what zxing-cpp misses (notably 1-D codes rotated by 20-45 degrees), by OpenCV's
``barcode.BarcodeDetector`` and ``QRCodeDetectorAruco``. The first pass runs on a gray copy at
``working_size``; a second pass at the resolution the scorer received runs only
when the first found a code-like region it could not decode. A last try deskews
OpenCV's undecoded 1-D candidates and hands them to zxing-cpp again; when still
nothing decoded, bar-like regions (structure tensor) are rectified (rotation and
perspective shear undone) and read once more, for bar codes photographed at an angle.

All that costs ~70 ms per 1-MP photo, and ~99% of photos hold no code, so a cheap
screen (~8 ms) runs first and the full search only runs when it sees something
code-like: zxing-cpp in its fast mode (reads QR at any angle and reports QR-like
symbols it cannot decode as errors), OpenCV's 1-D box detector at low resolution,
and a large compact patch of alternating parallel bars (the structure tensor) for
sheared bar codes that neither detector sees. In ``detect="likely"`` mode the cell map
below is made first, once, and steers zxing-cpp's screen: a working copy where no cell
even reaches the model's ``weak`` score (36 of the 64 COCO photos) holds no small or
blurred 2-D code (the seed threshold ``strong`` was not enough margin: a 46 px blurred
DataMatrix peaks just under it), and a large one reads as well at half size, so
zxing-cpp reads a half-size copy there (4x fewer pixels; same finds on the evaluation sets).

Codes too blurred or too small to decode (``detect="likely"``, the default) are
found without decoding: a small logistic regression on 4 x 4 px cells (local
contrast, black/white extremes, achromatic ink, gradient orientation coherence of
bars, 2-D structure of module grids, texture uniformity) marks code-like texture;
its components, and the symbols zxing-cpp and OpenCV locate but cannot read, are
scored by a second logistic regression (texture strength and extent, shape, the
ring around the region, which detector saw it, colour versus grey photo, and on
the region turned upright: dark/light changes along and across it, straight bars,
black and white levels) into a probability. Both models' coefficients are
``paddlemix_iqa/data/code_model.json`` (fitted on synthetic codes pasted on photos
and on clean photos by ``tools/fit_code_model.py``). A likely code counts when its
probability reaches ``min_confidence``; its kind is a guess (``qr?``, ``1d?``,
``datamatrix?``). ``detect="decoded"`` keeps only decoded codes (the behaviour
before likely codes). Likely codes are looked for in every photo (the cell map costs
about as much as zxing-cpp's screen; its scores are summed in place, bit for bit the
fitted model's sums). Limits (benchmarks/eval_codes_degraded.py): codes under 60 px
that are also blurred (sigma > 1) are mostly missed, long thin DataMatrix strips
often, and ~10% of pasted labels of plain printed text are taken for codes.

The native score is the fraction of the image covered by codes (decoded, and likely
ones in ``detect="likely"`` mode; 0 = no code); :meth:`CodeScorer.detect` gives the
full report (count, kinds, polygons, likely codes with their confidence).
Tiny and uniform images hold no code: they score a well-defined 0. Bounds:
``working_size`` 64..8192, ``full_size`` None or working_size..16384,
``min_confidence`` [0, 1]; ``model`` a code_model.json to use instead of the package's.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import zxingcpp

from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer, check_bool, resize_long_side, to_gray

#: OpenCV's type names -> zxing-cpp's format names, so kinds read the same whichever decoder found a code
_CV_KINDS = {
    "EAN_13": "EAN13",
    "EAN_8": "EAN8",
    "UPC_A": "UPCA",
    "UPC_E": "UPCE",
    "CODE_128": "Code128",
    "CODE_39": "Code39",
    "CODE_93": "Code93",
    "ITF": "ITF",
}
_FAMILIES = {
    "QRCode": "qr",
    "MicroQRCode": "qr",
    "RMQRCode": "qr",
    "DataMatrix": "datamatrix",
    "Aztec": "aztec",
    "PDF417": "pdf417",
    "MaxiCode": "maxicode",
}
#: every family name ``family`` returns (what ``code_filter(kinds=...)`` accepts)
FAMILIES = frozenset(_FAMILIES.values()) | {"1d"}
#: the kinds of likely (undecoded) codes, guesses: ``family`` maps them like the decoded kinds
LIKELY_KINDS = ("qr?", "datamatrix?", "1d?")
#: where the likely-code model lives (``tools/fit_code_model.py`` writes it)
MODEL_PATH = Path(__file__).resolve().parents[1] / "data" / "code_model.json"


def _default_confidence() -> float:
    try:
        return float(json.loads(MODEL_PATH.read_text())["min_confidence"])
    except (OSError, ValueError, KeyError, TypeError):  # the scorer reports a broken model when built
        return 0.5


#: the probability at which a likely code counts by default: calibrated by the fit (code_model.json)
DEFAULT_MIN_CONFIDENCE = _default_confidence()


def family(kind: str) -> str:
    """``qr``, ``datamatrix``, ``aztec``, ``pdf417``, ``maxicode`` or ``1d`` (every linear format);
    a likely code's guessed kind (``qr?``, ``datamatrix?``, ``1d?``) maps to its family too."""
    if kind.endswith("?"):
        kind = kind[:-1]
        if kind in FAMILIES:
            return kind
    return _FAMILIES.get(kind, "1d")


@dataclass
class Code:
    """One code: its format (zxing-cpp's name, or a guess ending in ``?`` for a likely code), text
    (empty when not decoded), corner polygon (x, y in the input), decoder (``likely`` when found
    without decoding) and confidence (1 for a decoded code, the model's probability otherwise)."""

    kind: str
    text: str
    polygon: np.ndarray
    decoder: str
    confidence: float = 1.0

    @property
    def family(self) -> str:
        return family(self.kind)

    @property
    def decoded(self) -> bool:
        return self.decoder != "likely"


@dataclass
class CodeReport:
    """What an image holds: the decoded codes, the likely (undecoded) codes whose confidence reached
    the scorer's ``min_confidence`` (empty with ``detect="decoded"``), and the fraction of the image
    covered by all of them (their union)."""

    codes: list[Code] = field(default_factory=list)
    coverage: float = 0.0
    passes: int = 1  # 2 when the second pass ran
    shape: tuple[int, int] = (0, 0)  # (height, width) of the image the polygons refer to
    likely: list[Code] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Decoded codes (see :attr:`found` for decoded and likely ones)."""
        return len(self.codes)

    @property
    def kinds(self) -> list[str]:
        return sorted({c.kind for c in self.codes})

    @property
    def found(self) -> list[Code]:
        """Decoded codes, then likely ones (most confident first)."""
        return self.codes + self.likely


def _zxing_polygon(position) -> np.ndarray:
    corners = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    return np.array([(p.x, p.y) for p in corners], np.float32)


def _read_linear(crop: np.ndarray, back: np.ndarray, decoder: str, **options) -> list[Code]:
    """1-D codes zxing-cpp decodes in a warped crop, with polygons mapped back by the inverse affine ``back``."""
    return [
        Code(r.format.name, r.text, cv2.transform(_zxing_polygon(r.position)[None], back)[0], decoder)
        for r in zxingcpp.read_barcodes(crop, formats=zxingcpp.BarcodeFormat.AllLinear, **options)
        if r.valid and r.text
    ]


def _inflate(polygon: np.ndarray, min_side: float = 2.0) -> np.ndarray:
    """Give a degenerate polygon (a 1-D code read on one scan line) some area: its rotated box, >= min_side thick."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(polygon.astype(np.float32))
    return cv2.boxPoints(((cx, cy), (max(w, min_side), max(h, min_side)), angle))


@register_scorer("codes")
class CodeScorer(Scorer):
    """Fraction of the image covered by decoded QR / DataMatrix / bar codes (0 when none); lower is better."""

    higher_is_better = False
    native_range = (0.0, 1.0)
    color = "gray"
    measures = "content"

    def __init__(
        self,
        working_size: Annotated[int, Bounds(64, 8192)] = 1024,
        full_size: Annotated[int | None, Bounds("working_size", 16384)] = 2048,
        use_opencv: bool = True,
        rectify: bool = True,
        screen: bool = True,
        detect: Literal["decoded", "likely"] = "likely",
        min_confidence: Annotated[float, Bounds(0.0, 1.0)] = DEFAULT_MIN_CONFIDENCE,
        model: str | None = None,
    ):
        checked = check_params(CodeScorer.__init__, locals())
        self.working_size, self.full_size = checked["working_size"], checked["full_size"]
        self.min_confidence = checked["min_confidence"]
        self.use_opencv = check_bool("use_opencv", use_opencv)
        self.rectify = check_bool("rectify", rectify)
        self.screen = check_bool("screen", screen)
        if detect not in ("decoded", "likely"):
            raise ValueError(f"detect must be 'decoded' or 'likely', not {detect!r}")
        self.detect_mode = detect
        self.model_path = None if model is None else str(model)
        if detect == "likely":
            load_model(self.model_path)  # a missing or broken model fails here, not on the first image
        self._local = threading.local()  # OpenCV detectors are not shared between threads

    @property
    def decode_side(self) -> int | None:
        """The second pass looks at up to ``full_size`` pixels, so the loader decodes that much."""
        return self.full_size

    def _detectors(self):
        if not hasattr(self._local, "bar"):
            self._local.bar = cv2.barcode.BarcodeDetector()
            self._local.qr = cv2.QRCodeDetectorAruco()
        return self._local.bar, self._local.qr

    def _screen_detector(self):
        """OpenCV's 1-D box finder on a 384-px copy: ~2 ms (3.7 at its default 512), fires on 3 of 64 COCO photos."""
        if not hasattr(self._local, "screen"):
            self._local.screen = cv2.barcode.BarcodeDetector()
            self._local.screen.setDownsamplingThreshold(384)
        return self._local.screen

    def _maybe_code(self, gray: np.ndarray) -> bool:
        """Cheap screen: does ``gray`` (at working size) hold anything the full search could decode?

        zxing-cpp without its 90-degree and downscaled retries is 3x faster, still
        reads QR codes at any angle, and returns undecodable symbols as errors; rotated
        1-D codes it cannot read are caught by the OpenCV box finder, sheared ones by the
        bar-patch test.
        """
        return self._screen_hits(gray, stop_early=True)[0]

    def _screen_hits(
        self, gray: np.ndarray, stop_early: bool, cells: CellMap | None = None
    ) -> tuple[bool, list[tuple[str, np.ndarray, str]]]:
        """(the screen's verdict, the symbols its detectors located: ``(source, polygon, format)``).

        ``stop_early``: stop at the first detector that fires (the decoded-only screen);
        else run both detectors, whose boxes are candidates for likely codes.
        """
        zx_gray, f = gray, 1.0
        if cells is not None and not cells.seeded and min(gray.shape[:2]) >= 2 * ZXING_HALF_MIN:
            zx_gray, f = (
                cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA),
                2.0,
            )
        hits = [
            ("zxing", _zxing_polygon(r.position) * f, r.format.name)
            for r in zxingcpp.read_barcodes(
                zx_gray, try_rotate=False, try_downscale=False, return_errors=True
            )
        ]
        if hits and stop_early:
            return True, hits
        if self.use_opencv:
            ok, points = self._screen_detector().detect(gray)
            if ok and points is not None:
                hits += [("opencv", p.astype(np.float32), "") for p in points]
        if hits:
            return True, hits
        return bool(self.rectify and _has_bar_patch(gray)), hits

    # --- decoding --------------------------------------------------------------------
    def _decode(self, gray: np.ndarray) -> tuple[list[Code], bool, list[np.ndarray]]:
        """Decoded codes in ``gray``; whether something code-like failed to decode; OpenCV's undecoded 1-D boxes."""
        codes: list[Code] = []
        hint = False
        for r in zxingcpp.read_barcodes(gray, return_errors=True):
            if r.valid and r.text:
                codes.append(Code(r.format.name, r.text, _zxing_polygon(r.position), "zxing"))
            else:
                hint = True
        undecoded: list[np.ndarray] = []
        if not self.use_opencv:
            return codes, hint, undecoded
        bar, qr = self._detectors()
        # always: zxing-cpp now and then misreads a rotated EAN-13 as a shorter code
        ok, texts, types, points = bar.detectAndDecodeWithType(gray)
        for text, kind, pts in zip(texts or (), types or (), () if points is None else points, strict=False):
            if text:
                codes.append(Code(_CV_KINDS.get(kind, kind), text, pts.astype(np.float32), "opencv"))
            else:
                undecoded.append(pts.astype(np.float32))
        hint = hint or bool(undecoded)
        if not any(c.family == "qr" for c in codes):
            ok, texts, points, _ = qr.detectAndDecodeMulti(gray)
            for text, pts in zip(texts or (), () if points is None else points, strict=False):
                if text:
                    codes.append(Code("QRCode", text, pts.astype(np.float32), "opencv"))
                else:
                    hint = True
        return codes, hint, undecoded

    def _deskewed(self, gray: np.ndarray, box: np.ndarray) -> list[Code]:
        """zxing-cpp on an undecoded 1-D candidate turned upright and enlarged.

        zxing-cpp reads 1-D codes only near 0/90 degrees and needs about 2 px per bar;
        OpenCV finds the box at any angle but often fails to decode small codes.
        """
        (cx, cy), (w, h), angle = cv2.minAreaRect(box)
        if w < h:
            w, h, angle = h, w, angle - 90
        w, h = w * 1.3 + 8, h * 1.3 + 8  # include the quiet zone that OpenCV's box leaves out
        up = float(np.clip(600 / w, 1.0, 4.0))
        rot = cv2.getRotationMatrix2D((cx, cy), angle, up)
        rot[:, 2] += (w * up / 2 - cx, h * up / 2 - cy)
        size = (max(8, int(w * up)), max(8, int(h * up)))
        crop = cv2.warpAffine(gray, rot, size, flags=cv2.INTER_CUBIC, borderValue=255)
        back = cv2.invertAffineTransform(rot)
        sharpened = cv2.addWeighted(crop, 2.0, cv2.GaussianBlur(crop, (0, 0), 2.0), -1.0, 0)
        for candidate in (crop, sharpened):
            found = _read_linear(candidate, back, "zxing+deskew")
            if found:
                return found
        return []

    def _scan(self, gray: np.ndarray) -> tuple[list[Code], bool]:
        codes, hint, undecoded = self._decode(gray)
        for box in undecoded:
            codes.extend(self._deskewed(gray, box))
        return codes, hint and not codes

    def detect(self, image: np.ndarray) -> CodeReport:
        """Decode every code in an RGB (or gray) uint8 image, and (``detect="likely"``) find the codes
        that do not decode; polygons are in the input's pixel coordinates.

        Second pass, only when the first saw a code-like region it could not decode: the image at
        the resolution received when it is larger than ``working_size``, else the image enlarged
        2x (small codes decode better with more pixels per module).
        """
        gray = np.ascontiguousarray(to_gray(image))
        h, w = gray.shape[:2]
        small = resize_long_side(gray, self.working_size) if max(h, w) > self.working_size else gray
        likely = self.detect_mode == "likely"
        cells = CellMap.of(_colour_copy(image, small), small, load_model(self.model_path)) if likely else None
        hits: list = []
        if self.screen or likely:
            maybe, hits = self._screen_hits(small, stop_early=not likely, cells=cells)
            if self.screen and not maybe:
                found = self._likely(small, hits, [], (h, w), cells) if likely else []
                return CodeReport(coverage=coverage(found, h, w), shape=(h, w), likely=found)
        codes, unresolved = self._scan(small)
        passes = 1
        if unresolved:
            big = (
                gray
                if small is not gray
                else cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
            )
            more, _ = self._scan(big)
            _rescale(more, max(h, w) / max(big.shape[:2]))
            codes, passes = more, 2
        else:
            _rescale(codes, max(h, w) / max(small.shape[:2]))
        if not codes and self.rectify:
            for rect, theta in _bar_regions(small):
                codes.extend(_rectified(small, rect, theta))
            _rescale(codes, max(h, w) / max(small.shape[:2]))
        codes = _unique(codes)
        found = self._likely(small, hits, codes, (h, w), cells) if likely else []
        return CodeReport(
            codes=codes, coverage=coverage(codes + found, h, w), passes=passes, shape=(h, w), likely=found
        )

    def _likely(
        self, small: np.ndarray, hits: list, codes: list[Code], shape, cells: CellMap | None
    ) -> list[Code]:
        """Likely codes at least ``min_confidence`` sure, in input coordinates, none on a decoded code."""
        scale = max(shape) / max(small.shape[:2])
        found = []
        for cand in likely_candidates(cells, small, hits, load_model(self.model_path)):
            if cand.confidence < self.min_confidence:
                continue
            polygon = cand.polygon * scale
            centre = tuple(float(v) for v in polygon.mean(axis=0))
            if any(cv2.pointPolygonTest(_inflate(c.polygon, 4), centre, False) >= 0 for c in codes):
                continue
            if any(
                cv2.pointPolygonTest(polygon, tuple(float(v) for v in c.polygon.mean(axis=0)), False) >= 0
                for c in codes
            ):
                continue
            found.append(Code(cand.kind, "", polygon, "likely", cand.confidence))
        return found

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[CodeReport]:
        self.require_scorable(images)
        return [self.detect(image) for image in images]

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([r.coverage for r in self.detect_batch(images)], dtype=np.float64)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "full_size": self.full_size,
            "use_opencv": self.use_opencv,
            "screen": self.screen,
            "detect": self.detect_mode,
            "min_confidence": self.min_confidence,
            "model": self.model_path,
        }


def _colour_copy(image: np.ndarray, small: np.ndarray) -> np.ndarray | None:
    """The RGB pixels at the size of the working copy ``small`` (None for a grey input): the cell
    map's saturation features."""
    if image.ndim != 3:
        return None
    color = image[:, :, :3]
    if color.shape[:2] != small.shape[:2]:
        color = cv2.resize(color, small.shape[::-1], interpolation=cv2.INTER_AREA)
    return color


def _has_bar_patch(gray: np.ndarray, side: int = 384, win: int = 7) -> bool:
    """A large, compact patch of parallel bars at ``side`` px: gradients of one orientation
    (coherence) that cancel out (alternating dark/light), as in a bar code, unlike a lone edge.

    ~2 ms; fires on 3 of the 64 COCO photos, none of the blur triplets, and on the sheared
    demo card. The area (0.75% of the image) and fill (0.75 of the region's rotated box)
    thresholds were measured on those photos.
    """
    g = (resize_long_side(gray, side) if max(gray.shape[:2]) > side else gray).astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    box = (win, win)
    jxx, jyy, jxy = (cv2.boxFilter(m, -1, box) for m in (gx * gx, gy * gy, gx * gy))
    mag = cv2.boxFilter(cv2.magnitude(gx, gy), -1, box)
    mx, my = cv2.boxFilter(gx, -1, box), cv2.boxFilter(gy, -1, box)
    coherent = (jxx - jyy) ** 2 + 4 * jxy**2 > 0.64 * (jxx + jyy) ** 2
    mask = (coherent & (mx * mx + my * my < 0.09 * mag * mag) & (mag > 40)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 0.0075 * g.size:
            continue
        ys, xs = np.nonzero(labels[y : y + h, x : x + w] == i)
        _, (rw, rh), _ = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
        if area >= 0.75 * rw * rh:
            return True
    return False


def _bar_regions(gray: np.ndarray, limit: int = 4, win: int = 15) -> list[tuple[tuple, float]]:
    """Regions of strong, single-orientation gradient (bars), largest first: (minAreaRect, gradient angle).

    OpenCV's bar-code detector misses codes seen at an angle (bars sheared by perspective);
    the structure tensor still finds them, and gives the direction across the bars.
    """
    g = gray.astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = (cv2.boxFilter(m, -1, (win, win)) for m in (gx * gx, gy * gy, gx * gy))
    energy = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (energy + 1e-6)
    mask = ((coherence > 0.8) & (energy > max(float(np.percentile(energy, 90)), 2000.0))).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    regions = []
    for i in order[:limit]:
        x, y, w, h, area = stats[i]
        if area < 600:
            break
        ys, xs = np.nonzero(labels[y : y + h, x : x + w] == i)  # its box only: the same pixels, in order
        ys, xs = ys + y, xs + x
        theta = 0.5 * np.arctan2(2 * jxy[ys, xs].sum(), (jxx[ys, xs] - jyy[ys, xs]).sum())
        regions.append((cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32)), float(theta)))
    return regions


def _rectified(gray: np.ndarray, rect: tuple, theta: float) -> list[Code]:
    """zxing-cpp on a bar region mapped so the code axis is horizontal and the bars vertical (undoes shear)."""
    (cx, cy), (w, h), angle = rect
    across = np.array([np.cos(theta), np.sin(theta)])
    r = np.deg2rad(angle)
    u, v = np.array([np.cos(r), np.sin(r)]), np.array([-np.sin(r), np.cos(r)])
    sheared = u if abs(u @ across) < abs(v @ across) else v  # the box side closest to the bars
    scale = float(np.clip(600 / max(w, h, 1), 1.0, 4.0))
    size = (int(max(w, h) * 1.4 * scale + 20), int(min(w, h) * 1.2 * scale + 10))
    for bars in (sheared, np.array([-across[1], across[0]])):
        basis = np.stack([across, bars], 1)
        if abs(np.linalg.det(basis)) < 0.2:
            continue
        m = scale * np.linalg.inv(basis)
        t = np.array(size, np.float64) / 2 - m @ np.array([cx, cy])
        affine = np.hstack([m, t[:, None]]).astype(np.float32)
        crop = cv2.warpAffine(gray, affine, size, flags=cv2.INTER_CUBIC, borderValue=255)
        back = cv2.invertAffineTransform(affine)
        found = _read_linear(crop, back, "zxing+rectify", try_rotate=False)
        if found:
            return found
    return []


def _rescale(codes: list[Code], scale: float) -> None:
    if scale != 1:
        for c in codes:
            c.polygon = c.polygon * scale


def _unique(codes: list[Code]) -> list[Code]:
    """One entry per physical code: where decodes overlap, the largest wins (a partial read of a
    rotated EAN-13 as UPC-E is dropped in favour of the full code)."""
    kept: list[Code] = []
    for code in sorted(codes, key=lambda c: -cv2.contourArea(_inflate(c.polygon))):
        centre = tuple(float(v) for v in code.polygon.mean(axis=0))
        if not any(cv2.pointPolygonTest(_inflate(other.polygon, 4), centre, False) >= 0 for other in kept):
            kept.append(code)
    return kept


def coverage(codes: list[Code], h: int, w: int, side: int = 512) -> float:
    """Union area of the codes' polygons over the image area, rasterised at ``side`` px (long side)."""
    if not codes:
        return 0.0
    scale = min(1.0, side / max(h, w))
    mask = np.zeros((max(1, math.ceil(h * scale)), max(1, math.ceil(w * scale))), np.uint8)
    for code in codes:
        cv2.fillPoly(mask, [np.round(_inflate(code.polygon) * scale).astype(np.int32)], 1)
    return float(max(mask.mean(), 1.0 / mask.size))


# --- likely codes: found without decoding ------------------------------------------------------
#: cell side (px at working size) of the texture model
CELL = 4
#: the cell model's inputs, in order (each a 3 x 3-cell neighbourhood statistic, see _cell_features)
CELL_FEATURES = (
    "std", "mean", "grad", "sat", "coh2", "max", "min", "range", "std_per_range", "grad_per_std",
    "isotropy", "white", "black", "coarse_grad", "uniformity", "grad5", "sat7",
)  # fmt: skip
#: the region model's inputs, in order (see _region_features)
REGION_FEATURES = (
    "log_cells", "log_strong_cells", "log_strong_in_box", "weak_share", "strong_share", "median_score",
    "p90_score", "log_short_side", "log_aspect", "ring_score", "ring_weak_share", "from_cells", "from_zxing",
    "from_opencv", "grey_photo", "grey_x_log_strong", "grey_x_median", "grey_x_log_strong_in_box", "coh2",
    "achromatic", "log_changes_along", "log_changes_across", "black_level", "white_level", "contrast",
    "median_level", "log_changes_across_bars", "log_changes_along_bars", "straight_bar_share",
)  # fmt: skip


@dataclass(frozen=True)
class CodeModel:
    """The two logistic regressions of likely codes, as read from ``code_model.json``.

    Cell model: ``cell_bias + cell_weights . terms`` with ``terms`` the features clipped to
    ``[cell_low, cell_high]``, then the products ``cell_products`` (pairs of feature indices);
    cells scoring above ``strong`` seed components that grow through cells above ``weak`` (and,
    for a second set that splits a code from code-like surroundings, above ``weak_split``).
    Region model: ``sigmoid(region_bias + region_weights . REGION_FEATURES)``, the features clipped
    to ``[region_low, region_high]``. Standardisation is folded into the weights.
    """

    cell_low: np.ndarray
    cell_high: np.ndarray
    cell_products: tuple[tuple[int, int], ...]
    cell_weights: np.ndarray
    cell_bias: float
    strong: float
    weak: float
    weak_split: float
    region_low: np.ndarray
    region_high: np.ndarray
    region_weights: np.ndarray
    region_bias: float
    min_confidence: float
    source: str = ""

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> CodeModel:
        cell, region = data["cell"], data["region"]
        if list(cell["features"]) != list(CELL_FEATURES) or list(region["features"]) != list(REGION_FEATURES):
            raise ValueError(f"{source or 'code model'}: its features are not this version's")
        if int(cell["size"]) != CELL:
            raise ValueError(f"{source or 'code model'}: fitted on {cell['size']} px cells, not {CELL}")
        products = tuple((int(i), int(j)) for i, j in cell["products"])
        n = len(CELL_FEATURES) + len(products)
        weights = np.asarray(cell["weights"], np.float32)
        if weights.shape != (n,) or len(region["weights"]) != len(REGION_FEATURES):
            raise ValueError(f"{source or 'code model'}: wrong number of weights")
        return cls(
            cell_low=np.asarray(cell["low"], np.float32),
            cell_high=np.asarray(cell["high"], np.float32),
            cell_products=products,
            cell_weights=weights,
            cell_bias=float(cell["bias"]),
            strong=float(cell["strong"]),
            weak=float(cell["weak"]),
            weak_split=float(cell.get("weak_split", cell["weak"])),
            region_low=np.asarray(region.get("low", [-np.inf] * len(REGION_FEATURES)), np.float64),
            region_high=np.asarray(region.get("high", [np.inf] * len(REGION_FEATURES)), np.float64),
            region_weights=np.asarray(region["weights"], np.float64),
            region_bias=float(region["bias"]),
            min_confidence=float(data.get("min_confidence", 0.5)),
            source=source,
        )


@functools.cache
def load_model(path: str | None = None) -> CodeModel:
    """The likely-code model (default: the package's ``data/code_model.json``), read once."""
    where = Path(path) if path else MODEL_PATH
    try:
        data = json.loads(where.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the code model {where}: {exc}") from exc
    return CodeModel.from_dict(data, str(where))


def _saturation(rgb: np.ndarray) -> np.ndarray:
    r, g, b = cv2.split(rgb)
    return cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))


def _cells(a: np.ndarray, w: int, h: int) -> np.ndarray:
    """Mean over each CELL x CELL block (exact: two halvings by area for 4 px cells)."""
    for _ in range(CELL.bit_length() - 1):
        a = cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return a if a.shape[:2] == (h, w) else cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)


#: rows per strip of the full-resolution gradient maps (their temporaries stay in cache)
_STRIP = 8 * CELL


def _gradient_cells(g8: np.ndarray, w: int, h: int) -> dict[str, np.ndarray]:
    """Cell means of g^2, of the gradient magnitude and of the magnitude times the doubled angle
    (``grad * (cos 2t, sin 2t)``), computed in strips of rows so the full-resolution maps stay in cache."""
    names = ("g2", "grad", "c2", "s2")
    out = {k: np.empty((h, w), np.float32) for k in names}
    H = h * CELL
    for y0 in range(0, H, _STRIP):
        y1 = min(y0 + _STRIP, H)
        a, b = max(y0 - 1, 0), min(y1 + 1, g8.shape[0])  # one row of context for the Sobel kernels
        part = g8[a:b]
        gx = cv2.Sobel(part, cv2.CV_32F, 1, 0, ksize=3, scale=0.25)[y0 - a : y0 - a + y1 - y0]
        gy = cv2.Sobel(part, cv2.CV_32F, 0, 1, ksize=3, scale=0.25)[y0 - a : y0 - a + y1 - y0]
        g = g8[y0:y1].astype(np.float32)
        xx, yy, xy = gx * gx, gy * gy, gx * gy
        grad = cv2.sqrt(xx + yy)
        inv = 1.0 / (grad + 1e-3)
        maps = (g * g, grad, (xx - yy) * inv, xy * (2 * inv))
        for k, v in zip(names, maps, strict=True):
            out[k][y0 // CELL : y1 // CELL] = _cells(v, w, (y1 - y0) // CELL)
    return out


def cell_features(rgb: np.ndarray | None, gray: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per 4 x 4 px cell of ``gray`` (uint8; ``rgb`` its colour version or None), the
    :data:`CELL_FEATURES` over the 3 x 3 cells around it, as a (k, h, w) float32 array, and
    the cell maps the region features reuse (``sat``, ``c2``, ``s2``, ``grad``).

    Codes are black ink on white in modules or bars: high local contrast reaching both
    extremes, no colour, gradients along one (bars) or two perpendicular (modules) directions,
    2-D structure within a cell (module corners), uniform over the symbol.
    """
    H, W = gray.shape
    h, w = H // CELL, W // CELL
    g8 = np.ascontiguousarray(gray[: h * CELL, : w * CELL])
    m = _gradient_cells(g8, w, h)
    half = cv2.resize(g8, (g8.shape[1] // 2, g8.shape[0] // 2), interpolation=cv2.INTER_AREA)
    coarse = cv2.magnitude(
        cv2.Sobel(half, cv2.CV_32F, 1, 0, scale=0.25), cv2.Sobel(half, cv2.CV_32F, 0, 1, scale=0.25)
    )
    m["g"] = _cells(half.astype(np.float32), w, h)
    m["coarse"] = _cells(coarse, w, h)
    m["white"] = _cells(cv2.compare(g8, 200, cv2.CMP_GT), w, h).astype(np.float32) / 255
    m["black"] = _cells(cv2.compare(g8, 70, cv2.CMP_LT), w, h).astype(np.float32) / 255
    if rgb is None:
        m["sat"] = np.zeros((h, w), np.float32)
    else:
        small = cv2.resize(
            rgb[: h * CELL, : w * CELL], (w * CELL // 2, h * CELL // 2), interpolation=cv2.INTER_AREA
        )
        m["sat"] = _cells(_saturation(small), w, h).astype(np.float32)
    # 2-D structure within a cell (module corners): its gradients not all along one axis
    m["corners"] = 1 - cv2.magnitude(m["c2"], m["s2"]) / (m["grad"] + 1e-3)
    kernel = np.ones((CELL, CELL), np.uint8)
    o = CELL // 2
    cmax = cv2.dilate(g8, kernel)[o::CELL, o::CELL][:h, :w].astype(np.float32)
    cmin = cv2.erode(g8, kernel)[o::CELL, o::CELL][:h, :w].astype(np.float32)

    k3 = np.ones((3, 3), np.uint8)
    nb = {
        k: cv2.blur(m[k], (3, 3))
        for k in ("g", "g2", "grad", "c2", "s2", "corners", "white", "black", "coarse", "sat")
    }
    vmax, vmin = cv2.dilate(cmax, k3), cv2.erode(cmin, k3)
    k5 = np.ones((5, 5), np.uint8)
    grad_lo, grad_hi = cv2.erode(m["grad"], k5), cv2.dilate(m["grad"], k5)
    std = cv2.sqrt(np.maximum(nb["g2"] - nb["g"] * nb["g"], 0))
    span = vmax - vmin
    eps = 1e-3
    feats = np.array([
        std / 64, nb["g"] / 255, nb["grad"] / 32, nb["sat"] / 64, cv2.magnitude(nb["c2"], nb["s2"]) / (nb["grad"] + eps),
        vmax / 255, vmin / 255, span / 255, std / (span + 8), nb["grad"] / (std + 4),
        nb["corners"], nb["white"], nb["black"], nb["coarse"] / (nb["grad"] + eps),
        grad_lo / (grad_hi + 1), cv2.blur(m["grad"], (5, 5)) / 32, cv2.blur(m["sat"], (7, 7)) / 64,
    ], np.float32)  # fmt: skip
    maps = {"sat": m["sat"], "c2": nb["c2"], "s2": nb["s2"], "grad": nb["grad"]}
    return feats, maps


def cell_terms(feats: np.ndarray, low: np.ndarray, high: np.ndarray, products) -> np.ndarray:
    """The cell model's terms, one row per term: the features (rows of ``feats``, one column per
    cell) clipped to the fitted range, then the listed products."""
    x = np.clip(feats, low[:, None], high[:, None])
    return np.concatenate([x, np.array([x[i] * x[j] for i, j in products], np.float32)])


#: cells whose 3 x 3 neighbourhood spans fewer grey levels hold no code (a printed code spans > 100)
MIN_SPAN = 40 / 255


def live_cells(feats: np.ndarray) -> np.ndarray:
    """Indices (into the flattened cell grid) of the cells :func:`cell_scores` scores."""
    return np.flatnonzero(_live(feats))


def _live(feats: np.ndarray) -> np.ndarray:
    """Which cells of the flattened grid span enough grey levels to be scored (:data:`MIN_SPAN`)."""
    return feats[CELL_FEATURES.index("range")].ravel() >= MIN_SPAN


def cell_scores(feats: np.ndarray, model: CodeModel) -> np.ndarray:
    """Log-odds that each cell is code texture (-20 for cells of too little contrast, not scored).

    :func:`cell_terms` summed term by term in place over every cell, then the unscored cells set:
    the same float32 sums as the weighted sum over the live cells' term matrix, bit for bit,
    at a sixth of its cost (no gather, no term matrix)."""
    k, h, w = feats.shape
    flat = feats.reshape(k, -1)
    x = np.clip(flat, model.cell_low[:, None], model.cell_high[:, None])
    weights = model.cell_weights
    z = weights[0] * x[0]
    for i in range(1, k):
        z += weights[i] * x[i]
    for n, (i, j) in enumerate(model.cell_products):
        z += weights[k + n] * (x[i] * x[j])
    z += model.cell_bias
    out = np.where(_live(feats), z, np.float32(-20.0)).astype(np.float32, copy=False).reshape(h, w)
    out[[0, -1], :] = out[:, [0, -1]] = -20.0  # the image's edge: neighbourhoods padded by reflection
    return out


@dataclass
class Candidate:
    """A region that may be a code: its polygon (at the working size), kind guess, features, confidence."""

    polygon: np.ndarray
    kind: str
    features: np.ndarray
    source: str
    confidence: float = 0.0


def _rect_cells(shape: tuple[int, int], rect, grow: float = 0.0) -> np.ndarray:
    """Cells whose centres lie in ``rect`` (pixel coordinates) grown by ``grow`` cells on each side."""
    (cx, cy), (w, h), a = rect
    mask = np.zeros(shape, np.uint8)
    box = cv2.boxPoints(((cx / CELL - 0.5, cy / CELL - 0.5), (w / CELL + 2 * grow, h / CELL + 2 * grow), a))
    cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    return mask.astype(bool)


#: zxing-cpp's screen reads a half-size copy of a working copy whose cells all score under the model's
#: ``weak`` (:attr:`CellMap.seeded` false) when both its sides keep at least this many pixels
ZXING_HALF_MIN = 64

#: the fewest cells a component needs (a 40 px code spans more than 20)
MIN_CELLS = 8


def _components(score: np.ndarray, strong: float, weak: float) -> list[tuple[tuple, int, int]]:
    """Regions of cells above ``weak`` holding a cell above ``strong``: (rotated rect in px, cells, strong cells)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((score > weak).astype(np.uint8), connectivity=8)
    out = []
    hot = score > strong
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < MIN_CELLS:
            continue
        mine = labels[y : y + h, x : x + w] == i
        nstrong = int((hot[y : y + h, x : x + w] & mine).sum())
        if not nstrong:
            continue
        ys, xs = np.nonzero(mine)
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(np.stack([xs + x, ys + y], 1).astype(np.float32))
        out.append(
            (
                ((cx * CELL + CELL / 2, cy * CELL + CELL / 2), ((rw + 1) * CELL, (rh + 1) * CELL), angle),
                int(area),
                nstrong,
            )
        )
    return out


def _transitions(levels: np.ndarray) -> float:
    """Median count, over the rows of ``levels`` (-1 dark, +1 light, 0 in between), of dark/light changes."""
    cols = np.arange(levels.shape[1])
    last = np.maximum.accumulate(np.where(levels != 0, cols, 0), axis=1)  # the last decided pixel
    filled = np.take_along_axis(levels, last, axis=1)
    changes = (filled[:, 1:] != filled[:, :-1]) & (filled[:, :-1] != 0)
    return float(np.median(changes.sum(axis=1)))


def _upright(gray: np.ndarray, centre, w: float, h: float, angle: float) -> np.ndarray:
    """The ``w`` x ``h`` box at ``centre`` turned by ``angle`` degrees, at most 96 px a side."""
    f = min(1.0, 96 / max(w, h, 1.0))
    size = (max(4, round(w * f)), max(4, round(h * f)))
    m = cv2.getRotationMatrix2D(centre, angle, f)
    m[:, 2] += (size[0] / 2 - centre[0], size[1] / 2 - centre[1])
    flags = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(gray, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _levels(patch: np.ndarray, lo: float, hi: float) -> np.ndarray:
    band, centre = 0.15 * (hi - lo) + 2, (lo + hi) / 2
    return np.where(patch > centre + band, 1, np.where(patch < centre - band, -1, 0)).astype(np.int8)


def _patch_features(gray: np.ndarray, rect, bars_angle: float) -> list[float]:
    """From the region turned upright (at most 96 px a side): dark/light changes along and across
    its long axis (modules and bars make many), its black and white levels and their spread; then
    turned so its dominant gradient runs along x (``bars_angle``, degrees): changes across and along
    the bars, and the share of lines along the bars without any change (bars are straight, stripes
    and letters are not)."""
    (cx, cy), (w, h), a = rect
    if w < h:
        w, h, a = h, w, a + 90
    patch = _upright(gray, (cx, cy), w, h, a)
    lo, mid, hi = np.percentile(patch, (5, 50, 95))
    levels = _levels(patch, lo, hi)
    along, across = _transitions(levels), _transitions(levels.T)
    turn = (bars_angle - a) % 180  # the box, sides matched to the bars: 80% across, 50% along them
    bw, bh = (w, h) if min(turn, 180 - turn) < 45 else (h, w)
    bars = _levels(_upright(gray, (cx, cy), 0.8 * bw, 0.5 * bh, bars_angle), lo, hi)
    cols = np.abs(np.diff(bars.astype(np.int16), axis=0)).sum(axis=0)  # changes down each column
    return [
        math.log1p(along), math.log1p(across), lo / 255, hi / 255, (hi - lo) / 255, (mid - lo) / (hi - lo + 8),
        math.log1p(_transitions(bars)), math.log1p(_transitions(bars.T)), float((cols == 0).mean()),
    ]  # fmt: skip


def _region_features(
    gray, score, maps, rect, cells: int, nstrong: int, source: str, model: CodeModel, grey: bool, sat0: float
):
    inner = _rect_cells(score.shape, rect)
    if not inner.any():
        return None
    ring = _rect_cells(score.shape, rect, 1.5) & ~_rect_cells(score.shape, rect, 0.5)
    v = score[inner]
    rv = score[ring] if ring.any() else np.array([-5.0], np.float32)
    (_, _), (w, h), _ = rect
    short, long = max(min(w, h), 1.0), max(w, h, 1.0)
    grad = maps["grad"][inner].sum() + 1e-3
    c2, s2 = float(maps["c2"][inner].sum()), float(maps["s2"][inner].sum())
    coh2 = math.hypot(c2, s2) / grad
    bars_angle = math.degrees(math.atan2(s2, c2)) / 2  # the dominant gradient direction
    log_strong_box = math.log1p(float((v > model.strong).sum()))
    median = float(np.median(v)) / 10
    g = float(grey)
    f = [
        math.log1p(cells), math.log1p(nstrong), log_strong_box, float((v > model.weak).mean()),
        float((v > model.strong).mean()), median, float(np.percentile(v, 90)) / 10, math.log(short),
        math.log(long / short), float(rv.mean()) / 10, float((rv > model.weak).mean()), float(source == "cells"),
        float(source == "zxing"), float(source == "opencv"), g, g * math.log1p(nstrong), g * median,
        g * log_strong_box, coh2, (sat0 - float(maps["sat"][inner].mean())) / 64,
        *_patch_features(gray, rect, bars_angle),
    ]  # fmt: skip
    return np.asarray(f, np.float64), coh2


def _guess_kind(source: str, fmt: str, coh2: float, rect) -> str:
    if source == "zxing" and fmt:
        fam = family(fmt)
        return f"{fam}?" if f"{fam}?" in LIKELY_KINDS else "qr?"
    if source == "opencv" or coh2 > 0.6:
        return "1d?"
    (_, _), (w, h), _ = rect
    return "qr?" if max(w, h) < 1.4 * max(min(w, h), 1.0) else "datamatrix?"


@dataclass
class CellMap:
    """The cell map of a working copy: :func:`cell_features`, the cell model's log-odds (clipped to
    +-20) and the photo's colour statistics the region features compare a region with."""

    feats: np.ndarray
    maps: dict[str, np.ndarray]
    score: np.ndarray
    sat0: float  # median cell saturation
    grey: bool  # a grey photo (or grey input)
    seeded: bool  # some cell scores above the model's ``weak`` (could belong to a likely code)

    @classmethod
    def of(cls, rgb: np.ndarray | None, gray: np.ndarray, model: CodeModel) -> CellMap | None:
        """The map of ``gray`` (``rgb`` the same pixels in colour, or None); None for an image under
        3 cells a side (too small for any code)."""
        if min(gray.shape[:2]) < 3 * CELL:
            return None
        feats, maps = cell_features(rgb, gray)
        score = np.clip(cell_scores(feats, model), -20.0, 20.0)
        sat = maps["sat"]
        grey = rgb is None or float(np.percentile(sat, 90)) < 8.0
        return cls(feats, maps, score, float(np.median(sat)), grey, bool((score > model.weak).any()))


def region_candidates(
    rgb: np.ndarray | None | CellMap, gray: np.ndarray, hits: list, model: CodeModel
) -> list[Candidate]:
    """Every region of ``gray`` (working size; ``rgb`` the same pixels in colour, or None, or their
    :class:`CellMap` already made) that may be a code, with its region features, unscored:
    components of code-like cells, and the symbols the screen's detectors located (``hits``:
    zxing-cpp's undecodable symbols, OpenCV's 1-D boxes)."""
    cells = rgb if isinstance(rgb, CellMap) else CellMap.of(rgb, gray, model)
    if cells is None:
        return []
    score, maps, sat0, grey = cells.score, cells.maps, cells.sat0, cells.grey
    regions = [(rect, n, k, "cells", "") for rect, n, k in _components(score, model.strong, model.weak)]
    if model.weak_split > model.weak:  # tighter components: a code merged with textured surroundings
        for rect, n, k in _components(score, model.strong, model.weak_split):
            (cx, cy), (w, h), _ = rect
            if not any(
                abs(cx - r[0][0][0]) + abs(cy - r[0][0][1]) < CELL
                and abs(w * h / max(r[0][1][0] * r[0][1][1], 1) - 1) < 0.2
                for r in regions
            ):
                regions.append((rect, n, k, "cells", ""))
    for source, polygon, fmt in hits:
        regions.append((cv2.minAreaRect(polygon.reshape(-1, 2).astype(np.float32)), 0, 0, source, fmt))
    out = []
    for rect, n, k, source, fmt in regions:
        got = _region_features(gray, score, maps, rect, n, k, source, model, grey, sat0)
        if got is not None:
            out.append(Candidate(cv2.boxPoints(rect), _guess_kind(source, fmt, got[1], rect), got[0], source))
    return out


def likely_candidates(
    rgb: np.ndarray | None | CellMap, gray: np.ndarray, hits: list, model: CodeModel
) -> list[Candidate]:
    """:func:`region_candidates` with their probability of being a code, most likely first, one per
    place (a region whose centre lies in a more likely one is dropped)."""
    out = region_candidates(rgb, gray, hits, model)
    for c in out:
        x = np.clip(c.features, model.region_low, model.region_high)
        z = float(model.region_bias + x @ model.region_weights)
        c.confidence = 1.0 / (1.0 + math.exp(-min(max(z, -50.0), 50.0)))
    out.sort(key=lambda c: -c.confidence)
    kept: list[Candidate] = []
    for c in out:
        centre = tuple(float(v) for v in c.polygon.mean(axis=0))
        if not any(cv2.pointPolygonTest(k.polygon, centre, False) >= 0 for k in kept):
            kept.append(c)
    return kept
