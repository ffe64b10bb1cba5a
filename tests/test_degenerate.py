"""Degenerate images (a few pixels, one row, one colour) get a finite score or a named rejection, never NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa import scorers
from paddlemix_iqa.io import decode_image
from paddlemix_iqa.ops import REJECT_KEY, MetricFilter, build_op, iqa_tagger
from paddlemix_iqa.scorers import Scorer, UnscorableImage, get_scorer
from paddlemix_iqa.scorers.pulc import PulcClarityScorer

WEIGHT_FREE = ["laplacian", "tenengrad", "gradient_mean", "brisque", "codes"]
NAMED = ("too_small", "flat_image")


def _noise(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), np.uint8)


#: file name -> pixels (h x w x 3 uint8, or 2-D uint16 for the 16-bit PNG)
IMAGES = {
    "1x1.png": _noise(1, 1),
    "2x2.png": _noise(2, 2),
    "3x3.png": _noise(3, 3),
    "row_500x1.png": _noise(1, 500),
    "column_1x500.png": _noise(500, 1),
    "black.png": np.zeros((256, 256, 3), np.uint8),
    "grey.png": np.full((256, 256, 3), 128, np.uint8),
    "white.png": np.full((256, 256, 3), 255, np.uint8),
    "grey16.png": np.full((96, 128), 40000, np.uint16),
}
TINY = {"1x1.png", "2x2.png", "row_500x1.png", "column_1x500.png"}
UNIFORM = {"black.png", "grey.png", "white.png", "grey16.png"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("degenerate")
    for name, pixels in IMAGES.items():
        Image.fromarray(pixels).save(out / name)
    return out


def _op(metric: str, root: Path):
    if metric == "codes":
        return build_op("code_filter", root=str(root))
    return build_op(f"{metric}_filter", root=str(root), min_score=0.2)


def test_the_16_bit_image_decodes_uniform(folder):
    pixels = decode_image(folder / "grey16.png").pixels
    assert pixels.dtype == np.uint8 and pixels.shape == (96, 128, 3)
    assert pixels.min() == pixels.max()


@pytest.mark.parametrize("metric", WEIGHT_FREE)
def test_every_degenerate_image_gets_a_finite_score_or_a_named_reason(metric, folder):
    op = _op(metric, folder)
    items = [{"id": name, "image": name} for name in IMAGES]
    results = op.process(items)
    for item, result in zip(items, results, strict=True):
        json.dumps(item, allow_nan=False)  # no NaN or infinity anywhere in the record
        tag = item[op.key()]
        reason = item.get(REJECT_KEY, "")
        assert "decode_error" not in reason, reason
        if any(code in reason for code in NAMED):
            assert result is None and tag is None
        else:
            assert isinstance(tag, float) and math.isfinite(tag), (item["id"], tag, reason)
            assert "not_finite" not in reason


@pytest.mark.parametrize("metric", ["laplacian", "tenengrad", "gradient_mean"])
def test_sharpness_of_a_uniform_image_is_zero_and_of_a_sliver_too_small(metric, folder):
    op = _op(metric, folder)
    items = [{"id": name, "image": name} for name in IMAGES]
    op.process(items)
    by_id = {item["id"]: item for item in items}
    for name in UNIFORM:
        assert by_id[name][op.key()] == 0.0
        assert by_id[name][REJECT_KEY].startswith(f"{metric}_filter: {metric} quality 0 < 0.2")
    for name in TINY:
        assert by_id[name][REJECT_KEY].startswith(f"{metric}_filter: too_small: ")
    assert math.isfinite(by_id["3x3.png"][op.key()])


def test_brisque_refuses_tiny_and_flat_images_by_name(folder):
    op = _op("brisque", folder)
    items = [{"id": name, "image": name} for name in IMAGES]
    op.process(items)
    by_id = {item["id"]: item for item in items}
    for name in TINY | {"3x3.png"}:
        assert by_id[name][REJECT_KEY].startswith("brisque_filter: too_small: "), by_id[name]
    for name in UNIFORM:
        assert by_id[name][REJECT_KEY].startswith("brisque_filter: flat_image"), by_id[name]


def test_codes_in_degenerate_images_are_none(folder):
    op = _op("codes", folder)
    items = [{"id": name, "image": name} for name in IMAGES]
    assert all(r is not None for r in op.process(items))
    assert {item[op.key()] for item in items} == {1.0}


# --- the scorer API ---------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["laplacian", "brisque"])
def test_scoring_an_image_the_scorer_refuses_raises_its_reason(metric, photo):
    scorer = get_scorer(metric)
    tiny = _noise(2, 2)
    assert scorer.check_image(tiny).startswith("too_small: 2x2")
    assert scorer.check_image(photo) is None
    with pytest.raises(UnscorableImage, match="too_small") as err:
        scorer.score(tiny)
    assert isinstance(err.value, ValueError) and err.value.reason.startswith("too_small")
    with pytest.raises(ValueError, match="too_small"):
        scorer.score_batch([photo, tiny])


def test_brisque_check_follows_the_working_size():
    wide = _noise(40, 600)  # 40 px high; at working size 128 only 9 px
    assert get_scorer("brisque").check_image(wide) is None
    assert get_scorer("brisque", working_size=128).check_image(wide).startswith("too_small: 600x40 is 128x9")
    assert get_scorer("brisque").check_image(np.full((32, 32, 3), 7, np.uint8)).startswith("flat_image")


def test_pulc_refuses_slivers_before_its_resize():
    scorer = object.__new__(PulcClarityScorer)  # check_image needs no model: skip __init__'s weight lookup
    assert scorer.check_image(_noise(1, 500)).startswith("too_small: 500x1")
    assert scorer.check_image(_noise(16, 2000)).startswith("too_small")  # 256 x 32000 after the resize
    assert scorer.check_image(_noise(300, 400)) is None
    assert scorer.check_image(np.zeros((256, 256, 3), np.uint8)) is None  # uniform: a finite p


# --- the op's safety net ----------------------------------------------------------------------------
class _BadNumbers(Scorer):
    name = "bad_numbers"
    native_range = (0.0, 1.0)

    def score_batch(self, images):
        return np.array([[math.nan, math.inf, 0.5][i % 3] for i in range(len(images))])


def test_a_nan_or_infinite_score_is_a_rejection_without_a_value(monkeypatch, photo, tmp_path):
    monkeypatch.setitem(scorers._REGISTRY, "bad_numbers", _BadNumbers)
    Image.fromarray(photo).save(tmp_path / "p.png")
    items = [{"image": "p.png"} for _ in range(3)]
    results = MetricFilter("bad_numbers", min_score=0.1, root=str(tmp_path)).process(items)
    assert [r is None for r in results] == [True, True, False]
    for item in items[:2]:
        assert item[REJECT_KEY] == "bad_numbers_filter: bad_numbers: not_finite"
        assert item["__tag_bad_numbers"] is None and "__tag_bad_numbers_raw" not in item
    assert items[2]["__tag_bad_numbers"] == 0.5
    for item in items:
        json.dumps(item, allow_nan=False)


def test_brisque_on_a_lone_edge_is_not_finite_and_rejected(tmp_path):
    edge = np.zeros((64, 64, 3), np.uint8)
    edge[:, 32:] = 255  # products of vertical neighbours are never negative: BRISQUE's AGGD is undefined
    Image.fromarray(edge).save(tmp_path / "edge.png")
    item = {"image": "edge.png"}
    assert _op("brisque", tmp_path)(item) is None
    assert item[REJECT_KEY] == "brisque_filter: brisque: not_finite"
    json.dumps(item, allow_nan=False)


def test_a_tagger_keeps_degenerate_images_with_an_empty_tag(folder):
    tagger = iqa_tagger("brisque", root=str(folder))
    items = [{"image": "1x1.png"}, {"image": "grey.png"}, {"images": ["2x2.png", "3x3.png"]}]
    assert all(r is not None for r in tagger.process(items))
    assert items[0]["__tag_brisque"] is None and items[1]["__tag_brisque"] is None
    assert items[2]["__tag_brisque"] == [None, None]
    for item in items:
        json.dumps(item, allow_nan=False)
