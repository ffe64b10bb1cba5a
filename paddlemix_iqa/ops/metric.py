"""Ops driven by a scorer: thresholds on the normalised quality and/or the native value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np

from ..io import DecodedImage
from ..params import Bounds, check_params
from ..registry import op_spec, register_op, tagger_name
from ..scorers import Scorer, get_scorer
from ..scorers.base import resize_long_side, to_gray
from .base import ImageOp, Judgement, range_reason


def scorer_input(image: DecodedImage, scorer: Scorer) -> np.ndarray:
    """What ``scorer`` reads of ``image``: the pixels, or for a scorer that accepts it
    (:attr:`Scorer.accepts_gray_copy`) the grey copy shrunk to its working size, made once per
    image and size and kept on the image for the next op (the grey of a 12-MP photo costs
    about as much as a tenth of its decode; every sharpness op used to make its own)."""
    if not scorer.accepts_gray_copy or image.pixels.ndim != 3:
        return image.pixels
    side = scorer.working_size
    if side is not None and max(image.pixels.shape[:2]) <= side:
        side = None  # never enlarged here: a scorer that enlarges does it itself
    views = image.views
    if ("gray", None) not in views:
        views[("gray", None)] = to_gray(image.pixels)
    if ("gray", side) not in views:
        views[("gray", side)] = resize_long_side(views[("gray", None)], side)
    return views[("gray", side)]


class ScorerOp(ImageOp):
    """An op measured by the registered scorer ``metric``.

    Keyword parameters beyond the op's own are the scorer's, passed through untouched,
    so an op never copies (or lags behind) its scorer's parameters. Building the op
    builds the scorer and checks that its weight files exist, but loads no model
    (that happens on first use).
    """

    def __init__(
        self,
        *,
        key: str = "image",
        root=None,
        mode: str = "any",
        keep_all: bool = False,
        name: str | None = None,
        allow_outside_root: bool = False,
        **scorer_params: Any,
    ):
        super().__init__(
            key=key, root=root, mode=mode, keep_all=keep_all, name=name, allow_outside_root=allow_outside_root
        )
        self.scorer_params = scorer_params
        self.scorer.check_weights()  # bad scorer parameters or missing weights fail here, not per item

    @property
    def scorer(self) -> Scorer:
        return get_scorer(self.metric, **self.scorer_params)

    @property
    def decode_side(self) -> int | None:
        return self.scorer.decode_side

    @property
    def neural(self) -> bool:
        return self.scorer.neural

    def params(self) -> dict[str, Any]:
        return {**super().params(), **self.scorer_params}


@register_op("iqa_filter")
class MetricFilter(ScorerOp):
    """Score images with a registered scorer; keep items whose scores are in range.

    ``min_score``/``max_score`` bound the normalised quality in [0, 1] (higher is
    better, the host's convention); ``min_value``/``max_value`` bound the native
    score. Any bound left as None is open. Other keyword parameters are the scorer's.

    An image the scorer refuses (:meth:`Scorer.check_image`: ``too_small``,
    ``flat_image``) is rejected with that reason and not scored; a score that still
    comes back NaN or infinite is rejected as ``<metric>: not_finite`` with no value,
    so no NaN reaches a threshold (NaN compares false: it would pass) or an output.
    """


    def __init__(
        self,
        metric: str,
        min_score: Annotated[float | None, Bounds(0.0, 1.0, threshold="score")] = None,
        max_score: Annotated[float | None, Bounds(0.0, 1.0, threshold="score")] = None,
        min_value: Annotated[float | None, Bounds(threshold="value")] = None,
        max_value: Annotated[float | None, Bounds(threshold="value")] = None,
        **kwargs: Any,
    ):
        check_params(MetricFilter.__init__, locals())
        self.metric = metric
        self.min_score, self.max_score = min_score, max_score
        self.min_value, self.max_value = min_value, max_value
        super().__init__(**kwargs)

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        scorer = self.scorer
        pixels = [scorer_input(img, scorer) for img in images]
        verdicts = [Judgement(reason=scorer.check_image(px)) for px in pixels]
        todo = [i for i, v in enumerate(verdicts) if v.reason is None]
        if not todo:
            return verdicts
        native = np.asarray(scorer.score_batch([pixels[i] for i in todo]), dtype=np.float64).reshape(-1)
        quality = np.asarray(scorer.normalize(native), dtype=np.float64).reshape(native.shape)
        for i, value, q in zip(todo, native.tolist(), quality.tolist(), strict=True):
            verdicts[i] = self._verdict(value, q)
        return verdicts

    def _verdict(self, value: float, quality: float) -> Judgement:
        if not (math.isfinite(value) and math.isfinite(quality)):
            return Judgement(reason=f"{self.metric}: not_finite")
        reason = range_reason(f"{self.metric} quality", quality, self.min_score, self.max_score)
        if reason is None and (self.min_value is not None or self.max_value is not None):
            reason = range_reason(self.scorer.value_label, value, self.min_value, self.max_value)
        return Judgement(value=value, quality=quality, reason=reason)

    def params(self) -> dict[str, Any]:
        return {"metric": self.metric, **self.thresholds(), **super().params()}


def iqa_filter(
    metric: str,
    min_score: float | None = None,
    max_score: float | None = None,
    key: str = "image",
    **params: Any,
) -> MetricFilter:
    """Item-level filter op for ``metric``: ``dataset.map(iqa_filter("laplacian", min_score=0.5)).nonempty()``."""
    return MetricFilter(metric, min_score=min_score, max_score=max_score, key=key, **params)


def iqa_tagger(metric: str, key: str = "image", **params: Any) -> ScorerOp:
    """Tagger for ``metric`` (its ``<metric>_tagger`` op): stores ``item["__tag_<metric>"]`` and
    always returns the item."""
    return op_spec(tagger_name(metric)).build(key=key, **params)
