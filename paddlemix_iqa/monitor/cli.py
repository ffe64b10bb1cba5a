"""``paddlemix-iqa monitor run | report | demo``: a metric's time series per camera, and its alerts.

Kept light: the parser is built on every ``paddlemix-iqa`` start, so everything heavy is
imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import re
import sys

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_UNSET = object()  # --threshold not given (None means "none": no threshold alerts)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration(text: str) -> float:
    """``7d``, ``36h``, ``90m``, ``45s`` or plain seconds -> seconds."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhdw]?)\s*", text or "")
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 7d, 36h, 90m, 600)")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _threshold(text: str) -> float | None:
    if text.strip().lower() in ("none", "off", "null", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or 'none')") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "run",
        help="score new images of a CSV or folder, store the series, print alerts as JSON lines",
        description=(
            "Score the images of SOURCE that the database has not seen, keep each source's series "
            "in SQLite and print every new alert as one JSON line on stdout: "
            '{"source", "timestamp", "kind": "threshold"|"drift"|"recovery", "metric", "value"}. '
            "Run it again (cron) or with --watch: nothing is scored or alerted twice."
        ),
    )
    p.add_argument("source", help="a CSV with columns path,timestamp[,source], or a folder of images")
    p.add_argument("--db", default="monitor.db", help="the SQLite state file (default: monitor.db)")
    p.add_argument(
        "--metric", default=None, help="a registered scorer (default: gradient_mean, see docs/monitor.md)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a scorer parameter, e.g. --param working_size=1024 (repeatable)",
    )
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--threshold",
        type=_threshold,
        default=_UNSET,
        metavar="Q",
        help="alert when the normalised quality (0..1, higher is better) falls below Q: the filters' "
        "min_score (default 0.5; 'none' for no threshold alerts)",
    )
    scale.add_argument(
        "--threshold-value",
        type=_threshold,
        default=None,
        metavar="V",
        help="the threshold on the native value instead: the filters' min_value (max_value for a "
        "lower-is-better metric); the series, drift and alerts are then on the native scale",
    )
    p.add_argument("--window", type=duration, default=duration("14d"), help="baseline window (default 14d)")
    p.add_argument("--min-points", type=int, default=10, help="points needed for a baseline (default 10)")
    p.add_argument("--cusum-k", type=float, default=1.0, help="CUSUM allowance in sigmas (default 1)")
    p.add_argument("--cusum-h", type=float, default=8.0, help="CUSUM decision interval in sigmas (default 8)")
    p.add_argument(
        "--sigma-floor",
        type=float,
        default=0.02,
        help="the baseline's spread is at least this fraction of the baseline (default 0.03)",
    )
    p.add_argument(
        "--confirm",
        type=int,
        default=2,
        help="images that must agree: a threshold alert needs N of the last N+1 below, a recovery N in a row (default 2)",
    )
    p.add_argument("--no-drift", action="store_true", help="threshold and recovery alerts only")
    p.add_argument(
        "--source-pattern",
        metavar="REGEX",
        help="camera id from the image path (relative to the folder or as in the CSV): the group "
        "'source' or the first group; default: the image's folder name",
    )
    p.add_argument("--root", help="folder that relative CSV paths are joined to (default: the CSV's folder)")
    p.add_argument("--watch", action="store_true", help="keep following SOURCE for new images")
    p.add_argument("--interval", type=duration, default=5.0, help="seconds between passes with --watch")
    p.add_argument("--settle", type=duration, default=1.0, help="a file younger than this is read next pass")
    p.add_argument("--max-passes", type=int, help="with --watch: stop after N passes")
    p.add_argument("--duration", type=duration, help="with --watch: stop after this long (e.g. 10m)")
    p.add_argument("--log-file", help="also append each alert as a readable line to this file")
    p.add_argument("--webhook", metavar="URL", help="also POST each alert's JSON to this URL")
    p.add_argument("--webhook-token", help="bearer token for the webhook (else $PADDLEMIX_IQA_WEBHOOK_TOKEN)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")

    p = sub.add_parser(
        "report",
        help="plot each source's series with threshold, alerts and change points (HTML + PNG)",
        description="Draw each source's metric over time from the database (PNGs in an HTML page).",
    )
    p.add_argument("--db", default="monitor.db", help="the SQLite state file (default: monitor.db)")
    p.add_argument("--out", default="monitor_report", help="output folder (default: monitor_report)")

    p = sub.add_parser(
        "demo",
        help="generate a dusty camera (60 days, cleaned once) and a stable one, to try the monitor on",
        description=(
            "Write OUT/frames/<camera>/*.jpg (EXIF dated), OUT/frames.csv and OUT/truth.json: a fixed "
            "scene whose lens gathers dust (blur, haze, specks), is cleaned, and a stable camera."
        ),
    )
    p.add_argument("out", nargs="?", default="monitor_demo", help="output folder (default: monitor_demo)")
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--photo", help="the dusty camera's scene (default: a shared COCO photo, else scikit-image)"
    )


def _params(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param needs KEY=VALUE, not {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"paddlemix-iqa monitor: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    command = args.monitor_command
    if command == "demo":
        return _demo(args)
    if command == "report":
        return _report(args)
    return _run(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import build_demo

    if args.days < 2:
        return _fail("--days must be at least 2")
    summary = build_demo(args.out, days=args.days, seed=args.seed, photo=args.photo)
    dusty = summary["truth"]["cameras"]["cam-dusty"]
    print(f"demo: {summary['frames']} frames in {summary['dir']}/frames.csv (truth in truth.json)")
    print(
        f"  cam-dusty: cleaned at {dusty['cleaning']}; the blur filter first rejects a frame at "
        f"{dusty['first_unusable']}"
    )
    print(f"next: paddlemix-iqa monitor run {summary['dir']}/frames.csv --db {summary['dir']}/monitor.db")
    print(
        f"      paddlemix-iqa monitor report --db {summary['dir']}/monitor.db --out {summary['dir']}/report"
    )
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import write_report

    if not Path(args.db).is_file():
        return _fail(f"{args.db} does not exist; run `paddlemix-iqa monitor run SOURCE --db {args.db}` first")
    print(f"report: {write_report(args.db, args.out)}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..scorers import list_scorers
    from .core import DEFAULT_METRIC, DEFAULT_THRESHOLD, Alerter, Monitor, MonitorSettings, run_pass, watch
    from .detect import DetectorSettings
    from .sources import SourceError
    from .store import Store

    metric = args.metric or DEFAULT_METRIC
    if metric not in list_scorers():
        return _fail(f"unknown metric {metric!r}; available: {', '.join(list_scorers())}")
    if args.threshold_value is not None:
        scale, threshold = "value", args.threshold_value
    else:
        scale = "quality"
        threshold = DEFAULT_THRESHOLD if args.threshold is _UNSET else args.threshold
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            return _fail(
                f"--threshold {threshold:g} is outside 0..1: it is on the normalised quality (like the "
                f"filters' min_score); for the native value use --threshold-value {threshold:g}"
            )
    source = Path(args.source)
    if not source.exists():
        return _fail(f"{source} does not exist")
    pattern = None
    if args.source_pattern:
        try:
            pattern = re.compile(args.source_pattern)
        except re.error as exc:
            return _fail(f"--source-pattern is not a regular expression: {exc}")
    try:
        detector = DetectorSettings(
            window=args.window,
            min_points=args.min_points,
            cusum_k=args.cusum_k,
            cusum_h=args.cusum_h,
            sigma_floor=args.sigma_floor,
            confirm=args.confirm,
            drift=not args.no_drift,
        ).check()
        settings = MonitorSettings(metric, _params(args.param), threshold, scale, detector)
        token = args.webhook_token or os.environ.get("PADDLEMIX_IQA_WEBHOOK_TOKEN")

        def emit(line: str) -> None:
            print(line, flush=True)

        alerter = Alerter(emit, args.log_file, args.webhook, webhook_token=token)
    except ValueError as exc:
        return _fail(str(exc))
    with Store(args.db) as store:
        try:
            monitor = Monitor(store, settings, workers=args.workers)
        except (ValueError, TypeError) as exc:
            return _fail(str(exc))
        root = Path(args.root) if args.root else None
        try:
            if args.watch:
                summary = watch(
                    monitor,
                    alerter,
                    source,
                    pattern=pattern,
                    root=root,
                    interval=args.interval,
                    settle=args.settle,
                    max_passes=args.max_passes,
                    duration=args.duration,
                )
            else:
                summary = run_pass(monitor, alerter, source, pattern, root)
        except SourceError as exc:
            return _fail(str(exc))
        counts = store.counts(metric)
    print(
        f"monitor: {summary.scored} images scored, {summary.unreadable} unreadable, {summary.problems} rows "
        f"skipped, {summary.alerts} new alerts ({counts['images']} images in {args.db})",
        file=sys.stderr,
    )
    return EXIT_FAILURE if alerter.failures else EXIT_OK
