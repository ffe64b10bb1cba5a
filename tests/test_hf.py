"""The Hugging Face datasets adapter gives the local runner's verdicts, reasons and scores, in ``map`` and ``filter``.

Also the home of :func:`make_dataset`, the real-photo dataset with broken files and records that
tests/test_ray.py runs on both engines.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import SHARED_DATA, write_png_header_only
from paddlemix_iqa.pipeline import load_config, run_pipeline

datasets = pytest.importorskip("datasets")

from paddlemix_iqa.integrations.hf import scorer  # noqa: E402 - after the extra's import check


def make_dataset(root: Path, copies: int = 1) -> Path:
    """Real photos (scikit-image's, and 4 COCO photos when ../shared/data is there), degraded copies, broken
    files (truncated, empty, text, missing, a decompression-bomb header), an image outside the root,
    multi-image records and broken lines; ``copies`` repeats the records (new ids). Returns records.jsonl."""
    from skimage import data

    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    names = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"):
        photo = Image.fromarray(getattr(data, name)())
        photo.thumbnail((320, 320))
        photo.save(img / f"{name}.jpg", quality=90)
        names.append(f"{name}.jpg")
    astronaut = Image.open(img / "astronaut.jpg")
    astronaut.filter(ImageFilter.GaussianBlur(4)).save(img / "blurred.jpg", quality=90)
    astronaut.save(img / "jpeg_q3.jpg", quality=3)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(astronaut, np.float32) + rng.normal(0, 60, (*astronaut.size[::-1], 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(img / "noisy.jpg", quality=95)
    astronaut.resize((40, 40)).save(img / "tiny.jpg")
    astronaut.resize((600, 100)).save(img / "wide.jpg")
    names += ["blurred.jpg", "jpeg_q3.jpg", "noisy.jpg", "tiny.jpg", "wide.jpg"]
    coco = sorted((SHARED_DATA / "photos" / "coco").glob("*.jpg"))[:4]
    for p in coco:
        shutil.copy(p, img / f"coco_{p.name}")
        names.append(f"coco_{p.name}")
    full = (img / "astronaut.jpg").read_bytes()
    (img / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (img / "empty.jpg").write_bytes(b"")
    (img / "notes.jpg").write_text("not a picture\n")
    write_png_header_only(img / "bomb.png", 60000, 60000)
    (root.parent / "outside.jpg").write_bytes(full)
    bad = ["truncated.jpg", "empty.jpg", "notes.jpg", "missing.jpg", "bomb.png"]
    lines = []
    for c in range(copies):
        for name in names + bad:
            lines.append(json.dumps({"id": f"{c}-{name}", "image": f"img/{name}", "images": None, "n": c}))
        lines.append(json.dumps({"id": f"{c}-outside", "image": "../outside.jpg", "images": None, "n": c}))
        two = ["img/coffee.jpg", "img/chelsea.jpg"]
        lines.append(json.dumps({"id": f"{c}-two", "image": None, "images": two, "n": c}))
        lines.append(
            json.dumps(
                {"id": f"{c}-two-bad", "image": None, "images": ["img/coffee.jpg", "img/truncated.jpg"]}
            )
        )
        lines.append('{"id": "broken", "image": ')  # a cut line
        lines.append('"just a string"')
    path = root / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def local_run(records: Path, out: Path, extra: tuple[str, ...] = (), dedup: bool = True) -> dict:
    """The default config on the local runner (without its dataset-level dedup step when ``dedup`` is False)."""
    cfg = load_config(
        "default",
        [f"input={records}", f"output_dir={out}", "workers=1", "report=false", "progress=false", *extra],
    )
    if not dedup:
        cfg.steps = [s for s in cfg.steps if not s.dataset]
    return run_pipeline(cfg, fresh=True)


def local_outcome(out: Path) -> dict[str, tuple[bool, str | None]]:
    """id -> (kept, reason) of a run's outputs (good records only: a broken line has no id)."""
    outcome = {}
    for name in ("kept", "rejected"):
        for line in (out / f"{name}.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "id" in record:
                outcome[record["id"]] = (name == "kept", record.get("__iqa_reject"))
    return outcome


def local_scores(out: Path) -> dict[tuple[str, str], float | None]:
    """(id, metric) -> native value of single-image records."""
    scores = {}
    for line in (out / "scores.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key not in ("index", "id", "image", "error") and not key.endswith("_quality"):
                scores.setdefault((row["id"], key), []).append(value)
    return {k: v[0] for k, v in scores.items() if len(v) == 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hf") / "data"
    records = make_dataset(root)
    out = root.parent / "local"
    local_run(records, out, dedup=False)  # a per-batch map cannot run the dataset-level dedup
    return records, out


def good_records(records: Path) -> list[dict]:
    out = []
    for line in records.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _same_number(a: float | None, b: float) -> bool:
    return (a is None and math.isnan(b)) or (
        a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    )


def test_map_gives_the_local_runners_verdicts_reasons_and_scores(dataset):
    records, out = dataset
    ds = datasets.Dataset.from_list(good_records(records))
    scored = ds.map(scorer("default", root=records.parent), batched=True, batch_size=8, num_proc=2)
    expected = local_outcome(out)
    got = {r["id"]: (r["iqa_keep"], r["iqa_reason"] or None) for r in scored}
    assert got == expected
    assert {"decodable_filter", "blur", "input", "resolution_filter"} <= {
        reason.split(":")[0] for kept, reason in expected.values() if not kept
    }
    scores = local_scores(out)
    single = [r for r in scored if r["image"] is not None]
    compared = 0
    for row in single:  # an `images` column makes every score a list (one type per column)
        for metric in ("brisque", "fused", "codes", "resolution"):
            (value,) = row[f"iqa_{metric}"]
            if (row["id"], metric) in scores:
                assert _same_number(scores[row["id"], metric], value), (row["id"], metric)
                compared += 1
            else:
                assert math.isnan(value)
    assert compared > 20
    multi = next(r for r in scored if r["id"] == "0-two")
    assert isinstance(multi["iqa_brisque"], list) and len(multi["iqa_brisque"]) == 2
    kept = scored.filter(lambda keep: keep, input_columns="iqa_keep")
    assert sorted(kept["id"]) == sorted(i for i, (k, _) in expected.items() if k)


def test_image_feature_bytes_and_files_score_as_paths(dataset):
    """Image(decode=False) bytes (broken files included) and decoded Image values opened from files."""
    records, out = dataset
    expected = local_outcome(out)
    rows = [r for r in good_records(records) if r["image"] and r["id"] != "0-outside"]
    present = [r for r in rows if (records.parent / r["image"]).is_file()]
    as_bytes = [
        {"id": r["id"], "image": {"bytes": (records.parent / r["image"]).read_bytes(), "path": None}}
        for r in present
    ]
    ds = datasets.Dataset.from_list(as_bytes).cast_column("image", datasets.Image(decode=False))
    scored = ds.map(scorer("default"), batched=True, batch_size=8)
    got = {r["id"]: (r["iqa_keep"], r["iqa_reason"] or None) for r in scored}
    for rid, (kept, reason) in got.items():
        want_kept, want_reason = expected[rid]
        assert kept == want_kept, rid
        if reason:  # the same reason; a decode error names the spooled file instead of the record's path
            assert reason.split(": ")[:2] == want_reason.split(": ")[:2], rid
    scores = local_scores(out)
    for row in scored:
        if (row["id"], "brisque") in scores:
            assert _same_number(scores[row["id"], "brisque"], row["iqa_brisque"])
    decodable = [
        r for r in rows if expected[r["id"]][0] or expected[r["id"]][1].startswith(("blur", "brisque"))
    ]
    paths = [{"id": r["id"], "image": str(records.parent / r["image"])} for r in decodable]
    ds = datasets.Dataset.from_list(paths).cast_column("image", datasets.Image())
    scored = ds.map(scorer("default"), batched=True, batch_size=8)
    assert {r["id"]: (r["iqa_keep"], r["iqa_reason"] or None) for r in scored.remove_columns("image")} == {
        r["id"]: expected[r["id"]] for r in decodable
    }


def test_metric_names_score_and_drop_only_unreadable_images(tmp_path):
    records = make_dataset(tmp_path / "data")
    rows = [
        {"id": r["id"], "image": r["image"]}
        for r in good_records(records)
        if r["image"] in ("img/coffee.jpg", "img/truncated.jpg")
    ]
    ds = datasets.Dataset.from_list(rows)
    scored = ds.map(scorer(["laplacian", "brisque"], root=records.parent), batched=True)
    coffee, truncated = (
        next(r for r in scored if r["image"] == f"img/{n}.jpg") for n in ("coffee", "truncated")
    )
    from paddlemix_iqa import get_scorer, load_image

    pixels = load_image(records.parent / "img/coffee.jpg")
    assert coffee["iqa_keep"] and coffee["iqa_reason"] == ""
    from paddlemix_iqa.scorers.base import to_gray  # ops hand BRISQUE the shared grey copy

    assert coffee["iqa_brisque"] == pytest.approx(
        float(get_scorer("brisque").score_batch([to_gray(pixels)])[0])
    )
    assert 0 <= coffee["iqa_laplacian_quality"] <= 1
    assert not truncated["iqa_keep"] and "truncated" in truncated["iqa_reason"]
    assert math.isnan(truncated["iqa_brisque"])


def test_bad_argument_is_a_clear_error():
    with pytest.raises(TypeError, match="PipelineConfig"):
        scorer(42)
