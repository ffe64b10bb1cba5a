"""Fit the likely-code model: ``paddlemix_iqa/data/code_model.json`` (two small logistic regressions).

Data (deterministic): codes pasted on photos by the degraded-set generator of
``benchmarks/eval_codes_degraded.py`` (QR, EAN-13, Code-128, DataMatrix; long side 40-160 px,
0-45 degrees, blur sigma 0-2, JPEG 30-90), seeds ``0 .. --positives - 1``, and clean views
(the photo, crops, rescales) of the negative photos. ``--photos train`` uses only the photos
:func:`eval_codes_degraded.is_test_photo` does not hold out (``test`` the other half), so the
benchmark's ``--split test`` (``train``) figures are on photos that fold never saw; the
benchmark's seeds start at 100000: codes no fit ever saw.

1. Cell model: every 4 x 4 px cell inside a pasted symbol is a positive, cells far from it and
   cells of clean views are negatives; features clipped to their 0.5-99.5 percentiles, with
   squares and two products; one round of hard negatives (the 300 highest cells of each clean view).
   Text labels pasted like the codes (``eval_codes_degraded.text_sample``) are negatives too.
   A quarter of the pasted codes and a grey copy of every colour view teach both models what codes
   and clean photos look like without colour.
2. Region model: candidates (components of code-like cells, symbols located by zxing-cpp and
   OpenCV's 1-D finder) whose centre lies on the pasted symbol are positives, every other one
   negative; negatives weighted 5x (a false positive costs more than a miss).
3. ``min_confidence`` (``--min-confidence``, 0.5): chosen by 2-fold cross-validation over the
   photos (fit ``--photos train``, benchmark ``--split test``; fit ``--photos test``, benchmark
   ``--split train``; ``eval_codes_degraded.py --pool`` on both dumps): at 0.5 the pooled held-out
   clean views had 0.5% false positives. The shipped model is then fitted on all photos
   (``--photos all``) with that threshold.

Needs scikit-learn (the fit only; the package reads the JSON with numpy).

    python tools/fit_code_model.py --photos all            # the shipped model (~5 min on 2 cores)
    python tools/fit_code_model.py --photos train --out /tmp/a.json   # a cross-validation fold
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: the same sums, the same fit, every run
import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location(
    "eval_codes_degraded", ROOT / "benchmarks" / "eval_codes_degraded.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

from paddlemix_iqa.io import load_image  # noqa: E402
from paddlemix_iqa.scorers import codes  # noqa: E402

#: squares of every feature, and std x saturation, gradient x saturation
PRODUCTS = [(i, i) for i in range(len(codes.CELL_FEATURES))] + [(0, 3), (2, 3)]  # std, grad x saturation
SHRINK, GROW = 0.85, 1.6

_STATE: dict = {}


def _init(train_coco: list[str]) -> None:
    cv2.setNumThreads(1)
    _STATE["photos"] = [load_image(p) for p in train_coco]
    _STATE["scorer"] = codes.CodeScorer(detect="decoded")


def _prepare(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if max(image.shape[:2]) > 1024:
        f = 1024 / max(image.shape[:2])
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return image, cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def _positive_image(seed: int) -> tuple[np.ndarray, dict]:
    """A degraded sample; one in four made grey (codes in black-and-white photos)."""
    photos = _STATE["photos"]
    image, cond = bench.degraded_sample(photos[seed % len(photos)], seed)
    return (_grey(image) if seed % 4 == 0 else image), cond


def _quad_cells(shape, quad: np.ndarray, factor: float) -> np.ndarray:
    q = quad / codes.CELL - 0.5
    centre = q.mean(axis=0)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round((q - centre) * factor + centre).astype(np.int32)], 1)
    return mask.astype(bool)


def _cells_of_positive(seed: int) -> tuple[np.ndarray, np.ndarray]:
    image, cond = _positive_image(seed)
    rgb, gray = _prepare(image)
    feats, _ = codes.cell_features(rgb, gray)
    shape = feats.shape[1:]
    inner = _quad_cells(shape, cond["quad"], SHRINK)
    far = ~cv2.dilate(
        _quad_cells(shape, cond["quad"], GROW).astype(np.uint8), np.ones((5, 5), np.uint8)
    ).astype(bool)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(far.ravel())
    idx = rng.choice(idx, min(len(idx), 200), replace=False)
    flat = feats.reshape(feats.shape[0], -1).T
    live = np.zeros(len(flat), bool)
    live[codes.live_cells(feats)] = True
    return (
        flat[inner.ravel() & live],
        flat[idx[live[idx]]],
        float(live[inner.ravel()].mean()) if inner.any() else 1.0,
    )


def _text_image(seed: int) -> np.ndarray:
    photos = _STATE["photos"]
    image = bench.text_sample(photos[seed % len(photos)], seed)
    return _grey(image) if seed % 4 == 0 else image


def _cells_of_negative(task) -> np.ndarray:
    image = _text_image(task) if isinstance(task, int) else task[1]
    rgb, gray = _prepare(image)
    feats, _ = codes.cell_features(rgb, gray)
    flat = feats.reshape(feats.shape[0], -1)
    return np.ascontiguousarray(flat[:, codes.live_cells(feats)].T)  # only the cells the scorer scores


def _regions(image: np.ndarray, model: codes.CodeModel) -> list[codes.Candidate]:
    rgb, gray = _prepare(image)
    _, hits = _STATE["scorer"]._screen_hits(gray, stop_early=False)
    return codes.region_candidates(rgb, gray, hits, model)


def _regions_of_positive(args) -> tuple[np.ndarray, np.ndarray]:
    seed, model = args
    image, cond = _positive_image(seed)
    cands = _regions(image, model)
    y = np.array([bench.on_symbol(c.polygon, cond["quad"]) for c in cands], bool)
    return np.array([c.features for c in cands]).reshape(len(cands), len(codes.REGION_FEATURES)), y


def _regions_of_negative(args) -> np.ndarray:
    task, model = args
    image = _text_image(task) if isinstance(task, int) else task[1]
    cands = _regions(image, model)
    return np.array([c.features for c in cands]).reshape(len(cands), len(codes.REGION_FEATURES))


def _terms(x: np.ndarray, low, high) -> np.ndarray:
    """The cell model's terms of cells given as rows."""
    return codes.cell_terms(np.ascontiguousarray(x.T), low, high, PRODUCTS).T


def _fit_lr(x: np.ndarray, y: np.ndarray, c: float, weights=None) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised columns; returns weights and bias on the raw columns."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-9] = 1.0
    lr = LogisticRegression(C=c, max_iter=5000, class_weight=weights).fit((x - mean) / scale, y)
    w = lr.coef_[0] / scale
    return w, float(lr.intercept_[0] - (w * mean).sum())


def _model(cell: dict, region_w=None, region_b: float = 0.0, min_confidence: float = 0.5) -> codes.CodeModel:
    n = len(codes.REGION_FEATURES)
    return codes.CodeModel.from_dict(
        {
            "cell": cell,
            "region": {
                "features": list(codes.REGION_FEATURES),
                "weights": [0.0] * n if region_w is None else list(region_w),
                "bias": region_b,
            },
            "min_confidence": min_confidence,
        }
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--positives", type=int, default=2400, help="degraded samples drawn (seeds 0..N-1)")
    parser.add_argument(
        "--views", type=int, default=12, help="views per clean photo (itself, crops, rescales)"
    )
    parser.add_argument("--texts", type=int, default=600, help="photos with a pasted text label (negatives)")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="the default threshold written to the model (0.5: about 0.5%% false positives held out, see the docstring)",
    )
    parser.add_argument(
        "--photos",
        choices=("train", "test", "all"),
        default="train",
        help="fit on the photos not held out (default), on the held-out half (the other fold), or on all",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(codes.MODEL_PATH))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cv2.setNumThreads(1)

    def used(name: str) -> bool:
        return args.photos == "all" or bench.is_test_photo(name) == (args.photos == "test")

    train_coco = [str(p) for p in bench.coco_paths() if used(p.name)]
    sources = [(n, im) for n, im in bench.negative_sources() if used(n)]
    views = [v for n, im in sources for v in bench.negative_views(n, im, args.views)]
    views += [(n + "#grey", _grey(im)) for n, im in views if im.ndim == 3 and np.ptp(im, axis=2).max() > 8]
    seeds = list(range(args.positives))
    views += list(range(args.texts))  # text labels pasted like the codes: negatives too (seeds)
    print(
        f"{len(train_coco)} training COCO photos, {len(sources)} clean photos -> {len(views)} views, {len(seeds)} codes"
    )

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        args.workers, initializer=_init, initargs=(train_coco,), mp_context=context
    ) as pool:
        # 1. cell model
        pos = list(pool.map(_cells_of_positive, seeds, chunksize=16))
        neg = list(pool.map(_cells_of_negative, views, chunksize=4))
        rng = np.random.default_rng(0)
        xp = np.concatenate([p for p, _, _ in pos])
        xn = np.concatenate(
            [n for _, n, _ in pos] + [v[rng.choice(len(v), min(len(v), 2000), replace=False)] for v in neg]
        )
        print(f"symbol cells with enough contrast to be scored: {np.mean([f for _, _, f in pos]):.3f}")
        low = np.percentile(np.r_[xp, xn], 0.5, axis=0).astype(np.float32)
        high = np.percentile(np.r_[xp, xn], 99.5, axis=0).astype(np.float32)
        for round_ in range(2):
            x = _terms(np.r_[xp, xn], low, high)
            w, b = _fit_lr(x, np.r_[np.ones(len(xp)), np.zeros(len(xn))], 1.0)
            if round_ == 0:  # hard negatives: the highest cells of every clean view
                hard = [v[np.argsort(-(_terms(v, low, high) @ w))[:300]] for v in neg]
                xn = np.r_[xn, np.concatenate(hard)]
        # hysteresis thresholds from the clean cells: strong = 1 in 1000, weak = 1 in 100, 1 in 400
        sn_all = np.concatenate([_terms(v, low, high) @ w + b for v in neg])
        strong, weak, weak_split = (float(np.quantile(sn_all, 1 - 1 / q)) for q in (1000, 100, 400))
        del neg, sn_all
        cell = {
            "size": codes.CELL,
            "features": list(codes.CELL_FEATURES),
            "low": low.tolist(),
            "high": high.tolist(),
            "products": [list(p) for p in PRODUCTS],
            "weights": w.astype(np.float32).tolist(),
            "bias": b,
            "strong": strong,
            "weak": weak,
            "weak_split": weak_split,
        }
        sp = _terms(xp, low, high) @ w + b
        print(
            f"cells: {len(xp)} positive, {len(xn)} negative; strong {strong:.2f}, weak {weak:.2f}: positives above "
            f"them {np.mean(sp > strong):.3f}, {np.mean(sp > weak):.3f} ({time.perf_counter() - start:.0f} s)"
        )

        # 2. region model
        model = _model(cell)
        regions = list(pool.map(_regions_of_positive, [(s, model) for s in seeds], chunksize=16))
        clean = list(pool.map(_regions_of_negative, [(v, model) for v in views], chunksize=4))
    x = np.concatenate([f for f, _ in regions] + [f for f in clean if len(f)])
    y = np.concatenate([t for _, t in regions] + [np.zeros(len(f), bool) for f in clean if len(f)])
    rlow, rhigh = np.percentile(x, 0.5, axis=0), np.percentile(x, 99.5, axis=0)
    x = np.clip(x, rlow, rhigh)
    rw, rb = _fit_lr(x, y, 0.1, {0: 5.0, 1: 1.0})

    # 3. the default threshold: fixed (2-fold cross-validation over the photos picks it, see below)
    def best(f: np.ndarray, keep=None) -> float:
        f = np.clip(f if keep is None else f[keep], rlow, rhigh)
        return float((1 / (1 + np.exp(-(f @ rw + rb)))).max()) if len(f) else 0.0

    threshold = args.min_confidence
    tpr = np.mean([best(f, t) >= threshold for f, t in regions])
    fpr = np.mean([best(f) >= threshold for f in clean])
    print(
        f"regions: {int(y.sum())} positive, {int((~y).sum())} negative; min_confidence {threshold}: "
        f"training TPR (likely only) {tpr:.3f}, training FPR {fpr:.4f} (in-sample)"
    )

    data = {
        "format": "paddlemix_iqa likely-code model",
        "version": 1,
        "cell": cell,
        "region": {
            "features": list(codes.REGION_FEATURES),
            "low": rlow.tolist(),
            "high": rhigh.tolist(),
            "weights": rw.tolist(),
            "bias": rb,
        },
        "min_confidence": threshold,
        "fitted": {
            "by": "tools/fit_code_model.py",
            "date": datetime.date.today().isoformat(),
            "positives": f"degraded codes, seeds 0..{args.positives - 1} (a quarter made grey), "
            f"on {len(train_coco)} COCO photos",
            "negatives": f"{len(views) - args.texts} clean views (half of them grey copies) of {len(sources)} "
            f"photos, and {args.texts} photos with a pasted text label",
            "photos": args.photos,
            "held_out": "benchmark seeds >= 100000; photos: "
            + {
                "train": "those with eval_codes_degraded.is_test_photo(name)",
                "test": "the others",
                "all": "none",
            }[args.photos],
            "training_tpr_likely_only": round(float(tpr), 4),
            "training_fpr_clean_and_text": round(float(fpr), 4),
        },
    }
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
