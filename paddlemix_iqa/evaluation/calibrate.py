"""``paddlemix-iqa calibrate``: fit a fused model (several scores + image size -> one probability).

::

    paddlemix-iqa calibrate DATA --out blur.json \\
        [--features laplacian,tenengrad,gradient_mean,log_long_side] [--model logistic|gbt] \\
        [--cv 5] [--seed 0] [--target-fpr 0.05] [--group-column source] [--workers 2] \\
        [--positive blurred] [--negative clean] [--positive-name blurred]

``DATA`` is labelled data as ``eval`` reads it (:mod:`.labelled`: a folder per class, or a
``.jsonl`` / ``.csv`` with label and image columns); label 1 (positive) is the degraded class.

Features (``--features``, comma-separated): ``[TRANSFORM:]SCORER[(PARAM=VALUE,...)]`` or an
image feature (``log_long_side``, ``log_pixels``). TRANSFORM is ``none``, ``log``
(``log(max(x, 1e-6))``) or ``log1p`` (``log1p(max(x, 0))``); without one, a scorer whose native
range is unbounded (laplacian, tenengrad, gradient_mean) gets ``log``, a bounded one ``none``.
Names: ``log_laplacian``, ``log_laplacian(tiles=4)``, ``brisque``. Example:
``--features "laplacian,log:laplacian(tiles=4),brisque,log_long_side"``.

Every image is decoded once, by the package's loader, at the model's decode side (the
largest its scorers need), exactly as ``fused_filter`` sees it; unreadable images, images a
scorer refuses (too small, flat) and non-finite features are counted and skipped.
Cross-validation: ``StratifiedKFold(cv, shuffle=True, random_state=seed)``, or
``StratifiedGroupKFold`` with ``--group-column`` (blurred copies of one photo stay in one fold).
The threshold is chosen on the out-of-fold probabilities: ``p > t`` flags, and ``t`` is the
cut with out-of-fold FPR <= ``--target-fpr`` and the highest TPR (fewest false positives among
equals; the shortest decimal between the two out-of-fold probabilities it separates). The model is then
refitted on all images and written as JSON (format in :mod:`paddlemix_iqa.scorers.fused`):
the same data, options, seed and library versions write the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import EvalError

DEFAULT_FEATURES = "laplacian,tenengrad,gradient_mean,log_long_side"
MODELS = ("logistic", "gbt")
#: images per scoring call; fixed, so results do not depend on --workers
CHUNK = 8
#: how many skipped images are named in the output
SHOW_SKIPPED = 5


# --- arguments ---------------------------------------------------------------------------------
def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data", help="labelled images: a folder per class, or a .jsonl / .csv with a label column"
    )
    parser.add_argument("--out", required=True, help="the model file to write (.json)")
    parser.add_argument(
        "--features",
        default=DEFAULT_FEATURES,
        help="comma-separated [TRANSFORM:]SCORER[(PARAM=VALUE,...)] (TRANSFORM none|log|log1p; default log for "
        "unbounded scorers, none otherwise) or log_long_side / log_pixels (default: %(default)s)",
    )
    parser.add_argument("--model", choices=MODELS, default="logistic", help="default: %(default)s")
    parser.add_argument("--cv", type=_int_at_least(2), default=5, help="cross-validation folds (default: 5)")
    parser.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="fold shuffling and model seed, 0..2**32-1 (default: 0)",
    )
    parser.add_argument(
        "--target-fpr",
        type=_fraction,
        default=0.05,
        help="largest out-of-fold false-positive rate of the stored threshold (default: 0.05)",
    )
    parser.add_argument("--positive", help="class name(s) that are positive (degraded), comma-separated")
    parser.add_argument("--negative", help="class name(s) that are negative (clean), comma-separated")
    parser.add_argument(
        "--label-column", default="label", help="label column of a .jsonl/.csv (default: label)"
    )
    parser.add_argument(
        "--image-column", default="image", help="image column of a .jsonl/.csv (default: image)"
    )
    parser.add_argument(
        "--group-column",
        help="column naming each image's source photo (make-eval-set writes 'source'): copies of one photo "
        "stay in one fold (StratifiedGroupKFold)",
    )
    parser.add_argument(
        "--workers", type=_int_at_least(1), default=2, help="processes computing features (default: 2)"
    )
    parser.add_argument(
        "--positive-name",
        help="what p is the probability of, stored as 'positive' (default: the positive classes)",
    )
    parser.add_argument(
        "--C",
        dest="C",
        type=_positive_float,
        default=1.0,
        help="logistic: inverse regularisation (default: 1)",
    )
    parser.add_argument(
        "--trees", type=_int_at_least(1), default=100, help="gbt: number of trees (default: 100)"
    )
    parser.add_argument("--depth", type=_int_at_least(1), default=3, help="gbt: tree depth (default: 3)")
    parser.add_argument(
        "--learning-rate", type=_positive_float, default=0.1, help="gbt: learning rate (default: 0.1)"
    )


def run(args: argparse.Namespace) -> int:
    result = calibrate(
        args.data,
        out=args.out,
        features=args.features,
        model=args.model,
        cv=args.cv,
        seed=args.seed,
        target_fpr=args.target_fpr,
        positive=args.positive,
        negative=args.negative,
        label_column=args.label_column,
        image_column=args.image_column,
        group_column=args.group_column,
        workers=args.workers,
        positive_name=args.positive_name,
        C=args.C,
        trees=args.trees,
        depth=args.depth,
        learning_rate=args.learning_rate,
    )
    print(result.summary())
    return 0


# --- feature specs -----------------------------------------------------------------------------
_TRANSFORM = re.compile(r"(?P<transform>[A-Za-z0-9_]+):(?P<rest>[^(]*(\(.*)?)")  # "log:laplacian(tiles=4)"


def _default_transform(metric: str) -> str:
    from ..scorers import scorer_class

    low, high = scorer_class(metric).native_range
    return "none" if math.isfinite(low) and math.isfinite(high) else "log"


def parse_features(text: str | Sequence[str]) -> list[dict[str, Any]]:
    """``"laplacian,log:laplacian(tiles=4),log_long_side"`` -> the model file's feature objects."""
    from ..registry import SCORERS
    from ..scorers.fused import IMAGE_FEATURES, TRANSFORMS
    from .evaluate import parse_metrics, split_top

    tokens = split_top(text, "--features") if isinstance(text, str) else [t.strip() for t in text if t.strip()]
    if not tokens:
        raise EvalError("--features is empty")
    specs = []
    for token in tokens:
        prefixed = _TRANSFORM.fullmatch(token)
        transform = prefixed["transform"] if prefixed else None
        (parsed,) = parse_metrics(prefixed["rest"] if prefixed else token, "--features")
        metric, params = parsed.name, parsed.params
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric):
            raise EvalError(f"feature {token!r} is not [TRANSFORM:]SCORER[(PARAM=VALUE,...)]")
        if metric in IMAGE_FEATURES:
            if transform is not None or params:
                raise EvalError(f"feature {token!r}: image features take no transform or parameters")
            specs.append({"name": metric, "image": metric})
            continue
        if transform is not None and transform not in TRANSFORMS:
            raise EvalError(
                f"feature {token!r}: transform {transform!r} is not one of {', '.join(TRANSFORMS)}"
            )
        if metric == "fused" or metric not in SCORERS:
            names = [n for n in SCORERS.names() if n != "fused"]
            raise EvalError(
                f"feature {token!r}: unknown scorer {metric!r}; scorers: {', '.join(names)}; "
                f"image features: {', '.join(IMAGE_FEATURES)}"
            )
        transform = transform or _default_transform(metric)
        name = metric if transform == "none" else f"{transform}_{metric}"
        if params:
            name += "(" + ",".join(f"{k}={json.dumps(params[k])}" for k in sorted(params)) + ")"
        specs.append({"name": name, "metric": metric, "params": params, "transform": transform})
    return specs


# --- computing features (in worker processes) ---------------------------------------------------
@functools.lru_cache(maxsize=8)
def _feature_set(specs_json: str):
    from ..scorers.fused import FeatureSet

    return FeatureSet.from_dicts(json.loads(specs_json))


def _compute_chunk(specs_json: str, paths: Sequence[str]) -> list[tuple[list[float] | None, str | None]]:
    """(feature row, None) or (None, why skipped) per path; each image decoded once at the decode side."""
    import numpy as np

    from ..io import ImageLoadError, decode_or_error

    features = _feature_set(specs_json)
    side = features.decode_side
    out: list[tuple[list[float] | None, str | None]] = [(None, None)] * len(paths)
    images, where = [], []
    for i, path in enumerate(paths):
        loaded = decode_or_error(path, max_side=side)
        if isinstance(loaded, ImageLoadError):
            out[i] = (None, f"unreadable: {loaded.reason}")
            continue
        reason = features.check_image(loaded.pixels)
        if reason is not None:
            out[i] = (None, f"unscorable: {reason}")
            continue
        images.append(loaded.pixels)
        where.append(i)
    if not images:
        return out
    try:
        rows = features.feature_matrix(images)
    except Exception:  # noqa: BLE001 - one bad image must not lose its chunk: score one by one
        rows = None
    for k, i in enumerate(where):
        if rows is not None:
            row = rows[k]
        else:
            try:
                row = features.feature_matrix([images[k]])[0]
            except Exception as exc:  # noqa: BLE001 - a scorer crash is a skipped image, with its reason
                out[i] = (None, f"score_error: {type(exc).__name__}: {exc}")
                continue
        if not np.isfinite(row).all():
            bad = [features.names[j] for j in np.flatnonzero(~np.isfinite(row))]
            out[i] = (None, f"not_finite: {', '.join(bad)}")
        else:
            out[i] = ([float(v) for v in row], None)
    return out


def compute_features(
    specs: list[dict[str, Any]], paths: Sequence[str], workers: int = 1
) -> list[tuple[list[float] | None, str | None]]:
    """Feature rows (or skip reasons) for ``paths``, in order; the same whatever ``workers`` is."""
    specs_json = json.dumps(specs, sort_keys=True)
    chunks = [list(paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    results: list[tuple[list[float] | None, str | None]] = []
    progress = _progress(len(paths))
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        from ..pipeline.runner import pool_context  # forkserver: forking a threaded parent can deadlock

        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=pool_context()) as pool:
            for part in pool.map(_compute_chunk, [specs_json] * len(chunks), chunks):
                results.extend(part)
                progress(len(part))
    else:
        for chunk in chunks:
            results.extend(_compute_chunk(specs_json, chunk))
            progress(len(chunk))
    progress(None)
    return results


def _progress(total: int) -> Callable[[int | None], None]:
    """A progress bar on a terminal's stderr; nothing otherwise."""
    if not sys.stderr.isatty() or total < 2 * CHUNK:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc="features", leave=False, file=sys.stderr)

    def step(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return step


# --- the threshold ------------------------------------------------------------------------------
def choose_threshold(p: Sequence[float], y: Sequence[int], target_fpr: float) -> tuple[float, float, float]:
    """(t, FPR, TPR): ``p > t`` flags; the cut with FPR <= ``target_fpr`` and the highest TPR (the fewest
    false positives among equals), ``t`` the shortest decimal between the two probabilities it separates
    (0.9, not 0.8989298941152942: a value a config can show).

    Eval's rule on ``quality = -p``: ``-p < t'`` flags exactly when ``p > -t'``, so this is
    :func:`~paddlemix_iqa.evaluation.metrics.threshold_for_fpr` with the sign turned.
    """
    import numpy as np

    from .metrics import threshold_for_fpr

    p, y = np.asarray(p, dtype=np.float64), np.asarray(y)
    t = -threshold_for_fpr(-p, y, target_fpr) + 0.0  # + 0.0: no -0.0 in a model file
    return t, float(np.mean(p[y == 0] > t)), float(np.mean(p[y == 1] > t))


# --- fitting ------------------------------------------------------------------------------------
def _estimator(kind: str, seed: int, C: float, trees: int, depth: int, learning_rate: float):
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=10_000, random_state=seed))
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=trees, max_depth=depth, learning_rate=learning_rate, random_state=seed
    )


def export(estimator, X):
    """The numpy predictor (:mod:`paddlemix_iqa.scorers.fused`) of a fitted estimator; ``X`` is a sample of
    the training data (gbt reads its constant initial log-odds through it)."""
    import numpy as np

    from ..scorers.fused import LogisticModel, TreesModel

    if hasattr(estimator, "steps"):  # StandardScaler + LogisticRegression
        scaler, logistic = estimator.steps[0][1], estimator.steps[-1][1]
        return LogisticModel(scaler.mean_, scaler.scale_, logistic.coef_, float(logistic.intercept_[0]))
    try:
        init = float(estimator._raw_predict_init(np.asarray(X[:1], dtype=np.float32))[0, 0])
    except AttributeError:  # private in sklearn: the same from the prior and the logit link
        from scipy.special import logit

        eps = np.finfo(np.float64).eps
        prior = estimator.init_.predict_proba(np.asarray(X[:1], dtype=np.float32))[0, 1]
        init = float(logit(np.clip(prior, eps, 1 - eps)))
    trees = []
    for tree in estimator.estimators_[:, 0]:
        t = tree.tree_
        trees.append(
            {
                "feature": t.feature.tolist(),
                "threshold": t.threshold.tolist(),
                "left": t.children_left.tolist(),
                "right": t.children_right.tolist(),
                "value": t.value[:, 0, 0].tolist(),
            }
        )
    return TreesModel(init, float(estimator.learning_rate), trees)


@dataclass
class Calibration:
    """What ``calibrate`` fitted: the model document, its path, and what to print."""

    doc: dict[str, Any]
    out: str
    features: list[str]
    decode_side: int | None
    n_items: int
    skipped: list[tuple[str, str]]
    fold_auc: list[float | None]
    seconds_features: float
    seconds_fit: float
    workers: int
    weights: dict[str, float] = field(default_factory=dict)  # coefficients (logistic) or importances (gbt)

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        doc, thr, tr = self.doc, self.doc["threshold"], self.doc["training"]
        counts = tr["counts"]
        lines = [
            f"calibrate: {counts['used']} of {self.n_items} images ({counts['positive']} positive "
            f"{doc['positive']!r}, {counts['negative']} negative); {len(self.skipped)} skipped",
        ]
        by = Counter(reason.split(":")[0] for _, reason in self.skipped)
        for kind, n in sorted(by.items()):
            lines.append(f"  skipped {kind}: {n}")
        for path, reason in self.skipped[:SHOW_SKIPPED]:
            lines.append(f"    {path}: {reason}")
        side = "full resolution" if self.decode_side is None else f"long side <= {self.decode_side} px"
        lines.append(
            f"features: {', '.join(self.features)} (decoded at {side}; {self.seconds_features:.1f} s, "
            f"{self.workers} worker{'s' if self.workers > 1 else ''})"
        )
        folds = " ".join("n/a" if a is None else f"{a:.4f}" for a in self.fold_auc)
        lines.append(
            f"model: {doc['model']['type']}, {tr['cv_folds']}-fold CV ({tr['split']}, seed {tr['seed']}); "
            f"fit {self.seconds_fit:.1f} s"
        )
        lines.append(f"CV AUC {thr['cv_auc']:.4f} (folds: {folds}); out-of-fold AUC {tr['oof_auc']:.4f}")
        lines.append(
            f"threshold: p > {thr['max_value']:.6g} flags {doc['positive']!r}: out-of-fold FPR "
            f"{thr['cv_fpr']:.4f} (target {thr['target_fpr']:g}), TPR {thr['cv_tpr']:.4f}"
        )
        if self.weights:
            title = (
                "coefficients (per standard deviation of each feature; > 0 raises p):"
                if doc["model"]["type"] == "logistic"
                else "feature importances:"
            )
            lines.append(title)
            width = max(len(k) for k in self.weights)
            lines += [f"  {k:<{width}}  {v:+.4f}" for k, v in self.weights.items()]
        lines.append(f"wrote {self.out}")
        lines.append(f"use: - fused_filter: {{model: {self.out}, max_value: {thr['max_value']!r}}}")
        return "\n".join(lines)


def _relative(path: str, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _write(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        raise EvalError(f"--out {path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(text.encode("utf-8"))  # bytes: no newline translation, the same file everywhere
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvalError(f"--out {path}: cannot write it ({exc.strerror or exc})") from None


def calibrate(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike,
    features: str | Sequence[str] = DEFAULT_FEATURES,
    model: str = "logistic",
    cv: int = 5,
    seed: int = 0,
    target_fpr: float = 0.05,
    positive: str | Sequence[str] | None = None,
    negative: str | Sequence[str] | None = None,
    label_column: str = "label",
    image_column: str = "image",
    group_column: str | None = None,
    workers: int = 1,
    positive_name: str | None = None,
    C: float = 1.0,
    trees: int = 100,
    depth: int = 3,
    learning_rate: float = 0.1,
) -> Calibration:
    """Fit, cross-validate and write a fused model; :class:`EvalError` for bad data or options."""
    try:
        import sklearn
    except ImportError:
        raise EvalError(
            "calibrate needs scikit-learn: pip install 'paddlemix-iqa[train]' (or pip install scikit-learn)"
        ) from None
    import numpy as np
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from ..scorers.fused import FeatureSet, FusedModel, load_model
    from .labelled import load_labelled

    if model not in MODELS:
        raise EvalError(f"--model {model!r} is not one of {', '.join(MODELS)}")
    if not (isinstance(cv, int) and cv >= 2):
        raise EvalError(f"--cv must be an integer of at least 2, not {cv!r}")
    if not (isinstance(seed, int) and 0 <= seed < 2**32):
        raise EvalError(f"--seed must be an integer in [0, 2**32), not {seed!r}")
    if not 0.0 <= target_fpr < 1.0:
        raise EvalError(f"--target-fpr must be in [0, 1), not {target_fpr}")
    specs = parse_features(features)
    try:
        feature_set = FeatureSet.from_dicts(specs)
        feature_set.check_weights()
    except ValueError as exc:
        raise EvalError(f"--features: {exc}") from None
    out_path = Path(out)
    if out_path.suffix.lower() != ".json":
        raise EvalError(f"--out {out}: a fused model is a .json file")
    if not out_path.parent.is_dir():
        raise EvalError(f"--out {out}: folder {out_path.parent} does not exist")

    items = load_labelled(
        data, positive=positive, negative=negative, label_column=label_column, image_column=image_column
    )
    if group_column is not None:
        missing = [it.path for it in items if it.extra.get(group_column) in (None, "")]
        if missing:
            raise EvalError(
                f"--group-column {group_column!r}: {len(missing)} of {len(items)} items have no such column "
                f"(e.g. {missing[0]}); a folder per class has no columns: use a .jsonl or .csv"
            )

    start = time.perf_counter()
    rows = compute_features(specs, [it.path for it in items], workers)
    seconds_features = time.perf_counter() - start
    used = [(it, row) for it, (row, _) in zip(items, rows, strict=True) if row is not None]
    skipped = [(it.path, reason) for it, (row, reason) in zip(items, rows, strict=True) if row is None]
    X = np.array([row for _, row in used], dtype=np.float64).reshape(len(used), len(specs))
    y = np.array([it.label for it, _ in used], dtype=np.int64)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < cv:
        raise EvalError(
            f"{n_pos} positive and {n_neg} negative images could be scored ({len(skipped)} skipped); "
            f"{cv}-fold cross-validation needs at least {cv} of each"
        )
    groups = None
    if group_column is not None:
        groups = np.array([str(it.extra[group_column]) for it, _ in used])
        if len(set(groups.tolist())) < cv:
            raise EvalError(
                f"--group-column {group_column!r}: {len(set(groups.tolist()))} groups, fewer than --cv {cv}"
            )

    start = time.perf_counter()
    base = _estimator(model, seed, C, trees, depth, learning_rate)
    if groups is None:
        folds = list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(X, y))
        split = "StratifiedKFold, shuffled"
    else:
        folds = list(StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed).split(X, y, groups))
        split = f"StratifiedGroupKFold by {group_column!r}, shuffled"
    oof = np.empty(len(y), dtype=np.float64)
    fold_auc: list[float | None] = []
    for train, test in folds:
        if len(np.unique(y[train])) < 2:
            raise EvalError("a cross-validation training fold holds one class only; use fewer --cv folds")
        fitted = clone(base).fit(X[train], y[train])
        oof[test] = fitted.predict_proba(X[test])[:, 1]
        fold_auc.append(float(roc_auc_score(y[test], oof[test])) if len(np.unique(y[test])) == 2 else None)
    known = [a for a in fold_auc if a is not None]
    cv_auc = float(np.mean(known)) if known else float(roc_auc_score(y, oof))
    oof_auc = float(roc_auc_score(y, oof))
    t, cv_fpr, cv_tpr = choose_threshold(oof, y, target_fpr)

    final = clone(base).fit(X, y)
    predictor = export(final, X)
    expected = final.predict_proba(X)[:, 1]
    seconds_fit = time.perf_counter() - start

    data_path = Path(data).resolve()
    root = data_path if data_path.is_dir() else data_path.parent
    listing = sorted([_relative(it.path, root), it.label] for it, _ in used)
    digest = hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode("utf-8")).hexdigest()
    positives = sorted({it.cls for it, _ in used if it.label == 1})
    negatives = sorted({it.cls for it, _ in used if it.label == 0})
    if model == "logistic":
        estimator = {"C": C, "max_iter": 10_000, "scaler": "StandardScaler", "solver": "lbfgs"}
    else:
        estimator = {"learning_rate": learning_rate, "max_depth": depth, "n_estimators": trees}
    training = {
        "classes": {"negative": negatives, "positive": positives},
        "counts": {
            "items": len(items),
            "negative": n_neg,
            "positive": n_pos,
            "skipped": dict(sorted(Counter(reason.split(":")[0] for _, reason in skipped).items())),
            "used": len(used),
        },
        "cv_folds": cv,
        "data_sha256": digest,
        "estimator": estimator,
        "fold_auc": fold_auc,
        "oof_auc": oof_auc,
        "seed": seed,
        "sklearn": sklearn.__version__,
        "split": split,
    }
    if group_column is not None:
        training["group_column"] = group_column
        training["groups"] = len(set(groups.tolist()))
    threshold = {
        "cv_auc": cv_auc,
        "cv_fpr": cv_fpr,
        "cv_tpr": cv_tpr,
        "max_value": t,
        "target_fpr": target_fpr,
    }
    fused = FusedModel(
        feature_set,
        predictor,
        positive=positive_name or "+".join(positives),
        threshold=threshold,
        training=training,
    )
    if not np.array_equal(fused.predict_proba(X), expected):
        raise RuntimeError(
            "the exported model does not reproduce scikit-learn's probabilities; please report"
        )
    text = fused.dumps()
    _write(out_path, text)
    reloaded = load_model(out_path)
    if not np.array_equal(reloaded.predict_proba(X), expected):
        raise RuntimeError(f"{out_path} does not read back to the same probabilities; please report")

    if model == "logistic":
        weights = dict(zip(feature_set.names, predictor.coef.ravel().tolist(), strict=True))
        weights["(intercept)"] = float(predictor.intercept[0])
    else:
        weights = dict(zip(feature_set.names, final.feature_importances_.tolist(), strict=True))
    return Calibration(
        doc=json.loads(text),
        out=str(out_path),
        features=feature_set.names,
        decode_side=feature_set.decode_side,
        n_items=len(items),
        skipped=skipped,
        fold_auc=fold_auc,
        seconds_features=seconds_features,
        seconds_fit=seconds_fit,
        workers=workers,
        weights=weights,
    )
