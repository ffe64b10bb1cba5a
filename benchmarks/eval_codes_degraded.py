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
- Text labels: random words pasted like the codes (:func:`text_sample`): printed text is not a code.
- Time per clean COCO photo: ``detect="decoded"`` (the decoder only, as before) and the default
  ``detect="likely"``, same process, same photos, also as ratios to ``cv2.imread`` of the same files.

``--split test`` (default ``all``) keeps only what the fitting script (tools/fit_code_model.py)
held out (:func:`is_test_photo`: half the photos, by a hash of the file name); the default
seeds (from 100000) are never used by the fit.

    python benchmarks/eval_codes_degraded.py [--n 800] [--seed 100000] [--split all|test] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_codes  # noqa: E402
from _common import SHARED_DATA, shared_photos  # noqa: E402

from paddlemix_iqa.io import load_image  # noqa: E402

KINDS = ("qr", "ean13", "code128", "datamatrix")
SIZE_RANGE = (40, 160)
ANGLE_RANGE = (0.0, 45.0)
BLUR_RANGE = (0.0, 2.0)
QUALITY_RANGE = (30, 90)
SIZE_BANDS = ((40, 60), (60, 80), (80, 120), (120, 160.01))
BLUR_BANDS = ((0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.01))
QUALITY_BANDS = ((30, 50), (50, 70), (70, 90.01))
#: the skimage.data photos used as negatives (synthetic images such as the checkerboard are left out)
SKIMAGE_PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "moon", "coins", "text", "page", "gravel",
    "grass", "brick", "retina", "hubble_deep_field", "immunohistochemistry", "clock", "cell", "cat",
)  # fmt: skip


#: how the code is written: ``url`` is :func:`eval_codes.make_code` (a DataMatrix holds a URL, so
#: zxing-cpp often writes a long thin DMRE strip; quiet zones as the writer makes them: none above
#: and below 1-D codes, one module around a DataMatrix); ``short`` holds short alphanumeric
#: DataMatrix text (square or short rectangles) and widens every quiet zone to 2 modules
STYLES = ("url", "short")


def degraded_conditions(seed: int) -> dict:
    """The random draw of one degraded sample: kind, size, angle, blur, quality, style."""
    rng = np.random.default_rng([seed, 7])
    return {
        "kind": KINDS[int(rng.integers(len(KINDS)))],
        "size": float(rng.uniform(*SIZE_RANGE)),
        "angle": float(rng.uniform(*ANGLE_RANGE)),
        "blur": float(rng.uniform(*BLUR_RANGE)),
        "quality": int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1)),
        "style": STYLES[int(rng.integers(len(STYLES)))],
    }


def make_code(kind: str, style: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A gray code image (8 px per module, quiet zone included) in ``style`` (see :data:`STYLES`)."""
    if style == "url" or kind != "datamatrix":
        code, text = eval_codes.make_code(kind, rng)
    else:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        text = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), int(rng.integers(6, 25))))
        made = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.DataMatrix)
        code, text = np.ascontiguousarray(np.asarray(made.to_image(scale=8)), np.uint8), made.text
    if style == "short":
        dark = np.argwhere(code < 128)
        (top, left), (bottom, right) = dark.min(0), np.array(code.shape) - dark.max(0) - 1
        pads = [max(0, 16 - int(v)) for v in (top, bottom, left, right)]
        code = cv2.copyMakeBorder(code, *pads, cv2.BORDER_CONSTANT, value=255)
    return code, text


def degraded_sample(photo: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """One degraded test image and its conditions, with ``quad`` (the symbol's corners) and ``text``."""
    cond = degraded_conditions(seed)
    rng = np.random.default_rng([seed, 11])
    code, text = make_code(cond["kind"], cond["style"], rng)
    image, box, quad = eval_codes.paste_with_symbol(
        photo, code, cond["size"], cond["angle"], cond["blur"], rng, cond["quality"]
    )
    return image, {**cond, "text": text, "box": box, "quad": quad}


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL,
)  # fmt: skip


def text_label(rng: np.random.Generator) -> np.ndarray:
    """A gray label of 1-3 lines of random words (no code): dark on light or light on dark."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./:"
    lines = [
        " ".join("".join(letters[i] for i in rng.integers(0, len(letters), int(rng.integers(2, 9))))
                 for _ in range(int(rng.integers(1, 4))))
        for _ in range(int(rng.integers(1, 4)))
    ]  # fmt: skip
    font, thick = _FONTS[int(rng.integers(len(_FONTS)))], int(rng.integers(1, 4))
    sizes = [cv2.getTextSize(t, font, 1.0, thick) for t in lines]
    width = max(w for (w, _), _ in sizes) + 12
    step = max(h + b for (_, h), b in sizes) + 6
    ink, paper = (0, 255) if rng.random() < 0.7 else (255, int(rng.integers(0, 90)))
    label = np.full((step * len(lines) + 8, width), paper, np.uint8)
    for i, t in enumerate(lines):
        cv2.putText(label, t, (6, 4 + step * (i + 1) - 6), font, 1.0, ink, thick, cv2.LINE_AA)
    return label


def text_sample(photo: np.ndarray, seed: int) -> np.ndarray:
    """A clean photo with a pasted text label (no code), degraded like :func:`degraded_sample`."""
    cond = degraded_conditions(seed)
    rng = np.random.default_rng([seed, 13])
    label = text_label(rng)
    if label.min() >= 128:  # paste_with_symbol sizes the label by its dark pixels
        label[0, 0] = 0
    size = float(rng.uniform(60, 240))
    image, _, _ = eval_codes.paste_with_symbol(
        photo, label, size, cond["angle"], cond["blur"], rng, cond["quality"]
    )
    return image


def is_test_photo(name: str) -> bool:
    """Half the photos (by a hash of the file name) are held out: tools/fit_code_model.py never sees them."""
    return zlib.crc32(Path(name.split("#")[0]).name.encode()) % 2 == 1


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
            view = cv2.resize(
                base, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
            )
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
            return (
                f"{lo:g}-{math.floor(hi) if hi - math.floor(hi) < 0.05 else hi:g}"  # 161 -> 160 (inclusive)
            )
    return "?"


# --- evaluation --------------------------------------------------------------------------
_STATE: dict = {}


def _init(coco: list[str], params: dict) -> None:
    from paddlemix_iqa.ops import build_op

    cv2.setNumThreads(1)
    _STATE["coco"] = [load_image(p) for p in coco]
    _STATE["paths"] = list(coco)
    _STATE["op"] = build_op("code_filter", **params)
    _STATE["decoded"] = build_op("code_filter", **{**params, "detect": "decoded"})


def _judge(image: np.ndarray, op) -> tuple[list, float]:
    from paddlemix_iqa.io import DecodedImage

    start = time.perf_counter()
    h, w = image.shape[:2]
    verdict = op.judge([DecodedImage(image, w, h, "", 0, None)])[0]
    return verdict, time.perf_counter() - start


def _positive(seed: int) -> dict:
    photos = _STATE["coco"]
    index = seed % len(photos)
    image, cond = degraded_sample(photos[index], seed)
    verdict, _ = _judge(image, _STATE["op"])
    found = [c for c in verdict.codes if on_symbol(c.polygon, cond["quad"])]
    decoded = [c for c in found if c.decoded]
    return {
        **{k: v for k, v in cond.items() if k not in ("quad", "box", "text")},
        "photo": index,
        "hit": bool(found),
        "decoded": bool(decoded),
        "confidence": max((float(c.confidence) for c in found), default=0.0),
        "elsewhere": len(verdict.codes) - len(found),
    }


def _negative(task: tuple[str, np.ndarray]) -> dict:
    name, image = task
    verdict, _ = _judge(image, _STATE["op"])
    return {
        "name": name,
        "codes": [(c.kind, round(float(c.confidence), 3)) for c in verdict.codes],
        "confidence": max((float(c.confidence) for c in verdict.codes), default=0.0),
    }


def _text(seed: int) -> dict:
    photos = _STATE["coco"]
    verdict, _ = _judge(text_sample(photos[seed % len(photos)], seed), _STATE["op"])
    return {
        "seed": seed,
        "codes": [(c.kind, round(float(c.confidence), 3)) for c in verdict.codes],
        "confidence": max((float(c.confidence) for c in verdict.codes), default=0.0),
    }


def _timed(index: int) -> tuple[float, float, float]:
    """Best of 3 for the decoded-only op, the default op and ``cv2.imread`` of the same file (the
    baseline: the machine is shared, so the figures are also given as ratios to it)."""
    image, path = _STATE["coco"][index], _STATE["paths"][index]
    best = []
    for op in (_STATE["decoded"], _STATE["op"]):
        best.append(min(_judge(image, op)[1] for _ in range(3)))
    reads = []
    for _ in range(3):
        start = time.perf_counter()
        cv2.imread(path)
        reads.append(time.perf_counter() - start)
    return (*best, min(reads))


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


def pooled(dumps: list[str]) -> str:
    """Detection and false-positive rates per threshold over ``--dump`` files (held-out folds)."""
    pos, neg, texts = [], [], []
    for path in dumps:
        data = json.loads(Path(path).read_text())
        pos += [1.0 if r["decoded"] else r["confidence"] for r in data["positives"]]
        neg += [r["confidence"] for r in data["negatives"]]
        texts += [r["confidence"] for r in data.get("texts", [])]
    pos, neg, texts = np.array(pos), np.array(neg), np.array(texts)
    lines = [
        f"Pooled over {len(dumps)} dump(s): {len(pos)} degraded codes, {len(neg)} clean views, {len(texts)} text labels",
        "",
        "| min_confidence | TPR | FPR clean | false positives | FPR text labels |",
        "|---|---|---|---|---|",
    ]
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        lines.append(
            f"| {t:.1f} | {100 * np.mean(pos >= t):.1f}% | {100 * np.mean(neg >= t):.2f}% | {int(np.sum(neg >= t))} "
            f"| {100 * np.mean(texts >= t) if len(texts) else float('nan'):.1f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=800, help="degraded samples")
    parser.add_argument(
        "--seed", type=int, default=100000, help="first seed of the degraded set (the fit uses 0..2399)"
    )
    parser.add_argument(
        "--views", type=int, default=4, help="views per negative photo (itself, crops, rescales)"
    )
    parser.add_argument(
        "--split",
        choices=("all", "test", "train"),
        default="all",
        help="photos: all, held out, or the others",
    )
    parser.add_argument("--texts", type=int, default=200, help="photos with a pasted text label (not a code)")
    parser.add_argument("--model", help="a code_model.json to use instead of the package's")
    parser.add_argument("--dump", help="also write every image's result (JSON) here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--min-confidence", type=float, default=None, help="the op's threshold (default: its own)"
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("eval_codes_degraded.md")))
    parser.add_argument(
        "--pool", nargs="+", metavar="DUMP", help="only pool these dumps (held-out folds) and print"
    )
    args = parser.parse_args(argv)
    if args.pool:
        print(pooled(args.pool))
        return 0

    params = {} if args.min_confidence is None else {"min_confidence": args.min_confidence}
    if args.model:
        params["model"] = args.model
    coco = [str(p) for p in coco_paths()]
    seeds = list(range(args.seed, args.seed + args.n))
    sources = negative_sources()
    if args.split != "all":
        held = args.split == "test"
        seeds = [s for s in seeds if is_test_photo(coco[s % len(coco)]) == held]
        sources = [(n, im) for n, im in sources if is_test_photo(n) == held]
    negatives = [v for name, image in sources for v in negative_views(name, image, args.views)]

    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # the parent has used OpenCV: no fork
    with ProcessPoolExecutor(
        args.workers, initializer=_init, initargs=(coco, params), mp_context=context
    ) as pool:
        times = list(pool.map(_timed, range(len(coco))))
        rows = list(pool.map(_positive, seeds, chunksize=4))
        fps = list(pool.map(_negative, negatives, chunksize=2))
        text_seeds = seeds[: args.texts]
        texts = list(pool.map(_text, text_seeds, chunksize=4))
    wall = time.perf_counter() - start

    false = [f for f in fps if f["codes"]]
    before, after = (1000 * np.median([t[i] for t in times]) for i in range(2))
    p90_before, p90_after = (1000 * np.percentile([t[i] for t in times], 90) for i in range(2))
    read = 1000 * np.median([t[2] for t in times])
    tpr = np.mean([r["hit"] for r in rows])
    lines = [
        "# Degraded codes (`python benchmarks/eval_codes_degraded.py`)",
        "",
        f"- Degraded set: {len(rows)} images (seeds {args.seed}..{args.seed + args.n - 1}, split {args.split}), "
        f"one code each: TPR {100 * tpr:.1f}% (decoded: {100 * np.mean([r['decoded'] for r in rows]):.1f}%); "
        f"other detections on those images: {sum(r['elsewhere'] for r in rows)}.",
        f"- Negatives: {len(fps)} clean views of {len(sources)} photos: {len(false)} false positive(s), "
        f"FPR {100 * len(false) / max(1, len(fps)):.2f}% {[(f['name'], f['codes']) for f in false]}.",
        f"- Text labels (no code) pasted like the codes on {len(texts)} photos: "
        f"{sum(bool(t['codes']) for t in texts)} detected as a code "
        f"({100 * np.mean([bool(t['codes']) for t in texts]):.1f}%).",
        f"- Time per COCO photo ({len(coco)} photos, best of 3, one process): median {before:.1f} ms "
        f"decoded only, {after:.1f} ms with likely codes (p90 {p90_before:.1f} / {p90_after:.1f} ms); "
        f"{before / read:.1f}x / {after / read:.1f}x the median cv2.imread of the same files ({read:.1f} ms, "
        "same processes).",
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
    header = (
        "| kind | "
        + " | ".join(f"{band(s[0], SIZE_BANDS)} px, sigma {b}" for s in SIZE_BANDS for b in ("0-1", "1-2"))
        + " |"
    )
    lines[-len(KINDS) :] = [header, "|---|" + "---|" * (2 * len(SIZE_BANDS)), *lines[-len(KINDS) :]]
    if args.dump:
        Path(args.dump).write_text(json.dumps({"positives": rows, "negatives": fps, "texts": texts}))
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
