"""Near-duplicate removal: the exact all-pairs search, grouping that keeps the best copy, the
pipeline step (signed in the decode pass, stored with the scores, resumable, in the report) and
the DataCopilot method. Images are made here from scikit-image photos; ../shared/data is optional."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from paddlemix_iqa.dedup import (
    Candidates,
    Dedup,
    brute_force_pairs,
    dedup_items,
    find_duplicates,
    near_pairs,
    near_pairs_between,
    rank_order,
)
from paddlemix_iqa.pipeline.config import ConfigError, validate
from paddlemix_iqa.pipeline.outputs import KEPT_SWAP, RunStore
from paddlemix_iqa.pipeline.runner import run_pipeline


# --- the search ---------------------------------------------------------------------------
def _hashes(n: int, radius: int, seed: int) -> np.ndarray:
    """Uniform hashes with planted near copies, clusters of equal hashes and close families."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    for _ in range(n // 8):
        i, j = rng.integers(0, n, 2)
        bits = rng.choice(64, rng.integers(0, radius + 2), replace=False)
        h[j] = h[i] ^ np.uint64(sum(1 << int(b) for b in bits))
    h[:12] = h[12]  # a cluster of equal hashes
    return h


@pytest.mark.parametrize("radius", [0, 1, 3, 8, 10, 16])
def test_near_pairs_equals_brute_force(radius):
    h = _hashes(3000, radius, seed=radius)
    pairs = near_pairs(h, radius)
    expected = brute_force_pairs(h, radius)
    assert pairs.dtype.kind == "i" and pairs.ndim == 2 and pairs.shape[1] == 2
    assert len(expected) > 100  # the planted pairs are there to be found
    assert np.array_equal(pairs, expected)
    assert (pairs[:, 0] < pairs[:, 1]).all()


def test_near_pairs_between_equals_brute_force():
    h = _hashes(2000, 8, seed=5)
    queries = h[:400] ^ np.uint64(0b1011)
    assert np.array_equal(near_pairs_between(queries, h, 8), brute_force_pairs(h, 8, queries=queries))


def test_near_pairs_takes_signed_storage_and_refuses_nonsense():
    h = _hashes(500, 6, seed=9)
    assert np.array_equal(near_pairs(h.view(np.int64), 6), near_pairs(h, 6))  # SQLite keeps them signed
    assert near_pairs(np.array([], np.uint64), 8).shape == (0, 2)
    assert near_pairs(h[:1], 8).shape == (0, 2)
    for bad in (-1, 65, 2.5, True):
        with pytest.raises(ValueError, match="radius"):
            near_pairs(h, bad)
    with pytest.raises(TypeError):
        near_pairs(np.array([0.5, 1.5]), 3)


# --- grouping and keeping -------------------------------------------------------------------
def _cands(phash, file_hash=None, pixel_hash=None) -> Candidates:
    phash = np.asarray(phash, np.uint64)
    n = len(phash)
    far = np.uint64(0x5555_5555_5555_5555)
    return Candidates(phash, phash ^ far, phash ^ ~far, file_hash or [None] * n, pixel_hash or [None] * n)


def test_chain_is_split_so_no_kept_image_keeps_a_near_copy():
    a = 0
    b = 0b1111  # 4 bits from a
    c = 0b1111_1111  # 4 from b, 8 from a
    d = 0b1111_1111_1111  # 4 from c, 12 from a
    decided = find_duplicates(_cands([a, b, c, d]), rank_order([np.array([4.0, 3, 2, 1])]), None, radius=5,
                              mirror=False, crop=False)  # fmt: skip
    assert decided.duplicate_of.tolist() == [-1, 0, -1, 2]  # a kept, b its copy; c kept, d its copy
    assert decided.distance.tolist() == [-1, 4, -1, 4]
    kept = np.flatnonzero(decided.duplicate_of < 0)
    h = np.array([a, b, c, d], np.uint64)[kept]
    assert len(near_pairs(h, 5)) == 0  # no kept image has a near copy among the kept


def test_the_best_ranked_copy_is_kept_whatever_the_order():
    h = [7, 7 ^ 0b11, 7 ^ 0b101, 0xFFFF_FFFF_0000_0000]
    quality = np.array([0.2, 0.9, 0.5, 0.1])
    decided = find_duplicates(_cands(h), rank_order([quality]), None, radius=4, mirror=False, crop=False)
    assert decided.duplicate_of.tolist() == [1, -1, 1, -1]
    assert "duplicate_of: B (phash distance 2)" == decided.reason(0, "B")


def test_rank_order_tolerance_then_next_key_then_first_seen():
    quality = np.array([0.61, 0.64, np.nan, 0.64])
    resolution = np.array([100.0, 50.0, 400.0, 50.0])
    # 0.61 and 0.64 are one step of 0.05: the larger image wins
    assert rank_order([quality, resolution], tolerance=0.05).tolist() == [0, 1, 3, 2]
    assert rank_order([quality, resolution], tolerance=0.0).tolist() == [1, 3, 0, 2]


def test_exact_copies_merge_before_the_hash_and_follow_their_representative():
    far = [0, 2**64 - 1, 0x0F0F_0F0F_0F0F_0F0F, 0x3333_CCCC_3333_CCCC]  # far apart: only digests merge them
    decided = find_duplicates(_cands(far, file_hash=["x", "x", None, "y"], pixel_hash=["p", "q", "p", "z"]),
                              np.arange(4), lambda pairs, how: np.ones(len(pairs), bool), radius=8)  # fmt: skip
    assert decided.duplicate_of.tolist() == [-1, 0, 0, -1]
    assert decided.how[1] == "identical file" and decided.how[2] == "identical pixels"


def test_a_failed_verification_keeps_both():
    decided = find_duplicates(_cands([0, 1]), np.arange(2), lambda pairs, how: np.zeros(len(pairs), bool))
    assert (decided.duplicate_of == -1).all()
    assert decided.stats["candidates_phash"] == 1 and decided.stats["verified_phash"] == 0


# --- images ----------------------------------------------------------------------------------
def _scenes() -> dict[str, np.ndarray]:
    from skimage import data

    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
            "rocket": data.rocket()}  # fmt: skip


def _copies(folder: Path, name: str, rgb: np.ndarray) -> list[dict]:
    """The original (PNG, the largest file) and the copies a dataset collects, as records."""
    img = Image.fromarray(rgb)
    w, h = img.size
    img.save(folder / f"{name}.png")
    made = {
        "q30": img,
        "quarter": img.resize((w // 4, h // 4), Image.LANCZOS),
        "crop90": img.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
        "mirror": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "bright": Image.fromarray(np.clip(rgb * 1.15, 0, 255).astype(np.uint8)),
    }
    wm = img.copy()
    ImageDraw.Draw(wm).text((w - 90, h - 24), "(c) stock", fill=(255, 255, 255))
    made["watermark"] = wm
    for kind, copy in made.items():
        copy.save(folder / f"{name}_{kind}.jpg", quality=30 if kind == "q30" else 85)
    records = [{"id": name, "image": f"{name}.png"}]
    return records + [{"id": f"{name}_{k}", "image": f"{name}_{k}.jpg"} for k in made]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dedup_set")
    records = []
    for name, rgb in _scenes().items():
        records += _copies(folder, name, rgb)
    order = np.random.default_rng(3).permutation(len(records))  # copies often come first
    (folder / "records.jsonl").write_text("".join(json.dumps(records[i]) + "\n" for i in order))
    return folder


def _config(folder: Path, out: Path, **dedup) -> object:
    return validate({"input": str(folder / "records.jsonl"), "output_dir": str(out), "workers": 1,
                     "progress": False, "process": [{"resolution_filter": {"min_width": 8}},
                                                    {"dedup": dedup}]})  # fmt: skip


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pipeline_keeps_the_original_of_every_photo_and_rejects_each_copy(dataset, tmp_path):
    summary = run_pipeline(_config(dataset, tmp_path / "run"))
    kept = {r["id"] for r in _read(tmp_path / "run" / "kept.jsonl")}
    assert kept == set(_scenes())  # the originals, no copy, no distinct photo merged
    rejected = _read(tmp_path / "run" / "rejected.jsonl")
    assert len(rejected) == 6 * len(_scenes())
    for r in rejected:
        scene = r["id"].split("_")[0]
        assert r["__iqa_duplicate_of"] == scene
        assert r["__iqa_reject"].startswith(f"dedup: duplicate_of: {scene} (")
        assert isinstance(r["__iqa_duplicate_distance"], int)
    assert summary["counts"]["rejected_by_op"] == {"dedup": len(rejected)}
    assert summary["dedup"]["groups"] == len(_scenes())
    # the hashes are stored with the scores (and the pHash is in scores.jsonl)
    rows = _read(tmp_path / "run" / "scores.jsonl")
    assert all(len(r["phash"]) == 16 for r in rows)
    db = sqlite3.connect(tmp_path / "run" / "state.sqlite")
    assert db.execute("SELECT COUNT(*) FROM signatures").fetchone()[0] == len(rows)
    report = (tmp_path / "run" / "report.html").read_text()
    assert 'id="duplicates"' in report and f"{len(_scenes())} groups of near-duplicates" in report


def test_mirror_off_keeps_the_mirrored_copies(dataset, tmp_path):
    run_pipeline(_config(dataset, tmp_path / "run", mirror=False))
    kept = {r["id"] for r in _read(tmp_path / "run" / "kept.jsonl")}
    assert {f"{s}_mirror" for s in _scenes()} <= kept


def test_a_quality_metric_first_in_keep_decides(dataset, tmp_path):
    config = validate({"input": str(dataset / "records.jsonl"), "output_dir": str(tmp_path / "run"),
                       "workers": 1, "progress": False,
                       "process": [{"brisque_tagger": None}, {"dedup": {"keep": ["brisque"], "tolerance": 0.0}}]})  # fmt: skip
    run_pipeline(config)
    kept = _read(tmp_path / "run" / "kept.jsonl")
    rejected = _read(tmp_path / "run" / "rejected.jsonl")
    for r in kept:  # the kept copy has the best BRISQUE quality of its group
        group = [d for d in rejected if d["__iqa_duplicate_of"] == r["id"]]
        assert all(r["__tag_brisque"] >= d["__tag_brisque"] for d in group)


def test_resumed_run_does_not_sign_again_and_ends_identical(dataset, tmp_path, monkeypatch):
    run_pipeline(_config(dataset, tmp_path / "full"))
    out = tmp_path / "run"
    config = _config(dataset, out)
    import paddlemix_iqa.pipeline.runner as runner

    real = runner.run_dedup

    def killed(dedup, store):  # the run dies once every record is committed, before dedup
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_dedup", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config)
    monkeypatch.setattr(runner, "run_dedup", real)
    calls = []
    monkeypatch.setattr(Dedup, "sign", lambda self, image: calls.append(image) or {})
    summary = run_pipeline(config)
    assert calls == []  # hashes came from the store
    assert summary["resumed_from"] == 28
    for name in ("kept.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes()


def test_a_kill_between_commit_and_rename_is_completed_on_resume(dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    import paddlemix_iqa.pipeline.outputs as outputs

    real = outputs.RunStore._finish_kept_swap
    monkeypatch.setattr(outputs.RunStore, "_finish_kept_swap", lambda self: None)  # dies before the rename
    run_pipeline(_config(dataset, out))
    assert (out / KEPT_SWAP).exists()
    monkeypatch.setattr(outputs.RunStore, "_finish_kept_swap", real)
    run_pipeline(_config(dataset, out))
    assert not (out / KEPT_SWAP).exists()
    assert {r["id"] for r in _read(out / "kept.jsonl")} == set(_scenes())
    store = RunStore(out)
    try:
        assert store.get("dedup") == "done"
    finally:
        store.close()


def test_dedup_must_be_last_and_its_parameters_are_checked(dataset, tmp_path):
    base = {"input": str(dataset / "records.jsonl"), "output_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="last step"):
        validate({**base, "process": [{"dedup": None}, {"laplacian_filter": None}]})
    with pytest.raises(ConfigError, match="has no parameter 'radium'"):
        validate({**base, "process": [{"dedup": {"radium": 8}}]})
    with pytest.raises(ConfigError, match="radius"):
        validate({**base, "process": [{"dedup": {"radius": 40}}]})
    with pytest.raises(ConfigError, match="mirror"):
        validate({**base, "process": [{"dedup": {"mirror": "yes"}}]})
    with pytest.raises(ConfigError, match="keep: 'brisque' is not scored by a step before it"):
        validate({**base, "process": [{"laplacian_tagger": None}, {"dedup": {"keep": ["brisque"]}}]})
    config = validate({**base, "process": [{"brisque_tagger": None}, {"dedup": {"keep": ["brisque"]}}]})
    assert config.build_dedup().keep == ["brisque", "resolution", "filesize"]
    assert [op.name for op in config.build_ops()] == ["brisque_tagger"]


def test_dedup_items_and_the_datacopilot_method(dataset, host):
    items = _read(dataset / "records.jsonl") + [{"id": "no image"}, {"id": "missing", "image": "nope.jpg"}]
    kept, rejected = dedup_items([dict(i) for i in items], root=dataset)
    assert {i["id"] for i in kept} == set(_scenes()) | {"no image", "missing"}
    assert all(r["__iqa_reject"].startswith("dedup: duplicate_of: ") for r in rejected)
    from paddlemix_iqa.integrations import datacopilot

    datacopilot.register()
    ds = host.MMDataset([dict(i) for i in items]).iqa_dedup(root=str(dataset))
    assert {i["id"] for i in ds.items} == set(_scenes()) | {"no image", "missing"}


def test_signature_of_a_mirror_matches_the_image_hash():
    from paddlemix_iqa.scorers import get_scorer

    rgb = _scenes()["coffee"]
    a, b = get_scorer("phash").signatures([rgb, np.ascontiguousarray(rgb[:, ::-1])])
    assert bin(a.phash ^ b.mirror).count("1") <= 2 and bin(a.mirror ^ b.phash).count("1") <= 2
    assert bin(a.phash ^ b.phash).count("1") > 16


def test_coco_copies_are_found_without_merging_photos(tmp_path):
    """The evaluation of benchmarks/eval_dedup.py on 6 of the shared photos (skips without them)."""
    import importlib.util

    from conftest import shared

    shared("photos", "coco")
    spec = importlib.util.spec_from_file_location(
        "eval_dedup", Path(__file__).resolve().parents[1] / "benchmarks" / "eval_dedup.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    photos = sorted(shared("photos", "coco").glob("*.jpg"))[:6]
    records = module.make_set(photos, tmp_path / "images")
    module.run(tmp_path, records, radius=8, workers=1)
    result = module.judge(tmp_path, records)
    assert result["false_merges"] == 0
    assert result["original_kept"] == 6
    for kind, row in result["kinds"].items():
        if kind != "watermark_large":
            assert row["recall"] == 1.0, (kind, row)
