"""BRISQUE speed: ms per image at 0.2, 1 and 4 megapixels, one process, against PyPI ``brisque``.

    python benchmarks/bench_brisque.py [--repeats 3] [--threads N] [--write-docs]
    python benchmarks/bench_brisque.py --accuracy   # TID2013 calibration, and what each step moves

Images are real photos (../shared/data/photos) resized to each size and held in
memory, so both implementations get the same pixels and decoding is not timed;
decoding is timed apart, as the baseline: the same images saved as JPEG quality 90 and
read back with the package's loader, in the same run (``x decode``).
The PyPI ``brisque`` package (0.2.0) crashes on NumPy >= 2.3; when it is not
importable its column is skipped. To fill it in, run this script from a venv with
``pip install "numpy<2.3" brisque opencv-python-headless scipy pillow`` and
``PYTHONPATH=<this repo>``. The ``blur7`` column is a float64 7x7 Gaussian filter of
the same gray image, timed in the same run: a yardstick that moves with the
machine's load, so the ``x blur7`` ratio is comparable across runs. At 1 MP the
features are also timed step by step (where the time goes). ``--write-docs`` writes
the table and the steps into docs/brisque.md (between its ``bench_brisque`` markers).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED_DATA, best_of, shared_photos, write_generated  # noqa: E402

from paddlemix_iqa.io import load_image  # noqa: E402
from paddlemix_iqa.scorers import brisque as B  # noqa: E402
from paddlemix_iqa.scorers import get_scorer  # noqa: E402

SIZES_MP = (0.2, 1.0, 4.0)
DOCS = ROOT / "docs" / "brisque.md"


def photos_at(sources: list[np.ndarray], megapixels: float) -> list[np.ndarray]:
    """Each photo resized (area filter) to about ``megapixels`` at 4:3 (3:4 for portrait sources)."""
    out = []
    for img in sources:
        long = round(math.sqrt(megapixels * 1e6 * 4 / 3))
        short = round(long * 3 / 4)
        size = (long, short) if img.shape[1] >= img.shape[0] else (short, long)
        out.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    return out


def decode_time(images: list[np.ndarray], folder: Path, repeats: int) -> float:
    """Seconds per image to read ``images`` back from JPEG quality 90 files with the package's loader."""
    paths = []
    for i, img in enumerate(images):
        paths.append(folder / f"{i}_{img.shape[1]}x{img.shape[0]}.jpg")
        cv2.imwrite(str(paths[-1]), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return best_of(lambda: [load_image(p) for p in paths], repeats) / len(paths)


def step_times(images: list[np.ndarray], repeats: int) -> dict[str, float]:
    """Seconds per image of each step of ``brisque_features`` (and the SVR), each timed alone."""
    grays = [B.rgb2gray(i) for i in images]
    first = [B._mscn(g) for g in grays]
    halves = [B.imresize_half(g) for g in grays]
    model = B.BrisqueModel(B.DEFAULT_MODEL)
    features = B.brisque_features(images[0])
    n = len(images)
    steps = {
        "exact gray conversion": lambda: [B.rgb2gray(i) for i in images],
        "first scale: local statistics (MSCN)": lambda: [B._mscn(g) for g in grays],
        "first scale: shifted-product moment sums": lambda: [B._scale_features(m) for m in first],
        "half-size resize": lambda: [B.imresize_half(g) for g in grays],
        "second scale (MSCN and moment sums)": lambda: [B._scale_features(B._mscn(h)) for h in halves],
        "SVR": lambda: [model.predict(features) for _ in images],
    }
    return {label: best_of(fn, repeats) / n for label, fn in steps.items()}


def pypi_brisque():
    """The PyPI package's scorer, or the reason it cannot be used here."""
    try:
        from brisque import BRISQUE

        return BRISQUE(url=False), None
    except Exception as exc:  # noqa: BLE001 - any import/initialisation failure means: skip the column
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


#: official MATLAB scores of the calibration images (../shared/docs/references.md)
OFFICIAL = {"I03": 94.6421, "I04": -0.107618, "I06": 0.992889, "I08": 5.35827, "I19": 72.2617}


def _half_with_cv2(interpolation: int):
    def resize(image):
        h, w = image.shape
        return cv2.resize(image.astype(np.float64), ((w + 1) // 2, (h + 1) // 2), interpolation=interpolation)

    return resize


def _mscn_with_float_noise(image):
    """The MSCN block without the exact-zero rule on flat windows (OpenCV's rounding residue kept)."""
    x = image.astype(np.float64)
    g, zero = B._gaussian_window(), cv2.BORDER_CONSTANT
    mu = cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=zero)
    sigma = np.sqrt(np.abs(cv2.sepFilter2D(x * x, cv2.CV_64F, g, g, borderType=zero) - mu * mu))
    return ((x - mu) / (sigma + 1)).astype(np.float32)


def accuracy() -> int:
    """Scores on the TID2013 calibration images, and with one step of the reference swapped out."""
    from unittest import mock

    folder = SHARED_DATA / "calibration" / "tid2013"
    images = {name: load_image(folder / f"{name}.png") for name in OFFICIAL}
    variants = {
        "this implementation": {},
        "without the %f/%g text round trip": {"quantize": False},
        "OpenCV gray instead of MATLAB rgb2gray": {
            "rgb2gray": lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if im.ndim == 3 else im
        },
        "cv2.resize bicubic for scale 2": {"imresize_half": _half_with_cv2(cv2.INTER_CUBIC)},
        "cv2.resize area for scale 2": {"imresize_half": _half_with_cv2(cv2.INTER_AREA)},
        "float rounding noise kept on flat windows": {"_mscn_block": _mscn_with_float_noise},
    }
    print("| variant | " + " | ".join(OFFICIAL) + " |")
    print("|---" * (len(OFFICIAL) + 1) + "|")
    print("| official (MATLAB) | " + " | ".join(f"{v:g}" for v in OFFICIAL.values()) + " |")
    for label, patch in variants.items():
        model = B.BrisqueModel(B.DEFAULT_MODEL)
        model.quantize = patch.pop("quantize", model.quantize)
        with mock.patch.multiple(B, **patch) if patch else contextlib.nullcontext():
            scores = [float(model.predict(B.brisque_features(images[n]))[0]) for n in OFFICIAL]
        cells = [f"{s:.4f} ({s - v:+.4f})" for s, v in zip(scores, OFFICIAL.values(), strict=True)]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs")
    parser.add_argument("--photos", type=int, default=6, help="photos per size")
    parser.add_argument("--threads", type=int, default=None, help="cv2 threads (default: OpenCV's choice)")
    parser.add_argument("--accuracy", action="store_true", help="calibration table instead of timings")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the generated block in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args()
    if args.accuracy:
        return accuracy()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    paths = shared_photos("blur_triplets", "*_S.*") + shared_photos("coco")
    sources = [load_image(p) for p in paths[: args.photos]]
    ours = get_scorer("brisque")
    theirs, why_not = pypi_brisque()
    print(
        f"numpy {np.__version__}, opencv {cv2.__version__}, cv2 threads {cv2.getNumThreads()}, "
        f"{len(sources)} photos per size, best of {args.repeats}; ms per image"
    )
    if theirs is None:
        print(f"PyPI brisque: not importable ({why_not}); it needs NumPy < 2.3 -- column skipped")

    g = cv2.getGaussianKernel(7, 7 / 6, cv2.CV_64F)
    header = (
        f"{'MP':>5} {'size':>10} {'ours ms':>9} {'ours cpu':>9} {'decode ms':>9} {'x decode':>8} "
        f"{'blur7 ms':>9} {'x blur7':>8}"
    )
    table = [
        "| MP | size | ms / image | CPU ms / image | decode ms (JPEG q90) | x decode | x blur7 |",
        "|---|---|---|---|---|---|---|",
    ]
    if theirs is not None:
        header += f" {'PyPI ms':>9} {'speed-up':>9} {'max |diff|':>10}"
        table[0] = table[0][:-1] + "| PyPI `brisque` ms | speed-up | max score difference |"
        table[1] += "---|---|---|"
    print(header)
    steps = {}
    tmp = tempfile.TemporaryDirectory()
    for mp in SIZES_MP:
        images = photos_at(sources, mp)
        n = len(images)
        ours.score_batch(images[:1])  # warm-up: tables, model load
        t_ours = best_of(lambda images=images: ours.score_batch(images), args.repeats) / n
        c_ours = best_of(lambda images=images: ours.score_batch(images), args.repeats, time.process_time) / n
        grays = [cv2.cvtColor(i, cv2.COLOR_RGB2GRAY).astype(np.float64) for i in images]
        t_blur = best_of(lambda grays=grays: [cv2.sepFilter2D(x, -1, g, g) for x in grays], args.repeats) / n
        t_decode = decode_time(images, Path(tmp.name), args.repeats)
        h, w = images[0].shape[:2]
        line = (
            f"{mp:>5} {f'{w}x{h}':>10} {t_ours * 1e3:>9.2f} {c_ours * 1e3:>9.2f} "
            f"{t_decode * 1e3:>9.2f} {t_ours / t_decode:>8.1f} {t_blur * 1e3:>9.3f} {t_ours / t_blur:>8.1f}"
        )
        row = (
            f"| {mp} | {w}x{h} | {t_ours * 1e3:.2f} | {c_ours * 1e3:.2f} | {t_decode * 1e3:.2f} "
            f"| {t_ours / t_decode:.1f} | {t_ours / t_blur:.1f} |"
        )
        if theirs is not None:
            scores = [theirs.score(i) for i in images]  # warm-up and agreement check
            t_theirs = best_of(lambda images=images: [theirs.score(i) for i in images], args.repeats) / n
            diff = np.max(np.abs(np.asarray(scores) - ours.score_batch(images)))
            line += f" {t_theirs * 1e3:>9.1f} {t_theirs / t_ours:>8.1f}x {diff:>10.2f}"
            row += f" {t_theirs * 1e3:.1f} | {t_theirs / t_ours:.1f}x | {diff:.2f} |"
        print(line)
        table.append(row)
        if mp == 1.0:
            steps = step_times(images, args.repeats)
    tmp.cleanup()
    where = "; ".join(f"{label} {1e3 * sec:.2f}" for label, sec in steps.items())
    if steps:
        print(f"at 1 MP, ms per image: {where}")
    if args.write_docs:
        lines = [*table, "", f"Where the time goes at 1 MP (each step timed alone, ms per image): {where}."]
        if theirs is None:
            lines += ["", f"PyPI `brisque` not importable here ({why_not}): no comparison column."]
        facts = f"numpy {np.__version__}, OpenCV {cv2.__version__}, {cv2.getNumThreads()} cv2 threads; "
        facts += f"{len(sources)} photos per size, best of {args.repeats}"
        write_generated(DOCS, "bench_brisque", lines, facts=facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
