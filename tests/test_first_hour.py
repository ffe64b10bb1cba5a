"""A newcomer's first hour: bundled configs by name from any folder, flags people expect, and a
wrong image_root that explains itself instead of rejecting everything silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from paddlemix_iqa.cli import EXIT_NO_IMAGES, main
from paddlemix_iqa.pipeline.demo import build_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    build_demo(out)
    return out


def test_bundled_default_runs_by_name_on_records_beside_their_images(demo, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "my"
    shutil.copytree(demo, mine)
    monkeypatch.chdir(tmp_path)  # not the repository: the config comes from the package
    code = main(["run", "default", "--input", str(mine / "records.jsonl"), "--output", "out", "--workers", "1",
                 "--no-progress", "--no-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    expected = json.loads((mine / "expected.json").read_text())
    kept = {json.loads(line)["id"] for line in (tmp_path / "out" / "kept.jsonl").open()}
    assert kept == {rid for rid, want in expected.items() if want["expected_op"] is None}


def test_a_wrong_image_root_exits_non_zero_and_shows_the_resolved_path(demo, tmp_path, capsys):
    records = tmp_path / "elsewhere" / "records.jsonl"
    records.parent.mkdir()
    shutil.copy(demo / "records.jsonl", records)  # the images stayed behind
    code = main(["run", "default", "--input", str(records), "--output", str(tmp_path / "out"),
                 "--no-progress", "--no-report"])  # fmt: skip
    assert code == EXIT_NO_IMAGES
    err = capsys.readouterr().err
    assert str(records.parent / "images") in err  # where it looked
    reasons = [json.loads(line)["__iqa_reject"] for line in (tmp_path / "out" / "rejected.jsonl").open()]
    assert all(str(records.parent) in r for r in reasons if "missing" in r)


def test_configs_lists_and_prints_the_bundled_ones(tmp_path, capsys):
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    for name in ("default", "pulc", "datacopilot"):
        assert f"  {name} " in listing
    assert main(["configs", "show", "default"]) == 0
    text = capsys.readouterr().out
    assert "image_root: demo" not in text  # images are looked up beside the records
    assert yaml.safe_load(text)["process"]
    assert main(["configs", "show", "defualt"]) == 2
    assert "did you mean 'default'" in capsys.readouterr().err


def test_score_without_metrics_uses_the_weight_free_scorers_and_suggests_names(photo, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(photo).save(tmp_path / "a.jpg")
    assert main(["score", str(tmp_path / "a.jpg"), "--format", "jsonl"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert {"laplacian", "brisque", "codes"} <= set(row) and "arniqa" not in row
    assert main(["score", str(tmp_path / "a.jpg"), "--metrics", "laplacain"]) == 2
    assert "did you mean 'laplacian'" in capsys.readouterr().err


def test_ops_name_shows_one_op_with_its_parameters_and_defaults(capsys):
    assert main(["ops", "laplacian_filter"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("laplacian_filter: ") and "Laplacian" in out.splitlines()[0]
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"min_score", "working_size", "tiles", "keep_all", "name"} <= set(rows)
    assert "512" in rows["working_size"] and "[0, 1]" in rows["min_score"]
    # every numeric parameter shows the range its constructor enforces (tests/test_param_ranges.py)
    assert rows["tiles"].split()[1:4] == ["int", "1", "1..64"]
    assert "32..8192" in rows["working_size"] and "[0, 1]" in rows["tile_quantile"]
    assert "any finite number" in rows["min_value"] and "[1e-12, 1e+12]" in rows["midpoint"]
    assert main(["ops", "code_filter"]) == 0
    assert "working_size..16384" in capsys.readouterr().out  # full_size is at least working_size
    assert main(["ops", "laplacan_filter"]) == 2
    assert "did you mean 'laplacian_filter'" in capsys.readouterr().err
