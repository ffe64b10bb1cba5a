"""PaddleClas PULC filters: drop an image when p(blurred) or p(code) reaches the threshold.

PaddleClas's rule: class 1 when ``p1 >= threshold`` (0.5 by default); the docs
list the published FPR/TPR per threshold. ``threshold=None`` makes a tagger.
Building the op locates the weights, so a missing model fails at once with the
download command instead of dropping every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from ..io import DecodedImage
from ..params import Bounds, check_params
from ..registry import register_op
from .base import Judgement, _fmt
from .metric import MetricFilter


class PulcFilter(MetricFilter):
    """Threshold on a PULC model's p1; tags quality ``1 - p`` and the raw p. Other keyword
    parameters are the scorer's (``model_dir``, ``threads``, ``batch_size``, ...)."""

    label: str = "p"

    def __init__(
        self, threshold: Annotated[float | None, Bounds(0.0, 1.0, threshold="probability")] = 0.5, **kwargs: Any
    ):
        check_params(PulcFilter.__init__, locals())
        self.threshold = threshold
        super().__init__(self.metric, **kwargs)

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        verdicts = super().judge(images)
        if self.threshold is None:
            return verdicts
        for v in verdicts:  # a verdict without a reason has a finite value (MetricFilter.judge)
            if v.reason is None and v.value >= self.threshold:
                v.reason = f"{self.label} {_fmt(v.value)} >= {_fmt(self.threshold)}"
        return verdicts


@register_op("pulc_blur_filter", metric="pulc_clarity")
class PulcBlurFilter(PulcFilter):
    """Drop blurred images: PULC ``clarity_assessment`` p(blurred) >= ``threshold``."""

    label = "p(blurred)"


@register_op("pulc_code_filter", metric="pulc_code")
class PulcCodeFilter(PulcFilter):
    """Drop images with a QR / bar / ad code: PULC ``code_exists`` p(code) >= ``threshold``."""

    label = "p(code)"
