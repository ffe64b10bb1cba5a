"""Host-compatible item functions with the exact signatures of PaddleMIX DataCopilot's IQA ops.

``dataset.filter(functools.partial(iqa_brisque, min_score=0.6))`` works as with the
host, but batched scorers, lazy weights and bad-image handling come from this package.
"""

from __future__ import annotations

import functools
from typing import Any

from .metric import MetricFilter


@functools.lru_cache(maxsize=64)
def _op(metric: str, min_score: float, max_score: float, key: str) -> MetricFilter:
    return MetricFilter(metric, min_score=min_score, max_score=max_score, key=key, name=f"iqa_{metric}")


def _keep(metric: str, item: dict[str, Any], min_score: float, max_score: float, key: str) -> bool:
    return _op(metric, float(min_score), float(max_score), key)(item) is not None


def iqa_brisque(
    item: dict[str, Any], min_score: float = 0.0, max_score: float = 1.0, key: str = "image"
) -> bool:
    """Keep when BRISQUE quality ``(100 - clip(s, 0, 100)) / 100`` is in [min_score, max_score]."""
    return _keep("brisque", item, min_score, max_score, key)


def iqa_arniqa(
    item: dict[str, Any], min_score: float = 0.0, max_score: float = 1.0, key: str = "image"
) -> bool:
    """Keep when the ARNIQA quality (scaled to [0, 1] by the regressor's dataset range) is in range."""
    return _keep("arniqa", item, min_score, max_score, key)
