"""Classic, weight-free sharpness: variance of Laplacian, Tenengrad, mean gradient magnitude.

All three grow with image size, so every image is first brought to the same
working size (long side ``working_size``, default 512 px) in gray; only then are
scores comparable across a dataset of mixed resolutions. ``tiles=N`` scores an
N x N grid and keeps a high quantile of the tiles, so a photo with a sharp
subject on a defocused background (shallow depth of field) still reads as sharp.

Bounds: ``working_size`` 32..8192 (more only costs time; the scores are calibrated
at 512), ``tiles`` 1..64, ``tile_quantile`` in [0, 1], ``midpoint`` > 0. A uniform
image scores a well-defined 0 (blurry by any threshold); an image with fewer than
3 px on a side, as received or at working size, is ``too_small``: the 3x3 kernels
have no interior pixel to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import cv2
import numpy as np

from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer, _like, resize_long_side, saturating, to_gray, too_small


class SharpnessScorer(Scorer):
    """Shared machinery: gray at a fixed working size, optional tiling, saturating normalisation."""

    color = "gray"
    measures = "sharpness"
    accepts_gray_copy = True  # to_gray, then resize_long_side to working_size: a shared copy is the same
    #: native value mapped to quality 0.5; a starting threshold measured on real photos (README)
    midpoint: float = 1.0

    def __init__(
        self,
        working_size: Annotated[int, Bounds(32, 8192)] = 512,
        tiles: Annotated[int, Bounds(1, 64)] = 1,
        tile_quantile: Annotated[float, Bounds(0.0, 1.0)] = 0.9,
        midpoint: Annotated[float | None, Bounds(1e-12, 1e12)] = None,
    ):
        checked = check_params(SharpnessScorer.__init__, locals())
        self.working_size, self.tiles = checked["working_size"], checked["tiles"]
        self.tile_quantile = checked["tile_quantile"]
        if midpoint is not None:
            self.midpoint = checked["midpoint"]

    def response(self, gray: np.ndarray) -> np.ndarray:
        """Per-pixel response whose mean is the score (float32, same shape as ``gray``)."""
        raise NotImplementedError

    def reduce(self, response: np.ndarray) -> float:
        return float(response.mean())

    def check_image(self, image: np.ndarray) -> str | None:
        return super().check_image(image) or too_small(image, 3, self.working_size)

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.require_scorable(images)
        return np.array([self._score_one(image) for image in images], dtype=np.float64)

    def _score_one(self, image: np.ndarray) -> float:
        gray = resize_long_side(to_gray(image), self.working_size).astype(np.float32)
        response = self.response(gray)[1:-1, 1:-1]  # border pixels see the padding, not the image
        if self.tiles == 1:
            return self.reduce(response)
        rows = np.array_split(np.arange(response.shape[0]), self.tiles)
        cols = np.array_split(np.arange(response.shape[1]), self.tiles)
        values = [
            self.reduce(response[r[0] : r[-1] + 1, c[0] : c[-1] + 1])
            for r in rows
            for c in cols
            if len(r) and len(c)
        ]
        return float(np.quantile(values, self.tile_quantile))

    def normalize(self, native):
        return saturating(native, self.midpoint)

    def describe(self) -> dict:
        return {**super().describe(), "tiles": self.tiles, "midpoint": self.midpoint}


def _sobel_squared(gray: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return gx * gx + gy * gy


@register_scorer("laplacian")
class LaplacianScorer(SharpnessScorer):
    """Variance of the 4-neighbour Laplacian of the gray image (0-255 scale)."""

    midpoint = 350.0

    def response(self, gray):
        return cv2.Laplacian(gray, cv2.CV_32F, ksize=1)

    def reduce(self, response):
        return float(response.var())


@register_scorer("tenengrad")
class TenengradScorer(SharpnessScorer):
    """Tenengrad: mean squared 3x3 Sobel gradient magnitude."""

    midpoint = 5500.0

    def response(self, gray):
        return _sobel_squared(gray)


@register_scorer("gradient_mean")
class GradientMeanScorer(SharpnessScorer):
    """Mean 3x3 Sobel gradient magnitude (the "gradient mean" used to spot a camera going blurry)."""

    midpoint = 43.0

    def response(self, gray):
        return np.sqrt(_sobel_squared(gray))


#: the four directions (dy, dx) edge sharpness looks along: across columns, rows and both diagonals
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


@register_scorer("edge_sharpness")
class EdgeSharpnessScorer(Scorer):
    """How steep the strongest edges are, in the direction where they are softest (blur detection).

    Along each of four directions, the log ratio of second- to first-difference energy over the
    pixels with the largest first differences (the top ``1 - edge_quantile``): a step edge keeps
    energy in the second difference, a blurred edge spreads into a ramp that has almost none.
    Being a ratio, it does not depend on contrast or on how much of the image is textured, the
    two things that make Laplacian variance misjudge flat-but-sharp and busy-but-blurred photos.
    The softest direction is what catches motion blur, which leaves edges along the motion sharp.
    ``step`` is the differences' spacing: 2 reads coarser blur and is blind to the 8-px block
    steps of JPEG, which make a blurred image look a little sharp at step 1.

    Measured on 64 COCO photos with PaddleClas's blur recipe (docs/accuracy.md): AUC 1.000
    alone, against 0.986 for Laplacian variance at the same resolution. The image is scored at
    its own resolution, shrunk (never enlarged: enlarging blurs) to ``working_size``. Native:
    about -3 (heavy blur) to ``log 4`` (the bound of a single-pixel step), clipped below at -10,
    which is also the score of an image without a single edge (uniform: blurry by any threshold);
    quality is a logistic curve, 0.5 at ``midpoint``.
    """

    color = "gray"
    measures = "sharpness"
    accepts_gray_copy = True  # to_gray, then shrunk to working_size (never enlarged)
    #: log ratios are clipped to this range; an image with no edge at all (uniform) scores the floor
    native_range = (-10.0, math.log(4.0))

    def __init__(
        self,
        working_size: Annotated[int, Bounds(32, 8192)] = 1024,
        edge_quantile: Annotated[float, Bounds(0.0, 0.999)] = 0.9,
        step: Annotated[int, Bounds(1, 8)] = 1,
        direction: Literal["softest", "sharpest", "mean"] = "softest",
        midpoint: Annotated[float, Bounds(-10.0, 2.0)] = -0.4,
        spread: Annotated[float, Bounds(1e-3, 10.0)] = 0.25,
    ):
        checked = check_params(EdgeSharpnessScorer.__init__, locals())
        if direction not in ("softest", "sharpest", "mean"):
            raise ValueError(f"direction must be softest, sharpest or mean, not {direction!r}")
        self.working_size, self.edge_quantile = checked["working_size"], checked["edge_quantile"]
        self.step = checked["step"]
        self.direction, self.midpoint, self.spread = direction, checked["midpoint"], checked["spread"]

    def check_image(self, image: np.ndarray) -> str | None:
        side = min(self.working_size, max(image.shape[:2]))
        return super().check_image(image) or too_small(image, 4 * self.step + 1, side)

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.require_scorable(images)
        return np.array([self._score_one(image) for image in images], dtype=np.float64)

    def direction_ratios(self, image: np.ndarray) -> np.ndarray:
        """The log ratio along each of the four directions (for inspection; the score reduces them)."""
        gray = to_gray(image)
        if max(gray.shape[:2]) > self.working_size:
            gray = resize_long_side(gray, self.working_size)
        if gray.dtype != np.uint8:
            gray = np.clip(gray, 0, 255).astype(np.uint8)
        # |first difference| of uint8 pixels is exact in uint8 (absdiff), so the top-quantile cut
        # comes from its 256-bin histogram; second differences are integers up to 510, exact in
        # float32, whose masked squared norm OpenCV sums in double (exact, and ~20x faster than int16)
        g = np.ascontiguousarray(gray)
        f = g.astype(np.float32)
        h, w = g.shape
        m = 2 * self.step  # margin: every shifted view stays inside the image
        squares = np.arange(256, dtype=np.float64) ** 2
        # every shifted view has the same shape: the maps are written into buffers made once
        # (fresh arrays of this size cost page faults that took longer than the arithmetic)
        magnitude = np.empty((h - 2 * m, w - 2 * m), np.uint8)
        edges, second = np.empty_like(magnitude), np.empty(magnitude.shape, np.float32)
        ratios = []
        for dy, dx in _DIRECTIONS:

            def shifted(a: np.ndarray, k: int, dy=dy * self.step, dx=dx * self.step) -> np.ndarray:
                return a[m + k * dy : h - m + k * dy, m + k * dx : w - m + k * dx]

            cv2.absdiff(shifted(g, 1), shifted(g, 0), dst=magnitude)
            counts = cv2.calcHist([magnitude], [0], None, [256], [0, 256]).ravel().astype(np.int64)
            rank = int(self.edge_quantile * (magnitude.size - 1))
            cut = int(np.searchsorted(np.cumsum(counts), rank, side="right"))  # the rank-th smallest
            energy1 = float(counts[cut + 1 :] @ squares[cut + 1 :])  # over the edges: |first| > cut
            if energy1 == 0:  # a direction with no change at all (stripes): nothing to read
                ratios.append(np.nan)
                continue
            cv2.add(shifted(f, 1), shifted(f, -1), dst=second)
            cv2.scaleAdd(shifted(f, 0), -2.0, second, dst=second)  # f(+1) + f(-1) - 2 f(0)
            cv2.compare(magnitude, cut, cv2.CMP_GT, dst=edges)
            energy2 = cv2.norm(second, cv2.NORM_L2SQR, mask=edges)
            ratios.append(math.log(max(energy2, 1e-30) / energy1))
        return np.clip(ratios, *self.native_range)

    def _score_one(self, image: np.ndarray) -> float:
        ratios = self.direction_ratios(image)
        ratios = ratios[np.isfinite(ratios)]
        reduce = {"softest": np.min, "sharpest": np.max, "mean": np.mean}[self.direction]
        return float(reduce(ratios)) if ratios.size else self.native_range[0]  # no edge anywhere: blurriest

    def normalize(self, native):
        values = np.asarray(native, dtype=np.float64)
        return _like(native, 1.0 / (1.0 + np.exp(-(values - self.midpoint) / self.spread)))

    @property
    def decode_side(self) -> int | None:
        return self.working_size

    def describe(self) -> dict:
        return {**super().describe(), "direction": self.direction, "midpoint": self.midpoint}
