"""BRISQUE speed against decoding, before and after, and how far scores move.

    python benchmarks/bench_brisque.py [--repeats 3] [--coco 16] [--before REV] [--write-docs]
    python benchmarks/bench_brisque.py --accuracy   # TID2013 calibration, and what each step moves

Timed on the shipped photos, one process, one OpenCV thread (as the pipeline's workers run):
``../shared/data/photos/coco`` (0.3 MP) and the large photos (the 2048-px blur triplets, 2.8-3.1 MP).
Per image: the colour decode of the file with the package's loader (the baseline, timed in the same
run, ``x decode`` is the ratio to it), BRISQUE as it was at git revision ``--before`` (the code is
read with ``git show REV:paddlemix_iqa/scorers/brisque.py`` and imported by path), and now: on the
RGB image, on a gray (2-D uint8) image as a pipeline sharing one gray decode hands it, and with
``sample_pixels`` (large photos only). Times are this process's CPU time (the machine is shared),
best of ``--repeats``. Then the largest score change against ``--before`` over every shipped photo
(``../shared/data/photos/*/*``), on RGB and on gray input, and the decisions that changed at the
default threshold (``min_score`` of ``brisque_filter`` in ``configs/default.yaml``). At 1 MP the
features are also timed step by step. ``--write-docs`` writes the tables into docs/brisque.md
(between its ``bench_brisque`` markers).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED_DATA, best_of, shared_photos, write_generated  # noqa: E402

from paddlemix_iqa.io import load_image  # noqa: E402
from paddlemix_iqa.scorers import brisque as B  # noqa: E402
from paddlemix_iqa.scorers import get_scorer  # noqa: E402

DOCS = ROOT / "docs" / "brisque.md"
#: the last revision with the previous implementation (the "before" column)
BEFORE = "f24d823"
SAMPLE = 1_000_000


def load_before(rev: str):
    """The scorer module as it was at git revision ``rev``, imported by path (None when git cannot read it)."""
    try:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:paddlemix_iqa/scorers/brisque.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("paddlemix_iqa.scorers._brisque_before")
    module.__package__ = "paddlemix_iqa.scorers"
    module.__file__ = B.__file__  # its model path is resolved next to the current module
    sys.modules[module.__name__] = module
    exec(
        compile(src.replace('@register_scorer("brisque")', ""), f"{rev}:brisque.py", "exec"), module.__dict__
    )
    return module


def default_threshold() -> float:
    """``min_score`` of the brisque_filter step of the shipped default config."""
    config = yaml.safe_load((ROOT / "paddlemix_iqa" / "configs" / "default.yaml").read_text())
    for step in config["process"]:
        if "brisque_filter" in step:
            return float(step["brisque_filter"]["min_score"])
    raise SystemExit("configs/default.yaml has no brisque_filter step")


def cpu_best(fn, repeats: int) -> float:
    return best_of(fn, repeats, time.process_time)


def step_times(images: list[np.ndarray], repeats: int) -> dict[str, float]:
    """CPU seconds per image of each step of ``brisque_features`` (and the SVR), each timed alone."""
    grays = [B.rgb2gray(i) for i in images]
    halves = [B.imresize_half(g) for g in grays]
    first = [B._mscn(g) for g in grays]
    model = B.BrisqueModel(B.DEFAULT_MODEL)
    features = B.brisque_features(images[0])
    pairs = list(zip(grays, first, strict=True))
    steps = {
        "exact gray conversion (RGB input only)": lambda: [B.rgb2gray(i) for i in images],
        "first scale: local statistics (MSCN)": lambda: [B._mscn(g) for g in grays],
        "first scale: shifted-product moment sums": lambda: [B._scale_features(g, m) for g, m in pairs],
        "half-size resize": lambda: [B.imresize_half(g) for g in grays],
        "second scale (MSCN and moment sums)": lambda: [B._scale_features(h, B._mscn(h)) for h in halves],
        "SVR": lambda: [model.predict(features) for _ in images],
    }
    return {label: cpu_best(fn, repeats) / len(images) for label, fn in steps.items()}


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


def timings(paths: list[Path], before, repeats: int, sample: bool) -> dict[str, float]:
    """CPU ms per image of decoding and of each BRISQUE variant on these files."""
    rgbs = [load_image(p) for p in paths]
    grays = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    now, sampled = get_scorer("brisque"), get_scorer("brisque", sample_pixels=SAMPLE)
    runs = {"decode": lambda: [load_image(p) for p in paths]}
    if before is not None:
        old = before.BrisqueScorer()
        runs["before"] = lambda: old.score_batch(rgbs)
    runs["now (RGB)"] = lambda: now.score_batch(rgbs)
    runs["now (gray)"] = lambda: now.score_batch(grays)
    if sample:
        runs[f"sampled {SAMPLE // 1000}K px (gray)"] = lambda: sampled.score_batch(grays)
    for fn in runs.values():
        fn()  # warm-up: tables, model load
    return {label: 1e3 * cpu_best(fn, repeats) / len(paths) for label, fn in runs.items()}


def score_changes(before, threshold: float) -> list[str]:
    """Largest score change against ``before`` over every shipped photo, and decisions that changed."""
    paths = sorted(
        p for p in (SHARED_DATA / "photos").glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    cut = 100 * (1 - threshold)  # quality >= min_score  <=>  native score <= cut
    now, sampled = get_scorer("brisque"), get_scorer("brisque", sample_pixels=SAMPLE)
    old = before.BrisqueScorer()
    lines = []
    for label, read in (("RGB", load_image), ("gray", lambda p: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))):
        images = [read(p) for p in paths]
        ref = old.score_batch(images)
        for name, scorer in (("exact", now), (f"sampled {SAMPLE // 1000}K px", sampled)):
            new = scorer.score_batch(images)
            diff = np.abs(new - ref)
            worst = int(np.argmax(diff))
            flips = [p.name for p, a, b in zip(paths, ref, new, strict=True) if (a <= cut) != (b <= cut)]
            lines.append(
                f"| {label} | {name} | {len(paths)} | {diff.max():.2g}{f' ({paths[worst].name})' if diff.max() else ''} | "
                f"{np.median(diff):.2g} | {len(flips)}{' (' + ', '.join(flips) + ')' if flips else ''} |"
            )
    return lines


def sampling_error(threshold: float, mosaics: int = 8) -> list[str]:
    """How far ``sample_pixels`` moves scores on large images made of real photos at native scale:
    3 x 3 mosaics of COCO photos (1920x1440, 2.8 MP), clean and saved as JPEG quality 30 and 15."""
    coco = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in shared_photos("coco")]
    coco = [c for c in coco if c.shape == (480, 640)]
    rng = np.random.default_rng(0)
    images = []
    for _ in range(mosaics):
        pick = rng.choice(len(coco), 9, replace=False)
        mosaic = np.vstack([np.hstack([coco[i] for i in pick[r * 3 : r * 3 + 3]]) for r in range(3)])
        images.append(mosaic)
        for quality in (30, 15):
            jpeg = cv2.imencode(".jpg", mosaic, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
            images.append(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE))
    exact = get_scorer("brisque").score_batch(images)
    sampled = get_scorer("brisque", sample_pixels=SAMPLE).score_batch(images)
    diff = np.abs(sampled - exact)
    cut = 100 * (1 - threshold)
    flips = int(np.sum((exact <= cut) != (sampled <= cut)))
    near = int(np.sum(np.abs(exact - cut) <= diff.max()))
    return [
        f"`sample_pixels: {SAMPLE}` on {len(images)} mosaics of COCO photos (1920x1440; {mosaics} clean, "
        f"{mosaics} JPEG q30, {mosaics} JPEG q15), against the exact score: max change {diff.max():.2f}, "
        f"median {np.median(diff):.2f}, 90th percentile {np.percentile(diff, 90):.2f}; decisions changed at the "
        f"default threshold: {flips} ({near} of the {len(images)} scores lie within the max change of it)."
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs")
    parser.add_argument("--coco", type=int, default=16, help="COCO photos timed")
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' implementation")
    parser.add_argument("--accuracy", action="store_true", help="calibration table instead of timings")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the generated block in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args()
    if args.accuracy:
        return accuracy()
    cv2.setNumThreads(1)
    before = load_before(args.before)
    if before is None:
        print(f"git cannot read {args.before}:paddlemix_iqa/scorers/brisque.py: no 'before' column")
    sets = {
        "COCO": (shared_photos("coco")[: args.coco], False),
        "large (blur triplets)": (shared_photos("blur_triplets", "*_*.*"), True),
    }
    results = {name: timings(paths, before, args.repeats, sample) for name, (paths, sample) in sets.items()}
    labels = [label for label in results["large (blur triplets)"] if label != "decode"]
    table = [
        "| photos | n | MP | colour decode ms | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 4) + "|",
    ]
    for name, (paths, _) in sets.items():
        ms = results[name]
        megapixels = np.mean([np.prod(Image.open(p).size) / 1e6 for p in paths])
        cells = [f"{ms[k]:.1f} ms ({ms[k] / ms['decode']:.2f}x)" if k in ms else "-" for k in labels]
        table.append(
            f"| {name} | {len(paths)} | {megapixels:.1f} | {ms['decode']:.1f} | " + " | ".join(cells) + " |"
        )
    print("\n".join(table))
    threshold = default_threshold()
    changes = []
    if before is not None:
        changes = [
            f"Score changes against `{args.before}` on every shipped photo; decisions at the default threshold "
            f"(`min_score: {threshold}`, native score <= {100 * (1 - threshold):g}):",
            "",
            "| input | now | photos | max change | median change | decisions changed |",
            "|---|---|---|---|---|---|",
            *score_changes(before, threshold),
        ]
        print("\n".join(changes))
    sampling = sampling_error(threshold)
    print(sampling[0])
    one_mp = [
        cv2.resize(load_image(p), (1155, 866), interpolation=cv2.INTER_AREA)
        for p in shared_photos("coco")[:4]
    ]
    steps = step_times(one_mp, args.repeats)
    where = "; ".join(f"{label} {1e3 * sec:.2f}" for label, sec in steps.items())
    print(f"at 1 MP (RGB), ms per image: {where}")
    if args.write_docs:
        lines = [
            *table,
            "",
            *changes,
            "",
            *sampling,
            "",
            f"Where the time goes at 1 MP, RGB input (each step alone, CPU ms per image): {where}.",
        ]
        facts = f"numpy {np.__version__}, OpenCV {cv2.__version__}, 1 cv2 thread; CPU time, best of {args.repeats}"
        write_generated(DOCS, "bench_brisque", lines, facts=facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
