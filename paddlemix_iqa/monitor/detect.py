"""Alerts from one source's time series: threshold crossing, drift from baseline, recovery.

Pure computation over ``(time, value)`` points (no I/O), so the same function serves
``monitor run`` (which emits the alerts) and ``monitor report`` (which draws them), and a rerun
recomputes exactly what the first run saw.

``value`` is on the threshold's scale and higher is better (the scorer's normalised quality,
or its native value with the sign turned for lower-is-better metrics). Per source:

* **baseline**: a rolling median over the last ``window`` seconds (and at least ``min_points``
  points) with the noise's sigma read from the last ``NOISE_POINTS`` points as 1.4826 x the
  median absolute successive difference / sqrt 2 (blind to a slowly moving level; at least
  ``sigma_floor`` x |median|: a few points can make a MAD far too small), updated
  only while no change is suspected (both CUSUM statistics at 0), so a slow drift does not
  drag it along. It is learnt from the first ``min_points`` points spanning at least half a
  window, and again after every recovery.
* **drift**: a one-sided (downward) CUSUM on the standardised residuals
  ``z = (x - baseline) / sigma``, clipped to +-``clip_z`` (one misty frame moves it little):
  ``S = max(0, S - z - k)``, alert when ``S > h``. The change
  point is the last point where S was 0 (Page's estimate). An upward CUSUM past 2h only
  re-learns the baseline (a brighter season, a moved camera), without an alert.
* **threshold**: ``confirm`` of the last ``confirm + 1`` points fail the threshold, the
  newest among them (the filters' rule, :func:`paddlemix_iqa.ops.base.range_reason`); the
  alert carries the first failing one. One odd frame is not an alert; a camera hovering
  at the threshold with noise is caught without waiting for two bad days in a row.
* **recovery**, after a drift or threshold alert: ``confirm`` consecutive points that pass the
  threshold and either lie within ``recovery_z`` sigmas of the pre-alert baseline or jump
  ``jump_z`` sigmas above the degraded level (the median of the last 3 points before) and at
  least halfway back to the baseline (a cleaning); the alert carries the first of them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

DAY = 86400.0
NOISE_POINTS = 60  # the noise's spread is read over this many points (the level over the window)


@dataclass(frozen=True)
class DetectorSettings:
    """Every knob of the detector (the CLI's ``--window`` ... flags); stored with the series."""

    window: float = 14 * DAY  # the rolling median baseline spans this much history ...
    min_points: int = 10  # ... and at least this many points (also needed before drift detection starts)
    cusum_k: float = 1.0  # allowance, in sigmas: drifts smaller than k sigma are ignored
    cusum_h: float = 8.0  # decision interval, in sigmas: larger h = fewer false alarms, later alerts
    sigma_floor: float = 0.03  # the baseline's spread is at least this fraction of |baseline|
    confirm: int = (
        2  # points that must agree before a threshold (of confirm + 1) or recovery (in a row) alert
    )
    recovery_z: float = 3.0  # a point within this many sigmas of the old baseline is recovered
    jump_z: float = 6.0  # ... or one this many sigmas above the degraded level (a cleaning)
    clip_z: float = 3.0  # residuals are clipped to +-clip_z sigmas: one odd frame (mist) moves CUSUM little
    drift: bool = True  # False: threshold and recovery alerts only

    def check(self) -> DetectorSettings:
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ValueError(f"window must be a positive duration, not {self.window}")
        for name in ("min_points", "confirm"):
            if not 1 <= getattr(self, name) <= 10_000:
                raise ValueError(f"{name} must be 1..10000, not {getattr(self, name)}")
        for name in ("cusum_k", "cusum_h", "sigma_floor", "recovery_z", "jump_z", "clip_z"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value}")
        return self


@dataclass
class Event:
    """An alert or a change point; ``index`` is the point it is dated at, ``at`` the point that decided it."""

    kind: str  # "threshold" | "drift" | "recovery" (alerts); "change" (change points, drawn only)
    index: int
    at: int
    value: float
    detail: str = ""


@dataclass
class Detection:
    alerts: list[Event] = field(default_factory=list)
    changes: list[Event] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)  # per point; NaN while learning
    cusum: list[float] = field(default_factory=list)  # the downward statistic per point


def _robust(values: Sequence[float], noise: Sequence[float], floor: float) -> tuple[float, float]:
    """The median of ``values`` and the noise's sigma, from ``noise`` (a longer run of the series):
    1.4826 x the median absolute successive difference / sqrt 2, blind to a slowly moving level;
    at least ``floor`` x |median|."""
    median = float(np.median(np.asarray(values, dtype=np.float64)))
    steps = np.abs(np.diff(np.asarray(noise, dtype=np.float64)))
    spread = 1.4826 * float(np.median(steps)) / math.sqrt(2) if steps.size else 0.0
    return median, max(spread, floor * abs(median), 1e-12)


def detect(
    times: Sequence[float],
    values: Sequence[float],
    settings: DetectorSettings,
    failing: Callable[[float], str | None] | None = None,
) -> Detection:
    """Alerts and change points of one series, ``times`` ascending (seconds), ``values`` finite.

    ``failing(value)`` says why a value fails the threshold (None: it passes); without it, no
    threshold alerts.
    """
    s = settings
    out = Detection()
    learning = True
    history: deque[tuple[float, float]] = deque()  # (time, value): the rolling window of the baseline
    noise: deque[float] = deque(maxlen=NOISE_POINTS)  # a longer run, for the noise's spread
    base, sigma = math.nan, math.nan
    low = high = 0.0
    low_start = high_start = 0
    drifted = below = False
    alerted_base = math.nan  # the baseline when the first open alert fired
    failing_run: list[int] = []
    recovering_run: list[int] = []
    recent: deque[float] = deque(maxlen=3)  # the last points, for the degraded level

    def relearn(i: int) -> None:
        nonlocal learning, low, high
        history.clear()
        noise.clear()
        history.append((times[i], values[i]))
        noise.append(values[i])
        learning, low, high = True, 0.0, 0.0

    for i, (t, x) in enumerate(zip(times, values, strict=True)):
        reason = failing(x) if failing is not None else None
        # --- recovery of an open alert
        if drifted or below:
            level = float(np.median(recent)) if recent else x
            ref = alerted_base
            near = math.isfinite(ref) and x >= ref - s.recovery_z * sigma
            jump = x - level >= s.jump_z * sigma and (not math.isfinite(ref) or x >= (level + ref) / 2)
            if reason is None and (near or jump or not math.isfinite(ref)):
                recovering_run.append(i)
            else:
                recovering_run.clear()
            if len(recovering_run) >= s.confirm:
                first = recovering_run[0]
                out.alerts.append(Event("recovery", first, i, values[first], "back to normal"))
                out.changes.append(Event("change", first, i, values[first], "up"))
                drifted = below = False
                recovering_run.clear()
                failing_run.clear()
                relearn(first)
                for j in range(first + 1, i + 1):
                    history.append((times[j], values[j]))
                    noise.append(values[j])
                recent.append(x)
                out.baseline.append(base)
                out.cusum.append(0.0)
                continue
        # --- threshold
        failing_run = [j for j in failing_run if j > i - s.confirm - 1]  # the last confirm + 1 points
        if reason is not None and not below:
            failing_run.append(i)
            if len(failing_run) >= s.confirm:
                first = failing_run[0]
                out.alerts.append(
                    Event("threshold", first, i, values[first], failing(values[first]) or reason)
                )
                if not drifted:
                    alerted_base = base
                below = True
                failing_run.clear()
        # --- baseline and drift
        if learning:
            history.append((t, x))
            noise.append(x)
            span = history[-1][0] - history[0][0]
            if len(history) >= s.min_points and span >= s.window / 2:
                base, sigma = _robust([v for _, v in history], noise, s.sigma_floor)
                learning = False
        elif not drifted:
            z = min(max((x - base) / sigma, -s.clip_z), s.clip_z)
            new_low = max(0.0, low - z - s.cusum_k)
            new_high = max(0.0, high + z - s.cusum_k)
            if low == 0.0 and new_low > 0:
                low_start = i
            if high == 0.0 and new_high > 0:
                high_start = i
            low, high = new_low, new_high
            if s.drift and low > s.cusum_h and not below:
                out.alerts.append(
                    Event("drift", i, i, x, f"CUSUM {low:.1f} > {s.cusum_h:g} below baseline {base:.4g}")
                )
                out.changes.append(Event("change", low_start, i, values[low_start], "down"))
                drifted = True
                alerted_base = base
            elif s.drift and low > s.cusum_h and below:  # the threshold already said it
                out.changes.append(Event("change", low_start, i, values[low_start], "down"))
                drifted = True
            elif high > 2 * s.cusum_h:  # a lasting rise (twice the evidence): no alert, a new baseline
                out.changes.append(Event("change", high_start, i, values[high_start], "up"))
                relearn(high_start)
                for j in range(high_start + 1, i + 1):
                    history.append((times[j], values[j]))
                    noise.append(values[j])
            else:  # every point counts for the spread (keeping only calm ones would shrink it)
                history.append((t, x))
                noise.append(x)
                while len(history) > s.min_points and history[0][0] < t - s.window:
                    history.popleft()
                if low == 0.0 and high == 0.0:  # the level moves only while nothing is suspected
                    base, sigma = _robust([v for _, v in history], noise, s.sigma_floor)
        recent.append(x)
        out.baseline.append(base)
        out.cusum.append(low)
    return out
