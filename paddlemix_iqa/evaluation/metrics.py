"""The numbers of ``paddlemix-iqa eval``: per-threshold confusion tables, ROC / PR curves, bootstrap CIs.

Pure numpy, so the figures can be checked by hand and against scikit-learn (the tests do).

Conventions, fixed so that a table row says what a filter would do:

* label 1 is *positive*: a degraded image the filter should catch; 0 is clean;
* a threshold ``t`` applies to the normalised quality as a filter's ``min_score: t`` does:
  an image is *flagged* (predicted positive, rejected) iff ``quality < t``; ``quality == t``
  is kept;
* ROC and PR curves rank images by ``-quality`` (lower quality = more likely degraded), so
  AUC and average precision equal scikit-learn's ``roc_auc_score(labels, -quality)`` and
  ``average_precision_score(labels, -quality)``, ties included;
* a *chosen* threshold (target FPR, best F1) is a short decimal strictly between the
  highest flagged quality and the lowest kept one, so applying it with the ``quality < t``
  rule gives exactly the counts reported with it, however many images share a quality;
* bootstrap intervals resample positives and negatives separately (stratified), so every
  resample has both classes and the rates keep their denominators; 2.5 / 97.5 percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: rates that get a bootstrap interval in each table row
RATES = ("fpr", "tpr", "precision", "f1")
#: resampled values held at once (resamples x images) while bootstrapping
_CHUNK = 1 << 22


@dataclass(frozen=True)
class Row:
    """What ``min_score: threshold`` does to a labelled set, with bootstrap intervals of its rates."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    ci: dict[str, tuple[float | None, float | None]] = field(default_factory=dict, compare=False)

    @property
    def flagged(self) -> int:
        return self.tp + self.fp

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn)

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn)

    @property
    def precision(self) -> float | None:
        """None when nothing is flagged (there is no precision to speak of)."""
        return self.tp / self.flagged if self.flagged else None

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "flagged": self.flagged}
        out.update(tp=self.tp, fp=self.fp, tn=self.tn, fn=self.fn)
        for rate in RATES:
            out[rate] = getattr(self, rate)
            out[f"{rate}_ci"] = list(self.ci.get(rate, (None, None)))
        return out


@dataclass(frozen=True)
class GroupRows:
    """TPR of the positives of one group (``eval --by``) at each threshold; the negatives are shared."""

    value: str
    positives: int
    tp: list[int]
    tpr_ci: list[tuple[float | None, float | None]]

    @property
    def tpr(self) -> list[float]:
        return [tp / self.positives for tp in self.tp]


@dataclass
class MetricResult:
    """Everything ``eval`` reports for one metric: rows at the given thresholds, the target-FPR and
    best-F1 rows, AUC / AP with intervals, the curves, and per-group TPRs."""

    positives: int
    negatives: int
    rows: list[Row]
    target_fpr: float
    at_target: Row
    best_f1: Row
    auc: float
    ap: float
    auc_ci: tuple[float | None, float | None]
    ap_ci: tuple[float | None, float | None]
    roc: dict[str, list[float]]
    pr: dict[str, list[float]]
    groups: list[GroupRows]


# --- inputs ----------------------------------------------------------------------------------------
def _arrays(quality: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(quality, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if q.shape != y.shape:
        raise ValueError(f"{len(q)} qualities but {len(y)} labels")
    if not np.isfinite(q).all():
        raise ValueError("qualities must be finite (leave unscored images out)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (clean) or 1 (degraded)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("both classes are needed: at least one positive and one negative")
    return q, y


def _grouped(q: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct qualities ascending, each image's index among them, and positives / negatives per value."""
    values, index = np.unique(q, return_inverse=True)
    pos = np.bincount(index[y], minlength=len(values))
    neg = np.bincount(index[~y], minlength=len(values))
    return values, index, pos, neg


def _cumulative(counts: np.ndarray) -> np.ndarray:
    """Counts per distinct value (rows: resamples) -> images below each cut: column c = the c lowest values."""
    out = np.zeros((*counts.shape[:-1], counts.shape[-1] + 1), dtype=np.int64)
    np.cumsum(counts, axis=-1, out=out[..., 1:])
    return out


# --- fixed thresholds ------------------------------------------------------------------------------
def confusion(quality: Sequence[float], labels: Sequence[int], threshold: float) -> Row:
    """The counts of ``min_score: threshold``: flagged iff ``quality < threshold``."""
    q, y = _arrays(quality, labels)
    flagged = q < threshold
    tp, fp = int(np.sum(flagged & y)), int(np.sum(flagged & ~y))
    return Row(float(threshold), tp, fp, int(np.sum(~y)) - fp, int(np.sum(y)) - tp)


# --- curves ----------------------------------------------------------------------------------------
def _auc_ap(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision from counts per distinct quality (ascending; rows: resamples).

    AUC is the chance that a random positive has a lower quality than a random negative, ties
    counting half (the trapezoid under the ROC curve); AP sums precision at each distinct quality
    weighted by the recall it adds, as scikit-learn does.
    """
    n_pos, n_neg = pos.sum(axis=-1), neg.sum(axis=-1)
    neg_above = n_neg[..., None] - np.cumsum(neg, axis=-1)
    auc = (pos * (neg_above + 0.5 * neg)).sum(axis=-1) / (n_pos * n_neg)
    tp, flagged = np.cumsum(pos, axis=-1), np.cumsum(pos + neg, axis=-1)
    precision = np.divide(tp, flagged, out=np.zeros(tp.shape), where=flagged > 0)
    return auc, (pos * precision).sum(axis=-1) / n_pos


def roc_auc(quality: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of ``-quality`` (scikit-learn's ``roc_auc_score(labels, -quality)``)."""
    _, _, pos, neg = _grouped(*_arrays(quality, labels))
    return float(_auc_ap(pos, neg)[0])


def average_precision(quality: Sequence[float], labels: Sequence[int]) -> float:
    """Average precision of ``-quality`` (scikit-learn's ``average_precision_score(labels, -quality)``)."""
    _, _, pos, neg = _grouped(*_arrays(quality, labels))
    return float(_auc_ap(pos, neg)[1])


def _short_between(low: float, high: float) -> float:
    """The shortest decimal ``t`` (nearest the midpoint) with ``low < t <= high``; either end may be infinite.

    ``quality < t`` then flags exactly the qualities up to ``low``, and the user gets a
    ``min_score`` like 0.43 instead of 0.4312873.
    """
    for digits in range(18):
        scale = 10.0**digits
        if math.isinf(low):
            t = math.floor(high * scale) / scale
        elif math.isinf(high):
            t = (math.floor(low * scale) + 1) / scale
        else:
            t = round(low + (high - low) / 2, digits)
        if low < t <= high:
            return t
    return high if math.isfinite(high) else float(np.nextafter(low, math.inf))


def operating_points(
    quality: Sequence[float], labels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct way a ``min_score`` can split the set: (thresholds, TP, FP), from flagging
    nothing to flagging everything. Threshold ``j`` flags exactly the ``j`` lowest distinct qualities."""
    q, y = _arrays(quality, labels)
    values, _, pos, neg = _grouped(q, y)
    edges = [-math.inf, *values.tolist(), math.inf]
    thresholds = np.array([_short_between(edges[j], edges[j + 1]) for j in range(len(values) + 1)])
    return thresholds, _cumulative(pos), _cumulative(neg)


def roc_curve(quality: Sequence[float], labels: Sequence[int]) -> dict[str, list[float]]:
    """FPR and TPR at every operating point, with the ``min_score`` of each."""
    t, tp, fp = operating_points(quality, labels)
    return {"fpr": (fp / fp[-1]).tolist(), "tpr": (tp / tp[-1]).tolist(), "threshold": t.tolist()}


def pr_curve(quality: Sequence[float], labels: Sequence[int]) -> dict[str, list[float]]:
    """Recall and precision at every operating point that flags something, with its ``min_score``."""
    t, tp, fp = operating_points(quality, labels)
    return {
        "recall": (tp[1:] / tp[-1]).tolist(),
        "precision": (tp[1:] / (tp[1:] + fp[1:])).tolist(),
        "threshold": t[1:].tolist(),
    }


def threshold_for_fpr(quality: Sequence[float], labels: Sequence[int], max_fpr: float) -> float:
    """The ``min_score`` with FPR <= ``max_fpr`` and the highest TPR (of those, the lowest FPR)."""
    t, tp, fp = operating_points(quality, labels)
    feasible = np.flatnonzero(fp / fp[-1] <= max_fpr)  # a prefix: FP grows with the threshold
    best = int(np.argmax(tp[: feasible[-1] + 1]))  # the first cut that reaches the highest TPR
    return float(t[best])


def best_f1_threshold(quality: Sequence[float], labels: Sequence[int]) -> float:
    """The ``min_score`` with the highest F1 (of equal ones, the one that flags fewest)."""
    t, tp, fp = operating_points(quality, labels)
    f1 = 2 * tp / (tp + fp + tp[-1])
    return float(t[int(np.argmax(f1))])


def _thinned(curve: dict[str, list[float]], most: int = 1000) -> dict[str, list[float]]:
    """At most ``most`` evenly spaced points of a curve (ends kept): enough to plot, small in JSON."""
    n = len(next(iter(curve.values())))
    if n <= most:
        return curve
    keep = np.unique(np.linspace(0, n - 1, most).round().astype(int))
    return {k: [v[i] for i in keep] for k, v in curve.items()}


# --- bootstrap -------------------------------------------------------------------------------------
def _step(*sizes: int) -> int:
    """Resamples per chunk when each holds arrays of the largest of ``sizes``."""
    return max(1, _CHUNK // max(*sizes, 1))


def _resamples(
    bins: np.ndarray, n_bins: int, n: int, rng: np.random.Generator, step: int
) -> Iterator[np.ndarray]:
    """``n`` bootstrap resamples of ``bins`` (with replacement, same size) as counts per bin, ``step`` at a time."""
    size = len(bins)
    for start in range(0, n, step):
        m = min(step, n - start)
        drawn = bins[rng.integers(0, size, size=(m, size))]
        flat = (np.arange(m)[:, None] * n_bins + drawn).ravel()
        yield np.bincount(flat, minlength=m * n_bins).reshape(m, n_bins)


def _interval(samples: np.ndarray) -> list[tuple[float | None, float | None]]:
    """2.5 / 97.5 percentiles of each column, ignoring NaN (a precision with nothing flagged)."""
    out = []
    for column in np.atleast_2d(samples.T):
        finite = column[np.isfinite(column)]
        if finite.size:
            low, high = np.percentile(finite, [2.5, 97.5])
            out.append((float(low), float(high)))
        else:
            out.append((None, None))
    return out


def _rates(tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> dict[str, np.ndarray]:
    flagged = tp + fp
    precision = np.where(flagged > 0, tp / np.maximum(flagged, 1), np.nan)
    return {
        "fpr": fp / n_neg,
        "tpr": tp / n_pos,
        "precision": precision,
        "f1": 2 * tp / (tp + fp + n_pos),
    }


# --- everything for one metric ---------------------------------------------------------------------
def evaluate(
    quality: Sequence[float],
    labels: Sequence[int],
    thresholds: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95),
    target_fpr: float = 0.05,
    bootstrap: int = 1000,
    seed: int = 0,
    groups: Sequence[str | None] | None = None,
) -> MetricResult:
    """The tables, curves and intervals of one metric's qualities on labelled images.

    ``groups`` (one value per image, used for positives only) splits the TPR by a record
    column (``eval --by``); ``bootstrap=0`` leaves every interval empty. The same ``seed``
    gives the same intervals.
    """
    q, y = _arrays(quality, labels)
    values, index, pos, neg = _grouped(q, y)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    at_target = threshold_for_fpr(q, y, target_fpr)
    at_f1 = best_f1_threshold(q, y)
    every = np.array([*thresholds, at_target, at_f1], dtype=np.float64)
    cut = np.searchsorted(values, every, side="left")  # distinct qualities below each threshold

    point_tp, point_fp = _cumulative(pos)[cut], _cumulative(neg)[cut]
    auc, ap = (float(v) for v in _auc_ap(pos, neg))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in (*RATES, "auc", "ap")}
    if bootstrap:
        step = _step(n_pos, n_neg, len(values))  # the same for both classes: chunks pair up
        for boot_pos, boot_neg in zip(
            _resamples(index[y], len(values), bootstrap, rng, step),
            _resamples(index[~y], len(values), bootstrap, rng, step),
            strict=True,
        ):
            boot_tp, boot_fp = _cumulative(boot_pos)[:, cut], _cumulative(boot_neg)[:, cut]
            for name, value in _rates(boot_tp, boot_fp, n_pos, n_neg).items():
                samples[name].append(value)
            for name, value in zip(("auc", "ap"), _auc_ap(boot_pos, boot_neg), strict=True):
                samples[name].append(value[:, None])
    intervals = {
        name: _interval(np.concatenate(parts))
        if parts
        else [(None, None)] * (len(every) if name in RATES else 1)
        for name, parts in samples.items()
    }
    rows = [
        Row(
            float(t),
            int(tp),
            int(fp),
            n_neg - int(fp),
            n_pos - int(tp),
            {rate: intervals[rate][i] for rate in RATES},
        )
        for i, (t, tp, fp) in enumerate(zip(every, point_tp, point_fp, strict=True))
    ]
    return MetricResult(
        positives=n_pos,
        negatives=n_neg,
        rows=rows[: len(thresholds)],
        target_fpr=float(target_fpr),
        at_target=rows[-2],
        best_f1=rows[-1],
        auc=auc,
        ap=ap,
        auc_ci=intervals["auc"][0],
        ap_ci=intervals["ap"][0],
        roc=_thinned(roc_curve(q, y)),
        pr=_thinned(pr_curve(q, y)),
        groups=_group_rows(q, y, groups, every, bootstrap, rng) if groups is not None else [],
    )


def _group_rows(
    q: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str | None],
    thresholds: np.ndarray,
    bootstrap: int,
    rng: np.random.Generator,
) -> list[GroupRows]:
    """TPR of each group's positives at ``thresholds``, each group resampled on its own."""
    labels = np.array(["(none)" if g is None else str(g) for g in groups], dtype=object)
    if len(labels) != len(q):
        raise ValueError(f"{len(labels)} group values but {len(q)} qualities")
    order = np.sort(thresholds)
    back = np.argsort(np.argsort(thresholds, kind="stable"), kind="stable")
    out = []
    for value in sorted(set(labels[y])):
        members = q[y & (labels == value)]
        # bin b: flagged from sorted threshold b on (the thresholds above its quality)
        bins = np.searchsorted(order, members, side="right")
        tp = _cumulative(np.bincount(bins, minlength=len(order) + 1))[1 : len(order) + 1]
        ci: list[tuple[float | None, float | None]] = [(None, None)] * len(order)
        if bootstrap:
            step = _step(len(members), len(order) + 1)
            parts = [
                _cumulative(counts)[:, 1 : len(order) + 1] / len(members)
                for counts in _resamples(bins, len(order) + 1, bootstrap, rng, step)
            ]
            ci = _interval(np.concatenate(parts))
        out.append(GroupRows(value, len(members), [int(tp[i]) for i in back], [ci[i] for i in back]))
    return out
