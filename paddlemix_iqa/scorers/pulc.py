"""PaddleClas PULC classifiers (``clarity_assessment``, ``code_exists``) on Paddle Inference, CPU.

Loads an official PULC inference directory in either format (``inference.pdmodel``
from Paddle 2.x or ``inference.json`` from Paddle 3, plus ``inference.pdiparams``),
applies PaddleClas's deploy preprocessing exactly (short side 256 with OpenCV
bilinear, centre crop 224, ``x * 0.00392157``, ImageNet mean/std, CHW) and returns
p1 of the softmax per image: p(blurred) or p(contains a code). Weights are found
by :func:`paddlemix_iqa.models.weights.locate_weights` and are never downloaded here.

An image whose short side is below 8 px, or under 1/64 of its long side, is
``too_small``: the resize to short side 256 would enlarge it more than 32x (the
model sees only interpolation) or make the long side huge (1x500 px -> 256x128000).
Bounds: ``threads`` 1..64, ``batch_size`` 1..1024, ``decode_side`` None or 224..16384.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Annotated

import cv2
import numpy as np

from ..models.inference import InferenceRunner
from ..models.weights import locate_weights
from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer, check_bool

log = logging.getLogger(__name__)

#: PaddleClas deploy NormalizeImage constants (scale is the literal 0.00392157, not 1/255)
SCALE = np.float32(0.00392157)
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 1, 3)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 1, 3)
RESIZE_SHORT = 256
CROP = 224
#: images outside these are refused (see the module docstring)
MIN_SIDE, MAX_ASPECT = 8, 64


def preprocess(
    image: np.ndarray,
    resize_short: int = RESIZE_SHORT,
    crop: int = CROP,
    mean: np.ndarray = MEAN,
    std: np.ndarray = STD,
) -> np.ndarray:
    """PaddleClas deploy ``ResizeImage(resize_short=256)``, ``CropImage(224)``, ``NormalizeImage``, ``ToCHW``.

    ``image`` is RGB uint8 (PaddleClas decodes with ``cv2.imread(...)[:, :, ::-1]``); the other
    arguments are those of a PaddleClas preprocessing config (the dedup step's embedding models
    pass theirs). A side the resize leaves under ``crop`` is brought up to it, so the crop is whole.
    """
    h, w = image.shape[:2]
    percent = resize_short / min(w, h)
    size = (max(crop, int(round(w * percent))), max(crop, int(round(h * percent))))
    img = cv2.resize(image, size)  # cv2's default: bilinear, as PaddleClas's UnifiedResize with no interpolation
    top, left = (size[1] - crop) // 2, (size[0] - crop) // 2
    img = img[top : top + crop, left : left + crop]
    mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
    std = np.asarray(std, np.float32).reshape(1, 1, 3)
    img = (img.astype(np.float32) * SCALE - mean) / std
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _probabilities(out: np.ndarray) -> np.ndarray:
    """Official exports end in a softmax; a graph that returns logits gets one here."""
    out = out.reshape(out.shape[0], -1).astype(np.float64)
    if out.size and (out.min() < 0 or not np.allclose(out.sum(axis=1), 1.0, atol=1e-4)):
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    return out


class PulcScorer(Scorer):
    """p1 of a two-class PULC model; higher means worse (blurred / has a code); quality is ``1 - p``."""

    higher_is_better = False
    native_range = (0.0, 1.0)
    neural = True

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        threads: Annotated[int, Bounds(1, 64)] = 2,
        batch_size: Annotated[int, Bounds(1, 1024)] = 16,
        use_mkldnn: bool = True,
        decode_side: Annotated[int | None, Bounds(CROP, 16384)] = None,
    ):
        checked = check_params(PulcScorer.__init__, locals())
        threads, batch_size, decode_side = checked["threads"], checked["batch_size"], checked["decode_side"]
        use_mkldnn = check_bool("use_mkldnn", use_mkldnn)
        if model_dir is not None and not isinstance(model_dir, (str, os.PathLike)):
            raise ValueError(f"model_dir must be a folder path, not {model_dir!r}")
        # locate now (a file check) so a missing model fails when the op is built, not per item;
        # the files and the message come from the weights catalogue
        self.model_dir = locate_weights(self.name, path=model_dir)
        self.threads, self.batch_size, self.use_mkldnn = int(threads), int(batch_size), bool(use_mkldnn)
        self._decode_side = decode_side
        self._runtime: InferenceRunner | None = None
        self._init_lock = threading.Lock()

    @property
    def decode_side(self) -> int | None:
        """Full resolution by default: PaddleClas resizes the original, and so do we (exact scores).

        A value such as 768 decodes JPEGs smaller (faster) at the cost of slightly different scores.
        """
        return self._decode_side

    @property
    def runtime(self) -> InferenceRunner:
        with self._init_lock:
            if self._runtime is None:
                self._runtime = InferenceRunner(self.model_dir, self.threads, mkldnn=self.use_mkldnn)
                log.info("loaded PULC model %s", self.model_dir)
        return self._runtime

    def check_image(self, image: np.ndarray) -> str | None:
        reason = super().check_image(image)
        h, w = image.shape[:2]
        if reason is None and (min(h, w) < MIN_SIDE or max(h, w) > MAX_ASPECT * min(h, w)):
            reason = (
                f"too_small: {w}x{h}: PULC needs a short side of at least {MIN_SIDE} px "
                f"and 1/{MAX_ASPECT} of the long side"
            )
        return reason

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Both class probabilities per image (N x 2), run in batches of ``batch_size``."""
        self.require_scorable(images)
        runtime = self.runtime
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([preprocess(img) for img in images[start : start + self.batch_size]])
            chunks.append(_probabilities(runtime.run(batch)))
        return np.concatenate(chunks) if chunks else np.zeros((0, 2))

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.probabilities(images)[:, 1] if len(images) else np.zeros(0)

    def describe(self) -> dict:
        return {**super().describe(), "model_dir": str(self.model_dir), "input": "224x224 (short side 256)"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_dir={str(self.model_dir)!r})"


@register_scorer("pulc_clarity")
class PulcClarityScorer(PulcScorer):
    """PULC ``clarity_assessment``: p(blurred)."""

    measures = "sharpness"


@register_scorer("pulc_code")
class PulcCodeScorer(PulcScorer):
    """PULC ``code_exists``: p(the image contains a QR code, bar code or ad code)."""

    measures = "content"
