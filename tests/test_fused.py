"""The ``fused`` scorer (``fused_filter``) and ``paddlemix-iqa calibrate``: exact numpy evaluation of the
exported scikit-learn models, byte-identical refits, the op on records, clear errors for bad files."""

from __future__ import annotations

import json
import unittest
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from PIL import Image

from paddlemix_iqa import testing
from paddlemix_iqa.cli import main
from paddlemix_iqa.evaluation import EvalError
from paddlemix_iqa.evaluation.calibrate import calibrate, choose_threshold, export, parse_features
from paddlemix_iqa.ops import REJECT_KEY, build_op
from paddlemix_iqa.scorers import get_scorer
from paddlemix_iqa.scorers.fused import (
    BUNDLED,
    FeatureSet,
    FusedModel,
    FusedModelError,
    LogisticModel,
    load_model,
    model_path,
)
from paddlemix_iqa.testing import OP_CHECKS, SCORER_CHECKS

FOUR = "laplacian,tenengrad,gradient_mean,log_long_side"

#: a hand-written model (no scikit-learn needed): p(blurred) falls with the Laplacian variance
TINY = {
    "format": "paddlemix-iqa/fused",
    "version": 1,
    "positive": "blurred",
    "features": [
        {"name": "log_laplacian", "metric": "laplacian", "params": {}, "transform": "log"},
        {"name": "log_long_side", "image": "log_long_side"},
    ],
    "model": {
        "type": "logistic",
        "mean": [5.0, 6.0],
        "scale": [2.0, 0.5],
        "coef": [-3.0, -0.2],
        "intercept": 0.0,
    },
    "threshold": {"max_value": 0.5},
    "training": {},
}


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """Coarse blobs plus fine grain: sharp at every scale the sharpness scorers look at."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(
        rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), np.uint8), (w, h), interpolation=cv2.INTER_CUBIC
    )
    fine = rng.integers(0, 256, (h, w, 3), np.uint8)
    return cv2.addWeighted(coarse, 0.6, fine, 0.4, 0)


SIZES = [(96, 128), (120, 160), (150, 100), (200, 180)]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """clean/ and blurred/ (GaussianBlur copies), 20 each, four sizes; plus a .jsonl with a source column."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "clean").mkdir()
    (root / "blurred").mkdir()
    rows = []
    for i in range(20):
        image = texture(*SIZES[i % len(SIZES)], seed=i)
        sigma = 1.2 + 0.1 * i
        Image.fromarray(image).save(root / "clean" / f"{i:02d}.png")
        Image.fromarray(cv2.GaussianBlur(image, (0, 0), sigma)).save(root / "blurred" / f"{i:02d}.png")
        rows += [
            {"image": f"clean/{i:02d}.png", "label": "clean", "source": f"photo{i}"},
            {"image": f"blurred/{i:02d}.png", "label": "blurred", "source": f"photo{i}"},
        ]
    (root / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def _xy(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four features on very different scales (as log-scores and a log size are)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [2.0, 1.0, 0.5, 0.3] + [5.0, 8.0, 3.0, 6.0]
    y = (X[:, 0] - 5 + 0.5 * (X[:, 1] - 8) + rng.normal(scale=1.0, size=n) > 0).astype(int)
    return X, y


# --- the exported model equals scikit-learn, bit for bit ----------------------------------------
@pytest.mark.parametrize("kind", ["logistic", "gbt"])
def test_numpy_evaluation_equals_sklearn_predict_proba_after_a_json_round_trip(kind):
    pytest.importorskip("sklearn")
    from paddlemix_iqa.evaluation.calibrate import _estimator

    X, y = _xy()
    fitted = _estimator(kind, seed=0, C=1.0, trees=50, depth=3, learning_rate=0.1).fit(X, y)
    model = FusedModel(
        FeatureSet.from_dicts(parse_features(FOUR)),
        export(fitted, X),
        positive="blurred",
        threshold={"max_value": 0.5},
    )
    again = FusedModel.from_dict(json.loads(model.dumps()), "round trip")
    X_new, _ = _xy(1000, seed=1)
    X_new[:5] = X[:5]  # training rows too: tree thresholds sit between them
    for rows in (X, X_new, X_new[:1]):
        assert_array_equal(again.predict_proba(rows), fitted.predict_proba(rows)[:, 1])
    assert again.dumps() == model.dumps()  # floats are written by repr: nothing drifts


def test_a_row_with_a_non_finite_feature_gets_nan_not_a_guess(tiny_model):
    model = load_model(tiny_model)
    p = model.predict_proba(np.array([[8.0, 6.0], [np.nan, 6.0], [np.inf, 6.0]]))
    assert 0.0 < p[0] < 0.5 and np.isnan(p[1:]).all()


def test_the_logistic_model_is_scaler_then_dot_then_expit():
    model = LogisticModel([1.0, 2.0], [2.0, 4.0], [0.5, -1.0], 0.25)
    z = (3.0 - 1.0) / 2.0 * 0.5 + (6.0 - 2.0) / 4.0 * -1.0 + 0.25
    assert model.raw(np.array([[3.0, 6.0]]))[0] == pytest.approx(z)


# --- calibrate: deterministic, honest threshold ---------------------------------------------------
def test_calibrate_twice_writes_the_same_bytes_whatever_the_workers(labelled, tmp_path):
    pytest.importorskip("sklearn")
    (labelled / "clean" / "broken.png").write_bytes(b"not a png")  # counted and skipped
    try:
        one = calibrate(labelled, out=tmp_path / "a.json", features=FOUR, cv=4, workers=1)
        two = calibrate(labelled, out=tmp_path / "b.json", features=FOUR, cv=4, workers=2)
    finally:
        (labelled / "clean" / "broken.png").unlink()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    doc = one.doc
    assert doc["format"] == "paddlemix-iqa/fused" and doc["version"] == 1 and doc["positive"] == "blurred"
    assert [f["name"] for f in doc["features"]] == [
        "log_laplacian",
        "log_tenengrad",
        "log_gradient_mean",
        "log_long_side",
    ]
    tr = doc["training"]
    assert tr["counts"] == {
        "items": 41,
        "negative": 20,
        "positive": 20,
        "skipped": {"unreadable": 1},
        "used": 40,
    }
    assert tr["cv_folds"] == 4 and tr["seed"] == 0 and len(tr["data_sha256"]) == 64
    assert str(labelled) not in (tmp_path / "a.json").read_text()  # no absolute paths: the same file anywhere
    thr = doc["threshold"]
    assert thr["cv_fpr"] <= thr["target_fpr"] == 0.05 and thr["cv_auc"] > 0.9 and thr["cv_tpr"] > 0.8
    assert one.skipped == two.skipped and one.skipped[0][1].startswith("unreadable: not_an_image")
    # another seed: other folds, so another file
    calibrate(labelled, out=tmp_path / "c.json", features=FOUR, cv=4, seed=1, workers=1)
    assert (tmp_path / "c.json").read_bytes() != (tmp_path / "a.json").read_bytes()


def test_the_threshold_is_the_best_tpr_within_the_target_fpr():
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    y = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1])
    t, fpr, tpr = choose_threshold(p, y, 0.2)  # one false positive of five allowed: cut below 0.6
    assert (fpr, tpr) == (0.2, 0.8) and 0.4 <= t < 0.6
    assert np.mean(p[y == 0] > t) == fpr and np.mean(p[y == 1] > t) == tpr
    t0, fpr0, tpr0 = choose_threshold(p, y, 0.0)  # none allowed: only what ranks above every negative
    assert (fpr0, tpr0) == (0.0, 0.6) and 0.7 <= t0 < 0.8
    t_none, fpr_none, tpr_none = choose_threshold([0.9, 0.1], [0, 1], 0.0)  # a negative on top: flag nothing
    assert (t_none, fpr_none, tpr_none) == (1.0, 0.0, 0.0)


def test_group_column_keeps_copies_of_one_photo_in_one_fold(labelled, tmp_path):
    pytest.importorskip("sklearn")
    result = calibrate(
        labelled / "set.jsonl",
        out=tmp_path / "g.json",
        features="laplacian",
        cv=4,
        group_column="source",
        workers=1,
    )
    assert (
        result.doc["training"]["groups"] == 20 and "StratifiedGroupKFold" in result.doc["training"]["split"]
    )
    with pytest.raises(EvalError, match="no such column"):
        calibrate(labelled, out=tmp_path / "h.json", features="laplacian", group_column="source", workers=1)


def test_feature_specs():
    specs = parse_features(
        "laplacian, log:laplacian(tiles=4,tile_quantile=0.75),none:tenengrad,brisque,log_pixels"
    )
    assert [s["name"] for s in specs] == [
        "log_laplacian",
        "log_laplacian(tile_quantile=0.75,tiles=4)",
        "tenengrad",
        "brisque",  # a bounded native range: no transform by default
        "log_pixels",
    ]
    assert specs[1]["params"] == {"tiles": 4, "tile_quantile": 0.75} and specs[3]["transform"] == "none"
    for bad, message in [
        ("lapalcian", "unknown scorer 'lapalcian'"),
        ("sqrt:laplacian", "transform 'sqrt'"),
        ("log:log_long_side", "image features take no"),
        ("laplacian(tiles)", "is not key=value"),
        ("laplacian(tiles=4", "unclosed bracket"),
        ("fused", "unknown scorer 'fused'"),
    ]:
        with pytest.raises(EvalError, match=message):
            parse_features(bad)
    with pytest.raises(ValueError, match="unique"):
        FeatureSet.from_dicts(parse_features("laplacian,log:laplacian"))
    with pytest.raises(ValueError, match="tiles must be at least 1"):
        FeatureSet.from_dicts(parse_features("laplacian(tiles=0)"))


def test_image_features_are_measured_at_the_decode_side():
    features = FeatureSet.from_dicts(parse_features("laplacian,log_long_side,log_pixels"))
    assert features.decode_side == 512
    big, small = texture(768, 1024, 0), texture(300, 200, 1)
    X = features.feature_matrix([big, small])
    assert X[0, 1] == pytest.approx(np.log(512)) and X[0, 2] == pytest.approx(np.log(512 * 384))
    assert X[1, 1] == pytest.approx(np.log(300)) and X[1, 2] == pytest.approx(np.log(60000))
    assert X[0, 0] == pytest.approx(np.log(get_scorer("laplacian").score(big)))


# --- the CLI --------------------------------------------------------------------------------------
def test_cli_calibrate(labelled, tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "blur.json"
    argv = ["calibrate", str(labelled), "--out", str(out), "--cv", "4", "--workers", "1"]
    assert main([*argv, "--model", "gbt", "--trees", "20", "--positive-name", "blur"]) == 0
    text = capsys.readouterr().out
    assert (
        "CV AUC" in text and "folds:" in text and "threshold: p > " in text and "feature importances" in text
    )
    model = load_model(out)
    assert model.positive == "blur" and model.predictor.type == "gbt" and len(model.predictor.trees) == 20
    assert main([*argv, "--features", "laplacian,log_long_side"]) == 0
    text = capsys.readouterr().out
    assert "coefficients" in text and "log_laplacian" in text and "fused_filter: {model: " in text
    assert main([*argv, "--features", "laplacain"]) == 2
    assert "unknown scorer 'laplacain'" in capsys.readouterr().err
    assert main(["calibrate", str(labelled), "--out", str(tmp_path / "m.json"), "--cv", "30"]) == 2
    assert "needs at least 30 of each" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.json")]) == 2


# --- the op -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sharp_and_blurred(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("records")
    image = texture(240, 320, 99)
    Image.fromarray(image).save(root / "sharp.png")
    Image.fromarray(cv2.GaussianBlur(image, (0, 0), 3)).save(root / "blurred.png")
    return root


def test_fused_filter_rejects_by_max_value_and_tags_p(tiny_model, sharp_and_blurred):
    op = build_op("fused_filter", model=tiny_model, max_value=0.5, root=sharp_and_blurred)
    sharp, blurred = {"image": "sharp.png"}, {"image": "blurred.png"}
    assert op(sharp) is sharp and op(blurred) is None
    assert sharp["__tag_fused_raw"] < 0.5 < blurred["__tag_fused_raw"]  # native p
    assert sharp["__tag_fused"] == pytest.approx(1 - sharp["__tag_fused_raw"])  # quality 1 - p
    assert blurred[REJECT_KEY].startswith("fused_filter: p(blurred) ") and "> 0.5" in blurred[REJECT_KEY]
    assert build_op("fused_filter", model=tiny_model, max_value=1.0, root=sharp_and_blurred)(dict(blurred))
    tagger = build_op("fused_tagger", model=tiny_model, root=sharp_and_blurred)
    assert tagger(dict(blurred)) is not None


def test_a_calibrated_model_with_its_stored_threshold_in_the_op(labelled, tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "m.json"
    result = calibrate(labelled, out=out, features=FOUR, cv=4, workers=1)
    op = build_op(
        "fused_filter", model=str(out), max_value=result.doc["threshold"]["max_value"], root=labelled
    )
    kept = sum(op({"image": f"clean/{i:02d}.png"}) is not None for i in range(20))
    dropped = sum(op({"image": f"blurred/{i:02d}.png"}) is None for i in range(20))
    assert kept >= 18 and dropped >= 16
    scorer = get_scorer("fused", model=str(out))
    assert scorer.decode_side == 512 and not scorer.neural
    facts = scorer.describe()
    assert facts["model"] == str(out) and facts["positive"] == "blurred" and len(facts["features"]) == 4
    assert facts["threshold"] == result.doc["threshold"]


def _bad(tmp_path: Path, name: str, **changes) -> str:
    doc = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        where = doc
        *parents, last = dotted.split("__")
        for key in parents:
            where = where[int(key)] if isinstance(where, list) else where[key]
        where[last] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_bad_model_file_fails_at_op_build_naming_the_file_and_the_fault(tmp_path):
    cases = [
        (_bad(tmp_path, "fmt", format="other/thing"), "format 'other/thing' is not"),
        (_bad(tmp_path, "ver", version=2), "version 2 is not supported"),
        (_bad(tmp_path, "metric", features__0__metric="sharpnes"), "unknown metric 'sharpnes'"),
        (_bad(tmp_path, "transform", features__0__transform="sqrt"), "transform 'sqrt'"),
        (_bad(tmp_path, "coef", model__coef=[1.0]), r"model.coef must be a list of 2 numbers"),
        (_bad(tmp_path, "type", model__type="svm"), "model type 'svm'"),
        (_bad(tmp_path, "params", features__0__params={"tiles": 0}), "tiles must be at least 1"),
        (_bad(tmp_path, "dup", features__1__name="log_laplacian"), "unique"),
    ]
    (tmp_path / "garbage.json").write_text("{not json")
    cases.append((str(tmp_path / "garbage.json"), "not JSON"))
    cases.append((str(tmp_path / "missing.json"), "not found"))
    for path, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            build_op("fused_filter", model=path, max_value=0.5)
        assert path in str(info.value), str(info.value)
        assert isinstance(info.value, FusedModelError)
    with pytest.raises(ValueError, match="no bundled fused model 'nosuchmodel'"):
        build_op("fused_filter", model="nosuchmodel")


def test_a_model_name_is_a_bundled_file():
    assert model_path("blur") == BUNDLED / "blur.json"
    assert BUNDLED.parent.name == "data" and BUNDLED.name == "fused"
    assert model_path("blur.json") == Path("blur.json") and model_path("models/blur") == Path("models/blur")


# --- the contract every scorer and op keeps ------------------------------------------------------------
def _run(check, subject):
    try:
        check(subject)
    except unittest.SkipTest as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("check", SCORER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_fused_keeps_the_scorer_contract(check, tiny_model):
    _run(check, testing.scorer_or_skip("fused", model=tiny_model))


@pytest.mark.parametrize("op", ["fused_filter", "fused_tagger"])
@pytest.mark.parametrize("check", OP_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_fused_ops_keep_the_op_contract(check, op, tiny_model, host):
    params = {"model": tiny_model, **({"max_value": 0.5} if op == "fused_filter" else {})}
    _run(check, testing.op_or_skip(op, **params))
