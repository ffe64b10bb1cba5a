"""BRISQUE speed against decoding, before and after, and how far scores move.

    python benchmarks/bench_brisque.py [--repeats 3] [--coco 16] [--before REV] [--write-docs]
    python benchmarks/bench_brisque.py --accuracy   # TID2013 calibration, and what each step moves
    python benchmarks/bench_brisque.py --sampling [--write-docs]    # sample_pixels on large photos
    python benchmarks/bench_brisque.py --gray-copy [--write-docs]   # the pipeline's shared grey copy

Timed on the shipped photos, one process, one OpenCV thread (as the pipeline's workers run):
``../shared/data/photos/coco`` (0.3 MP) and the large photos (the 2048-px blur triplets, 2.8-3.1 MP).
Per image: the colour decode of the file with the package's loader (the baseline, timed in the same
run, ``x decode`` is the ratio to it), BRISQUE as it was at git revision ``--before`` (the code is
read with ``git show REV:paddlemix_iqa/scorers/brisque.py`` and imported by path), and now: on the
RGB image, on a gray (2-D uint8) image as a pipeline sharing one gray decode hands it, and with
``sample_pixels`` (large photos only). Times are this process's CPU time (the machine is shared),
each image's best of ``--repeats`` (variants interleaved image by image). Then the largest score
change against ``--before`` over every shipped photo (``../shared/data/photos/*/*``), on RGB and on
gray input, and the decisions that changed at the default threshold (``min_score`` of
``brisque_filter`` in ``configs/default.yaml``). At 1 MP the features are also timed step by step.
``--sampling`` measures ``sample_pixels`` on the large shipped photos and on resized and cropped
copies of them; ``--gray-copy`` the score change with the pipeline's shared grey copy.
``--write-docs`` writes the tables into docs/brisque.md
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
BEFORE = "3aa362b"
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
    """CPU ms per image of decoding and of each BRISQUE variant on these files.

    The variants are interleaved image by image and each image's time is its best of ``repeats``
    (summed over the images): on a shared machine, load that drifts during the run then weighs
    on every variant alike instead of on whichever ran last.
    """
    rgbs = [load_image(p) for p in paths]
    grays = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    now, sampled = get_scorer("brisque"), get_scorer("brisque", sample_pixels=SAMPLE)
    runs = {"decode": lambda i: load_image(paths[i])}
    if before is not None:
        old = before.BrisqueScorer()
        runs["before (RGB)"] = lambda i: old.score_batch(rgbs[i : i + 1])
        runs["before (gray)"] = lambda i: old.score_batch(grays[i : i + 1])
    runs["now (RGB)"] = lambda i: now.score_batch(rgbs[i : i + 1])
    runs["now (gray)"] = lambda i: now.score_batch(grays[i : i + 1])
    if sample:
        runs[f"sampled {SAMPLE // 1000}K px (gray)"] = lambda i: sampled.score_batch(grays[i : i + 1])
    for fn in runs.values():
        fn(0)  # warm-up: tables, model load
    best = {label: [np.inf] * len(paths) for label in runs}
    for _ in range(repeats):
        for i in range(len(paths)):
            for label, fn in runs.items():
                start = time.process_time()
                fn(i)
                best[label][i] = min(best[label][i], time.process_time() - start)
    return {label: 1e3 * sum(times) / len(paths) for label, times in best.items()}


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


def all_shipped_photos() -> list[Path]:
    return sorted(
        p for p in (SHARED_DATA / "photos").glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )


def gray_copy(threshold: float) -> list[str]:
    """How far scores move when BRISQUE reads the pipeline's shared grey copy (``to_gray``: OpenCV's
    fixed-point RGB2GRAY) instead of its own MATLAB ``rgb2gray``, per folder of shipped photos."""
    from paddlemix_iqa.scorers.base import to_gray

    cut = 100 * (1 - threshold)
    scorer = get_scorer("brisque")
    lines = [
        "| photos | n | max change | median change | decisions changed | scores within the max change of the threshold |",
        "|---|---|---|---|---|---|",
    ]
    paths = all_shipped_photos()
    folders = sorted({p.parent.name for p in paths})
    every = []
    for folder in [*folders, None]:
        chosen = [p for p in paths if folder is None or p.parent.name == folder]
        if folder is None:
            diff, own, copy = (np.concatenate(x) for x in zip(*every, strict=True))
        else:
            rgbs = [load_image(p) for p in chosen]
            own = scorer.score_batch(rgbs)  # rgb2gray inside
            copy = scorer.score_batch([to_gray(i) for i in rgbs])
            diff = np.abs(copy - own)
            every.append((diff, own, copy))
        flips = int(np.sum((own <= cut) != (copy <= cut)))
        near = int(np.sum(np.abs(own - cut) <= diff.max()))
        worst = f" ({chosen[int(np.argmax(diff))].name})" if folder is not None else ""
        lines.append(
            f"| {folder or '**all**'} | {len(diff)} | {diff.max():.4f}{worst} | {np.median(diff):.4f} | "
            f"{flips} | {near} |"
        )
    return lines


#: sizes (pixels) of the large photos made from the shipped ones, by area resize and by centre crop
LARGE_SIZES = (1_500_000, 2_000_000, 3_000_000, 4_500_000, 6_000_000, 9_000_000)
#: quality of the JPEG copies of the large photos (their scores spread around the default threshold)
JPEG_QUALITY = 20


def large_photos() -> list[tuple[str, np.ndarray]]:
    """The shipped photos above 1 MP (grey, as the pipeline's shared copy) at native size, and
    area-resized and centre-cropped copies of them at each of LARGE_SIZES below their size."""
    from paddlemix_iqa.scorers.base import to_gray

    out = []
    for path in all_shipped_photos():
        gray = to_gray(load_image(path))
        h, w = gray.shape
        if h * w <= B.EXACT_PIXELS:
            continue
        out.append((f"{path.name} {w}x{h}", gray))
        for size in LARGE_SIZES:
            if size > 0.9 * h * w:
                continue
            scale = (size / (h * w)) ** 0.5
            rw, rh = round(w * scale), round(h * scale)
            out.append(
                (f"{path.name} area {rw}x{rh}", cv2.resize(gray, (rw, rh), interpolation=cv2.INTER_AREA))
            )
            out.append((f"{path.name} crop {rw}x{rh}", np.ascontiguousarray(B.central_crop(gray, size))))
    return out


def sampling_large(threshold: float, repeats: int) -> list[str]:
    """``sample_pixels`` on the large shipped photos and on resized/cropped copies: score change
    against the exact score, CPU time of each, and the decisions at the default threshold."""
    cut = 100 * (1 - threshold)
    exact, sampled = get_scorer("brisque"), get_scorer("brisque", sample_pixels=SAMPLE)
    groups: dict[tuple, list] = {}
    photos = large_photos()
    for name, gray in list(photos):  # a real distortion that moves scores towards and past the threshold
        jpeg = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
        photos.append((f"{name} JPEG q{JPEG_QUALITY}", cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)))
    for name, gray in photos:
        t_exact = cpu_best(lambda g=gray: exact.score_batch([g]), repeats)
        t_sampled = cpu_best(lambda g=gray: sampled.score_batch([g]), repeats)
        a, b = float(exact.score_batch([gray])[0]), float(sampled.score_batch([gray])[0])
        kind = name.split()[1] if " area " in name or " crop " in name else "shipped"
        nominal = min(LARGE_SIZES, key=lambda s: abs(s - gray.size)) if kind != "shipped" else gray.size
        key = (2, 0, "jpeg") if " JPEG " in name else (kind != "shipped", round(nominal / 1e6, 1), kind)
        groups.setdefault(key, []).append((name, a, b, t_exact, t_sampled))
    lines = [
        f"| photos (grey) | n | exact scores <= {cut:g} | max change | median change | time sampled / exact "
        "| decisions changed | scores within the max change of the threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(groups):
        _, mp, kind = key
        label = {"shipped": "shipped", "area": "area-resized", "crop": "centre crop"}.get(kind)
        label = f"{label}, {mp:g} MP" if label else f"all of the above saved as JPEG quality {JPEG_QUALITY}"
        lines.append(_sampling_row(label, groups[key], cut))
    lines.append(_sampling_row("**all**", [r for rows in groups.values() for r in rows], cut))
    return lines


def _sampling_row(label: str, rows: list, cut: float) -> str:
    a, b = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    diff = np.abs(a - b)
    ratio = sum(r[4] for r in rows) / sum(r[3] for r in rows)
    flips = [r[0] for r in rows if (r[1] <= cut) != (r[2] <= cut)]
    near = int(np.sum(np.abs(a - cut) <= diff.max()))
    worst = f" ({rows[int(np.argmax(diff))][0]})" if diff.max() else ""
    return (
        f"| {label} | {len(rows)} | {int(np.sum(a <= cut))} | {diff.max():.2f}{worst} | {np.median(diff):.2f} | "
        f"{ratio:.2f} | {len(flips)}{' (' + ', '.join(flips) + ')' if flips else ''} | {near} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs")
    parser.add_argument("--coco", type=int, default=16, help="COCO photos timed")
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' implementation")
    parser.add_argument("--accuracy", action="store_true", help="calibration table instead of timings")
    parser.add_argument(
        "--sampling", action="store_true", help="sample_pixels on large photos (score change, time) instead"
    )
    parser.add_argument(
        "--gray-copy", action="store_true", help="score change with the pipeline's shared grey copy instead"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the generated block in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args()
    if args.accuracy:
        return accuracy()
    cv2.setNumThreads(1)
    facts = f"numpy {np.__version__}, OpenCV {cv2.__version__}, 1 cv2 thread; CPU time, each image best of {args.repeats}, variants interleaved"
    if args.sampling or args.gray_copy:
        threshold = default_threshold()
        head = f"Default threshold `min_score: {threshold}` (native score <= {100 * (1 - threshold):g})."
        for wanted, key, run in (
            (args.gray_copy, "bench_brisque_gray", lambda: gray_copy(threshold)),
            (args.sampling, "bench_brisque_sampling", lambda: sampling_large(threshold, args.repeats)),
        ):
            if wanted:
                lines = [head, "", *run()]
                print("\n".join(lines))
                if args.write_docs:
                    write_generated(DOCS, key, lines, facts=facts)
        return 0
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
        write_generated(DOCS, "bench_brisque", lines, facts=facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
