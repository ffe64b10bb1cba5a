"""Codes too blurred or small to decode: detection rate on a degraded set, false positives on clean photos.

- Degraded set (deterministic, ``--seed``): QR, EAN-13, Code-128 and DataMatrix codes (zxing-cpp's
  writer, random content, :func:`eval_codes.make_code`) pasted on COCO photos as white labels
  (:func:`eval_codes.paste_with_symbol`), each with independent uniform draws of the symbol's long
  side 40-160 px, rotation 0-45 degrees, Gaussian blur sigma 0-2 px (whole image) and JPEG quality
  30-90. A hit: a decoded or a likely code (confidence >= the op's ``min_confidence``) whose polygon
  centre lies on the pasted symbol.
- Negatives (clean photos, no code): the 64 COCO photos, the blur triplets, the PaddleClas demos
  except the code card, the photos of ``skimage.data``, and crops and rescales of each
  (:func:`negative_views`): a false positive is any code, decoded or likely.
- Time per clean COCO photo: ``detect="decoded"`` (the decoder only, as before) and the default
  ``detect="likely"``, same process, same photos.

``--split test`` (default ``all``) keeps only what the fitting script (tools/fit_code_model.py)
held out: COCO photos with an odd index, and the seeds it does not train on.

    python benchmarks/eval_codes_degraded.py [--n 800] [--seed 0] [--workers 2] [--out benchmarks/eval_codes_degraded.md]
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_codes  # noqa: E402
from _common import SHARED_DATA, shared_photos  # noqa: E402

from paddlemix_iqa.io import load_image  # noqa: E402

KINDS = ("qr", "ean13", "code128", "datamatrix")
SIZE_RANGE = (40, 160)
ANGLE_RANGE = (0.0, 45.0)
BLUR_RANGE = (0.0, 2.0)
QUALITY_RANGE = (30, 90)
SIZE_BANDS = ((40, 60), (60, 80), (80, 120), (120, 161))
BLUR_BANDS = ((0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.01))
QUALITY_BANDS = ((30, 50), (50, 70), (70, 91))
#: the skimage.data photos used as negatives (synthetic images such as the checkerboard are left out)
SKIMAGE_PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "moon", "coins", "text", "page", "gravel",
    "grass", "brick", "retina", "hubble_deep_field", "immunohistochemistry", "clock", "cell", "cat",
)  # fmt: skip


def degraded_conditions(seed: int) -> dict:
    """The random draw of one degraded sample: kind, size, angle, blur, quality (and the code's seed)."""
    rng = np.random.default_rng([seed, 7])
    return {
        "kind": KINDS[int(rng.integers(len(KINDS)))],
        "size": float(rng.uniform(*SIZE_RANGE)),
        "angle": float(rng.uniform(*ANGLE_RANGE)),
        "blur": float(rng.uniform(*BLUR_RANGE)),
        "quality": int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1)),
    }


def degraded_sample(photo: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """One degraded test image and its conditions, with ``quad`` (the symbol's corners) and ``text``."""
    cond = degraded_conditions(seed)
    rng = np.random.default_rng([seed, 11])
    code, text = eval_codes.make_code(cond["kind"], rng)
    image, box, quad = eval_codes.paste_with_symbol(
        photo, code, cond["size"], cond["angle"], cond["blur"], rng, cond["quality"]
    )
    return image, {**cond, "text": text, "box": box, "quad": quad}


def coco_paths() -> list[Path]:
    return shared_photos("coco")


def negative_sources() -> list[tuple[str, np.ndarray]]:
    """Clean photos without any code: COCO, blur triplets, PaddleClas demos (not the code card), skimage."""
    from skimage import data

    paths = (
        coco_paths()
        + shared_photos("blur_triplets", "*")
        + [SHARED_DATA / "photos" / "paddleclas_demo" / n for n in ("blured_demo.jpg", "clarity_demo.jpg")]
    )
    out = [(p.parent.name + "/" + p.name, load_image(p)) for p in paths]
    for name in SKIMAGE_PHOTOS:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        out.append(("skimage/" + name, np.ascontiguousarray(image[:, :, :3])))
    return out


def negative_views(name: str, image: np.ndarray, views: int = 4) -> list[tuple[str, np.ndarray]]:
    """The photo itself, then random crops (30-80% of each side) and rescales (0.5-1.5x), deterministic
    per name. Large photos (the 2-4k blur triplets and demos) are first brought to 1024 px for the
    crops and rescales, as a dataset of web images would hold them."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = [(name, image)]
    base = image
    if max(image.shape[:2]) > 1024:
        f = 1024 / max(image.shape[:2])
        base = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    h, w = base.shape[:2]
    for i in range(1, views):
        if i % 2:
            ch, cw = (int(s * rng.uniform(0.3, 0.8)) for s in (h, w))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            view = base[y : y + ch, x : x + cw]
            tag = f"crop{i}"
        else:
            f = float(rng.uniform(0.5, 1.5))
            view = cv2.resize(base, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
            tag = f"x{f:.2f}"
        if min(view.shape[:2]) >= 64:
            out.append((f"{name}#{tag}", np.ascontiguousarray(view)))
    return out


def on_symbol(polygon: np.ndarray, quad: np.ndarray) -> bool:
    """Whether a detection's centre lies on the pasted symbol (grown by 15% for the quiet zone)."""
    centre = quad.mean(axis=0)
    grown = (quad - centre) * 1.15 + centre
    cx, cy = (float(v) for v in polygon.mean(axis=0))
    return cv2.pointPolygonTest(grown.astype(np.float32), (cx, cy), False) >= 0


def band(value: float, bands) -> str:
    for lo, hi in bands:
        if lo <= value < hi:
            return f"{lo:g}-{min(hi, int(hi)):g}"
    return "?"


# --- evaluation --------------------------------------------------------------------------
_STATE: dict = {}


def _init(coco: list[str], params: dict) -> None:
    from paddlemix_iqa.ops import build_op

    cv2.setNumThreads(1)
    _STATE["coco"] = [load_image(p) for p in coco]
    _STATE["op"] = build_op("code_filter", **params)
    _STATE["decoded"] = build_op("code_filter", **{**params, "detect": "decoded"})


def _judge(image: np.ndarray, op) -> tuple[list, float]:
    from paddlemix_iqa.io import DecodedImage

    start = time.perf_counter()
    verdict = op.judge([DecodedImage(pixels=image, width=image.shape[1], height=image.shape[0])])[0]
    return verdict, time.perf_counter() - start


def _positive(seed: int) -> dict:
    photos = _STATE["coco"]
    index = seed % len(photos)
    image, cond = degraded_sample(photos[index], seed)
    verdict, _ = _judge(image, _STATE["op"])
    found = [c for c in verdict.codes if on_symbol(c.polygon, cond["quad"])]
    decoded = [c for c in found if not c.kind.endswith("?")]
    return {
        **{k: v for k, v in cond.items() if k not in ("quad", "box", "text")},
        "photo": index,
        "hit": bool(found),
        "decoded": bool(decoded),
        "elsewhere": len(verdict.codes) - len(found),
    }


def _negative(task: tuple[str, np.ndarray]) -> dict:
    name, image = task
    verdict, _ = _judge(image, _STATE["op"])
    return {"name": name, "codes": [(c.kind, round(float(c.confidence), 3)) for c in verdict.codes]}


def _timed(index: int) -> tuple[float, float]:
    image = _STATE["coco"][index]
    best = []
    for op in (_STATE["decoded"], _STATE["op"]):
        best.append(min(_judge(image, op)[1] for _ in range(3)))
    return tuple(best)


def rate_table(rows: list[dict], key: str, bands=None) -> str:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(band(r[key], bands) if bands else r[key], []).append(r)
    order = [band(lo, bands) for lo, _ in bands] if bands else [k for k in KINDS if k in groups]
    lines = [f"| {key} | n | TPR | decoded |", "|---|---|---|---|"]
    for g in order:
        rs = groups.get(g, [])
        if rs:
            lines.append(
                f"| {g} | {len(rs)} | {100 * np.mean([r['hit'] for r in rs]):.1f}% "
                f"| {100 * np.mean([r['decoded'] for r in rs]):.1f}% |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=800, help="degraded samples")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the degraded set")
    parser.add_argument("--views", type=int, default=4, help="views per negative photo (itself, crops, rescales)")
    parser.add_argument("--split", choices=("all", "test"), default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-confidence", type=float, default=None, help="the op's threshold (default: its own)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("eval_codes_degraded.md")))
    args = parser.parse_args(argv)

    params = {} if args.min_confidence is None else {"min_confidence": args.min_confidence}
    coco = [str(p) for p in coco_paths()]
    seeds = list(range(args.seed, args.seed + args.n))
    sources = negative_sources()
    if args.split == "test":
        from fit_split import is_test_photo, is_test_seed  # noqa: PLC0415

        seeds = [s for s in seeds if is_test_seed(s) and is_test_photo(f"coco/{Path(coco[s % len(coco)]).name}")]
        sources = [(n, im) for n, im in sources if is_test_photo(n)]
    negatives = [v for name, image in sources for v in negative_views(name, image, args.views)]

    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(coco, params)) as pool:
        times = list(pool.map(_timed, range(len(coco))))
        rows = list(pool.map(_positive, seeds, chunksize=4))
        fps = list(pool.map(_negative, negatives, chunksize=2))
    wall = time.perf_counter() - start

    false = [f for f in fps if f["codes"]]
    before, after = (1000 * np.median([t[i] for t in times]) for i in range(2))
    p90_before, p90_after = (1000 * np.percentile([t[i] for t in times], 90) for i in range(2))
    tpr = np.mean([r["hit"] for r in rows])
    lines = [
        "# Degraded codes (`python benchmarks/eval_codes_degraded.py`)",
        "",
        f"- Degraded set: {len(rows)} images (seeds {args.seed}..{args.seed + args.n - 1}, split {args.split}), "
        f"one code each: TPR {100 * tpr:.1f}% (decoded: {100 * np.mean([r['decoded'] for r in rows]):.1f}%); "
        f"other detections on those images: {sum(r['elsewhere'] for r in rows)}.",
        f"- Negatives: {len(fps)} clean views of {len(sources)} photos: {len(false)} false positive(s), "
        f"FPR {100 * len(false) / max(1, len(fps)):.2f}% {[(f['name'], f['codes']) for f in false]}.",
        f"- Time per COCO photo ({len(coco)} photos, best of 3, one process): median {before:.1f} ms "
        f"decoded only, {after:.1f} ms with likely codes (p90 {p90_before:.1f} / {p90_after:.1f} ms).",
        f"- Wall time {wall:.0f} s, {args.workers} worker processes.",
        "",
        rate_table(rows, "kind"),
        "",
        rate_table(rows, "size", SIZE_BANDS),
        "",
        rate_table(rows, "blur", BLUR_BANDS),
        "",
        rate_table(rows, "quality", QUALITY_BANDS),
        "",
    ]
    for kind in KINDS:
        sub = [r for r in rows if r["kind"] == kind]
        cells = []
        for s in SIZE_BANDS:
            for b in ((0.0, 1.0), (1.0, 2.01)):
                rs = [r for r in sub if s[0] <= r["size"] < s[1] and b[0] <= r["blur"] < b[1]]
                cells.append(f"{100 * np.mean([r['hit'] for r in rs]):.0f}% ({len(rs)})" if rs else "-")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    header = "| kind | " + " | ".join(
        f"{band(s[0], SIZE_BANDS)} px, sigma {b}" for s in SIZE_BANDS for b in ("0-1", "1-2")
    ) + " |"
    lines[-len(KINDS) :] = [header, "|---|" + "---|" * (2 * len(SIZE_BANDS)), *lines[-len(KINDS) :]]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
