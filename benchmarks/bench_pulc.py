"""Speed of the PULC runtime (batch 1 and 16) and of the code detector on 1-MP photos.

Uses the official PULC models when they are in the weights cache; otherwise a
PP-LCNet x1.0 with random weights exported in the same inference layout (the
same graph and cost). The baseline, measured in the same run, is decoding the
same 1-MP JPEGs with the package's loader. ``--write-docs`` writes the table and the
code detector's figures into docs/pulc_and_codes.md and README.md (between their
``bench_pulc`` / ``bench_pulc_codes`` markers).

    python benchmarks/bench_pulc.py [--photos 32] [--threads 2] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, best_of, shared_photos, write_generated  # noqa: E402

from paddlemix_iqa.io import load_image  # noqa: E402
from paddlemix_iqa.models.weights import WeightsNotFound  # noqa: E402
from paddlemix_iqa.scorers.base import resize_long_side, to_gray  # noqa: E402
from paddlemix_iqa.scorers.codes import CodeScorer  # noqa: E402
from paddlemix_iqa.scorers.pulc import PulcClarityScorer, preprocess  # noqa: E402

DOCS = ROOT / "docs" / "pulc_and_codes.md"
README = ROOT / "README.md"


def one_megapixel(paths: list[Path], folder: Path) -> list[Path]:
    """The photos resized to 1152 px long side (about 1 MP), saved as JPEG quality 90."""
    out = []
    for p in paths:
        img = load_image(p)
        scale = 1152 / max(img.shape[:2])
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        out.append(folder / p.name)
        Image.fromarray(img).save(out[-1], quality=90)
    return out


def pulc_scorer(folder: Path, threads: int) -> tuple[PulcClarityScorer, str]:
    try:
        return PulcClarityScorer(threads=threads), "official pulc_clarity"
    except WeightsNotFound:
        import paddle

        from paddlemix_iqa.models.pplcnet import PPLCNet, export_inference

        paddle.seed(0)
        return PulcClarityScorer(export_inference(PPLCNet(), folder / "pplcnet"), threads=threads), (
            "PP-LCNet x1.0, random weights (official models not in the cache)"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace the generated blocks in {DOCS.relative_to(ROOT)} and README.md",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        paths = one_megapixel(shared_photos("coco")[: args.photos], Path(tmp))
        n = len(paths)
        decode = best_of(lambda: [load_image(p) for p in paths]) / n
        images = [load_image(p) for p in paths]
        scorer, which = pulc_scorer(Path(tmp), args.threads)
        scorer.score_batch(images[:2])  # build the predictor and warm up oneDNN
        prep = best_of(lambda: [preprocess(img) for img in images]) / n
        rows = [("decode 1-MP JPEG (baseline)", decode)]
        rows.append(("PULC preprocess (resize 256, crop, normalise)", prep))
        for batch in (1, 16):
            scorer.batch_size = batch
            rows.append(
                (f"PULC inference+preprocess, batch {batch}", best_of(lambda: scorer.score_batch(images)) / n)
            )
        codes, unscreened = CodeScorer(), CodeScorer(screen=False)
        codes.score_batch(images[:1])
        unscreened.score_batch(images[:1])
        rows.append(
            ("code detector, no screen (full search)", best_of(lambda: unscreened.score_batch(images)) / n)
        )
        rows.append(
            (
                "code detector (defaults: screen, then full search)",
                best_of(lambda: codes.score_batch(images)) / n,
            )
        )
        per_image = [best_of(lambda img=img: codes.detect(img)) for img in images]
        decode_each = sorted(best_of(lambda p=p: load_image(p)) for p in paths)
        rows.append(("code detector, median photo (vs median decode)", float(np.median(per_image))))
        median_decode = float(np.median(decode_each))
        found = sum(r.count for r in codes.detect_batch(images))
        # the cheap screen alone, on the gray working-size copy detect() gives it
        smalls = [
            resize_long_side(g, codes.working_size) if max(g.shape) > codes.working_size else g
            for g in (np.ascontiguousarray(to_gray(img)) for img in images)
        ]
        passed = [codes._maybe_code(s) for s in smalls]
        screen = float(np.median([best_of(lambda s=s: codes._maybe_code(s)) for s in smalls]))

    print(f"{n} COCO photos at 1152 px (~1 MP), {args.threads} threads; model: {which}")
    print("| step | ms / image | x decode |")
    print("|---|---|---|")
    for label, seconds in rows:
        base = median_decode if label.startswith("code detector, median") else decode
        print(f"| {label} | {1000 * seconds:.1f} | {seconds / base:.2f} |")
    print(f"(codes found on these photos: {found})")
    seconds = dict(rows)
    mean = seconds["code detector (defaults: screen, then full search)"]
    full = seconds["code detector, no screen (full search)"]
    median = seconds["code detector, median photo (vs median decode)"]
    n_passed = sum(passed)
    passed_mean = float(np.mean([t for t, p in zip(per_image, passed, strict=True) if p])) if n_passed else 0.0
    codes_line = (
        f"{1000 * median:.1f} ms for the median 1-MP COCO photo ({median / median_decode:.1f}x its decode), "
        f"{1000 * mean:.1f} ms on average ({n_passed} of {n} photos pass the screen and pay the full search"
        + (f", {1000 * passed_mean:.1f} ms each" if n_passed else "")
        + f"), against {1000 * full:.1f} ms for the full search on every photo (`screen=False`) "
        f"in the same run; the screen alone takes {1000 * screen:.1f} ms on the median photo."
    )
    print(codes_line)
    if args.write_docs:
        facts = f"{n} COCO photos at 1152 px, {args.threads} threads, model: {which}"
        table = ["| step | ms / image | x decode |", "|---|---|---|"]
        for label, sec in rows:
            base = median_decode if label.startswith("code detector, median") else decode
            table.append(f"| {label} | {1000 * sec:.1f} | {sec / base:.2f} |")
        write_generated(DOCS, "bench_pulc", table, facts=facts)
        write_generated(DOCS, "bench_pulc_codes", [f"Speed: {codes_line}"], facts=facts)
        readme = (
            f"Speed: {1000 * median:.1f} ms for the median 1-MP photo, {median / median_decode:.1f}x the time "
            f"to decode it ({1000 * mean:.1f} ms on average: a cheap screen skips the full search, "
            f"{1000 * full:.1f} ms, on photos with nothing code-like)."
        )
        write_generated(README, "bench_pulc_codes", [readme], facts=facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
