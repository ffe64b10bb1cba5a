"""Shipped thresholds come from data (``benchmarks/thresholds.py``), and the shipped blur model from
``tools/train_blur_model.py``: never typed by hand, and reproducible."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paddlemix_iqa.pipeline.config import find_config
from paddlemix_iqa.scorers.fused import load_model

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
sys.path.insert(0, str(ROOT / "benchmarks"))

import thresholds  # noqa: E402


def test_every_quality_threshold_in_a_bundled_config_says_where_it_comes_from():
    shipped = thresholds.shipped_thresholds()
    assert {(s.config, s.step) for s in shipped} >= {("default", "blur"), ("default", "brisque_filter")}
    for s in shipped:
        line = (thresholds.CONFIGS / f"{s.config}.yaml").read_text(encoding="utf-8").splitlines()[s.line]
        assert f"{s.param}:" in line and thresholds.MARK in line, (s.config, s.step, line)


def test_the_blur_step_of_the_default_config_uses_the_models_own_threshold():
    config = yaml.safe_load(find_config("default").read_text(encoding="utf-8"))
    steps = [params for step in config["process"] for op, params in step.items() if op == "fused_filter"]
    (blur,) = [p for p in steps if p.get("name") == "blur"]
    model = load_model(blur["model"])
    assert blur["max_value"] == model.threshold["max_value"]
    assert model.threshold["target_fpr"] <= 0.05 and model.threshold["cv_tpr"] >= 0.9
    assert [f.name for f in model.features] == ["edge_sharpness", "edge_sharpness(step=2)"]  # weight-free


@pytest.mark.slow
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs ../shared/data/photos")
def test_training_the_blur_model_again_writes_the_shipped_file(tmp_path):
    out = tmp_path / "blur.json"
    subprocess.run([sys.executable, str(ROOT / "tools" / "train_blur_model.py"), "--out", str(out)], check=True)
    shipped = ROOT / "paddlemix_iqa" / "data" / "fused" / "blur.json"
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(shipped.read_bytes()).digest()


@pytest.mark.slow
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs ../shared/data/photos")
def test_the_configs_hold_the_thresholds_the_data_give(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "thresholds.py"), "--check", "--work", str(tmp_path / "set")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
