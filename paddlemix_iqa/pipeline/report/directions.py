"""Which way is "worse", per metric: the one place the report decides what its worst and best strips show.

The rules, in order:

1. A metric with a quality column (every metric op: scorers map their native
   score to quality in [0, 1], higher is better, whatever the native direction;
   ``codes`` stores quality ``1 - coverage``) is ranked by quality: worst = lowest.
2. Geometry metrics are ranked against the op's thresholds, on a log scale
   (a ratio of 1/8 is as far off as 8): ``resolution`` (the short side),
   ``file_size`` and ``aspect_ratio``. Worst = farthest outside the accepted
   range, then (inside it) closest to a bound; best = deepest inside. Without
   thresholds, ``resolution`` and ``file_size`` rank smaller as worse and
   ``aspect_ratio`` ranks farther from square (1:1) as worse.
3. Code metrics without a quality column (``codes`` coverage, ``codes_count``):
   more is worse.
4. Any other metric asks its scorer class (``Scorer.higher_is_better``); an
   unknown metric counts as higher-is-better.

A threshold line bounds the range from below when its label names a ``min_...``
parameter and from above when it names ``max_...`` (the run.json ``lines`` format).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: geometry metrics ranked against their thresholds: metric -> centre used when there are none
#: (None: smaller is worse)
RANGE_METRICS: dict[str, float | None] = {"resolution": None, "file_size": None, "aspect_ratio": 1.0}
#: metrics where more is worse (when they have no quality column)
LOWER_IS_BETTER = {"codes", "codes_count"}


@dataclass(frozen=True)
class Direction:
    """How to rank one metric: ``kind`` on ``scale`` ("value" or "quality")."""

    kind: Literal["higher", "lower", "range"]
    scale: Literal["value", "quality"] = "value"
    log: bool = False  # compare on a log scale (geometry metrics)
    centre: float | None = None  # range metric with no thresholds: farther from this is worse

    def describe(self, metric: str) -> str:
        if self.scale == "quality":
            return "ranked by quality (0..1, higher is better): worst = lowest quality"
        if self.kind == "higher":
            return f"higher {metric} is better: worst = lowest"
        if self.kind == "lower":
            return f"lower {metric} is better: worst = highest"
        return (
            "ranked against the thresholds: worst = farthest outside the accepted range "
            "(or closest to a bound), best = deepest inside"
            + (f"; without thresholds, farthest from {self.centre:g}" if self.centre is not None else "")
        )


def direction(metric: str, has_quality: bool) -> Direction:
    """The ranking of ``metric`` (see the module docstring for the rules)."""
    if has_quality:
        return Direction("higher", "quality")
    if metric in RANGE_METRICS:
        return Direction("range", log=True, centre=RANGE_METRICS[metric])
    if metric in LOWER_IS_BETTER:
        return Direction("lower")
    return Direction("higher" if native_higher_is_better(metric) else "lower")


def native_higher_is_better(metric: str) -> bool:
    """Whether a larger native value is better: the scorer class says so; geometry and codes are known."""
    if metric in LOWER_IS_BETTER:
        return False
    if metric in RANGE_METRICS or metric == "decodable":
        return True
    from ...scorers import scorer_class

    try:
        return bool(scorer_class(metric).higher_is_better)
    except Exception:  # noqa: BLE001 - an unknown or unimportable scorer: the usual convention
        return True


def bounds(lines: list[dict], scale: str = "value") -> tuple[float | None, float | None]:
    """(low, high) of the accepted range from threshold lines on ``scale``: the tightest ``min_``/``max_``."""
    lows = [ln["x"] for ln in lines if ln["scale"] == scale and _param(ln).startswith("min")]
    highs = [ln["x"] for ln in lines if ln["scale"] == scale and _param(ln).startswith("max")]
    return (max(lows) if lows else None, min(highs) if highs else None)


def _param(line: dict) -> str:
    return str(line.get("label", "")).split("=")[0].strip().lower()


def _log(x: np.ndarray | float) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, dtype=np.float64), 1e-12))


def badness(way: Direction, key: np.ndarray, lines: list[dict]) -> np.ndarray:
    """A score per image where larger is worse (the strips sort on it)."""
    key = np.asarray(key, dtype=np.float64)
    if way.kind == "higher":
        return -key
    if way.kind == "lower":
        return key
    low, high = bounds(lines, way.scale)
    if low is None and high is None:
        if way.centre is None:
            return -key
        low = high = way.centre
    t = _log(key) if way.log else key
    out = np.full(t.shape, -math.inf)
    if low is not None:
        out = np.maximum(out, (_log(low) if way.log else low) - t)
    if high is not None:
        out = np.maximum(out, t - (_log(high) if way.log else high))
    return out


def distance_to_lines(
    way: Direction, values: np.ndarray, quality: np.ndarray | None, lines: list[dict]
) -> np.ndarray | None:
    """Each image's distance to the nearest threshold, each line on its own scale (None: no lines)."""
    best = None
    for line in lines:
        data = quality if line["scale"] == "quality" else values
        if data is None:
            continue
        use_log = way.log and line["scale"] == "value" and line["x"] > 0
        d = np.abs((_log(data) - _log(line["x"])) if use_log else (data - line["x"]))
        best = d if best is None else np.minimum(best, d)
    return best
