"""The ``paddlemix-iqa`` command: run pipelines, score files, build reports, list ops, make demo data.

Exit codes: 0 success; 1 runtime failure (an unexpected error while running);
2 usage or config error (bad arguments, invalid YAML, unknown op or parameter,
missing input, busy or foreign output dir); 3 missing model weights (any command;
``paddlemix-iqa weights list`` says what is missing and how to get it); 4 a run that could read none of its
images (wrong image_root?); 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_WEIGHTS = 3  # a model's weights are not installed (run, score, ... alike)
EXIT_NO_IMAGES = 4  # a run finished but could read none of its images (wrong image_root?)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

log = logging.getLogger("paddlemix_iqa.cli")


class UsageError(Exception):
    """Bad arguments: exit code 2."""


# --- run / report ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import load_config, run_pipeline

    flags = {"input": args.input, "output_dir": args.output, "workers": args.workers}
    overrides = list(args.overrides) + [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    config = load_config(args.config, overrides)  # a flag's JSON value is a YAML scalar taken as is
    if args.no_report:
        config.report = False
    progress = False if args.no_progress else None
    if args.engine != "ray" and (args.address is not None or args.num_cpus is not None):
        raise UsageError("--address and --num-cpus are options of --engine ray")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError(f"--num-cpus must be at least 1, not {args.num_cpus}")
    if args.engine == "ray":
        try:
            import ray.data  # noqa: F401 - the extra's presence, checked before anything is written
        except ImportError as exc:
            raise UsageError(
                f'--engine ray needs Ray Data: pip install "paddlemix-iqa[ray]" ({exc})'
            ) from None
        from .integrations.ray import run_ray

        summary = run_ray(
            config, fresh=args.fresh, progress=progress, address=args.address, num_cpus=args.num_cpus
        )
    else:
        summary = run_pipeline(config, fresh=args.fresh, progress=progress)
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
    if summary["images"] and summary["images_unreadable"] == summary["images"]:
        print(
            f"paddlemix-iqa run: error: none of the {summary['images']} images could be read "
            f"(e.g. {summary['unreadable_example']}); is image_root right? It is {config.image_root.resolve()}",
            file=sys.stderr,
        )
        return EXIT_NO_IMAGES
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .pipeline.report import write_report
    from .pipeline.runner import resolve_output

    out = resolve_output(args.run)
    if not (out / "run.json").is_file():
        raise UsageError(f"{out} is not a finished run (no run.json); run the pipeline first")
    print(f"report: {write_report(out, png=args.png)}")
    return EXIT_OK


def cmd_configs(args: argparse.Namespace) -> int:
    from .pipeline.config import bundled_configs, find_config

    if getattr(args, "configs_command", None) == "show":
        print(find_config(args.name).read_text(encoding="utf-8"), end="")
        return EXIT_OK
    print("bundled configs (paddlemix-iqa run NAME; paddlemix-iqa configs show NAME > my.yaml to edit):")
    for name, path in bundled_configs().items():
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        print(f"  {name:14s} {first}")
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
    if args.server:  # a running `paddlemix-iqa serve` judges the images with its config
        from .client import ScoringClient, result_rows

        files = list(_image_files(args.paths))
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        with ScoringClient(args.server) as client:
            client.wait_ready(timeout=60.0)
            score = client.score_paths if args.by_path else client.score_files
            results = score(files, batch_size=args.batch_size)
        rows, columns = result_rows(files, results, metrics, args.normalized)
        _print_rows(rows, columns, args.format)
        return EXIT_OK

    from .io import ImageLoadError, decode_image
    from .scorers import get_scorer, list_scorers, scorer_class

    if args.metrics is None:  # the weight-free scorers: they work out of the box
        names = [m for m in list_scorers() if not scorer_class(m).neural]
    else:
        names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in names if m not in list_scorers()]
    if not names or unknown:
        from .pipeline.config import _suggest  # the one "did you mean" of configs and commands

        hints = "".join(_suggest(m, list_scorers()) for m in unknown)
        raise UsageError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}{hints}; available: {', '.join(list_scorers())}"
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
    from .registry import SCORERS, op_plugin
    from .scorers import list_scorers, scorer_class, scorer_params

    def plugin(dist: str | None) -> str:
        return f" [plugin: {dist}]" if dist else ""

    if args.name:
        from .pipeline.config import _suggest, op_help

        if args.name not in list_ops():
            raise UsageError(
                f"unknown op {args.name!r}{_suggest(args.name, list_ops())}; paddlemix-iqa ops lists them"
            )
        doc, rows = op_help(args.name)
        print(f"{args.name}{plugin(op_plugin(args.name))}: {doc or '(no description)'}")
        widths = [max(len(r[i]) for r in rows) if rows else 0 for i in range(4)]
        for row in rows:
            cells = "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True))
            print(f"  {cells}  {row[4]}".rstrip())
        return EXIT_OK

    print("ops (use in a config's process list as `- <op>: {params}`):")
    for name in list_ops():
        try:
            params = op_parameters(name)
            print(f"  {name:22s} {', '.join(params)}{plugin(op_plugin(name))}")
        except Exception as exc:  # noqa: BLE001 - an op (or plugin) that fails to import is reported, not fatal
            print(f"  {name:22s} (not available: {type(exc).__name__}: {exc})")
    print("\nscorers (each has a <scorer>_filter and <scorer>_tagger op, or a dedicated one listed above;")
    print("iqa_filter(metric=...) also passes extra params to its scorer):")
    for name in list_scorers():
        try:
            cls = scorer_class(name)
            facts = (
                f"{'higher' if cls.higher_is_better else 'lower'} is better, range {list(cls.native_range)}"
            )
            params = _signature(scorer_params(name)) or "-"
            print(f"  {name:22s} {facts}; params: {params}{plugin(SCORERS.plugin(name))}")
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
    print("next: paddlemix-iqa run default")
    return EXIT_OK


def cmd_weights_download(args: argparse.Namespace) -> int:
    from .models.catalog import MODELS
    from .models.download import DownloadError, fetch_model
    from .models.weights import weights_home

    model = MODELS.get(args.name)
    if model is not None and model.make != "download":  # made by hand: say exactly how
        out = Path(args.weights_dir).expanduser() if args.weights_dir else weights_home()
        print(f"{model.name} cannot be downloaded ready to use ({model.title}).")
        print(f"licence: {model.licence} ({model.licence_url})", *model.notes, sep="\n  ")
        print(f"1. download by hand from {model.homepage} into ./{model.name}_torch/:")
        for source in model.sources_for():
            print(f"     {source.url}")
        others = [v for v in model.variants if v != model.default_variant]
        if others:
            print(f"   other variants ({', '.join(others)}): the same URL pattern, one more --regressor each")
        print(f"2. convert: {model.convert_command(out=str(out / model.name))}")
        return EXIT_OK
    try:
        path, digest = fetch_model(args.name, url=args.url, home=args.weights_dir, sha256=args.sha256)
    except DownloadError as exc:
        print(f"paddlemix-iqa weights download: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(path)
    pinned = args.sha256 or (model is not None and not args.url and model.sources[0].sha256)
    check = "verified" if pinned else "not pinned: nothing to check it against"
    print(f"sha256 {digest} ({check})", file=sys.stderr)
    return EXIT_OK


def cmd_weights_list(args: argparse.Namespace) -> int:
    from .models.catalog import MODELS
    from .models.weights import ENV_HOME, weights_home, weights_status

    print(f"weights home: {weights_home()} (--weights-dir or ${ENV_HOME})")
    for model in MODELS.values():
        status = weights_status(model.name)
        state = "present" if status.present else "missing"
        print(f"{model.name}: {state} in {status.directory}")
        if status.missing:
            print(f"  missing: {', '.join(status.missing)}")
        if model.variants:
            found = ", ".join(status.variants) or "none"
            print(f"  variants present: {found} (default {model.default_variant})")
        use = "" if model.commercial_use else ", non-commercial use only"
        print(f"  licence: {model.licence}{use}")
        if not status.present:
            print(f"  to get it: {model.how_to(out=str(status.directory))}")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------
# --- commands that live in their own module: ``add_arguments(parser)`` and ``run(args) -> exit code`` ---------
#: command, module (imported when the parser is built, so keep their imports light), help
MODULE_COMMANDS = (
    (
        "eval",
        "paddlemix_iqa.evaluation.evaluate",
        "per-threshold FPR/TPR/precision/F1, ROC and PR curves of metrics on labelled images",
    ),
    (
        "make-eval-set",
        "paddlemix_iqa.evaluation.synth",
        "build a labelled set (blur, JPEG, noise, pasted codes...) from clean photos",
    ),
    (
        "calibrate",
        "paddlemix_iqa.evaluation.calibrate",
        "fit a fused model (several scores -> one probability) on labelled images",
    ),
    (
        "serve",
        "paddlemix_iqa.service.server",
        "serve a pipeline config over HTTP: POST images, get verdicts and scores",
    ),
    (
        "monitor",
        "paddlemix_iqa.monitor.cli",
        "watch a metric over time per camera/source: alerts on threshold, drift, recovery",
    ),
)


def _module_command(module: str):
    def command(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).run(args)

    return command


def _unavailable(name: str, exc: ImportError):
    def command(args: argparse.Namespace) -> int:
        raise UsageError(f"{name} is not available: {exc}")

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddlemix-iqa",
        description="Image-quality filtering for multimodal datasets (PaddleMIX DataCopilot plugin).",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 missing model weights, 4 no image could be read.",
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
    p.add_argument("config", help="pipeline YAML file, or a bundled config's name (paddlemix-iqa configs)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override a setting (workers=2, input=x.jsonl) or an op parameter (laplacian_filter.min_score=0.3)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard a previous run in the output dir instead of resuming"
    )
    p.add_argument("--input", metavar="RECORDS", help="the records file (same as input=...)")
    p.add_argument("--output", metavar="DIR", help="the output directory (same as output_dir=...)")
    p.add_argument("--workers", type=int, metavar="N", help="processes for CPU ops (same as workers=N)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this machine's process pool (default); ray: Ray Data actors, same outputs (extra [ray])",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join (e.g. auto, or HEAD_IP:6379 after `ray start --head`); default: start a local Ray",
    )
    p.add_argument(
        "--num-cpus",
        type=int,
        metavar="N",
        help="Ray: CPUs of the local Ray (default: workers), or at most N actors on a cluster",
    )
    _weights_dir_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "configs",
        help="list the bundled pipeline configs, or print one",
        description="List the configs that ship with the package, or print one to copy and edit.",
    )
    csub = p.add_subparsers(dest="configs_command", metavar="ACTION")
    c = csub.add_parser("show", help="print a bundled config", description="Print a bundled config.")
    c.add_argument("name", help="bundled config name, e.g. default")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser(
        "score",
        help="score image files or folders",
        description=(
            "Score images with one or more metrics. CSV has the header path,<metric>,...,error with native "
            "scores (or normalised quality with --normalized); unreadable images get an error and empty scores."
        ),
    )
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument(
        "--metrics",
        help="comma-separated scorer names, e.g. laplacian,tenengrad (default: every weight-free scorer)",
    )
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    p.add_argument(
        "--normalized", action="store_true", help="quality in [0, 1] (higher is better) instead of native"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--server",
        metavar="URL",
        help="send the images to a running `paddlemix-iqa serve` (its config judges them: columns path, "
        "verdict, scores, reason; token from $PADDLEMIX_IQA_TOKEN)",
    )
    p.add_argument(
        "--by-path",
        action="store_true",
        help="with --server: send paths (relative to the server's --root) instead of uploading the files",
    )
    _weights_dir_option(p)
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
        description="List the ops a config can use and the scorers, with their parameters; "
        "with NAME, one op's description and every parameter with its type, default and meaning.",
    )
    p.add_argument("name", nargs="?", help="an op name, e.g. laplacian_filter")
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

    import importlib

    for name, module, summary in MODULE_COMMANDS:
        try:
            add_arguments = importlib.import_module(module).add_arguments
        except ImportError as exc:  # a module not built yet or missing an optional extra: say so when called
            p = sub.add_parser(name, help=f"{summary} (unavailable: {exc})", description=summary)
            p.set_defaults(func=_unavailable(name, exc))
            continue
        p = sub.add_parser(name, help=summary, description=summary)
        add_arguments(p)
        p.set_defaults(func=_module_command(module))

    p = sub.add_parser("weights", help="manage model weights", description="Manage model weights.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    w = wsub.add_parser(
        "download",
        help="download official weights (the only command that uses the network)",
        description=(
            "Download a model's official files into <weights dir>/<name>/ (a model that must be converted, "
            "such as arniqa, gets the exact steps instead)."
        ),
    )
    w.add_argument("name", help="model name from `paddlemix-iqa weights list` (any name with --url)")
    w.add_argument("--url", help="download from this URL instead of the official one")
    _weights_dir_option(w, "--home")
    w.add_argument("--sha256", help="expected sha256 of the tarball (default: the catalogue's pin, if any)")
    w.set_defaults(func=cmd_weights_download)
    w = wsub.add_parser(
        "list",
        help="each model: present or missing, where, licence, how to get it",
        description="List the models of the weights catalogue: present or missing, where, licence, how to get it.",
    )
    _weights_dir_option(w)
    w.set_defaults(func=cmd_weights_list)
    return parser


def _weights_dir_option(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--weights-dir DIR`` for a command that loads models: the same as setting $PADDLEMIX_IQA_HOME."""
    parser.add_argument(
        "--weights-dir",
        *aliases,
        dest="weights_dir",
        metavar="DIR",
        help="folder holding the models as DIR/<name>/ (default: $PADDLEMIX_IQA_HOME or ~/.cache/paddlemix_iqa)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from .evaluation import EvalError
    from .models.weights import ENV_HOME, WeightsNotFound
    from .pipeline.config import ConfigError, MissingWeights

    # --weights-dir is $PADDLEMIX_IQA_HOME for this command (worker processes inherit it); restored after
    saved = os.environ.get(ENV_HOME)
    if getattr(args, "weights_dir", None):
        os.environ[ENV_HOME] = args.weights_dir
    try:
        return args.func(args)
    except (MissingWeights, WeightsNotFound) as exc:
        print(f"paddlemix-iqa {args.command}: error: missing model weights: {exc}", file=sys.stderr)
        return EXIT_WEIGHTS
    except (ConfigError, UsageError, EvalError) as exc:
        print(f"paddlemix-iqa {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `paddlemix-iqa ops | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the exit code scripts rely on, with a readable message
        if args.verbose:
            log.exception("failed")
        print(f"paddlemix-iqa {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if saved is None:
            os.environ.pop(ENV_HOME, None)
        else:
            os.environ[ENV_HOME] = saved


if __name__ == "__main__":
    sys.exit(main())
