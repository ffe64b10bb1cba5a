"""``code_filter``: drop images that hold a decodable QR / DataMatrix / bar code, or are mostly code.

``max_coverage=None`` (default) drops on any decoded code; ``max_coverage=0.2``
drops only when codes cover more than 20% of the image (a poster of a QR code,
a product label). ``kinds`` limits the judgement to families (``qr``,
``datamatrix``, ``1d``, ``aztec``, ``pdf417``). Besides the host's tag
(``__tag_codes``: quality ``1 - coverage``; ``__tag_codes_raw``: coverage) the
op stores ``__tag_codes_count`` and ``__tag_codes_kinds``. Every parameter of the
``codes`` scorer (``working_size``, ``full_size``, ``screen``, ``rectify``,
``use_opencv``) is a parameter of the op too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from ..io import DecodedImage
from ..params import Bounds, check_params
from ..registry import register_op
from ..scorers.codes import FAMILIES, coverage, family
from .base import Judgement, _fmt
from .metric import ScorerOp


@dataclass
class CodeJudgement(Judgement):
    count: int = 0
    kinds: list[str] = field(default_factory=list)


@register_op("code_filter", metric="codes")
class CodeFilter(ScorerOp):
    """Drop on any decoded code (default) or when codes cover more than ``max_coverage`` of the image."""

    def __init__(
        self,
        max_coverage: Annotated[float | None, Bounds(0.0, 1.0, threshold="coverage")] = None,
        kinds: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        check_params(CodeFilter.__init__, locals())
        if kinds is not None and (
            isinstance(kinds, str)
            or not isinstance(kinds, Sequence)
            or not all(isinstance(k, str) for k in kinds)
        ):
            raise ValueError(f"kinds must be a list of code families {sorted(FAMILIES)}, not {kinds!r}")
        unknown = set(kinds or ()) - FAMILIES
        if unknown:
            raise ValueError(f"unknown code kinds {sorted(unknown)}; known: {sorted(FAMILIES)}")
        self.max_coverage = max_coverage
        self.kinds = list(kinds) if kinds else None
        super().__init__(**kwargs)  # builds the scorer now: bad sizes fail here, not on the first image

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        verdicts = []
        for report in self.scorer.detect_batch([img.pixels for img in images]):  # tiny or flat: coverage 0
            codes = [c for c in report.codes if self.kinds is None or family(c.kind) in self.kinds]
            share = report.coverage if len(codes) == len(report.codes) else coverage(codes, *report.shape)
            kinds = sorted({c.kind for c in codes})
            reason = None
            if self.max_coverage is None and codes:
                reason = f"{len(codes)} code(s): {', '.join(kinds)}"
            elif self.max_coverage is not None and share > self.max_coverage:
                reason = f"codes cover {_fmt(share)} > {_fmt(self.max_coverage)} ({', '.join(kinds)})"
            verdicts.append(
                CodeJudgement(value=share, quality=1.0 - share, reason=reason, count=len(codes), kinds=kinds)
            )
        return verdicts

    def _decide(self, item, verdicts):
        if any(isinstance(v, CodeJudgement) for v in verdicts):  # per image, aligned with the tag (None: unread)
            counts = [v.count if isinstance(v, CodeJudgement) else None for v in verdicts]
            kinds = [v.kinds if isinstance(v, CodeJudgement) else None for v in verdicts]
            one = len(verdicts) == 1
            item[self.key() + "_count"] = counts[0] if one else counts
            item[self.key() + "_kinds"] = kinds[0] if one else kinds
        return super()._decide(item, verdicts)

    def params(self) -> dict[str, Any]:
        return {**self.thresholds(), "kinds": self.kinds, **super().params()}
