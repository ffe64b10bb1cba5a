"""The scorer interface: the one seam every metric plugs into.

A scorer takes a batch of RGB uint8 images and returns one native float per
image. It also says which way is better, its native range, the decode size it
needs (so the loader can decode each image once, small), and how its native
score maps to a quality in [0, 1] where higher is better (the host's convention).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import cv2
import numpy as np


class Scorer(ABC):
    """Base class of all scorers. Subclasses set the class attributes and ``score_batch``."""

    #: registry name, e.g. ``"laplacian"``
    name: ClassVar[str]
    #: True when a larger native score means a better image
    higher_is_better: ClassVar[bool] = True
    #: the native score's usual range (``math.inf`` for unbounded)
    native_range: ClassVar[tuple[float, float]] = (0.0, math.inf)
    #: colour the metric works on; images still arrive as RGB, this documents the conversion
    color: ClassVar[Literal["rgb", "gray"]] = "rgb"
    #: long side (pixels) the metric wants; ``None`` means full resolution
    working_size: int | None = None
    #: a neural network: pipelines run it batched in one process (one model load, no core contention)
    neural: ClassVar[bool] = False

    @abstractmethod
    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Native scores, one float per RGB uint8 image."""

    def check_weights(self) -> None:
        """Raise ``WeightsNotFound`` (with the command that fixes it) when model files are missing.

        A file check only, nothing is loaded: ops call it when they are built so a
        missing model stops a run before the first image instead of rejecting every item.
        Weight-free scorers have nothing to check.
        """
        return None

    def score(self, image: np.ndarray) -> float:
        return float(self.score_batch([image])[0])

    def normalize(self, native: float | np.ndarray) -> float | np.ndarray:
        """Map native scores to quality in [0, 1], higher is better.

        The default is a linear map over a finite ``native_range`` (flipped when
        lower is better); unbounded metrics override it.
        """
        low, high = self.native_range
        if not (math.isfinite(low) and math.isfinite(high)):
            raise NotImplementedError(f"{type(self).__name__} must define normalize() for an unbounded range")
        quality = (np.asarray(native, dtype=np.float64) - low) / (high - low)
        if not self.higher_is_better:
            quality = 1.0 - quality
        return _like(native, np.clip(quality, 0.0, 1.0))

    @property
    def decode_side(self) -> int | None:
        """The long side to decode at: the loader may shrink to this, never below."""
        return self.working_size

    def describe(self) -> dict:
        """Facts for ``paddlemix-iqa ops`` and reports."""
        return {
            "name": self.name,
            "higher_is_better": self.higher_is_better,
            "native_range": list(self.native_range),
            "color": self.color,
            "working_size": self.working_size,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(working_size={self.working_size})"


def _like(native: float | np.ndarray, values: np.ndarray) -> float | np.ndarray:
    """Return a Python float for scalar input, an array otherwise."""
    return float(values) if np.ndim(native) == 0 else values


def saturating(native: float | np.ndarray, midpoint: float) -> float | np.ndarray:
    """Quality ``v / (v + midpoint)`` for unbounded, higher-is-better scores: 0.5 at ``midpoint``."""
    values = np.maximum(np.asarray(native, dtype=np.float64), 0.0)
    return _like(native, values / (values + midpoint))


def resize_long_side(image: np.ndarray, size: int | None) -> np.ndarray:
    """Resize so the long side is exactly ``size`` (area filter down, bicubic up); ``None`` keeps it."""
    h, w = image.shape[:2]
    if not size or max(h, w) == size:
        return image
    scale = size / max(h, w)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 to single-channel uint8 (ITU-R BT.601 weights, as OpenCV and MATLAB use)."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
