"""Resume for real: SIGKILL the command mid-run, run it again, compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

OUTPUTS = ("kept.jsonl", "rejected.jsonl", "scores.jsonl")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A few hundred small real images (crops of scikit-image photos; some blurred, tiny or broken)."""
    from skimage import data

    root = tmp_path_factory.mktemp("resume")
    (root / "img").mkdir()
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = random.Random(0)
    records = []
    for i in range(360):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        y, x = rng.randrange(0, h - 200), rng.randrange(0, w - 200)
        crop = photo[y : y + 200, x : x + 200]
        if i % 5 == 0:
            crop = cv2.GaussianBlur(crop, (0, 0), 3)
        if i % 17 == 0:
            crop = crop[:40]
        name = f"img/{i:04d}.jpg"
        Image.fromarray(np.ascontiguousarray(crop)).save(root / name, quality=90)
        if i % 23 == 0:
            (root / name).write_bytes((root / name).read_bytes()[:500])
        records.append(
            {
                "id": f"r{i}",
                "image": name if i % 31 else f"img/missing{i}.jpg",
                "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}],
            }
        )
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def config(root: Path, out: Path) -> Path:
    path = root / f"{out.name}.yaml"
    path.write_text(
        f"input: {root / 'data.jsonl'}\noutput_dir: {out}\nworkers: 1\nbatch_size: 4\ncommit_seconds: 0\nreport: false\n"
        "process:\n  - decodable_filter:\n  - resolution_filter: {min_width: 64, min_height: 64}\n"
        "  - laplacian_filter: {min_score: 0.2}\n  - tenengrad_filter: {}\n"
    )
    return path


def run(cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "paddlemix_iqa.cli", "run", str(cfg), "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def committed(out: Path) -> int:
    db = out / "state.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def reference(dataset) -> Path:
    out = dataset / "reference"
    result = run(config(dataset, out))
    assert result.returncode == 0, result.stderr
    return out


def kill_at(cfg: Path, out: Path, target: int) -> int:
    """Start the command, SIGKILL it once ``target`` records are committed; returns the count at death."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "paddlemix_iqa.cli", "run", str(cfg), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while committed(out) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; make the dataset bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return committed(out)


def test_sigkill_at_random_points_then_rerun_gives_identical_outputs(dataset, reference):
    out = dataset / "killed"
    cfg = config(dataset, out)
    rng = random.Random()
    first = kill_at(cfg, out, rng.randrange(20, 140))
    second = kill_at(cfg, out, rng.randrange(first + 8, 300))  # killed again while resuming
    assert 0 < first < second < 360
    result = run(cfg)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "run.json").read_text())
    assert summary["resumed_from"] == second
    assert summary["processed"] == 360 - second  # nothing already committed is scored again
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    kept = [json.loads(x)["id"] for x in (out / "kept.jsonl").read_text().splitlines()]
    rejected = [json.loads(x)["id"] for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(set(kept) | set(rejected)) == len(kept) + len(rejected) == 360  # none lost, none twice


def test_a_torn_write_after_the_last_commit_is_cut_off(dataset, reference, tmp_path):
    """A crash between appending a batch and committing it leaves extra bytes; the rerun removes them."""
    out = dataset / "torn"
    cfg = config(dataset, out)
    assert run(cfg).returncode == 0
    with open(out / "kept.jsonl", "ab") as f:
        f.write(b'{"id": "half a line')
    with open(out / "scores.jsonl", "ab") as f:
        f.write(b'{"index": 999}\n')
    result = run(cfg)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "run.json").read_text())["processed"] == 0
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    fresh = run(cfg, "--fresh")
    assert fresh.returncode == 0 and json.loads((out / "run.json").read_text())["processed"] == 360
