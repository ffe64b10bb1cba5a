"""YAML pipelines: config validation, the runner on real files, the report, the DataCopilot chain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
from PIL import Image

from paddlemix_iqa.pipeline import ConfigError, load_config, run_pipeline
from paddlemix_iqa.pipeline.demo import build_demo
from paddlemix_iqa.pipeline.records import _iter_array, count_records, iter_records

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build_demo(out)
    return out


def demo_config(demo: Path, out: Path, name: str = "default.yaml", *extra: str):
    return load_config(
        CONFIGS / name,
        [
            f"input={demo / 'records.jsonl'}",
            f"image_root={demo}",
            f"output_dir={out}",
            "progress=false",
            *extra,
        ],
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def default_run(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = run_pipeline(demo_config(demo, out, "default.yaml", "workers=1"))
    return out, summary


# --- the default pipeline on the demo data -------------------------------------------------
def test_default_config_rejects_every_degraded_demo_variant_with_its_reason(demo, default_run):
    out, summary = default_run
    expected = json.loads((demo / "expected.json").read_text())
    # the label each step's rejections start with: its name, or the op's
    ops = {(params or {}).get("name", op) for step in summary["config"]["process"] for op, params in step.items()}
    kept = {r["id"]: r for r in read_jsonl(out / "kept.jsonl")}
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert len(kept) + len(rejected) == len(expected)
    checked = 0
    for rid, want in expected.items():
        if want["expected_op"] is None:
            assert rid in kept, (want["variant"], rejected.get(rid, {}).get("__iqa_reject"))
        elif want["expected_op"] in ops:
            reason = rejected[rid]["__iqa_reject"]
            assert reason.startswith(want["expected_op"] + ": "), (want["variant"], reason)
            assert want["reason_contains"] in reason, (want["variant"], reason)
            checked += 1
    assert checked >= 14  # blurred, noisy, crushed, tiny, strip, corrupt, missing, ...
    counts = summary["counts"]
    assert counts["rejected"] == len(rejected) and counts["kept"] == len(kept)


def test_scores_have_one_row_per_image_and_one_column_per_metric(demo, default_run):
    out, _ = default_run
    records = list(iter_records(demo / "records.jsonl"))
    rows = read_jsonl(out / "scores.jsonl")
    assert len(rows) == sum(len(r["images"]) if "images" in r else 1 for r in records)
    sharp = next(r for r in rows if r["image"] == "images/astronaut.jpg")
    assert {"decodable", "resolution", "aspect_ratio", "fused", "fused_quality"} <= set(sharp)
    assert sharp["fused"] < 0.5 and sharp["fused_quality"] == 1 - sharp["fused"]  # p(blurred), the blur step
    missing = next(r for r in rows if r["image"] == "images/does_not_exist.jpg")
    assert "missing" in missing["error"] and missing["decodable"] is None
    blurred = next(r for r in rows if r["image"] == "images/astronaut_blur.jpg")
    assert blurred["fused"] > 0.99


def test_report_is_one_self_contained_html_file(default_run):
    out, summary = default_run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert summary["report"] == str(out / "report.html")
    assert not re.search(r'(src|href)="(?!data:|#)', page), "everything must be inlined (or an in-page link)"
    assert page.count("data:image/png;base64,") >= 4  # one histogram per metric
    assert page.count("data:image/jpeg;base64,") >= 10  # thumbnail strips
    blur = next(p for step in summary["config"]["process"] for p in step.values() if (p or {}).get("name") == "blur")
    assert f"max_value={blur['max_value']}" in page and "<b>blur</b>" in page
    assert "decode_error: missing: file not found" in page  # per-reason counts


def test_two_workers_write_the_same_outputs_as_one(demo, default_run, tmp_path):
    out1, _ = default_run
    run_pipeline(demo_config(demo, tmp_path, "default.yaml", "workers=2", "batch_size=4", "report=false"))
    for name in ("kept.jsonl", "rejected.jsonl", "scores.jsonl"):
        assert (tmp_path / name).read_bytes() == (out1 / name).read_bytes(), name


def test_each_image_is_decoded_once_for_the_whole_chain(demo, tmp_path, monkeypatch):
    import paddlemix_iqa.io.loading as loading

    calls = []

    def counting(decode):
        def wrapped(ref, *args, **kwargs):
            calls.append(str(ref))
            return decode(ref, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(loading, "decode_image", counting(loading.decode_image))  # the one loader's entry points
    monkeypatch.setattr(loading, "probe_image", counting(loading.probe_image))
    config = demo_config(demo, tmp_path, "default.yaml", "workers=1", "batch_size=64", "report=false")
    run_pipeline(config)
    assert len(calls) == len(set(calls))  # one decode per image, shared by the four ops
    assert len(calls) == len({r["image"] for r in read_jsonl(tmp_path / "scores.jsonl")})


# --- bad input never stops a run -------------------------------------------------------------
def test_missing_corrupt_and_malformed_records_are_rejected_and_the_run_finishes(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "ok.jpg", quality=90)
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:3000])
    lines = [
        json.dumps({"id": "a", "image": "ok.jpg"}),
        json.dumps({"id": "b", "image": "gone.jpg"}),
        "{not json",
        json.dumps({"id": "c", "image": "cut.jpg"}),
        json.dumps(["not", "a", "record"]),
        json.dumps({"id": "d", "image": "https://example.com/x.jpg"}),
        json.dumps({"id": "e", "conversations": []}),  # no image: kept, as the host does
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "p.yaml"
    config.write_text(
        "input: data.jsonl\noutput_dir: out\nprogress: false\nreport: false\n"
        "process:\n  - decodable_filter:\n  - laplacian_filter: {min_score: 0.2}\n".replace(
            "data.jsonl", str(tmp_path / "data.jsonl")
        ).replace("out\n", f"{tmp_path / 'out'}\n")
    )
    summary = run_pipeline(load_config(config))
    assert summary["counts"] == {
        "records": 7,
        "kept": 2,
        "rejected": 5,
        "rejected_by_op": {"decodable_filter": 3, "bad_record": 2},
    }
    reasons = [r["__iqa_reject"] for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")]
    assert reasons[0].startswith("decodable_filter: decode_error: missing")
    assert reasons[1].startswith("bad_record: invalid JSON: ")
    assert reasons[2].startswith("decodable_filter: decode_error: truncated")
    assert reasons[3] == "bad_record: not a JSON object (array)"
    assert "remote URL" in reasons[4]
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "kept.jsonl")] == ["a", "e"]


# --- config validation -------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return path


BASE = "input: data.jsonl\nprocess:\n  - decodable_filter:\n"


def test_a_typo_in_a_parameter_names_the_key_the_line_and_the_fix(tmp_path):
    path = write(tmp_path, BASE + "  - laplacian_filter:\n      min_scor: 0.3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "pipe.yaml line 5" in message and "'min_scor'" in message and "did you mean 'min_score'" in message


def test_an_unknown_op_names_its_line(tmp_path):
    path = write(tmp_path, BASE + "  - laplacien_filter: {min_score: 0.3}\n")
    with pytest.raises(
        ConfigError, match=r"pipe.yaml line 4: unknown op 'laplacien_filter'.*'laplacian_filter'"
    ):
        load_config(path)


def test_a_threshold_out_of_range_is_refused(tmp_path):
    path = write(tmp_path, BASE + "  - laplacian_filter:\n      min_score: 1.5\n")
    with pytest.raises(ConfigError, match=r"line 4: op 'laplacian_filter': score threshold 1.5 is outside"):
        load_config(path)
    path = write(tmp_path, BASE + "  - laplacian_filter: {working_size: 8}\n")
    with pytest.raises(ConfigError, match="working_size must be at least 32"):
        load_config(path)


def test_unknown_or_invalid_settings_are_refused(tmp_path):
    with pytest.raises(
        ConfigError, match=r"pipe.yaml line 1: unknown setting 'workerz' \(did you mean 'workers'"
    ):
        load_config(write(tmp_path, "workerz: 2\n" + BASE))
    with pytest.raises(ConfigError, match="workers"):
        load_config(write(tmp_path, BASE + "workers: 0\n"))
    with pytest.raises(ConfigError, match="process"):
        load_config(write(tmp_path, "input: x.jsonl\nprocess: []\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "input: [unclosed\n"))


def test_overrides_set_settings_and_op_parameters(tmp_path):
    path = write(tmp_path, BASE + "  - laplacian_filter: {min_score: 0.3}\n")
    config = load_config(path, ["workers=3", "laplacian_filter.min_score=0.5", "output_dir=/tmp/x"])
    assert config.workers == 3 and config.steps[1].params == {"min_score": 0.5}
    assert str(config.output_dir) == "/tmp/x"
    assert load_config(path).output_dir == Path("runs/pipe")  # default: runs/<config stem>
    with pytest.raises(ConfigError, match="no op 'tenengrad_filter'"):
        load_config(path, ["tenengrad_filter.min_score=0.5"])


def test_every_shipped_config_is_valid():
    names = [p.name for p in CONFIGS.glob("*.yaml")]
    assert "default.yaml" in names
    config = load_config(CONFIGS / "default.yaml")
    assert [s.name for s in config.steps][:3] == [
        "decodable_filter",
        "resolution_filter",
        "aspect_ratio_filter",
    ]


def test_a_different_config_does_not_resume_into_an_old_run(demo, tmp_path):
    run_pipeline(demo_config(demo, tmp_path, "default.yaml", "report=false"))
    with pytest.raises(ConfigError, match="--fresh"):
        run_pipeline(
            demo_config(demo, tmp_path, "default.yaml", "report=false", "blur.max_value=0.95")
        )
    fresh = run_pipeline(
        demo_config(demo, tmp_path, "default.yaml", "report=false", "blur.max_value=0.95"),
        fresh=True,
    )
    assert fresh["processed"] == fresh["counts"]["records"]


# --- PaddleMIX DataCopilot ops in the chain ----------------------------------------------------
def test_datacopilot_config_chains_host_ops_by_name(host, demo, tmp_path):
    summary = run_pipeline(demo_config(demo, tmp_path, "datacopilot.yaml", "report=false"))
    assert "image_ration_filter" in summary["counts"]["rejected_by_op"]
    rejected = {r["id"]: r["__iqa_reject"] for r in read_jsonl(tmp_path / "rejected.jsonl")}
    strip = next(
        rid for rid, e in json.loads((demo / "expected.json").read_text()).items() if "aspect" in e["variant"]
    )
    assert rejected[strip].startswith("image_ration_filter: dropped by PaddleMIX op (min_ratio=0.333")
    kept = read_jsonl(tmp_path / "kept.jsonl")
    assert kept and all(
        r["image"].startswith("images/") for r in kept if "image" in r
    )  # paths as in the input


def test_a_host_op_that_raises_drops_only_the_bad_record(host, tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "ok.jpg")
    Image.fromarray(cv2.resize(photo, (512, 64))).save(tmp_path / "wide.jpg")
    lines = [
        {"id": "1", "image": "ok.jpg"},
        {"id": "2", "image": "gone.jpg"},
        {"id": "3", "image": "wide.jpg"},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    path = write(
        tmp_path,
        f"input: {tmp_path / 'd.jsonl'}\noutput_dir: {tmp_path / 'o'}\nprogress: false\nreport: false\n"
        "process:\n  - image_ration_filter: {max_ratio: 3.0}\n",
    )
    run_pipeline(load_config(path))
    rejected = {r["id"]: r["__iqa_reject"] for r in read_jsonl(tmp_path / "o" / "rejected.jsonl")}
    assert rejected["2"].startswith("image_ration_filter: host_error: FileNotFoundError")
    assert rejected["3"].startswith("image_ration_filter: dropped by PaddleMIX op")
    assert [r["id"] for r in read_jsonl(tmp_path / "o" / "kept.jsonl")] == ["1"]


def test_datacopilot_config_without_paddlemix_says_how_to_get_it(demo, tmp_path, monkeypatch):
    import importlib.util
    import sys

    for name in [m for m in sys.modules if m == "paddlemix" or m.startswith("paddlemix.")]:
        monkeypatch.delitem(sys.modules, name)  # a stand-in imported by an earlier test
    if importlib.util.find_spec("paddlemix") is not None:
        pytest.skip("PaddleMIX is installed")
    with pytest.raises(
        ConfigError, match=r"datacopilot.yaml line \d+: unknown op 'image_ration_filter'.*PaddleMIX"
    ):
        demo_config(demo, tmp_path, "datacopilot.yaml")


# --- streaming input -------------------------------------------------------------------------
def test_json_arrays_stream_in_small_chunks_with_the_same_records(tmp_path):
    records = [
        {"id": i, "image": f"img/{i}.jpg", "text": 'a [tricky], {string}" with ] brackets', "n": 1.5e-3 * i}
        for i in range(200)
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records, indent=1))
    for chunk in (1, 7, 64, 1 << 20):
        assert list(_iter_array(path, chunk=chunk)) == records
    assert list(iter_records(path)) == records
    assert count_records(path) == 200
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records[:5]) + "\n")
    assert list(iter_records(jsonl)) == records[:5] and count_records(jsonl) == 5
