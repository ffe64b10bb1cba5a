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
from typing import Any, ClassVar, Literal

import cv2
import numpy as np

from ..params import Bounds as Bounds
from ..params import check_float as check_float
from ..params import check_int as check_int
from ..params import check_params as check_params


class UnscorableImage(ValueError):
    """An image a scorer cannot score; ``reason`` starts with ``too_small`` or ``flat_image``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Scorer(ABC):
    """Base class of all scorers. Subclasses set the class attributes and ``score_batch``."""

    #: registry name, e.g. ``"laplacian"``; set by ``@register_scorer("laplacian")``
    name: ClassVar[str]
    #: what the score responds to: "sharpness" scorers must rank a sharp image above its blurred
    #: copy (a contract test holds them to it); "quality" (overall) and "content" (codes) need not
    measures: ClassVar[str] = "quality"
    #: True when a larger native score means a better image
    higher_is_better: ClassVar[bool] = True
    #: the native score's usual range (``math.inf`` for unbounded)
    native_range: ClassVar[tuple[float, float]] = (0.0, math.inf)
    #: colour the metric works on; images arrive as RGB, and a gray scorer also accepts a 2-D uint8 gray image
    color: ClassVar[Literal["rgb", "gray"]] = "rgb"
    #: long side (pixels) the metric wants; ``None`` means full resolution
    working_size: int | None = None
    #: scoring the image's grey copy (:func:`to_gray`), shrunk by :func:`resize_long_side` to
    #: ``working_size`` when larger, gives the same score as scoring the image, or one within a
    #: measured bound the scorer states (BRISQUE's own MATLAB grey differs by rounding): ops then
    #: hand scorers that copy, made once per image and shared (``scorer_input`` in ops)
    accepts_gray_copy: ClassVar[bool] = False
    #: a neural network: pipelines run it batched in one process (one model load, no core contention)
    neural: ClassVar[bool] = False

    @abstractmethod
    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Native scores, one float per RGB uint8 image; raises UnscorableImage for one check_image refuses."""

    def check_image(self, image: np.ndarray) -> str | None:
        """Why this scorer cannot score ``image`` (``"too_small: ..."``, ``"flat_image: ..."``), or None.

        Cheap (no scoring): ops call it first and reject such images with the reason
        instead of getting a NaN; subclasses add their own minimum size or variation.
        """
        if image.ndim not in (2, 3) or image.size == 0:
            return f"too_small: an image of shape {image.shape} has no pixels"
        return None

    def require_scorable(self, images: Sequence[np.ndarray]) -> None:
        """Raise UnscorableImage for the first image :meth:`check_image` refuses (score_batch's guard)."""
        for image in images:
            reason = self.check_image(image)
            if reason is not None:
                raise UnscorableImage(reason)

    def check_weights(self) -> None:
        """Raise ``WeightsNotFound`` (with the command that fixes it) when model files are missing.

        A file check only, nothing is loaded: ops call it when they are built so a
        missing model stops a run before the first image instead of rejecting every item.
        Weight-free scorers have nothing to check.
        """
        return None

    @property
    def value_label(self) -> str:
        """What the native value is called in rejection reasons (``laplacian 12.3 < 50``)."""
        return self.name

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


def resized_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """The (height, width) :func:`resize_long_side` gives, without resizing (for size checks)."""
    if not size or max(height, width) == size:
        return height, width
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def too_small(image: np.ndarray, min_side: int, size: int | None = None, what: str = "") -> str | None:
    """``"too_small: WxH ..."`` when a side of ``image``, or of its copy at long side ``size``, is below
    ``min_side``; None when both are large enough."""
    h, w = image.shape[:2]
    if min(h, w) < min_side:
        return f"too_small: {w}x{h} is below {what}{min_side} px on a side"
    rh, rw = resized_shape(h, w, size)
    if min(rh, rw) < min_side:
        return f"too_small: {w}x{h} is {rw}x{rh} at working size {size}, below {what}{min_side} px on a side"
    return None


def is_flat(image: np.ndarray) -> bool:
    """Every pixel the same colour (no variation at all). Most images differ within their first row,
    so this is cheap; a uniform first row costs one pass over the image (~1 ms per megapixel)."""
    if not image.size or not (image[0] == image[0, 0]).all():
        return False
    rows = np.ascontiguousarray(image).reshape(image.shape[0], -1)
    return cv2.norm(rows, np.repeat(rows[:1], len(rows), axis=0), cv2.NORM_INF) == 0


# --- parameter checks: constructors call these so a bad value fails with the parameter's name ---------
# numeric ranges are declared in the signature (``Annotated[int, Bounds(1, 64)]``) and checked by
# ``check_params``: see :mod:`paddlemix_iqa.params`
def check_bool(name: str, value: Any) -> bool:
    """A true/false parameter: 0, 1 or "yes" are refused rather than guessed."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return bool(value)


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
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_CUBIC
    new_h, new_w = resized_shape(h, w, size)
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 to single-channel uint8 (ITU-R BT.601 weights, as OpenCV and MATLAB use)."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
