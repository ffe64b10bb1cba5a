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

from collections.abc import Sequence
from typing import Annotated

import cv2
import numpy as np

from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer, resize_long_side, saturating, to_gray, too_small


class SharpnessScorer(Scorer):
    """Shared machinery: gray at a fixed working size, optional tiling, saturating normalisation."""

    color = "gray"
    measures = "sharpness"
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
