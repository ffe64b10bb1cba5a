"""PULC runtime: a PP-LCNet-shaped classifier exported in both official layouts must score like its dygraph self."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa.models.weights import WeightsNotFound
from paddlemix_iqa.ops import build_op
from paddlemix_iqa.scorers import get_scorer
from paddlemix_iqa.scorers.pulc import PulcClarityScorer, PulcCodeScorer, preprocess

paddle = pytest.importorskip("paddle")

SCALE = 0.5  # reduced width keeps export and inference fast; the layout is PP-LCNet's


def _calibration_batch() -> np.ndarray:
    from skimage import data

    return np.stack(
        [preprocess(img) for img in (data.rocket(), data.coffee()[::-1], data.chelsea()[:, ::-1])]
    )


def _build(seed: int = 7):
    """Random weights; BN statistics taken from real photos so activations neither vanish nor saturate."""
    from paddlemix_iqa.models.pplcnet import PPLCNet

    paddle.seed(seed)
    model = PPLCNet(scale=SCALE)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._momentum = 0.0  # running stats := this batch's stats
    model.train()
    with paddle.no_grad():
        model(paddle.to_tensor(_calibration_batch()))
    model.eval()
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """The same weights as ``inference.json`` (Paddle 3, PIR) and ``inference.pdmodel`` (legacy program)."""
    from paddlemix_iqa.models.pplcnet import export_inference

    root = tmp_path_factory.mktemp("pulc")
    model = _build()
    paddle.save(model.state_dict(), str(root / "weights.pdparams"))
    dirs = {"json": export_inference(model, root / "json")}
    legacy = root / "pdmodel"
    script = textwrap.dedent(
        f"""
        import paddle
        from paddlemix_iqa.models.pplcnet import PPLCNet, export_inference
        model = PPLCNet(scale={SCALE})
        model.set_state_dict(paddle.load({str(root / "weights.pdparams")!r}))
        export_inference(model, {str(legacy)!r})
        """
    )
    env = {**os.environ, "FLAGS_enable_pir_api": "0"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, timeout=300)
    if (legacy / "inference.pdmodel").is_file():
        dirs["pdmodel"] = legacy
    return dirs


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Real photos of different sizes and aspect ratios (scikit-image ships them)."""
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), np.ascontiguousarray(data.coffee()[:, :250])]


def test_both_layouts_are_written(exported):
    assert (exported["json"] / "inference.json").is_file()
    assert (exported["json"] / "inference.pdiparams").is_file()
    assert "pdmodel" in exported, "Paddle could not write the legacy inference.pdmodel layout"
    assert not (exported["pdmodel"] / "inference.json").exists()


@pytest.mark.parametrize("layout", ["json", "pdmodel"])
def test_runtime_matches_dygraph_softmax(exported, photos, layout):
    if layout not in exported:
        pytest.skip("this Paddle cannot write the legacy layout")
    model = _build()
    with paddle.no_grad():
        expected = model(paddle.to_tensor(np.stack([preprocess(p) for p in photos]))).numpy()
    scorer = PulcClarityScorer(model_dir=exported[layout], batch_size=3, threads=1)
    probs = scorer.probabilities(photos)  # batch_size 3: two batches, the second of one image
    assert probs.shape == (len(photos), 2)
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(scorer.score_batch(photos), expected[:, 1], atol=1e-5, rtol=0)
    assert np.ptp(expected[:, 1]) > 1e-3, "the test network must tell the photos apart"


def test_runtime_with_and_without_onednn_agree(exported, photos):
    a = PulcCodeScorer(model_dir=exported["json"], use_mkldnn=True).score_batch(photos)
    b = PulcCodeScorer(model_dir=exported["json"], use_mkldnn=False).score_batch(photos)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert ((a >= 0) & (a <= 1)).all()


def test_preprocess_is_paddleclas_deploy():
    img = np.full((300, 600, 3), (255, 128, 0), np.uint8)
    x = preprocess(img)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    want = (np.array([255, 128, 0]) * 0.00392157 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(x[:, 100, 100], want, atol=1e-5)
    # centre crop after resizing the short side to 256: a left-half marker must not reach the crop
    img = np.zeros((256, 512, 3), np.uint8)
    img[:, :144] = 255
    img[:, 144:368] = 0
    assert preprocess(img)[0].max() < 0  # crop columns 144..368 are all black


def test_missing_weights_name_files_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound) as err:
        PulcClarityScorer()
    message = str(err.value)
    assert "inference.json or inference.pdmodel" in message and "inference.pdiparams" in message
    assert "paddlemix-iqa weights download pulc_clarity" in message
    assert str(tmp_path / "pulc_clarity") in message
    with pytest.raises(WeightsNotFound, match="paddlemix-iqa weights download pulc_code"):
        build_op("pulc_code_filter")  # fails when the op is built, not item by item


def test_weights_found_through_home(exported, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "pulc_clarity").mkdir(parents=True)
    for f in exported["json"].iterdir():
        (home / "pulc_clarity" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(home))
    scorer = get_scorer("pulc_clarity")
    assert scorer.model_dir == home / "pulc_clarity"


def _record(tmp_path: Path, photo: np.ndarray, name: str) -> dict:
    Image.fromarray(photo).save(tmp_path / name, quality=95)
    return {"id": name, "image": name}


def test_filters_threshold_on_probability(exported, photos, tmp_path):
    items = [_record(tmp_path, p, f"p{i}.jpg") for i, p in enumerate(photos)]
    items.append({"id": "bad", "image": "missing.jpg"})
    tagger = build_op("pulc_blur_filter", model_dir=exported["json"], threshold=None, root=tmp_path)
    tagged = tagger.process([dict(i) for i in items])
    p = np.array([t["__tag_pulc_clarity_raw"] for t in tagged[:-1]])
    assert tagged[-1] is None  # unreadable: dropped with a reason, never raised
    np.testing.assert_allclose([t["__tag_pulc_clarity"] for t in tagged[:-1]], 1 - p, atol=1e-9)

    threshold = float(np.median(p))  # drop exactly the images with p >= threshold (PaddleClas's rule)
    op = build_op("pulc_blur_filter", model_dir=exported["json"], threshold=threshold, root=tmp_path)
    copies = [dict(i) for i in items[:-1]]
    kept = op.process(copies)
    assert [k is not None for k in kept] == list(p < threshold)
    dropped = [c for c, k in zip(copies, kept, strict=True) if k is None]
    assert dropped and all("p(blurred)" in d["__iqa_reject"] for d in dropped)

    code = build_op("pulc_code_filter", model_dir=exported["json"], root=tmp_path)
    assert code.threshold == 0.5
    item = dict(items[0])
    assert (code(item) is None) == (item["__tag_pulc_code_raw"] >= 0.5)


def test_pipeline_without_pulc_ops_is_unaffected(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(tmp_path / "empty"))
    op = build_op("laplacian_filter", min_score=0.0, root=tmp_path)
    assert op(_record(tmp_path, photo, "a.jpg")) is not None
