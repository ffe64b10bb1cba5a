"""Every registered scorer and op against the contract in :mod:`paddlemix_iqa.testing`.

Parametrised from the registry: a scorer or op is tested the moment it registers. The
second half plants broken scorers and ops and proves the checks catch them.
"""

from __future__ import annotations

import math
import unittest

import numpy as np
import pytest

from paddlemix_iqa import testing
from paddlemix_iqa.ops import REJECT_KEY, ImageOp, Judgement, list_ops, op_class
from paddlemix_iqa.scorers import Scorer, list_scorers
from paddlemix_iqa.testing import OP_CHECKS, SCORER_CHECKS

#: what an op needs to be built at all (iqa_filter takes its scorer as a parameter)
REQUIRED = {"iqa_filter": {"metric": "laplacian"}}


def _id(check) -> str:
    return check.__name__.removeprefix("check_")


def _skips(func, *args, **kwargs):
    """``func(...)``, with the contract's skips (no weights, not applicable) as pytest skips."""
    try:
        return func(*args, **kwargs)
    except unittest.SkipTest as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("check", SCORER_CHECKS, ids=_id)
@pytest.mark.parametrize("name", list_scorers())
def test_scorer_contract(name, check):
    _skips(check, _skips(testing.scorer_or_skip, name))


@pytest.mark.parametrize("check", OP_CHECKS, ids=_id)
@pytest.mark.parametrize("name", list_ops())
def test_op_contract(name, check, host):
    _skips(check, _skips(testing.op_or_skip, name, **REQUIRED.get(name, {})))


@pytest.mark.parametrize("name", list_scorers())
def test_every_scorer_tags_through_the_host_dataset_op(name, host):
    """``dataset.iqa_tag(<scorer>)`` once the integration has registered into DataCopilot."""
    from paddlemix_iqa.integrations import datacopilot

    _skips(testing.scorer_or_skip, name)
    datacopilot.register()
    items = [it for it in testing.op_items() if it["id"] in ("sharp", "missing", "no image")]
    tagged = host.MMDataset(items).iqa_tag(name, progress=False, workers=1)
    assert [it["id"] for it in tagged.items] == ["sharp", "missing", "no image"]
    sharp, missing, _ = tagged.items
    assert isinstance(sharp[f"__tag_{name}"], float) and missing[f"__tag_{name}"] is None


@pytest.mark.parametrize("name", list_ops())
def test_every_op_is_an_image_op_named_as_listed(name):
    """A config's op name is also the label of its rejections (iqa_filter's is its metric's filter)."""
    assert issubclass(op_class(name), ImageOp)
    op = _skips(testing.op_or_skip, name, **REQUIRED.get(name, {}))
    assert op.name == ("laplacian_filter" if name == "iqa_filter" else name)
    assert op.keep_all == name.endswith("_tagger")


# --- the checks catch what they are for ----------------------------------------------------------------
class _Fine(Scorer):
    """A correct little scorer (mean brightness) the planted faults are added to."""

    name = "planted"
    native_range = (0.0, 255.0)

    def score_batch(self, images):
        return np.array([float(image.mean()) for image in images])


class _NanOnTiny(_Fine):
    def score_batch(self, images):
        return np.array([math.nan if image.size <= 3 else float(image.mean()) for image in images])


class _Mutates(_Fine):
    def score_batch(self, images):
        for image in images:
            image[0, 0] = 0  # e.g. an in-place normalisation
        return super().score_batch(images)


class _BackwardsQuality(_Fine):
    def normalize(self, native):
        return 1.0 - super().normalize(native)


class _Restless(_Fine):
    calls = 0

    def score_batch(self, images):
        type(self).calls += 1
        return super().score_batch(images) + type(self).calls


def test_the_correct_planted_scorer_passes():
    for check in SCORER_CHECKS[:-1]:  # the last is for the sharpness family only
        check(_Fine())


@pytest.mark.parametrize(
    "scorer, check",
    [
        (_NanOnTiny(), testing.check_scorer_scores_any_image_or_names_why_not),
        (_Mutates(), testing.check_scorer_leaves_its_input_alone),
        (_BackwardsQuality(), testing.check_scorer_normalises_monotonically),
        (_Restless(), testing.check_scorer_is_deterministic),
        (_Restless(), testing.check_scorer_batch_equals_one_by_one),
    ],
    ids=["nan_on_1x1", "mutates_input", "quality_backwards", "not_deterministic", "batch_differs"],
)
def test_a_broken_scorer_fails(scorer, check):
    with pytest.raises(AssertionError):
        check(scorer)


class _Passes(ImageOp):
    metric = "planted"
    needs_pixels = False

    def judge(self, images):
        return [Judgement(value=float(img.width)) for img in images]


class _SilentReject(_Passes):
    """Drops unreadable images without saying why."""

    def _decide(self, item, verdicts):
        result = super()._decide(item, verdicts)
        item.pop(REJECT_KEY, None)
        return result


class _Scribbles(_Passes):
    """Rewrites a field it does not own."""

    def _decide(self, item, verdicts):
        item["conversations"] = []
        return super()._decide(item, verdicts)


class _ReturnsBool(_Passes):
    def __call__(self, item):
        return super().__call__(item) is not None


class _HidesItsThreshold(_Passes):
    def __init__(self, min_width=64, **kwargs):
        super().__init__(**kwargs)
        self.min_width = min_width

    def params(self):
        return {"min_width": self.min_width, **super().params()}

    def thresholds(self):
        return {"min_width": float("nan")}


def test_the_correct_planted_op_passes():
    for check in OP_CHECKS[:-1]:  # the last needs the host
        check(_Passes())


@pytest.mark.parametrize(
    "op, check",
    [
        (_SilentReject(), testing.check_op_explains_every_rejection),
        (_Scribbles(), testing.check_op_changes_only_its_own_keys),
        (_ReturnsBool(), testing.check_op_returns_the_item_or_none),
        (_HidesItsThreshold(), testing.check_op_reports_its_thresholds),
    ],
    ids=["rejects_without_reason", "mutates_other_fields", "returns_bool", "nan_threshold"],
)
def test_a_broken_op_fails(op, check):
    with pytest.raises(AssertionError):
        check(op)
