"""``code_filter``: drop images that hold a QR / DataMatrix / bar code, decoded or likely, or are mostly code.

``detect="likely"`` (default) counts decoded codes and codes found without decoding
(too blurred or too small to read) whose probability reaches ``min_confidence``;
``detect="decoded"`` counts decoded codes only (certain, but it misses most codes a
reader cannot resolve). ``max_coverage=None`` (default) drops on any such code;
``max_coverage=0.2`` drops only when codes cover more than 20% of the image (a
poster of a QR code, a product label). ``kinds`` limits the judgement to families
(``qr``, ``datamatrix``, ``1d``, ``aztec``, ``pdf417``; a likely code's family is its
guessed kind: ``qr?``, ``datamatrix?``, ``1d?``). Besides the host's tag
(``__tag_codes``: quality ``1 - coverage``; ``__tag_codes_raw``: coverage) the op
stores ``__tag_codes_count`` (codes found), ``__tag_codes_kinds`` and
``__tag_codes_likely`` (the undecoded ones: kind, confidence, polygon). Every parameter
of the ``codes`` scorer (``working_size``, ``full_size``, ``screen``, ``rectify``,
``use_opencv``) is a parameter of the op too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ..io import DecodedImage
from ..params import Bounds, check_params
from ..registry import register_op
from ..scorers.codes import DEFAULT_MIN_CONFIDENCE, FAMILIES, coverage, family
from .base import Judgement, _fmt
from .metric import ScorerOp


@dataclass
class CodeJudgement(Judgement):
    count: int = 0
    kinds: list[str] = field(default_factory=list)
    #: the likely (undecoded) codes counted: ``{"kind", "confidence", "polygon"}`` (input pixels)
    likely: list[dict] = field(default_factory=list)
    #: every code counted (decoded first), as :class:`paddlemix_iqa.scorers.codes.Code`
    codes: list = field(default_factory=list)


@register_op("code_filter", metric="codes")
class CodeFilter(ScorerOp):
    """Drop on any code, decoded or likely (default), or when codes cover more than ``max_coverage``
    of the image; ``detect="decoded"`` counts decoded codes only."""

    def __init__(
        self,
        max_coverage: Annotated[float | None, Bounds(0.0, 1.0, threshold="coverage")] = None,
        kinds: Sequence[str] | None = None,
        min_confidence: Annotated[float, Bounds(0.0, 1.0, threshold="confidence")] = DEFAULT_MIN_CONFIDENCE,
        detect: Literal["decoded", "likely"] = "likely",
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
        if detect not in ("decoded", "likely"):
            raise ValueError(f"detect must be 'decoded' or 'likely', not {detect!r}")
        self.max_coverage = max_coverage
        self.kinds = list(kinds) if kinds else None
        self.min_confidence = min_confidence
        self.detect = detect
        # the scorer applies min_confidence, so its coverage (the tag) counts the same codes
        super().__init__(detect=detect, min_confidence=min_confidence, **kwargs)

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        verdicts = []
        for report in self.scorer.detect_batch([img.pixels for img in images]):  # tiny or flat: coverage 0
            found = report.found
            codes = [c for c in found if self.kinds is None or family(c.kind) in self.kinds]
            share = report.coverage if len(codes) == len(found) else coverage(codes, *report.shape)
            kinds = sorted({c.kind for c in codes})
            decoded = [c for c in codes if c.decoded]
            likely = [c for c in codes if not c.decoded]
            reason = None
            if self.max_coverage is None and codes:
                parts = []
                if decoded:
                    parts.append(f"{len(decoded)} code(s): {', '.join(sorted({c.kind for c in decoded}))}")
                if likely:
                    best = ", ".join(f"{c.kind} p={c.confidence:.2f}" for c in likely[:3])
                    parts.append(f"{len(likely)} code(s) detected but not decoded: {best}")
                reason = "; ".join(parts)
            elif self.max_coverage is not None and share > self.max_coverage:
                reason = f"codes cover {_fmt(share)} > {_fmt(self.max_coverage)} ({', '.join(kinds)})"
            verdicts.append(
                CodeJudgement(
                    value=share,
                    quality=1.0 - share,
                    reason=reason,
                    count=len(codes),
                    kinds=kinds,
                    likely=[
                        {
                            "kind": c.kind,
                            "confidence": round(float(c.confidence), 4),
                            "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in c.polygon],
                        }
                        for c in likely
                    ],
                    codes=codes,
                )
            )
        return verdicts

    def _decide(self, item, verdicts):
        if any(
            isinstance(v, CodeJudgement) for v in verdicts
        ):  # per image, aligned with the tag (None: unread)
            one = len(verdicts) == 1
            for name in ("count", "kinds", "likely"):
                values = [getattr(v, name) if isinstance(v, CodeJudgement) else None for v in verdicts]
                item[self.key() + "_" + name] = values[0] if one else values
        return super()._decide(item, verdicts)

    def params(self) -> dict[str, Any]:
        return {**self.thresholds(), "kinds": self.kinds, "detect": self.detect, **super().params()}
