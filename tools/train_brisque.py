"""Fit a BRISQUE SVR on your own images and scores; the scorer loads the result by path.

    python tools/train_brisque.py scores.csv my_brisque.npz --kind mos --root /data/images
    # then: get_scorer("brisque", model_path="my_brisque.npz"), or brisque_filter(model_path=...)

The CSV holds one row per image: a path (relative paths are joined to ``--root``)
and a score, MOS (higher is better) or DMOS (lower is better); a header row is
optional, columns are picked with ``--path-column`` / ``--score-column``. Scores
are mapped onto the BRISQUE scale (0 best, 100 worst) over ``--range`` (default:
the CSV's min and max), so the scorer's normalisation ``(100 - s) / 100`` keeps
its meaning. Features are the official 36 (the same code as the scorer), scaled
to [-1, 1] per feature as libsvm's svm-scale does, and the epsilon-SVR (RBF
kernel, scikit-learn) is chosen by cross-validation over C and gamma; the
cross-validated SRCC/PLCC are printed before the final fit on all rows.
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from paddlemix_iqa.io import ImageLoadError, load_image
from paddlemix_iqa.scorers.brisque import N_FEATURES, brisque_features


def read_scores(path: Path, path_column: str | int, score_column: str | int) -> tuple[list[str], np.ndarray]:
    """Image paths and scores from a CSV, with or without a header row."""
    with open(path, newline="") as fh:
        rows = [row for row in csv.reader(fh) if row and not row[0].startswith("#")]
    if not rows:
        raise SystemExit(f"{path}: no rows")
    header = None
    try:
        float(rows[0][_index(score_column, None)])
    except (ValueError, IndexError, KeyError):
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    pi, si = _index(path_column, header), _index(score_column, header)
    return [row[pi].strip() for row in rows], np.array([float(row[si]) for row in rows])


def _index(column: str | int, header: list[str] | None) -> int:
    if isinstance(column, int) or str(column).isdigit():
        return int(column)
    if header is None:
        raise KeyError(column)
    if column not in header:
        raise SystemExit(f"column {column!r} not in the CSV header {header}")
    return header.index(column)


def _features(args: tuple[str, str | None]) -> np.ndarray | str:
    ref, root = args
    try:
        return brisque_features(load_image(ref, root=root))
    except (ImageLoadError, ValueError) as exc:
        return f"{ref}: {exc}"


def extract(paths: list[str], root: str | None, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Features for every path (in parallel processes); rows that fail are reported and dropped."""
    jobs = [(p, root) for p in paths]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_features, jobs, chunksize=4))
    else:
        results = [_features(job) for job in jobs]
    ok = np.array([not isinstance(r, str) for r in results])
    for r in results:
        if isinstance(r, str):
            print(f"skipped {r}", file=sys.stderr)
    feats = np.stack([r for r in results if not isinstance(r, str)]) if ok.any() else np.zeros((0, N_FEATURES))
    return feats, ok


def to_brisque_scale(scores: np.ndarray, kind: str, low: float, high: float) -> np.ndarray:
    """MOS or DMOS over [low, high] to BRISQUE's scale: 0 best, 100 worst."""
    unit = (scores - low) / (high - low)
    return 100.0 * (1.0 - unit if kind == "mos" else unit)


def svm_scale_fit(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.min(axis=0), feats.max(axis=0)


def svm_scale(feats: np.ndarray, fmin: np.ndarray, fmax: np.ndarray) -> np.ndarray:
    span = np.where(fmax > fmin, fmax - fmin, 1.0)
    return np.where(fmax > fmin, -1.0 + 2.0 * (feats - fmin) / span, 0.0)


def cross_validate(x, y, cs, gammas, epsilon, folds, seed):
    """(srcc, plcc, C, gamma, predictions) of the best grid point by K-fold SRCC."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import SVR

    def scaler(fit_x):
        fmin, fmax = svm_scale_fit(fit_x)
        return FunctionTransformer(svm_scale, kw_args={"fmin": fmin, "fmax": fmax})

    kfold = KFold(n_splits=folds, shuffle=True, random_state=seed)
    best = None
    for c in cs:
        for g in gammas:
            # the scaling is refitted inside each fold, so held-out rows never set the ranges
            preds = np.empty_like(y)
            for train, test in kfold.split(x):
                model = make_pipeline(scaler(x[train]), SVR(kernel="rbf", C=c, gamma=g, epsilon=epsilon))
                preds[test] = model.fit(x[train], y[train]).predict(x[test])
            srcc = spearmanr(preds, y).statistic
            plcc = pearsonr(preds, y).statistic
            if best is None or srcc > best[0]:
                best = (float(srcc), float(plcc), c, g, preds)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="CSV of (image path, score) rows")
    parser.add_argument("output", type=Path, help="model file to write (.npz)")
    parser.add_argument("--kind", choices=("mos", "dmos"), required=True, help="mos: higher is better")
    parser.add_argument("--root", default=None, help="folder that relative image paths are under")
    parser.add_argument("--path-column", default="0", help="name or 0-based index (default 0)")
    parser.add_argument("--score-column", default="1", help="name or 0-based index (default 1)")
    parser.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"), help="score range")
    parser.add_argument("--C", type=float, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--gamma", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    parser.add_argument("--epsilon", type=float, default=1.0, help="SVR epsilon, on the 0..100 scale")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="processes for feature extraction")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sklearn.svm import SVR

    paths, scores = read_scores(args.csv, args.path_column, args.score_column)
    low, high = args.range or (float(scores.min()), float(scores.max()))
    if not high > low:
        raise SystemExit(f"score range [{low}, {high}] is empty; pass --range LOW HIGH")
    feats, ok = extract(paths, args.root, args.workers)
    target = to_brisque_scale(scores[ok], args.kind, low, high)
    if len(target) < max(args.folds, 3) * 2:
        raise SystemExit(f"only {len(target)} usable images; BRISQUE needs a few dozen at least")
    print(f"{len(target)} images with features ({int((~ok).sum())} skipped)")

    srcc, plcc, c, g, _ = cross_validate(feats, target, args.C, args.gamma, args.epsilon, args.folds, args.seed)
    print(f"{args.folds}-fold cross-validation: SRCC {srcc:.4f}  PLCC {plcc:.4f}  (C={c:g}, gamma={g:g})")

    fmin, fmax = svm_scale_fit(feats)
    svr = SVR(kernel="rbf", C=c, gamma=g, epsilon=args.epsilon).fit(svm_scale(feats, fmin, fmax), target)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        support_vectors=svr.support_vectors_,
        coefs=svr.dual_coef_[0],
        rho=-float(svr.intercept_[0]),
        gamma=float(g),
        range_lower=-1.0,
        range_upper=1.0,
        feature_min=fmin,
        feature_max=fmax,
        quantize=False,
        description=(
            f"BRISQUE SVR trained on {len(target)} images of {args.csv.name} ({args.kind} over [{low}, {high}] "
            f"mapped to 0 best .. 100 worst); C={c:g}, gamma={g:g}, epsilon={args.epsilon:g}; "
            f"{args.folds}-fold SRCC {srcc:.4f}, PLCC {plcc:.4f}"
        ),
        cv_srcc=srcc,
        cv_plcc=plcc,
    )
    print(f"wrote {args.output}: {len(svr.support_)} support vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
