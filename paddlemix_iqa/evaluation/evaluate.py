"""``paddlemix-iqa eval``: how well each metric separates degraded from clean labelled images.

Label 1 (*positive*) is a degraded image a filter should catch, 0 a clean one. A
threshold ``t`` is a filter's ``min_score: t`` on the normalised quality: an image is
*flagged* (rejected) iff ``quality < t``; ``quality == t`` is kept. So each table row says
what ``min_score: t`` would do to the set: TP/FP/TN/FN, FPR = FP/negatives, TPR =
TP/positives, precision = TP/flagged (empty when nothing is flagged) and F1, each rate with
a stratified bootstrap 95% interval. Two rows are chosen from the data: the threshold with
FPR <= ``--target-fpr`` and the highest TPR, and the best-F1 one; each is a short decimal
between the highest flagged and the lowest kept quality, so it reproduces its counts
exactly. ROC / PR curves rank by ``-quality`` (see :mod:`.metrics`).

Scores come from scoring the images here (each decoded once, at the largest size any
metric needs, then every metric scored on it) or from a finished pipeline run
(``--scores RUN_DIR``: its ``scores.jsonl`` ``<metric>_quality`` columns, matched to the
labelled images by resolved path). An image that cannot be read, that a metric refuses
(too small, flat) or whose score is not finite is left out of that metric's tables,
counted and listed. Module-level imports stay light: ``add_arguments`` runs for every CLI
command.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import EvalError
from .labelled import LabelledItem, load_labelled
from .metrics import RATES, MetricResult, evaluate

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = "0.5,0.7,0.8,0.9,0.95"
#: the files eval writes into --out; any other file there means the folder is someone else's
OUTPUTS = ("eval.md", "eval.csv", "eval.json", "roc.png", "pr.png")
#: images handed to a worker at once (and scored in one score_batch per metric)
CHUNK = 16
#: excluded images listed in the Markdown (eval.json lists all)
MAX_LISTED = 50

#: columns of a metric's table and of the summary over metrics (the target-FPR column goes after AP)
TABLE_HEADER = ["min_score", "flagged", "TP", "FP", "TN", "FN"] + [
    f"{'precision' if r == 'precision' else r.upper()} [95% CI]" for r in RATES
]
SUMMARY_HEADER = ["metric", "scored", "excluded", "ROC AUC", "AP", "FPR", "TPR", "best-F1 min_score", "F1"]
#: one image's outcome per metric: its quality, or why it has none
Outcome = float | str


# --- arguments -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval`` subcommand's arguments (imported for every command: no heavy imports here)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Label 1 = positive = a degraded image the filter should catch; 0 = clean.\n"
        "A threshold t is a filter's `min_score: t`: an image is flagged (rejected) iff quality < t\n"
        "(quality == t is kept), so each row says what that min_score would do. FPR = FP/negatives,\n"
        "TPR = TP/positives, precision = TP/flagged, each with a stratified bootstrap 95% CI.\n"
        "The target-FPR and best-F1 rows choose a short min_score between the highest flagged and\n"
        "the lowest kept quality: applied to the same images it gives exactly the counts shown.\n"
        "ROC and PR curves rank by -quality. Images that cannot be read, that a metric refuses, or\n"
        "with a non-finite score are left out of that metric's tables, counted and listed.\n\n"
        "examples:\n"
        "  paddlemix-iqa eval data/blur_set --metrics laplacian,tenengrad\n"
        "  paddlemix-iqa eval set.jsonl --metrics 'laplacian,laplacian(tiles=4)' --by subset\n"
        "  paddlemix-iqa eval set.jsonl --scores runs/default   # scores of a finished run\n\n"
        "Writes DIR/eval.md (as printed), eval.csv, eval.json, roc.png and pr.png."
    )
    parser.add_argument(
        "data",
        help="labelled images: a folder per class (clean/, blur/, ...) or a .jsonl / .csv with image and label columns",
    )
    parser.add_argument(
        "--metrics",
        help="comma-separated metrics, each a scorer name with optional parameters as YAML scalars: "
        "'laplacian,laplacian(tiles=4),fused(model=blur.json)' (with --scores: default every metric of the run)",
    )
    parser.add_argument(
        "--positive", help="class(es) that are degraded, comma-separated (default: all but clean ones)"
    )
    parser.add_argument(
        "--negative", help="class(es) that are clean, comma-separated (default: clean, good, sharp, 0, ...)"
    )
    parser.add_argument(
        "--label-column", default="label", help="label column of a .jsonl / .csv (default: label)"
    )
    parser.add_argument("--image-column", default="image", help="image path column (default: image)")
    parser.add_argument(
        "--thresholds",
        default=DEFAULT_THRESHOLDS,
        help=f"min_score values to tabulate, comma-separated, each in [0, 1] (default: {DEFAULT_THRESHOLDS})",
    )
    parser.add_argument(
        "--target-fpr",
        type=float,
        default=0.05,
        metavar="F",
        help="also report the min_score with FPR <= F and the highest TPR (default: 0.05)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the CIs; 0: none (default: 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--by",
        metavar="COLUMN",
        help="also report the TPR of the positives of each value of this record column (e.g. subset; "
        "'class' = the label's class)",
    )
    parser.add_argument(
        "--scores",
        metavar="RUN_DIR",
        help="take the qualities from a finished pipeline run's scores.jsonl instead of scoring",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="processes that decode and score (default: 2; 1 = in this process; a neural metric runs in this process)",
    )
    parser.add_argument(
        "--out",
        default="eval_out",
        metavar="DIR",
        help="where to write eval.md/.csv/.json, roc.png, pr.png (default: eval_out; "
        "refused if it holds other files)",
    )
    parser.add_argument(
        "--weights-dir",
        dest="weights_dir",
        metavar="DIR",
        help="folder holding the models as DIR/<name>/ (default: $PADDLEMIX_IQA_HOME or ~/.cache/paddlemix_iqa)",
    )


# --- metric specs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """One ``--metrics`` entry: its text as written (the display name), scorer name and parameters."""

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)


def split_top(text: str, option: str = "--metrics", sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets: ``a,b(x=1,y=2)`` -> ``a``, ``b(x=1,y=2)``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise EvalError(f"{option} {text!r}: unbalanced {ch!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise EvalError(f"{option} {text!r}: unclosed bracket")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_metrics(text: str, option: str = "--metrics") -> list[MetricSpec]:
    """``laplacian,laplacian(tiles=4)`` -> specs; parameter values are YAML scalars (``4`` is an int).

    The one parser of ``NAME(key=value,...)`` lists: ``eval --metrics`` and ``calibrate --features``."""
    import yaml

    specs = []
    for entry in split_top(text, option):
        name, paren, rest = entry.partition("(")
        name = name.strip()
        if not name or (paren and not rest.endswith(")")):
            raise EvalError(f"{option}: {entry!r} is not NAME or NAME(key=value,...)")
        params: dict[str, Any] = {}
        for pair in split_top(rest[:-1], option) if paren else []:
            key, eq, value = pair.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise EvalError(f"{option}: {pair!r} in {entry!r} is not key=value")
            if key in params:
                raise EvalError(f"{option}: {key!r} given twice in {entry!r}")
            try:
                params[key] = yaml.safe_load(value.strip()) if value.strip() else None
            except yaml.YAMLError as exc:
                raise EvalError(
                    f"{option}: the value of {key!r} in {entry!r} is not a YAML scalar ({exc})"
                ) from None
        specs.append(MetricSpec(entry, name, params))
    if not specs:
        raise EvalError(f"{option} names nothing")
    seen = Counter(s.label for s in specs)
    if twice := [label for label, n in seen.items() if n > 1]:
        raise EvalError(f"{option}: {', '.join(twice)} given twice")
    return specs


def build_scorers(specs: Sequence[MetricSpec]) -> list:
    """The scorer of each spec; unknown names and bad parameters are an EvalError, missing weights raise
    ``WeightsNotFound`` (exit 3) before any image is read."""
    from ..pipeline.config import _suggest  # the one "did you mean" of configs and commands
    from ..scorers import get_scorer, list_scorers

    known = list_scorers()
    unknown = [s.name for s in specs if s.name not in known]
    if unknown:
        hints = "".join(_suggest(m, known) for m in unknown)
        raise EvalError(f"unknown metric(s) {', '.join(unknown)}{hints}; available: {', '.join(known)}")
    scorers = []
    for spec in specs:
        try:
            scorer = get_scorer(spec.name, **spec.params)
        except (TypeError, ValueError) as exc:
            raise EvalError(f"metric {spec.label}: {exc}") from None
        scorer.check_weights()
        scorers.append(scorer)
    return scorers


# --- scoring ---------------------------------------------------------------------------------------
def _qualities(scorer, images: list[np.ndarray]) -> list[Outcome]:
    """Quality of each image, or why there is none; a batch that fails is retried one image at a time."""
    if not images:
        return []
    try:
        native = np.asarray(scorer.score_batch(images), dtype=np.float64).reshape(-1)
        quality = np.asarray(scorer.normalize(native), dtype=np.float64).reshape(-1)
    except Exception as exc:  # noqa: BLE001 - one bad image must not end the evaluation
        if len(images) > 1:
            return [out for image in images for out in _qualities(scorer, [image])]
        return [f"error: {type(exc).__name__}: {exc}"]
    return [
        float(q) if math.isfinite(v) and math.isfinite(q) else f"not_finite: score {v}, quality {q}"
        for v, q in zip(native.tolist(), quality.tolist(), strict=True)
    ]


def score_paths(
    metrics: Sequence[tuple[str, dict]], side: int | None, paths: Sequence[str]
) -> list[list[Outcome]]:
    """Per image, per metric: the quality or the reason there is none. Each image is decoded once at ``side``."""
    from ..io import ImageLoadError, decode_or_error
    from ..scorers import get_scorer

    outcomes: list[list[Outcome]] = [[""] * len(metrics) for _ in paths]
    pixels: dict[int, np.ndarray] = {}
    for i, path in enumerate(paths):
        image = decode_or_error(path, max_side=side)
        if isinstance(image, ImageLoadError):
            outcomes[i] = [image.reason] * len(metrics)
        else:
            pixels[i] = image.pixels
    for m, (name, params) in enumerate(metrics):
        scorer = get_scorer(name, **params)
        todo = []
        for i, px in pixels.items():
            reason = scorer.check_image(px)
            if reason:
                outcomes[i][m] = reason
            else:
                todo.append(i)
        for i, outcome in zip(todo, _qualities(scorer, [pixels[i] for i in todo]), strict=True):
            outcomes[i][m] = outcome
    return outcomes


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def score_items(
    items: Sequence[LabelledItem], specs: Sequence[MetricSpec], workers: int
) -> list[list[Outcome]]:
    """Score every labelled image with every metric, in ``workers`` processes (1: here)."""
    from tqdm import tqdm

    scorers = build_scorers(specs)
    sides = [s.decode_side for s in scorers]
    side = None if any(s is None for s in sides) else max(sides)
    if workers > 1 and any(s.neural for s in scorers):
        log.info("a neural metric: scoring in this process (one model load)")
        workers = 1
    metrics = [(s.name, s.params) for s in specs]
    paths = [item.path for item in items]
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    results: list[list[list[Outcome]]] = [[] for _ in chunks]
    bar = tqdm(total=len(paths), unit="img", desc="scoring", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        if workers == 1:
            for n, chunk in enumerate(chunks):
                results[n] = score_paths(metrics, side, chunk)
                bar.update(len(chunk))
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            from ..pipeline.runner import pool_context  # forkserver: forking a threaded parent can deadlock

            pool = ProcessPoolExecutor(
                min(workers, len(chunks)), mp_context=pool_context(), initializer=_init_worker
            )
            try:
                futures = {
                    pool.submit(score_paths, metrics, side, chunk): n for n, chunk in enumerate(chunks)
                }
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(len(chunks[futures[future]]))
            finally:
                pool.shutdown(cancel_futures=True)
    finally:
        bar.close()
    return [row for chunk in results for row in chunk]


def scores_from_run(
    run_dir: str | os.PathLike, items: Sequence[LabelledItem], specs: Sequence[MetricSpec] | None
) -> tuple[list[MetricSpec], list[list[Outcome]]]:
    """The qualities a finished run wrote (``scores.jsonl``: ``image`` relative to the run's image_root,
    ``<metric>_quality``), matched to the labelled images by resolved path."""
    from ..io import ImageLoadError, resolve_path

    run = Path(run_dir)
    if not (run / "run.json").is_file() or not (run / "scores.jsonl").is_file():
        raise EvalError(f"--scores {run} is not a finished pipeline run (no run.json and scores.jsonl)")
    try:
        root = json.loads((run / "run.json").read_text(encoding="utf-8"))["config"]["image_root"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{run / 'run.json'}: no config.image_root ({type(exc).__name__}: {exc})") from None
    rows: dict[str, dict] = {}
    columns: dict[str, None] = {}
    with (run / "scores.jsonl").open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise EvalError(f"{run / 'scores.jsonl'}:{n}: not JSON") from None
            columns.update((k.removesuffix("_quality"), None) for k in row if k.endswith("_quality"))
            try:
                path = os.path.realpath(resolve_path(row.get("image"), root, allow_outside_root=True))
            except ImageLoadError:  # a URL or an empty reference: nothing to match
                continue
            rows.setdefault(path, row)
    if specs is None:
        specs = [MetricSpec(name, name) for name in columns]
    if not specs:
        raise EvalError(f"{run / 'scores.jsonl'} holds no <metric>_quality column")
    for spec in specs:
        if spec.params:
            raise EvalError(
                f"--metrics {spec.label}: with --scores a metric is a column of the run, without parameters"
            )
        if spec.name not in columns:
            raise EvalError(
                f"the run in {run} has no {spec.name}_quality scores; its metrics: {', '.join(columns) or 'none'}"
            )
    outcomes = []
    for item in items:
        row = rows.get(os.path.realpath(item.path))
        if row is None:
            outcomes.append(["missing: not in the run's scores.jsonl"] * len(specs))
            continue
        per_metric: list[Outcome] = []
        for spec in specs:
            value = row.get(f"{spec.name}_quality")
            if isinstance(value, (int, float)) and math.isfinite(value):
                per_metric.append(float(value))
            else:
                per_metric.append(
                    row.get("error") or f"no {spec.name}_quality in the run (rejected by an earlier op?)"
                )
        outcomes.append(per_metric)
    return list(specs), outcomes


# --- the report ------------------------------------------------------------------------------------
def _group_of(item: LabelledItem, column: str) -> str | None:
    if column in item.extra:
        value = item.extra[column]
        return None if value in (None, "") else str(value)
    return item.cls if column == "class" else None


def build_report(
    items: Sequence[LabelledItem], specs: Sequence[MetricSpec], outcomes: Sequence[Sequence[Outcome]], args
) -> dict[str, Any]:
    """Everything eval reports (what eval.json holds), from each image's outcome per metric."""
    thresholds = _thresholds(args.thresholds)
    if args.by and not any(_group_of(i, args.by) is not None for i in items if i.label == 1):
        columns = sorted({k for i in items for k in i.extra}) + ["class"]
        raise EvalError(f"--by {args.by}: no positive image has that column (columns: {', '.join(columns)})")
    labels = np.array([item.label for item in items])
    metrics: dict[str, Any] = {}
    for m, spec in enumerate(specs):
        scored = np.array([isinstance(o[m], float) for o in outcomes], dtype=bool)
        for label, what in ((1, "positive"), (0, "negative")):
            if not np.any(scored & (labels == label)):
                example = next((o[m] for o, y in zip(outcomes, labels, strict=True) if y == label), "")
                raise EvalError(f"metric {spec.label}: no {what} image could be scored (e.g. {example})")
        quality = np.array([o[m] for o in outcomes if isinstance(o[m], float)])
        result = evaluate(
            quality,
            labels[scored],
            thresholds,
            target_fpr=args.target_fpr,
            bootstrap=args.bootstrap,
            seed=args.seed,
            groups=[_group_of(i, args.by) for i, s in zip(items, scored, strict=True) if s]
            if args.by
            else None,
        )
        reasons = Counter(_code(o[m]) for o in outcomes if not isinstance(o[m], float))
        metrics[spec.label] = _metric_json(spec, result, int(scored.sum()), dict(reasons))
    return {
        "data": str(args.data),
        "scores_from": str(args.scores) if args.scores else None,
        "rule": "flagged (rejected) iff quality < threshold, as a filter's min_score; label 1 = degraded",
        "thresholds": thresholds,
        "target_fpr": args.target_fpr,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "by": args.by,
        "images": {
            "total": len(items),
            "positive": int(labels.sum()),
            "negative": int(len(labels) - labels.sum()),
        },
        "classes": dict(Counter(f"{i.cls} ({'positive' if i.label else 'negative'})" for i in items)),
        "metrics": metrics,
        "excluded": _excluded(items, specs, outcomes),
        "items": [
            {
                "image": item.path,
                "label": item.label,
                "class": item.cls,
                **({"extra": item.extra} if item.extra else {}),
                "quality": {
                    s.label: (o[m] if isinstance(o[m], float) else None) for m, s in enumerate(specs)
                },
            }
            for item, o in zip(items, outcomes, strict=True)
        ],
    }


def _code(reason: str) -> str:
    """``"too_small: 2x2 ..."`` -> ``"too_small"``: the kind of failure, for counts."""
    return reason.partition(":")[0].strip() or "unknown"


def _excluded(
    items: Sequence[LabelledItem], specs: Sequence[MetricSpec], outcomes: Sequence[Sequence[Outcome]]
) -> list[dict[str, Any]]:
    """One entry per image and reason, with the metrics it kept that image out of."""
    out = []
    for item, row in zip(items, outcomes, strict=True):
        by_reason: dict[str, list[str]] = {}
        for spec, outcome in zip(specs, row, strict=True):
            if not isinstance(outcome, float):
                by_reason.setdefault(outcome, []).append(spec.label)
        out += [
            {"image": item.path, "class": item.cls, "label": item.label, "metrics": names, "reason": reason}
            for reason, names in by_reason.items()
        ]
    return out


def _metric_json(
    spec: MetricSpec, result: MetricResult, scored: int, excluded: dict[str, int]
) -> dict[str, Any]:
    thresholds = [r.threshold for r in result.rows] + [result.at_target.threshold, result.best_f1.threshold]
    return {
        "name": spec.name,
        "params": spec.params,
        "scored": scored,
        "positive": result.positives,
        "negative": result.negatives,
        "excluded": sum(excluded.values()),
        "excluded_by_reason": excluded,
        "auc": result.auc,
        "auc_ci": list(result.auc_ci),
        "ap": result.ap,
        "ap_ci": list(result.ap_ci),
        "rows": [r.as_dict() for r in result.rows],
        "target_fpr": {"max_fpr": result.target_fpr, **result.at_target.as_dict()},
        "best_f1": result.best_f1.as_dict(),
        "by": [
            {
                "value": g.value,
                "positives": g.positives,
                "rows": [
                    {"threshold": t, "tp": tp, "tpr": tpr, "tpr_ci": list(ci)}
                    for t, tp, tpr, ci in zip(thresholds, g.tp, g.tpr, g.tpr_ci, strict=True)
                ],
            }
            for g in result.groups
        ],
        "roc": result.roc,
        "pr": result.pr,
    }


# --- Markdown / CSV --------------------------------------------------------------------------------
def _t(value: float) -> str:
    """A threshold as typed into a config: every digit it needs, no more."""
    return repr(float(value))


def _rate(value: float | None, ci: Sequence[float | None] = (None, None), digits: int = 3) -> str:
    if value is None:
        return ""
    text = f"{value:.{digits}f}"
    return text if ci[0] is None else f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row_cells(name: str, r: dict[str, Any]) -> list[Any]:
    counts = [r[k] for k in ("flagged", "tp", "fp", "tn", "fn")]
    return [name, *counts, *(_rate(r[k], r[f"{k}_ci"]) for k in RATES)]


def _summary_cells(label: str, m: dict[str, Any]) -> list[Any]:
    at, best = m["target_fpr"], m["best_f1"]
    scores = [_rate(m["auc"], m["auc_ci"]), _rate(m["ap"], m["ap_ci"])]
    chosen = [
        _t(at["threshold"]),
        _rate(at["fpr"]),
        _rate(at["tpr"]),
        _t(best["threshold"]),
        _rate(best["f1"]),
    ]
    return [_cell(label), m["scored"], m["excluded"], *scores, *chosen]


def _metric_lines(report: dict[str, Any], label: str, m: dict[str, Any]) -> list[str]:
    """One metric's section: counts, AUC / AP, the threshold table and the TPR by group."""
    target = f"{_t(m['target_fpr']['threshold'])} (FPR <= {report['target_fpr']:g})"
    excluded = ", ".join(f"{k} {v}" for k, v in m["excluded_by_reason"].items())
    lines = [
        "",
        f"## {_cell(label)}",
        "",
        f"{m['scored']} scored ({m['positive']} positive, {m['negative']} negative)"
        + (f"; {m['excluded']} excluded ({excluded})" if m["excluded"] else "")
        + f". ROC AUC {_rate(m['auc'], m['auc_ci'])}, average precision {_rate(m['ap'], m['ap_ci'])}.",
        "",
    ]
    rows = [_row_cells(_t(r["threshold"]), r) for r in m["rows"]]
    rows += [
        _row_cells(target, m["target_fpr"]),
        _row_cells(f"{_t(m['best_f1']['threshold'])} (best F1)", m["best_f1"]),
    ]
    lines += _table(TABLE_HEADER, rows)
    if m["by"]:
        heads = [*(_t(t) for t in report["thresholds"]), target]
        lines += ["", f"TPR of the positives by {report['by']} (negatives shared):", ""]
        lines += _table(
            [_cell(report["by"]), "positives", *(f"TPR at {h}" for h in heads)],
            [
                [
                    _cell(g["value"]),
                    g["positives"],
                    *(_rate(r["tpr"], r["tpr_ci"], 2) for r in g["rows"][:-1]),
                ]
                for g in m["by"]
            ],
        )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary over metrics, each metric's table, per-group TPRs, exclusions."""
    images, fpr = report["images"], report["target_fpr"]
    source = f"scores of the run in {report['scores_from']}" if report["scores_from"] else "scored here"
    intervals = (
        f"95% CIs from {report['bootstrap']} stratified bootstrap resamples (seed {report['seed']})"
        if report["bootstrap"]
        else "no bootstrap intervals (--bootstrap 0)"
    )
    classes = ", ".join(f"{k}: {v}" for k, v in report["classes"].items())
    lines = [
        f"# eval: {report['data']}",
        "",
        f"{images['total']} labelled images: {images['positive']} positive (degraded), "
        f"{images['negative']} negative (clean); {classes}. Qualities: {source}.",
        "",
        "A row's min_score t flags (rejects) an image iff quality < t, exactly as a filter's "
        f"`min_score: t`; {intervals}.",
        "",
    ]
    summary_header = [*SUMMARY_HEADER[:5], f"min_score at FPR <= {fpr:g}", *SUMMARY_HEADER[5:]]
    lines += _table(summary_header, [_summary_cells(label, m) for label, m in report["metrics"].items()])
    for label, m in report["metrics"].items():
        lines += _metric_lines(report, label, m)
    excluded = report["excluded"]
    if excluded:
        lines += ["", f"## Excluded images ({len({e['image'] for e in excluded})})", ""]
        lines += _table(
            ["image", "class", "metrics", "reason"],
            [
                [_cell(e["image"]), _cell(e["class"]), _cell(", ".join(e["metrics"])), _cell(e["reason"])]
                for e in excluded[:MAX_LISTED]
            ],
        )
        if len(excluded) > MAX_LISTED:
            lines += ["", f"... and {len(excluded) - MAX_LISTED} more (eval.json lists all)."]
    return "\n".join(lines) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    """One row per metric and threshold, plus each metric's target-FPR and best-F1 rows (``kind``)."""
    columns = ["metric", "kind", "threshold", "flagged", "tp", "fp", "tn", "fn"]
    for rate in RATES:
        columns += [rate, f"{rate}_low", f"{rate}_high"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for label, m in report["metrics"].items():
        rows = [("threshold", r) for r in m["rows"]] + [
            ("target_fpr", m["target_fpr"]),
            ("best_f1", m["best_f1"]),
        ]
        for kind, r in rows:
            out = {"metric": label, "kind": kind, **{k: r[k] for k in columns[2:8]}}
            for rate in RATES:
                out[rate] = r[rate]
                out[f"{rate}_low"], out[f"{rate}_high"] = r[f"{rate}_ci"]
            writer.writerow({k: "" if v is None else v for k, v in out.items()})
    return buf.getvalue()


# --- plots ------------------------------------------------------------------------------------------
def write_plots(report: dict[str, Any], out: Path) -> None:
    """roc.png and pr.png: every metric on one plot each, AUC / AP in the legend."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    images = report["images"]
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    for label, m in report["metrics"].items():
        (line,) = ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], label=f"{label} (AUC {m['auc']:.3f})")
        at = m["target_fpr"]
        ax.plot([at["fpr"]], [at["tpr"]], "o", color=line.get_color())
    ax.axvline(
        report["target_fpr"], color="0.5", linestyle=":", linewidth=1, label=f"FPR {report['target_fpr']:g}"
    )
    ax.set(
        xlabel="FPR: clean images flagged",
        ylabel="TPR: degraded images caught",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="ROC (dot: min_score at the target FPR)",
    )
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(out / "roc.png", dpi=100, bbox_inches="tight")

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    prevalence = images["positive"] / images["total"]
    ax.axhline(prevalence, color="0.7", linestyle="--", linewidth=1, label=f"chance ({prevalence:.2f})")
    for label, m in report["metrics"].items():
        recall, precision = [0.0, *m["pr"]["recall"]], [m["pr"]["precision"][0], *m["pr"]["precision"]]
        ax.plot(recall, precision, drawstyle="steps-pre", label=f"{label} (AP {m['ap']:.3f})")
    ax.set(
        xlabel="recall (TPR)",
        ylabel="precision: flagged images that are degraded",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.set_title("precision-recall")
    ax.legend(loc="lower left", fontsize="small")
    fig.savefig(out / "pr.png", dpi=100, bbox_inches="tight")


# --- output dir -------------------------------------------------------------------------------------
def check_out_dir(out: Path, data: Path) -> None:
    """Refuse an --out that is a file, holds files eval did not write, or would become a class of ``data``."""
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise EvalError(f"--out {out} holds files eval did not write ({shown}); choose another --out")
    if data.is_dir() and out.resolve().is_relative_to(data.resolve()):
        raise EvalError(
            f"--out {out} is inside the labelled folder {data}: it would become a class; choose another"
        )


def write_outputs(report: dict[str, Any], markdown: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.md").write_text(markdown, encoding="utf-8")
    (out / "eval.csv").write_text(render_csv(report), encoding="utf-8")
    (out / "eval.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    write_plots(report, out)


# --- the command ------------------------------------------------------------------------------------
def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EvalError(
            f"--thresholds {text!r}: comma-separated numbers, e.g. {DEFAULT_THRESHOLDS}"
        ) from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise EvalError(f"--thresholds {text!r}: min_score values in [0, 1], e.g. {DEFAULT_THRESHOLDS}")
    return values


def run(args: argparse.Namespace) -> int:
    """``paddlemix-iqa eval``: print the Markdown report and write it with CSV, JSON and plots to --out."""
    _thresholds(args.thresholds)
    if not 0.0 <= args.target_fpr <= 1.0:
        raise EvalError(f"--target-fpr {args.target_fpr}: a rate in [0, 1]")
    if args.bootstrap < 0:
        raise EvalError("--bootstrap: 0 (no intervals) or more resamples")
    if args.workers < 1:
        raise EvalError("--workers: at least 1")
    specs = parse_metrics(args.metrics) if args.metrics else None
    out = Path(args.out)
    check_out_dir(out, Path(args.data))
    items = load_labelled(
        args.data,
        positive=args.positive,
        negative=args.negative,
        label_column=args.label_column,
        image_column=args.image_column,
    )
    if args.scores:
        specs, outcomes = scores_from_run(args.scores, items, specs)
    elif specs is None:
        from ..scorers import list_scorers

        raise EvalError(
            f"name the metrics to evaluate with --metrics (available: {', '.join(list_scorers())})"
        )
    else:
        outcomes = score_items(items, specs, args.workers)
    report = build_report(items, specs, outcomes, args)
    markdown = render_markdown(report)
    print(markdown, end="")
    write_outputs(report, markdown, out)
    print(f"written: {', '.join(str(out / name) for name in OUTPUTS)}", file=sys.stderr)
    return 0
