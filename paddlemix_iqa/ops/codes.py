"""``code_filter``: drop images that hold a decodable QR / DataMatrix / bar code, or are mostly code.

``max_coverage=None`` (default) drops on any decoded code; ``max_coverage=0.2``
drops only when codes cover more than 20% of the image (a poster of a QR code,
a product label). ``kinds`` limits the judgement to families (``qr``,
``datamatrix``, ``1d``, ``aztec``, ``pdf417``). Besides the host's tag
(``__tag_codes``: quality ``1 - coverage``; ``__tag_codes_raw``: coverage) the
op stores ``__tag_codes_count`` and ``__tag_codes_kinds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..io import DecodedImage
from ..scorers import get_scorer
from ..scorers.codes import CodeScorer, coverage, family
from .base import ImageOp, Judgement, _fmt, check_range

_FAMILIES = {"qr", "datamatrix", "1d", "aztec", "pdf417", "maxicode"}


@dataclass
class CodeJudgement(Judgement):
    count: int = 0
    kinds: list[str] = field(default_factory=list)


class CodeFilter(ImageOp):
    """Drop on any decoded code (default) or when codes cover more than ``max_coverage`` of the image."""

    metric = "codes"

    def __init__(
        self,
        max_coverage: float | None = None,
        kinds: Sequence[str] | None = None,
        working_size: int = 1024,
        full_size: int | None = 2048,
        **kwargs: Any,
    ):
        check_range(None, max_coverage, "coverage", (0.0, 1.0))
        if kinds is not None and (
            isinstance(kinds, str)
            or not isinstance(kinds, Sequence)
            or not all(isinstance(k, str) for k in kinds)
        ):
            raise ValueError(f"kinds must be a list of code families {sorted(_FAMILIES)}, not {kinds!r}")
        unknown = set(kinds or ()) - _FAMILIES
        if unknown:
            raise ValueError(f"unknown code kinds {sorted(unknown)}; known: {sorted(_FAMILIES)}")
        kwargs.setdefault("name", "code_filter")
        super().__init__(**kwargs)
        self.max_coverage = max_coverage
        self.kinds = list(kinds) if kinds else None
        self.scorer_params = {"working_size": working_size, "full_size": full_size}
        self.scorer.check_weights()  # builds the scorer now: bad sizes fail here, not on the first image

    @property
    def scorer(self) -> CodeScorer:
        return get_scorer("codes", **self.scorer_params)

    @property
    def decode_side(self) -> int | None:
        return self.scorer.decode_side

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
        judged = [v for v in verdicts if isinstance(v, CodeJudgement)]
        if judged:
            one = len(verdicts) == 1
            item[self.key() + "_count"] = judged[0].count if one else [v.count for v in judged]
            item[self.key() + "_kinds"] = judged[0].kinds if one else [v.kinds for v in judged]
        return super()._decide(item, verdicts)

    def params(self) -> dict[str, Any]:
        return {
            "max_coverage": self.max_coverage,
            "kinds": self.kinds,
            **self.scorer_params,
            **super().params(),
        }
