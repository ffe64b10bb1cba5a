"""The ``paddlemix-iqa`` command: help, exit codes, score output formats, ops, report, weights."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from PIL import Image

from paddlemix_iqa.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "argv", [[], ["run"], ["score"], ["report"], ["ops"], ["demo"], ["weights"], ["weights", "download"]]
)
def test_every_command_has_help(argv, capsys):
    assert main([*argv, "--help"]) == 0
    assert "usage: paddlemix-iqa" in capsys.readouterr().out


def test_the_console_module_runs_and_bad_usage_exits_2():
    cmd = [sys.executable, "-m", "paddlemix_iqa.cli"]
    assert subprocess.run([*cmd, "--help"], capture_output=True).returncode == 0
    bad = subprocess.run([*cmd, "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.fixture()
def images(tmp_path, photo):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(folder / "sharp.jpg", quality=92)
    Image.fromarray(cv2.GaussianBlur(photo, (0, 0), 4)).save(folder / "sub" / "blur.png")
    (folder / "broken.jpg").write_bytes((folder / "sharp.jpg").read_bytes()[:2000])
    (folder / "notes.txt").write_text("not an image and not picked up from a folder")
    return folder


def test_score_csv_has_path_metric_and_error_columns(images, capsys):
    assert main(["score", str(images), "--metrics", "laplacian,tenengrad", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["path", "laplacian", "tenengrad", "error"]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert set(by_name) == {"sharp.jpg", "blur.png", "broken.jpg"}
    assert float(by_name["sharp.jpg"]["laplacian"]) > 10 * float(by_name["blur.png"]["laplacian"])
    assert by_name["broken.jpg"]["laplacian"] == "" and by_name["broken.jpg"]["error"].startswith("truncated")
    assert by_name["sharp.jpg"]["error"] == ""


def test_score_normalized_jsonl_and_table(images, capsys):
    sharp = str(images / "sharp.jpg")
    assert (
        main(
            [
                "score",
                sharp,
                str(images / "gone.jpg"),
                "--metrics",
                "laplacian",
                "--format",
                "jsonl",
                "--normalized",
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert 0.5 < lines[0]["laplacian"] < 1 and "error" not in lines[0]
    assert lines[1]["laplacian"] is None and lines[1]["error"].startswith("missing")
    assert main(["score", sharp, "--metrics", "laplacian"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "laplacian", "error"] and table[1].startswith(sharp)


def test_score_unknown_metric_is_a_usage_error(images, capsys):
    assert main(["score", str(images), "--metrics", "laplacain"]) == 2
    assert "unknown metric(s) laplacain" in capsys.readouterr().err


def test_run_exit_codes_for_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: x.jsonl\nprocess:\n  - laplacian_filter:\n      min_scor: 0.2\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml line 4" in err and "'min_scor'" in err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert main(["run", str(CONFIGS / "default.yaml"), f"input={tmp_path / 'absent.jsonl'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", str(CONFIGS / "default.yaml"), "not-an-override"]) == 2


def test_demo_run_and_report_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert main(["run", str(CONFIGS / "default.yaml"), "workers=1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "default"
    assert "28 records" in out and str(Path("runs/default/report.html")) in out
    for name in ("kept.jsonl", "rejected.jsonl", "scores.jsonl", "report.html", "run.json"):
        assert (run_dir / name).is_file(), name
    (run_dir / "report.html").unlink()
    assert main(["report", str(CONFIGS / "default.yaml"), "--png"]) == 0  # the config finds its run dir
    assert (run_dir / "report.html").is_file() and (run_dir / "figures" / "hist_fused.png").is_file()
    assert main(["report", str(tmp_path)]) == 2  # not a run


def test_ops_lists_ops_and_scorers_with_parameters(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("laplacian_filter"))
    assert "min_score" in line and "working_size" in line
    assert any(x.strip().startswith("laplacian ") and "higher is better" in x for x in out.splitlines())


# --- weights: one exit code for missing weights, --weights-dir, weights list ----------------------
def test_missing_weights_exit_3_from_score_and_run_and_weights_dir_sets_where(tmp_path, photo, capsys):
    Image.fromarray(photo).save(tmp_path / "a.png")
    empty = tmp_path / "no_weights"
    score = ["score", str(tmp_path / "a.png"), "--metrics", "pulc_clarity"]
    assert main([*score, "--weights-dir", str(empty)]) == 3
    err = capsys.readouterr().err
    assert "missing model weights" in err and str(empty / "pulc_clarity") in err
    assert "paddlemix-iqa weights download pulc_clarity" in err

    (tmp_path / "records.jsonl").write_text(json.dumps({"image": "a.png"}) + "\n")
    config = tmp_path / "pulc.yaml"
    config.write_text(f"input: {tmp_path / 'records.jsonl'}\nprocess:\n  - pulc_blur_filter:\n")
    assert main(["run", str(config), "--weights-dir", str(empty)]) == 3
    err = capsys.readouterr().err
    assert "pulc.yaml line 3" in err and str(empty / "pulc_clarity") in err
    # a config mistake next to the missing model is a config error first
    config.write_text(config.read_text() + "  - laplacian_filter: {min_scor: 0.1}\n")
    assert main(["run", str(config), "--weights-dir", str(empty)]) == 2


def test_weights_list_says_present_or_missing_where_licence_and_how(tmp_path, capsys):
    assert main(["weights", "list", "--help"]) == 0
    capsys.readouterr()
    (tmp_path / "pulc_code").mkdir()
    for name in ("inference.json", "inference.pdiparams"):  # a file check: the bytes are not read
        (tmp_path / "pulc_code" / name).write_bytes(b"x")
    assert main(["weights", "list", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"pulc_code: present in {tmp_path / 'pulc_code'}" in out
    assert f"pulc_clarity: missing in {tmp_path / 'pulc_clarity'}" in out
    assert "paddlemix-iqa weights download pulc_clarity" in out
    assert f"arniqa: missing in {tmp_path / 'arniqa'}" in out
    assert "CC BY-NC 4.0, non-commercial use only" in out
    assert "tools/convert_arniqa.py --encoder ./arniqa_torch/ARNIQA.pth" in out
    assert f"--out {tmp_path / 'arniqa'}" in out and "Apache-2.0" in out
