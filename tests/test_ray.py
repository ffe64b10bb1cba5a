"""--engine ray writes what the local runner writes, byte for byte, even when an actor or the driver is killed.

One local Ray (2 CPUs) is shared by the module (its start-up is most of the cost); marked ``ray``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from paddlemix_iqa.pipeline import ConfigError, load_config

pytest.importorskip("ray.data")
from test_hf import local_run, make_dataset  # noqa: E402 - after the extra's import check

from paddlemix_iqa.integrations.ray import dataset_level_steps, refuse_dataset_level, run_ray  # noqa: E402
from paddlemix_iqa.pipeline.outputs import committed_count  # noqa: E402

pytestmark = pytest.mark.ray
OUTPUTS = ("kept.jsonl", "rejected.jsonl", "scores.jsonl")
ACTOR = b"ray::MapWorker(MapBatches(ChainActor))"


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small and a bigger input (the same files, records repeated) and the local runner's outputs of each."""
    base = tmp_path_factory.mktemp("ray")
    small = make_dataset(base / "small")
    big = make_dataset(base / "big", copies=5)
    local_run(small, base / "small_local")
    local_run(big, base / "big_local", extra=("batch_size=4",))
    return {"small": small, "big": big, "small_local": base / "small_local", "big_local": base / "big_local"}


def config(records: Path, out: Path, *extra: str):
    return load_config(
        "default", [f"input={records}", f"output_dir={out}", "report=false", "progress=false", *extra]
    )


def assert_same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_same_outputs_as_the_local_runner(ray_session, data, tmp_path):
    summary = run_ray(config(data["small"], tmp_path / "ray"), fresh=True)
    assert_same_outputs(data["small_local"], tmp_path / "ray")
    counts = summary["counts"]
    assert counts["records"] == len(data["small"].read_text().splitlines())
    assert {"bad_record", "input", "decodable_filter", "blur", "resolution_filter"} <= set(
        counts["rejected_by_op"]
    )
    assert summary["engine"]["name"] == "ray" and summary["engine"]["actors"] == 2
    # the same state as a local run: the report and `paddlemix-iqa report` read it alike
    assert json.loads((tmp_path / "ray" / "run.json").read_text())["counts"] == counts


def test_parquet_input_and_the_cli(ray_session, data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from paddlemix_iqa.cli import main

    rows = []
    for line in data["small"].read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("image"):
            rows.append({"id": record["id"], "image": record["image"]})
    jsonl = data["small"].parent / "plain.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = data["small"].parent / "plain.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    local_run(jsonl, tmp_path / "local")
    code = main(
        ["run", "default", "--engine", "ray", "--input", str(parquet), "--output", str(tmp_path / "ray"),
         "--no-report", "--no-progress", "--address", ray_session]
    )  # fmt: skip
    assert code == 0
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    assert (
        main(["run", "default", "--num-cpus", "2", "--input", str(jsonl), "--output", str(tmp_path / "x")])
        == 2
    )


def _actors() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(ACTOR):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_killed_actor_loses_and_duplicates_nothing(ray_session, data, tmp_path):
    out = tmp_path / "ray"
    total = len(data["big"].read_text().splitlines())
    killed: list[tuple[int, int]] = []  # (pid, records committed when it was killed)
    running = threading.Event()
    running.set()

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while running.is_set() and time.monotonic() < deadline:
            done = committed_count(out)
            actors = _actors()
            if done >= 8 and actors:
                os.kill(actors[0], signal.SIGKILL)
                killed.append((actors[0], done))
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        summary = run_ray(config(data["big"], out, "batch_size=4", "commit_seconds=0"), fresh=True)
    finally:
        running.clear()
        killer.join()
    assert killed, "no actor was killed mid-run"
    assert killed[0][1] < total  # it died before the run ended
    assert summary["counts"]["records"] == total and summary["processed"] == total
    assert_same_outputs(data["big_local"], out)


def test_a_killed_driver_resumes_from_what_it_committed(ray_session, data, tmp_path):
    """SIGKILL the `paddlemix-iqa run --engine ray` process mid-run; the rerun finishes byte-identical."""
    out = tmp_path / "ray"
    total = len(data["big"].read_text().splitlines())
    cmd = [
        sys.executable, "-m", "paddlemix_iqa.cli", "run", "default", "batch_size=4", "commit_seconds=0",
        "--engine", "ray", "--address", ray_session,
        "--input", str(data["big"]), "--output", str(out), "--no-report", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and committed_count(out) < 12:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = committed_count(out)
    assert 12 <= before < total
    summary = run_ray(config(data["big"], out, "batch_size=4"))
    assert summary["resumed_from"] == before and summary["processed"] == total - before
    assert_same_outputs(data["big_local"], out)


def test_dataset_level_steps_are_refused(data, tmp_path):
    """A step that must see every record is refused before anything runs (no Ray needed)."""
    cfg = config(data["small"], tmp_path / "out")
    ops = cfg.build_ops()
    assert any(s.name == "dedup" for s in cfg.steps)  # the default's dedup runs (as a reduce on the driver)
    assert dataset_level_steps(cfg, ops) == []
    ops[1].dataset_level = True  # how an op says it needs the whole dataset
    with pytest.raises(ConfigError, match="dataset-level step.*'resolution_filter'.*--engine local"):
        refuse_dataset_level(cfg, ops)
    assert not (tmp_path / "out").exists()
