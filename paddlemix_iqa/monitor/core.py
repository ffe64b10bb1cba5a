"""``monitor run``: score new images of a source with a registered scorer, keep the series, send alerts.

One pass: list the images (CSV rows or folder files), skip those already in the store,
decode them through :mod:`paddlemix_iqa.io` and score them in batches with
:func:`paddlemix_iqa.scorers.get_scorer` (an unreadable or unscorable image is stored with
its reason and logged), then run :func:`~paddlemix_iqa.monitor.detect.detect` over each
touched source's whole series and send the alerts the store has not seen. ``watch``
repeats passes until a bound (count, seconds) or Ctrl-C.

The threshold is the filters' rule (:func:`paddlemix_iqa.ops.base.range_reason`): on the
normalised quality (``min_score`` of ``<metric>_filter``) by default, or on the native value
(``min_value``, or ``max_value`` for a lower-is-better metric) with ``scale="value"``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .detect import Detection, DetectorSettings, detect
from .sources import Frame, Problem, SourceError, read_csv, read_folder
from .store import Store

log = logging.getLogger("paddlemix_iqa.monitor")

#: the default metric: it tracks dust, haze and blur best of the weight-free scorers (docs/monitor.md)
DEFAULT_METRIC = "gradient_mean"
DEFAULT_THRESHOLD = 0.5  # quality: the filters' min_score 0.5, where each scorer's midpoint lies
ALERT_KEYS = ("source", "timestamp", "kind", "metric", "value")


@dataclass
class MonitorSettings:
    metric: str = DEFAULT_METRIC
    scorer_params: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = DEFAULT_THRESHOLD
    scale: str = "quality"  # "quality" (normalised, 0..1, higher is better) or "value" (native)
    detector: DetectorSettings = field(default_factory=DetectorSettings)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "detector": asdict(self.detector)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MonitorSettings:
        return cls(**{**data, "detector": DetectorSettings(**data.get("detector", {}))})


class Monitor:
    """The scorer, the threshold rule and the detector of one metric, over one store."""

    def __init__(
        self,
        store: Store,
        settings: MonitorSettings,
        workers: int = 2,
        batch_size: int = 16,
        save: bool = True,
    ):
        from ..params import check_threshold
        from ..scorers import get_scorer

        if settings.scale not in ("quality", "value"):
            raise ValueError(f"scale must be 'quality' or 'value', not {settings.scale!r}")
        settings.detector.check()
        self.store, self.settings = store, settings
        self.scorer = get_scorer(settings.metric, **settings.scorer_params)
        self.scorer.check_weights()
        bounds = None
        if settings.scale == "quality":
            from ..params import Bounds

            bounds = Bounds(0.0, 1.0)
        check_threshold("threshold", settings.threshold, f"{settings.scale} ({settings.metric})", bounds)
        self.flip = settings.scale == "value" and not self.scorer.higher_is_better
        self.workers, self.batch_size = max(1, workers), max(1, batch_size)
        if save:  # what the report draws with
            store.save_settings(settings.metric, settings.to_json())

    # --- scales ----------------------------------------------------------------------------
    def value(self, quality: float | None, native: float | None) -> float | None:
        """A point on the detector's scale (higher is better)."""
        if self.settings.scale == "quality":
            return quality
        return None if native is None else (-native if self.flip else native)

    def shown(self, value: float) -> float:
        """A detector-scale value as users read it (the native value for a lower-is-better metric)."""
        return -value if self.flip else value

    def failing(self, value: float) -> str | None:
        """Why a detector-scale value fails the threshold (the filters' range rule), None when it passes."""
        from ..ops.base import range_reason

        t = self.settings.threshold
        if t is None:
            return None
        if self.settings.scale == "quality":
            return range_reason(f"{self.settings.metric} quality", value, t, None)
        native = self.shown(value)
        label = self.scorer.value_label
        return range_reason(label, native, None, t) if self.flip else range_reason(label, native, t, None)

    # --- scoring ---------------------------------------------------------------------------
    def score(self, frames: list[Frame]) -> list[dict[str, Any]]:
        """Rows for the store: quality and native score, or the reason the image has none."""
        from ..io import decode_or_error

        side = self.scorer.decode_side
        with ThreadPoolExecutor(self.workers) as pool:
            loaded = list(pool.map(lambda f: decode_or_error(f.path, max_side=side), frames))
        rows, todo = [], []
        for frame, image in zip(frames, loaded, strict=True):
            row = {"source": frame.source, "path": frame.path, "time": frame.iso, "epoch": frame.epoch}
            rows.append(row)
            if isinstance(image, Exception):
                row["error"] = getattr(image, "reason", str(image))
                continue
            reason = self.scorer.check_image(image.pixels)
            if reason:
                row["error"] = f"{self.settings.metric}: {reason}"
                continue
            todo.append((row, image.pixels))
        if todo:
            try:
                native = [float(v) for v in self.scorer.score_batch([px for _, px in todo])]
            except Exception as exc:  # noqa: BLE001 - a scorer bug on one batch must not stop a monitor
                log.exception("scoring failed")
                for row, _ in todo:
                    row["error"] = f"{self.settings.metric}: scoring failed: {type(exc).__name__}: {exc}"
                return rows
            quality = [float(q) for q in self.scorer.normalize(native)]
            for (row, _), v, q in zip(todo, native, quality, strict=True):
                if math.isfinite(v) and math.isfinite(q):
                    row["native"], row["quality"] = v, q
                else:
                    row["error"] = f"{self.settings.metric}: not_finite"
        return rows

    def add(self, frames: list[Frame]) -> tuple[int, int, set[str]]:
        """Score and store new frames; (scored, unreadable, sources touched)."""
        metric = self.settings.metric
        scored = bad = 0
        touched: set[str] = set()
        for start in range(0, len(frames), self.batch_size):
            rows = self.score(frames[start : start + self.batch_size])
            self.store.add_frames(metric, rows)
            for row in rows:
                touched.add(row["source"])
                if row.get("error"):
                    bad += 1
                    log.warning("unreadable image %s (%s): %s", row["path"], row["source"], row["error"])
                else:
                    scored += 1
        return scored, bad, touched

    # --- detection -------------------------------------------------------------------------
    def detection(self, source: str) -> tuple[list[tuple[str, float, float, str]], Detection]:
        """The readable points of a source ((time, epoch, value, path), in time order) and their detection."""
        points = []
        for when, epoch, quality, native, path, error in self.store.series(self.settings.metric, source):
            value = None if error else self.value(quality, native)
            if value is not None and math.isfinite(value):
                points.append((when, epoch, value, path))
        found = detect([p[1] for p in points], [p[2] for p in points], self.settings.detector, self.failing)
        return points, found

    def new_alerts(self, sources: set[str]) -> list[dict[str, Any]]:
        """Alerts of ``sources`` not sent before (recorded as sent now), in time order."""
        fresh = []
        for source in sorted(sources):
            points, found = self.detection(source)
            for event in found.alerts:
                when, epoch, value, path = points[event.index]
                alert = {
                    "source": source,
                    "timestamp": when,
                    "kind": event.kind,
                    "metric": self.settings.metric,
                    "value": round(self.shown(value), 6),
                    "epoch": epoch,
                }
                if self.store.add_alert(self.settings.metric, alert, path, event.detail):
                    fresh.append({**alert, "path": path, "detail": event.detail})
        return sorted(fresh, key=lambda a: a["epoch"])


# --- alert outputs ---------------------------------------------------------------------------
class Alerter:
    """Sends an alert as a JSON line (``emit``), optionally a log-file line and a webhook POST."""

    def __init__(
        self,
        emit: Callable[[str], None],
        log_file: str | Path | None = None,
        webhook: str | None = None,
        webhook_timeout: float = 5.0,
        webhook_token: str | None = None,
    ):
        if webhook is not None and not re.match(r"https?://", webhook):
            raise ValueError(f"webhook must be an http:// or https:// URL, not {webhook!r}")
        self.emit, self.webhook, self.timeout, self.token = emit, webhook, webhook_timeout, webhook_token
        self.log_file = Path(log_file) if log_file else None
        self.failures = 0

    def send(self, alert: dict[str, Any]) -> None:
        body = {k: alert[k] for k in ALERT_KEYS}
        line = json.dumps(body)
        self.emit(line)
        if self.log_file is not None:
            text = (
                f"{alert['timestamp']} {alert['kind'].upper()} source={alert['source']} "
                f"{alert['metric']}={alert['value']:.4g} {alert.get('detail', '')} ({alert.get('path', '')})"
            )
            with self.log_file.open("a", encoding="utf-8") as handle:
                handle.write(text.rstrip() + "\n")
        if self.webhook:
            self._post(line.encode())

    def _post(self, data: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "paddlemix-iqa-monitor"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            request = urllib.request.Request(self.webhook, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                    response.read(65536)
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if attempt == 2:
                    self.failures += 1
                    log.error("webhook %s failed: %s", self.webhook, exc)


# --- one pass, and watching ------------------------------------------------------------------
@dataclass
class PassSummary:
    listed: int = 0
    scored: int = 0
    unreadable: int = 0
    problems: int = 0
    alerts: int = 0


def list_new(
    source: Path, store: Store, metric: str, pattern: re.Pattern[str] | None, root: Path | None, settle: float
) -> tuple[list[Frame], list[Problem]]:
    """Frames of ``source`` not yet in the store (a folder's files younger than ``settle`` s wait)."""
    if source.is_dir():
        skip = store.known_paths(metric)
        now = time.time()
        frames = []
        for frame in read_folder(source, pattern, skip):
            try:
                age = now - Path(frame.path).stat().st_mtime
            except OSError:
                age = settle
            if age >= settle:  # a file still being written is read on the next pass
                frames.append(frame)
        return frames, []
    if not source.is_file():
        raise SourceError(f"{source} is neither a CSV file nor a folder")
    known = store.known(metric)
    frames, problems = [], []
    for item in read_csv(source, pattern, root):
        if isinstance(item, Problem):
            problems.append(item)
        elif (item.source, item.path, item.iso) not in known:
            frames.append(item)
    return frames, problems


def run_pass(
    monitor: Monitor,
    alerter: Alerter,
    source: Path,
    pattern: re.Pattern[str] | None = None,
    root: Path | None = None,
    settle: float = 0.0,
) -> PassSummary:
    summary = PassSummary()
    frames, problems = list_new(source, monitor.store, monitor.settings.metric, pattern, root, settle)
    for problem in problems:
        if monitor.store.add_problem(str(source), problem.where, problem.reason):
            summary.problems += 1
            log.warning("skipped %s: %s", problem.where, problem.reason)
    frames.sort(key=lambda f: (f.epoch, f.path))
    summary.listed = len(frames)
    summary.scored, summary.unreadable, touched = monitor.add(frames)
    for alert in monitor.new_alerts(touched):
        alerter.send(alert)
        summary.alerts += 1
    return summary


def watch(
    monitor: Monitor,
    alerter: Alerter,
    source: Path,
    *,
    pattern: re.Pattern[str] | None = None,
    root: Path | None = None,
    interval: float = 5.0,
    settle: float = 1.0,
    max_passes: int | None = None,
    duration: float | None = None,
) -> PassSummary:
    """Passes every ``interval`` s until ``max_passes`` or ``duration`` s (None: until Ctrl-C)."""
    total = PassSummary()
    start = time.monotonic()
    passes = 0
    while True:
        one = run_pass(monitor, alerter, source, pattern, root, settle)
        for name in ("listed", "scored", "unreadable", "problems", "alerts"):
            setattr(total, name, getattr(total, name) + getattr(one, name))
        passes += 1
        if max_passes is not None and passes >= max_passes:
            return total
        left = None if duration is None else duration - (time.monotonic() - start)
        if left is not None and left <= 0:
            return total
        time.sleep(interval if left is None else max(0.0, min(interval, left)))
