"""Precision and recall of the ``dedup`` step per kind of copy, on copies of the shared COCO photos.

Each photo gets 11 kinds of copy (byte copy, lossless PNG, 0.5x and 0.25x resizes, JPEG q30 and
q70, centre crops keeping 95% and 90% of each side, +15% brightness, mirror, corner watermark),
plus a large watermark (a sixth of the height) as an extra, harder row. The real pipeline runs
on them (``brisque_tagger`` then ``dedup``, so the keep order has a quality score), and the
output is checked: a copy is found when it ends in one group with its original; a merge of
two photos is a false merge; the kept copy of each photo should be the original (or its exact
byte/PNG copy). The radius table comes from the stored signatures: for each radius, the share
of copies whose hash pair is within it, and of cross-photo pairs within it before and after the
thumbnail check.

    python benchmarks/eval_dedup.py --work /tmp/eval_dedup
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_photos  # noqa: E402

KINDS = [
    "exact", "png", "resize50", "resize25", "jpeg30", "jpeg70", "crop95", "crop90", "bright15", "mirror",
    "watermark", "watermark_large",
]  # fmt: skip


def _watermark(img: Image.Image, fraction: float, opacity: int) -> Image.Image:
    w, h = img.size
    size = max(10, round(min(w, h) * fraction))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text = "\u00a9 stock"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    margin = size // 2
    draw.text((w - (right - left) - margin, h - (bottom - top) - margin - top), text, font=font,
              fill=(255, 255, 255, opacity))  # fmt: skip
    return Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")


def make_set(photos: list[Path], out: Path) -> list[dict]:
    """The images and their records (id, image, source, kind)."""
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for n, path in enumerate(photos):
        img = Image.open(path).convert("RGB")
        w, h = img.size
        arr = np.asarray(img, np.float32)

        def crop(keep: float, img=img, w=w, h=h) -> Image.Image:
            cw, ch = round(w * keep), round(h * keep)
            left, top = (w - cw) // 2, (h - ch) // 2
            return img.crop((left, top, left + cw, top + ch))

        copies = {
            "resize50": (img.resize((w // 2, h // 2), Image.LANCZOS), 90),
            "resize25": (img.resize((w // 4, h // 4), Image.LANCZOS), 90),
            "jpeg30": (img, 30),
            "jpeg70": (img, 70),
            "crop95": (crop(0.95), 90),
            "crop90": (crop(0.90), 90),
            "bright15": (Image.fromarray(np.clip(arr * 1.15, 0, 255).astype(np.uint8)), 90),
            "mirror": (img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 90),
            "watermark": (_watermark(img, 1 / 16, 170), 90),
            "watermark_large": (_watermark(img, 1 / 8, 255), 90),
        }
        stem = f"p{n:03d}"
        shutil.copyfile(path, out / f"{stem}_original.jpg")
        records.append(
            {"id": f"{stem}_original", "image": f"{stem}_original.jpg", "source": n, "kind": "original"}
        )
        shutil.copyfile(path, out / f"{stem}_exact.jpg")
        records.append({"id": f"{stem}_exact", "image": f"{stem}_exact.jpg", "source": n, "kind": "exact"})
        img.save(out / f"{stem}_png.png")
        records.append({"id": f"{stem}_png", "image": f"{stem}_png.png", "source": n, "kind": "png"})
        for kind, (copy, quality) in copies.items():
            copy.save(out / f"{stem}_{kind}.jpg", quality=quality)
            records.append({"id": f"{stem}_{kind}", "image": f"{stem}_{kind}.jpg", "source": n, "kind": kind})
    rng = np.random.default_rng(0)
    order = rng.permutation(len(records))  # first seen must not favour the originals
    return [records[i] for i in order]


def run(work: Path, records: list[dict], radius: int, workers: int, keep: list[str] | None = None) -> dict:
    from paddlemix_iqa.pipeline.config import validate
    from paddlemix_iqa.pipeline.runner import run_pipeline

    inp = work / "images" / "records.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = validate({
        "input": str(inp), "output_dir": str(work / "run"), "workers": workers, "report": True,
        "progress": False, "process": [{"brisque_tagger": None}, {"dedup": {"radius": radius, **({"keep": keep} if keep else {})}}],
    })  # fmt: skip
    return run_pipeline(config, fresh=True)


def judge(work: Path, records: list[dict]) -> dict:
    by_id = {r["id"]: r for r in records}
    rejected = [json.loads(line) for line in (work / "run" / "rejected.jsonl").read_text().splitlines()]
    kept_of = {r["id"]: r["__iqa_duplicate_of"] for r in rejected if "__iqa_duplicate_of" in r}
    group = {rid: kept_of.get(rid, rid) for rid in by_id}
    kept = {r["id"] for r in records} - set(kept_of)
    rows = {}
    for kind in KINDS:
        copies = [r for r in records if r["kind"] == kind]
        found = sum(group[c["id"]] == group[f"p{c['source']:03d}_original"] for c in copies)
        removed = [c for c in copies if c["id"] in kept_of]
        wrong = sum(by_id[kept_of[c["id"]]]["source"] != c["source"] for c in removed)
        rows[kind] = {"copies": len(copies), "recall": found / len(copies),
                      "precision": (len(removed) - wrong) / len(removed) if removed else None,
                      "kept_over_original": sum(c["id"] in kept for c in copies)}  # fmt: skip
    merged = sum(by_id[k]["source"] != by_id[d]["source"] for d, k in kept_of.items())
    sources = {r["source"] for r in records}
    best = sum(
        any(by_id[k]["source"] == s and by_id[k]["kind"] in ("original", "exact", "png") for k in kept)
        for s in sources
    )
    return {"kinds": rows, "false_merges": merged, "photos": len(sources), "original_kept": best}


def radius_table(work: Path, records: list[dict], radii=(4, 6, 8, 10, 12, 14)) -> list[dict]:
    """Per radius: copies whose hash pair (direct, mirror or crop) is within it; cross-photo pairs within
    it, hash only and after the thumbnail check (min_correlation 0.7)."""
    from paddlemix_iqa.scorers.phash import mirrored_thumbs, thumbnail_correlation

    db = sqlite3.connect(work / "run" / "state.sqlite")
    rows = db.execute(
        "SELECT r.id, s.phash, s.mirror, s.crop, s.thumb, s.thumb_crop FROM signatures s JOIN records r USING (idx)"
    ).fetchall()
    ids = [r[0] for r in rows]
    by_id = {r["id"]: r for r in records}
    src = np.array([by_id[i]["source"] for i in ids])
    kinds = [by_id[i]["kind"] for i in ids]
    h = np.array([r[1] for r in rows], np.int64).view(np.uint64)
    m = np.array([r[2] for r in rows], np.int64).view(np.uint64)
    c = np.array([r[3] for r in rows], np.int64).view(np.uint64)
    t = np.frombuffer(b"".join(r[4] for r in rows), np.uint8).reshape(len(rows), -1)
    tc = np.frombuffer(b"".join(r[5] for r in rows), np.uint8).reshape(len(rows), -1)
    n = len(ids)
    i, j = np.triu_indices(n, 1)
    # each unordered pair's best distance over direct, mirror (both ways) and crop (both ways)
    ways = [
        (np.bitwise_count(h[i] ^ h[j]), thumbnail_correlation(t[i], t[j])),
        (np.bitwise_count(m[i] ^ h[j]), thumbnail_correlation(mirrored_thumbs(t[i]), t[j])),
        (np.bitwise_count(h[i] ^ m[j]), thumbnail_correlation(t[i], mirrored_thumbs(t[j]))),
        (np.bitwise_count(c[i] ^ h[j]), thumbnail_correlation(tc[i], t[j])),
        (np.bitwise_count(h[i] ^ c[j]), thumbnail_correlation(t[i], tc[j])),
    ]
    same = src[i] == src[j]
    orig = np.array([k == "original" for k in kinds])
    is_pair = same & (orig[i] | orig[j])
    other = np.where(orig[i], j, i)
    out = []
    for r in radii:
        hit = np.zeros(len(i), bool)
        verified = np.zeros(len(i), bool)
        for d, corr in ways:
            hit |= d <= r
            verified |= (d <= r) & (corr >= 0.7)
        row = {"radius": r, "cross_pairs": int((~same).sum()), "cross_hash": int((hit & ~same).sum()),
               "cross_verified": int((verified & ~same).sum())}  # fmt: skip
        for kind in KINDS:
            sel = is_pair & (np.array(kinds)[other] == kind)
            row[kind] = float(verified[sel].mean()) if sel.any() else None
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/eval_dedup"))
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="comma-separated keep order (default: the step's)")
    ap.add_argument("--photos", type=int, default=0, help="use only the first N photos (0: all)")
    args = ap.parse_args(argv)
    photos = shared_photos()
    photos = photos[: args.photos] if args.photos else photos
    records = make_set(photos, args.work / "images")
    keep = args.keep.split(",") if args.keep else None
    summary = run(args.work, records, args.radius, args.workers, keep)
    result = judge(args.work, records)
    print(f"{len(records)} images from {len(photos)} photos; radius {args.radius}; dedup {summary['dedup']}")
    print(f"{'kind':16s} recall  precision  kept over the original")
    for kind, row in result["kinds"].items():
        prec = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        print(f"{kind:16s} {row['recall']:.3f}  {prec:9s}  {row['kept_over_original']}")
    print(f"false merges of distinct photos: {result['false_merges']}; "
          f"original (or its exact copy) kept for {result['original_kept']}/{result['photos']} photos")  # fmt: skip
    print(
        "\nradius table (share of copies whose verified hash pair is within the radius; cross-photo pairs):"
    )
    for row in radius_table(args.work, records):
        kinds = " ".join(f"{k}={row[k]:.3f}" for k in KINDS if row[k] is not None)
        print(f"r={row['radius']:2d} cross {row['cross_hash']}/{row['cross_pairs']} by hash, "
              f"{row['cross_verified']} verified | {kinds}")  # fmt: skip
    (args.work / "eval.json").write_text(json.dumps({"judge": result, "dedup": summary["dedup"]}, indent=1))


if __name__ == "__main__":
    main()
