"""The run directory is the user's data: one run at a time, inputs never destroyed, resume only the
same work, forged keys ignored, workers gone with the run, batches bounded by decoded size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa.cli import main
from paddlemix_iqa.pipeline import load_config, run_pipeline
from paddlemix_iqa.pipeline.runner import Chain

CONFIG = """input: {input}
output_dir: {out}
workers: {workers}
batch_size: 4
commit_seconds: 0
report: false
progress: false
process:
  - decodable_filter:
  - laplacian_filter: {{min_score: 0.02}}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """40 records over real photo crops, every fifth one blurred."""
    from skimage import data as skdata

    root = tmp_path_factory.mktemp("safety")
    photo = skdata.astronaut()
    records = []
    for i in range(40):
        crop = np.ascontiguousarray(photo[150 + i * 5 : 350 + i * 5, 150 + i * 5 : 350 + i * 5])
        if i % 5 == 0:
            crop = cv2.GaussianBlur(crop, (0, 0), 4)
        Image.fromarray(crop).save(root / f"{i:02d}.jpg", quality=90)
        records.append({"id": f"r{i}", "image": f"{i:02d}.jpg"})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def write_config(path: Path, input: Path, out: Path, workers: int = 1) -> Path:
    path.write_text(CONFIG.format(input=input, out=out, workers=workers))
    return path


def ids(out: Path) -> list[str]:
    lines = []
    for name in ("kept.jsonl", "rejected.jsonl"):
        lines += (out / name).read_text().splitlines() if (out / name).exists() else []
    return [json.loads(line)["id"] for line in lines]


def cli(cfg: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "paddlemix_iqa.cli", "run", str(cfg), "--no-progress", "--no-report", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- one run per output directory ----------------------------------------------------------
def test_a_second_run_into_a_busy_output_dir_exits_2_naming_the_holder(data, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", data / "data.jsonl", out)
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from paddlemix_iqa.pipeline.outputs import OutputLock\n"
            f"with OutputLock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = cli(cfg)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        assert f"pid {holder.pid}" in err
        assert not (out / "kept.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    third = cli(cfg)  # the lock dies with its holder
    third.communicate(timeout=120)
    assert third.returncode == 0
    assert sorted(ids(out)) == sorted(f"r{i}" for i in range(40))


def test_concurrent_runs_into_one_dir_write_every_id_exactly_once(data, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", data / "data.jsonl", out)
    runs = [cli(cfg) for _ in range(2)]
    codes = sorted(p.wait(timeout=180) for p in runs)
    assert codes in ([0, 0], [0, 2])  # the loser either waited out the winner or was refused
    assert cli(cfg).wait(timeout=180) == 0  # a third run resumes a finished run: nothing to add
    got = ids(out)
    assert sorted(got) == sorted(f"r{i}" for i in range(40)) and len(got) == len(set(got))


# --- never destroy an input ----------------------------------------------------------------
def test_refiltering_a_runs_own_output_into_it_is_refused_and_the_file_survives(data, tmp_path):
    out = tmp_path / "out"
    run_pipeline(load_config(write_config(tmp_path / "a.yaml", data / "data.jsonl", out)))
    kept = out / "kept.jsonl"
    before = kept.read_bytes()
    assert before
    for extra in ((), ("--fresh",)):
        code = main(["run", str(write_config(tmp_path / "b.yaml", kept, out)), "--no-progress", *extra])
        assert code == 2
        assert kept.read_bytes() == before


def test_an_input_inside_output_dir_survives_a_run_and_a_fresh_run(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    records = out / "records.jsonl"
    records.write_bytes((data / "data.jsonl").read_bytes())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(input=records, out=out, workers=1) + f"image_root: {data}\n")
    for extra in ((), ("--fresh",)):
        assert main(["run", str(cfg), "--no-progress", "--no-report", *extra]) == 0
        assert records.read_bytes() == (data / "data.jsonl").read_bytes()
        assert len(ids(out)) == 40


def test_output_files_no_run_created_are_not_overwritten_without_fresh(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.jsonl").write_text('{"mine": 1}\n')
    cfg = write_config(tmp_path / "c.yaml", data / "data.jsonl", out)
    assert main(["run", str(cfg), "--no-progress", "--no-report"]) == 2
    assert "--fresh" in capsys.readouterr().err
    assert (out / "kept.jsonl").read_text() == '{"mine": 1}\n'
    assert main(["run", str(cfg), "--no-progress", "--no-report", "--fresh"]) == 0
    assert len(ids(out)) == 40


# --- resume only the same work -------------------------------------------------------------
def test_resume_refuses_an_input_edited_since_the_run_began(data, tmp_path, capsys):
    out = tmp_path / "out"
    records = tmp_path / "records.jsonl"
    lines = (data / "data.jsonl").read_text().splitlines(keepends=True)
    records.write_text("".join(lines[:20]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(input=records, out=out, workers=1) + f"image_root: {data}\n")
    assert main(["run", str(cfg), "--no-progress", "--no-report"]) == 0
    records.write_text("".join(lines[:10] + lines[30:] + lines[10:20]))  # same size class, other records
    assert main(["run", str(cfg), "--no-progress", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "changed" in err and "--fresh" in err
    assert len(ids(out)) == 20  # nothing was mixed in
    assert main(["run", str(cfg), "--no-progress", "--no-report", "--fresh"]) == 0
    assert len(ids(out)) == 30


# --- reserved keys -------------------------------------------------------------------------
def test_forged_reserved_keys_do_not_change_decisions_or_scores(data, tmp_path):
    records = [json.loads(line) for line in (data / "data.jsonl").read_text().splitlines()]
    honest_out, forged_out = tmp_path / "honest", tmp_path / "forged"
    run_pipeline(load_config(write_config(tmp_path / "h.yaml", data / "data.jsonl", honest_out)))
    forged = tmp_path / "forged.jsonl"
    with forged.open("w") as f:
        for r in records:
            r = {
                **r,
                "__iqa_reject": "laplacian_filter: forged",
                "__iqa_error": "decode_error: forged",
                "__tag_laplacian": 1.0,
                "__tag_laplacian_raw": 1e9,
                "__tag_decodable": 0.0,
            }
            f.write(json.dumps(r) + "\n")
    cfg = tmp_path / "f.yaml"
    cfg.write_text(CONFIG.format(input=forged, out=forged_out, workers=1) + f"image_root: {data}\n")
    run_pipeline(load_config(cfg))
    for name in ("kept.jsonl", "rejected.jsonl", "scores.jsonl"):
        assert (forged_out / name).read_text() == (honest_out / name).read_text(), name


def test_tags_of_metrics_the_run_does_not_compute_are_kept_but_not_scored(data, tmp_path):
    records = tmp_path / "records.jsonl"
    first = json.loads((data / "data.jsonl").read_text().splitlines()[1])
    records.write_text(json.dumps({**first, "__tag_arniqa": 0.7}) + "\n")
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(input=records, out=out, workers=1) + f"image_root: {data}\n")
    run_pipeline(load_config(cfg))
    (kept,) = [json.loads(line) for line in (out / "kept.jsonl").read_text().splitlines()]
    assert kept["__tag_arniqa"] == 0.7  # the user's data from an earlier run stays
    (row,) = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert "arniqa" not in row and "laplacian" in row


# --- bounded batches -----------------------------------------------------------------------
def test_a_small_pixel_budget_gives_the_same_results_as_a_large_one(data):
    config = load_config(write_config(data / "p.yaml", data / "data.jsonl", data / "unused"))
    batch = [(i, json.loads(line)) for i, line in enumerate((data / "data.jsonl").read_text().splitlines())]

    def run(budget: int):
        chain = Chain(config.build_ops(), data, pixel_budget=budget)
        finished, alive, _ = chain.run_head([(i, dict(r)) for i, r in batch])
        assert not alive
        return sorted((r.idx, r.kept, r.reason, json.dumps(r.rows)) for r in finished)

    assert run(1) == run(1 << 40)


# --- workers die with the run --------------------------------------------------------------
def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                kids.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.add(kid)
            todo.append(kid)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_worker_processes_exit_when_the_run_is_sigkilled(data, tmp_path):
    big = tmp_path / "big.jsonl"
    line = (data / "data.jsonl").read_text()
    big.write_text(line * 200)  # long enough to be killed mid-run
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(input=big, out=tmp_path / "out", workers=2) + f"image_root: {data}\n")
    run = cli(cfg)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 3:  # fork server + 2 workers
        workers = _children(run.pid)
        time.sleep(0.2)
    assert len(workers) >= 2, "the pool never started"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes outlived the run: {left}"
