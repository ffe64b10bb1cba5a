"""PaddleClas PULC filters: drop an image when p(blurred) or p(code) reaches the threshold.

PaddleClas's rule: class 1 when ``p1 >= threshold`` (0.5 by default); the docs
list the published FPR/TPR per threshold. ``threshold=None`` makes a tagger.
Building the op locates the weights, so a missing model fails at once with the
download command instead of dropping every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..io import DecodedImage
from .base import Judgement, _fmt, check_range
from .metric import MetricFilter


class PulcFilter(MetricFilter):
    """Threshold on a PULC model's p1; tags quality ``1 - p`` and the raw p."""

    scorer_name: str = ""
    op_name: str = ""  # the registry name, used as the op's default name in reasons
    label: str = "p"

    def __init__(
        self,
        threshold: float | None = 0.5,
        model_dir=None,
        threads: int = 2,
        batch_size: int = 16,
        use_mkldnn: bool = True,
        **kwargs: Any,
    ):
        check_range(threshold, None, "probability", (0.0, 1.0), ("threshold", "threshold"))
        kwargs.setdefault("name", self.op_name)
        super().__init__(
            self.scorer_name,
            model_dir=model_dir,
            threads=threads,
            batch_size=batch_size,
            use_mkldnn=use_mkldnn,
            **kwargs,
        )
        self.threshold = threshold

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        verdicts = super().judge(images)
        if self.threshold is None:
            return verdicts
        for v in verdicts:  # a verdict without a reason has a finite value (MetricFilter.judge)
            if v.reason is None and v.value >= self.threshold:
                v.reason = f"{self.label} {_fmt(v.value)} >= {_fmt(self.threshold)}"
        return verdicts

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, **super().params()}


class PulcBlurFilter(PulcFilter):
    """Drop blurred images: PULC ``clarity_assessment`` p(blurred) >= ``threshold``."""

    scorer_name = "pulc_clarity"
    op_name = "pulc_blur_filter"
    label = "p(blurred)"


class PulcCodeFilter(PulcFilter):
    """Drop images with a QR / bar / ad code: PULC ``code_exists`` p(code) >= ``threshold``."""

    scorer_name = "pulc_code"
    op_name = "pulc_code_filter"
    label = "p(code)"
