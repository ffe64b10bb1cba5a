"""Item-level ops: tag, keep or drop; multi-image any/all; bad input never raises."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa import iqa_filter, iqa_tagger
from paddlemix_iqa.ops import (
    ERROR_KEY,
    REJECT_KEY,
    AspectRatioFilter,
    DecodableFilter,
    FileSizeFilter,
    ResolutionFilter,
    build_op,
    list_ops,
)


@pytest.fixture()
def sharp_and_blurred(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "sharp.png")
    Image.fromarray(cv2.GaussianBlur(photo, (0, 0), 4)).save(tmp_path / "blur.png")
    return tmp_path


def record(image, **extra):
    return {
        "id": str(image),
        "image": image,
        "conversations": [{"from": "human", "value": "<image>\nhi"}],
        **extra,
    }


def test_filter_keeps_sharp_drops_blurred_and_tags(sharp_and_blurred):
    op = iqa_filter("laplacian", min_score=0.5, root=sharp_and_blurred)
    kept = op(record("sharp.png"))
    assert kept is not None and 0.5 < kept["__tag_laplacian"] <= 1
    assert kept["__tag_laplacian_raw"] > 400
    blurred = record("blur.png")
    assert op(blurred) is None
    assert blurred["__tag_laplacian"] < 0.5
    assert blurred[REJECT_KEY].startswith("laplacian_filter: laplacian quality")
    assert op.key() == "__tag_laplacian"


def test_native_thresholds(sharp_and_blurred):
    op = iqa_filter("laplacian", min_value=10_000, root=sharp_and_blurred)
    item = record("sharp.png")
    assert op(item) is None and "< 1e+04" in item[REJECT_KEY]


def test_tagger_keeps_everything_and_records_errors(sharp_and_blurred):
    tagger = iqa_tagger("tenengrad", root=sharp_and_blurred)
    blurred, missing = record("blur.png"), record("missing.png")
    assert tagger(blurred) is blurred and blurred["__tag_tenengrad"] < 0.5
    assert tagger(missing) is missing and missing["__tag_tenengrad"] is None
    assert missing[ERROR_KEY].startswith("decode_error: missing: file not found: /")
    assert tagger.key() == "__tag_tenengrad"


def test_item_without_image_is_kept():
    item = {"id": "t", "conversations": []}
    assert iqa_filter("laplacian", min_score=0.9)(item) is item


def test_multi_image_any_and_all(sharp_and_blurred):
    item = {"images": ["sharp.png", "blur.png"]}
    any_op = iqa_filter("laplacian", min_score=0.5, root=sharp_and_blurred, mode="any")
    all_op = iqa_filter("laplacian", min_score=0.5, root=sharp_and_blurred, mode="all")
    assert any_op(dict(item)) is not None
    dropped = dict(item)
    assert all_op(dropped) is None
    assert "1/2 images" in dropped[REJECT_KEY]
    assert len(dropped["__tag_laplacian"]) == 2
    # host MIX schema: a list of dicts with url
    mix = {"images": [{"id": 1, "url": "sharp.png"}, {"id": 2, "url": "sharp.png"}]}
    assert all_op(mix) is not None


def test_bad_inputs_never_raise_and_carry_their_reason(bad_files, odd_mode_files):
    ops = [
        iqa_filter("laplacian", min_score=0.0),
        DecodableFilter(),
        ResolutionFilter(min_width=10),
        AspectRatioFilter(),
        FileSizeFilter(max_size="1GB"),
    ]
    for code, path in bad_files.items():
        if code == "truncated":
            continue  # the header of a truncated file is fine: only ops that decode pixels see it
        for op in ops:
            item = record(str(path))
            assert op(item) is None, (op, code)
            assert item[ERROR_KEY].startswith("decode_error: " + code.split("/")[0]), item[ERROR_KEY]
    for op in ops[:2]:
        item = record(str(bad_files["truncated"]))
        assert op(item) is None and "truncated" in item[ERROR_KEY]
    for mode, path in odd_mode_files.items():  # awkward but valid images pass
        assert DecodableFilter()(record(str(path))) is not None, mode


def test_a_scorer_crash_becomes_a_reason(sharp_and_blurred, monkeypatch):
    op = iqa_filter("laplacian", root=sharp_and_blurred)
    monkeypatch.setattr(type(op.scorer), "score_batch", lambda self, images: 1 / 0)
    item = record("sharp.png")
    assert op(item) is None and "score_error: ZeroDivisionError" in item[REJECT_KEY]


def test_geometry_ops(tmp_path, photo):
    Image.fromarray(photo[:100]).save(tmp_path / "wide.png")  # 512 x 100
    item = record("wide.png")
    assert AspectRatioFilter(max_ratio=3.0, root=tmp_path)(item) is None
    assert "aspect ratio 5.12 > 3" in item[REJECT_KEY]
    assert ResolutionFilter(min_height=128, root=tmp_path)(record("wide.png")) is None
    assert ResolutionFilter(min_width=512, max_width=512, root=tmp_path)(record("wide.png")) is not None
    size = (tmp_path / "wide.png").stat().st_size
    assert FileSizeFilter(min_size=size + 1, root=tmp_path)(record("wide.png")) is None
    assert FileSizeFilter(min_size="1KB", max_size="10MB", root=tmp_path)(record("wide.png")) is not None
    with pytest.raises(ValueError):
        FileSizeFilter(min_size="ten megs")
    with pytest.raises(ValueError):
        ResolutionFilter(min_width=500, max_width=100)


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        iqa_filter("laplacian", min_score=1.5)
    with pytest.raises(ValueError):
        iqa_filter("laplacian", min_score=0.8, max_score=0.2)
    with pytest.raises(KeyError):
        iqa_filter("no_such_metric")


def test_ops_registry_builds_by_name(sharp_and_blurred):
    assert {"laplacian_filter", "decodable_filter", "aspect_ratio_filter"} <= set(list_ops())
    op = build_op("gradient_mean_filter", min_score=0.5, root=sharp_and_blurred)
    assert op.name == "gradient_mean_filter" and op(record("blur.png")) is None


def test_batched_process_matches_item_by_item(sharp_and_blurred):
    op = iqa_filter("laplacian", min_score=0.5, root=sharp_and_blurred)
    names = ["sharp.png", "blur.png", "missing.png", "sharp.png"]
    batched = op.process([record(n) for n in names], workers=2)
    single = [op(record(n)) for n in names]
    assert [r is None for r in batched] == [r is None for r in single] == [False, True, True, False]


def test_op_works_with_functools_partial_style_and_pickle(sharp_and_blurred):
    import pickle

    op = pickle.loads(pickle.dumps(iqa_filter("laplacian", min_score=0.5, root=sharp_and_blurred)))
    keep = functools.partial(lambda item, op: op(item) is not None, op=op)
    assert keep(record("sharp.png")) and not keep(record("blur.png"))
    assert np.isfinite(op(record("sharp.png"))["__tag_laplacian"])


def test_neural_flag_comes_from_the_scorer():
    """Pipelines batch neural scorers in one process; the flag is the scorer's, not a list of names."""
    from paddlemix_iqa.scorers import scorer_class

    assert scorer_class("arniqa").neural and scorer_class("pulc_code").neural
    assert not any(scorer_class(m).neural for m in ("laplacian", "brisque", "codes"))
    assert not build_op("laplacian_filter").neural and not build_op("code_filter").neural


# --- thin ops: parameters derived from the scorer, thresholds said by the op ------------------------
def test_code_filter_takes_every_codes_scorer_parameter():
    from paddlemix_iqa.pipeline.config import op_parameters
    from paddlemix_iqa.scorers import scorer_params

    op = build_op(
        "code_filter", screen=False, rectify=False, use_opencv=False, working_size=512, full_size=None
    )
    scorer = op.scorer
    assert (scorer.screen, scorer.rectify, scorer.use_opencv, scorer.working_size, scorer.full_size) == (
        False,
        False,
        False,
        512,
        None,
    )
    assert op.decode_side is None and op.params()["screen"] is False
    for name in ("codes", "pulc_clarity", "laplacian"):  # every scorer parameter is its ops' parameter
        op_name = {"codes": "code_filter", "pulc_clarity": "pulc_blur_filter"}.get(name, f"{name}_filter")
        assert set(scorer_params(name)) <= set(op_parameters(op_name)), op_name
    with pytest.raises(ValueError, match="working_size"):
        build_op("code_filter", working_size=10)


@pytest.mark.parametrize(
    "name, params, bounds, quality",
    [
        (
            "laplacian_filter",
            {"min_score": 0.2},
            {"min_score": 0.2, "max_score": None, "min_value": None, "max_value": None},
            {"min_score", "max_score"},
        ),
        ("code_filter", {"max_coverage": 0.3}, {"max_coverage": 0.3, "min_confidence": 0.5}, set()),
        (
            "resolution_filter",
            {"min_width": 64},
            {"min_width": 64, "max_width": None, "min_height": None, "max_height": None},
            set(),
        ),
        ("aspect_ratio_filter", {}, {"min_ratio": 1 / 3, "max_ratio": 3.0}, set()),
        ("filesize_filter", {"min_size": "2KB"}, {"min_size": 2048, "max_size": None}, set()),
        ("decodable_filter", {}, {}, set()),
    ],
)
def test_each_op_says_its_thresholds(name, params, bounds, quality):
    from paddlemix_iqa.pipeline.runner import op_thresholds

    op = build_op(name, **params)
    assert op.thresholds() == bounds and set(op.quality_thresholds) == quality
    entry = op_thresholds(op)
    assert entry["op"] == name and entry["metric"] == op.metric
    assert entry["lines"] == [
        {"label": f"{k}={v:g}", "x": float(v), "scale": "quality" if k in quality else "value"}
        for k, v in bounds.items()
        if v is not None and k != "min_confidence"  # a likely code's confidence: not on the coverage axis
    ]


def test_a_tagger_draws_no_threshold_lines():
    from paddlemix_iqa.pipeline.runner import op_thresholds

    assert op_thresholds(build_op("codes_tagger", max_coverage=0.5))["lines"] == []
    assert op_thresholds(build_op("laplacian_filter", min_score=0.3, max_value=900))["lines"] == [
        {"label": "min_score=0.3", "x": 0.3, "scale": "quality"},
        {"label": "max_value=900", "x": 900.0, "scale": "value"},
    ]
