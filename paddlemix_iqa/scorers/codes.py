"""Weight-free QR / DataMatrix / bar-code detector: only codes that decode count.

Detection without a decode fires on natural textures (fences, text, tiles), so
every code reported here was decoded by zxing-cpp or, for what zxing-cpp misses
(notably 1-D codes rotated by 20-45 degrees), by OpenCV's ``barcode.BarcodeDetector``
and ``QRCodeDetectorAruco``. The first pass runs on a gray copy at
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
sheared bar codes that neither detector sees.

The native score is the fraction of the image covered by decoded codes (0 = no
code); :meth:`CodeScorer.detect` gives the full report (count, kinds, polygons).
Tiny and uniform images hold no code: they score a well-defined 0. Bounds:
``working_size`` 64..8192, ``full_size`` None or working_size..16384.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

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


def family(kind: str) -> str:
    """``qr``, ``datamatrix``, ``aztec``, ``pdf417``, ``maxicode`` or ``1d`` (every linear format)."""
    return _FAMILIES.get(kind, "1d")


@dataclass
class Code:
    """One decoded code: its format (zxing-cpp's name), text, corner polygon (x, y in the input) and decoder."""

    kind: str
    text: str
    polygon: np.ndarray
    decoder: str

    @property
    def family(self) -> str:
        return family(self.kind)


@dataclass
class CodeReport:
    """What an image holds: the decoded codes and the fraction of the image they cover (their union)."""

    codes: list[Code] = field(default_factory=list)
    coverage: float = 0.0
    passes: int = 1  # 2 when the second pass ran
    shape: tuple[int, int] = (0, 0)  # (height, width) of the image the polygons refer to

    @property
    def count(self) -> int:
        return len(self.codes)

    @property
    def kinds(self) -> list[str]:
        return sorted({c.kind for c in self.codes})


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
    ):
        checked = check_params(CodeScorer.__init__, locals())
        self.working_size, self.full_size = checked["working_size"], checked["full_size"]
        self.use_opencv = check_bool("use_opencv", use_opencv)
        self.rectify = check_bool("rectify", rectify)
        self.screen = check_bool("screen", screen)
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
        if zxingcpp.read_barcodes(gray, try_rotate=False, try_downscale=False, return_errors=True):
            return True
        if self.use_opencv and self._screen_detector().detect(gray)[0]:
            return True
        return self.rectify and _has_bar_patch(gray)

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
        """Decode every code in an RGB (or gray) uint8 image; polygons are in the input's pixel coordinates.

        Second pass, only when the first saw a code-like region it could not decode: the
        image at the resolution received when it is larger than ``working_size``, else
        the image enlarged 2x (small codes decode better with more pixels per module).
        """
        gray = np.ascontiguousarray(to_gray(image))
        h, w = gray.shape[:2]
        small = resize_long_side(gray, self.working_size) if max(h, w) > self.working_size else gray
        if self.screen and not self._maybe_code(small):
            return CodeReport(shape=(h, w))
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
        return CodeReport(codes=codes, coverage=coverage(codes, h, w), passes=passes, shape=(h, w))

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
        }


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
        if stats[i, cv2.CC_STAT_AREA] < 600:
            break
        ys, xs = np.nonzero(labels == i)
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
