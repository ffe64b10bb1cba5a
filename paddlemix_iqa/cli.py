"""The ``paddlemix-iqa`` command: run pipelines, score files, build reports, list ops, make demo data.

Exit codes: 0 success; 1 runtime failure (an unexpected error while running);
2 usage or config error (bad arguments, invalid YAML, unknown op or parameter,
missing input); 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .models.download import add_arguments as download_arguments

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

log = logging.getLogger("paddlemix_iqa.cli")


class UsageError(Exception):
    """Bad arguments: exit code 2."""


# --- run / report ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import load_config, run_pipeline

    config = load_config(args.config, args.overrides)
    if args.no_report:
        config.report = False
    summary = run_pipeline(config, fresh=args.fresh, progress=False if args.no_progress else None)
    counts = summary["counts"]
    print(
        f"{counts['records']} records: {counts['kept']} kept, {counts['rejected']} rejected "
        f"({summary['processed']} processed now, {summary['resumed_from']} from an earlier run; "
        f"{summary['images_per_second'] or 0:.1f} images/s)"
    )
    for op, n in counts["rejected_by_op"].items():
        print(f"  rejected by {op}: {n}")
    out = config.output_dir
    print(f"outputs: {out / 'kept.jsonl'}, {out / 'rejected.jsonl'}, {out / 'scores.jsonl'}")
    if summary.get("report"):
        print(f"report: {summary['report']}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .pipeline.report import write_report
    from .pipeline.runner import resolve_output

    out = resolve_output(args.run)
    if not (out / "run.json").is_file():
        raise UsageError(f"{out} is not a finished run (no run.json); run the pipeline first")
    print(f"report: {write_report(out, png=args.png)}")
    return EXIT_OK


# --- score -------------------------------------------------------------------------------
def _image_files(paths: Sequence[str]) -> Iterator[str]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from (str(f) for f in sorted(path.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield str(path)  # a missing or bad file becomes a row with an error


def cmd_score(args: argparse.Namespace) -> int:
    from .io import ImageLoadError, decode_image
    from .scorers import get_scorer, list_scorers

    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in names if m not in list_scorers()]
    if not names or unknown:
        raise UsageError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; available: {', '.join(list_scorers())}"
        )
    scorers = [get_scorer(m) for m in names]
    sides = [s.decode_side for s in scorers]
    side = None if any(s is None for s in sides) else max(sides)
    files = list(_image_files(args.paths))
    rows = []
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        decoded, errors = [], {}
        for path in chunk:
            try:
                decoded.append((path, decode_image(path, max_side=side).pixels))
            except ImageLoadError as exc:
                errors[path] = exc.reason
        values: dict[tuple[str, str], float] = {}
        for name, scorer in zip(names, scorers, strict=True):
            scorable = []
            for path, px in decoded:  # a too small or flat image gets its reason, not a NaN
                reason = scorer.check_image(px)
                if reason:
                    errors.setdefault(path, f"{name}: {reason}")
                else:
                    scorable.append((path, px))
            if scorable:
                native = scorer.score_batch([px for _, px in scorable])
                scores = scorer.normalize(native) if args.normalized else native
                values.update({(name, path): float(v) for (path, _), v in zip(scorable, scores, strict=True)})
        for path in chunk:
            row = {"path": path}
            for name in names:
                row[name] = values.get((name, path))
            row["error"] = errors.get(path, "")
            rows.append(row)
    _print_rows(rows, ["path", *names, "error"], args.format)
    return EXIT_OK


def _print_rows(rows: list[dict], columns: list[str], fmt: str) -> None:
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    elif fmt == "jsonl":
        for row in rows:
            print(json.dumps({k: row[k] for k in columns if k != "error" or row[k]}))
    else:
        cells = [[_cell(row[k]) for k in columns] for row in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for r in cells:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- ops ---------------------------------------------------------------------------------
def _signature(params: dict) -> str:
    out = []
    for name, p in params.items():
        out.append(name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}")
    return ", ".join(out)


def cmd_ops(args: argparse.Namespace) -> int:
    from .ops import list_ops
    from .pipeline.config import op_parameters
    from .scorers import list_scorers, scorer_class, scorer_params

    print("ops (use in a config's process list as `- <op>: {params}`):")
    for name in list_ops():
        try:
            params = op_parameters(name)
        except (ImportError, KeyError) as exc:
            print(f"  {name:22s} (not available: {exc})")
            continue
        print(f"  {name:22s} {', '.join(params)}")
    print("\nscorers (a <scorer>_filter op or iqa_filter(metric=...) passes extra params to its scorer):")
    for name in list_scorers():
        try:
            cls = scorer_class(name)
            facts = (
                f"{'higher' if cls.higher_is_better else 'lower'} is better, range {list(cls.native_range)}"
            )
            print(f"  {name:22s} {facts}; params: {_signature(scorer_params(name)) or '-'}")
        except Exception as exc:  # noqa: BLE001 - a scorer module that fails to import is reported, not fatal
            print(f"  {name:22s} (not available: {type(exc).__name__}: {exc})")
    return EXIT_OK


# --- demo / weights ----------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline.demo import build_demo

    summary = build_demo(args.out, force=args.force)
    print(
        f"demo dataset: {summary['records']} records in {summary['dir']}/records.jsonl "
        f"({summary['expected_rejected']} degraded or broken)"
    )
    print("next: paddlemix-iqa run configs/default.yaml")
    return EXIT_OK


def cmd_weights_download(args: argparse.Namespace) -> int:
    from .models.download import DownloadError, download

    try:
        path = download(args.name, url=args.url, home=args.home, sha256=args.sha256)
    except DownloadError as exc:
        print(f"paddlemix-iqa weights download: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(path)
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddlemix-iqa",
        description="Image-quality filtering for multimodal datasets (PaddleMIX DataCopilot plugin).",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        help="run (or resume) a YAML pipeline",
        description=(
            "Run a YAML pipeline over a JSON/JSONL dataset; writes kept.jsonl, rejected.jsonl, scores.jsonl "
            "and report.html to the output dir. Run the same command again after a crash to resume."
        ),
    )
    p.add_argument("config", help="pipeline YAML file (see configs/)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override a setting (workers=2, input=x.jsonl) or an op parameter (laplacian_filter.min_score=0.3)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard a previous run in the output dir instead of resuming"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "score",
        help="score image files or folders",
        description=(
            "Score images with one or more metrics. CSV has the header path,<metric>,...,error with native "
            "scores (or normalised quality with --normalized); unreadable images get an error and empty scores."
        ),
    )
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--metrics", required=True, help="comma-separated scorer names, e.g. laplacian,tenengrad")
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    p.add_argument(
        "--normalized", action="store_true", help="quality in [0, 1] (higher is better) instead of native"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "report",
        help="build the HTML report of a finished run",
        description=(
            "Rebuild <run dir>/report.html from the run's state (counts, histograms, thumbnail strips)."
        ),
    )
    p.add_argument("run", help="run output dir, or the pipeline YAML whose output dir to use")
    p.add_argument("--png", action="store_true", help="also write the histograms as PNG files under figures/")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "ops",
        help="list ops and scorers with their parameters",
        description="List the ops a config can use and the scorers, with their parameters.",
    )
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser(
        "demo",
        help="build the offline demo dataset",
        description=(
            "Build a small LLaVA-style dataset from scikit-image's bundled photos with degraded variants."
        ),
    )
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--force", action="store_true", help="delete the folder first")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("weights", help="manage model weights", description="Manage model weights.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    w = wsub.add_parser(
        "download",
        help="download official weights (the only command that uses the network)",
        description="Download a model's official files into $PADDLEMIX_IQA_HOME/<name>/.",
    )
    download_arguments(w)
    w.set_defaults(func=cmd_weights_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from .pipeline.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"paddlemix-iqa {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the exit code scripts rely on, with a readable message
        if args.verbose:
            log.exception("failed")
        print(f"paddlemix-iqa {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
