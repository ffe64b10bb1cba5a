"""The valid range ``paddlemix-iqa ops NAME`` prints is the range the constructor enforces.

Both come from one declaration (``Annotated[int, Bounds(1, 64)]`` in the signature), and this
holds them to it for every numeric parameter of every registered op: a value just outside the
printed range is refused (by ``build_op`` and by config validation, naming the parameter), the
bound itself is accepted.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Annotated

import pytest

from paddlemix_iqa.models.weights import WeightsNotFound
from paddlemix_iqa.ops import build_op, list_ops
from paddlemix_iqa.params import Bounds, check_params
from paddlemix_iqa.pipeline.config import ConfigError, MissingWeights, op_help, validate

#: what the help prints in its range column
RANGE = re.compile(
    r"(?P<lo>\S+)\.\.(?P<hi>\S+)|\[(?P<flo>[^,]+), (?P<fhi>[^\]]+)\]|>= (?P<ge>\S+)|<= (?P<le>\S+)"
    r"|(?P<any>any finite number|any integer)"
)
#: parameters an op cannot be built without
REQUIRED = {"metric": "laplacian"}


def _cases() -> list:
    cases = []
    for op in list_ops():
        _, rows = op_help(op)
        defaults = {r[0]: r[2] for r in rows}
        for name, kind, _default, valid, _meaning in rows:
            if valid:
                # a parameter whose bound is this one (full_size: working_size..16384) is left open
                dependent = [r[0] for r in rows if re.search(rf"(^|\W){name}(\W|$)", r[3])]
                defaults_here = {**defaults, "_open": dependent}
                cases.append(pytest.param(op, name, kind, valid, defaults_here, id=f"{op}.{name}"))
    return cases


CASES = _cases()


def _number(text: str, defaults: dict[str, str]) -> float:
    """A printed bound: a number, or another parameter's name (its default is the bound)."""
    return ast.literal_eval(defaults[text]) if text in defaults else float(text)


def _params(op: str, name: str, value, defaults: dict[str, str]) -> dict:
    params = {k: v for k, v in REQUIRED.items() if defaults.get(k) == "required"}
    params.update(dict.fromkeys(defaults["_open"]))
    for prefix, other in (("min_", "max_"), ("max_", "min_")):  # open the pair's other end
        if name.startswith(prefix) and other + name[4:] in defaults:
            params[other + name[4:]] = None
    return {**params, name: value}


def _refused(op: str, params: dict, name: str) -> None:
    with pytest.raises(ValueError) as err:
        build_op(op, **params)
    assert not isinstance(err.value, WeightsNotFound) and name in str(err.value), str(err.value)
    with pytest.raises(ConfigError) as err:
        validate({"input": "data.jsonl", "process": [{op: params}]})
    assert not isinstance(err.value, MissingWeights) and name in str(err.value), str(err.value)


def _accepted(op: str, params: dict) -> None:
    try:  # a missing model is found after every value is checked: the value passed
        build_op(op, **params)
    except WeightsNotFound:
        pass
    try:
        validate({"input": "data.jsonl", "process": [{op: params}]})
    except MissingWeights:
        pass


def test_every_numeric_parameter_of_the_shipped_ops_has_a_range():
    ids = {case.id for case in CASES}
    for expected in (
        "laplacian_filter.tiles",
        "laplacian_filter.working_size",
        "laplacian_filter.min_score",
        "iqa_filter.max_value",
        "brisque_filter.max_pixels",
        "code_filter.full_size",
        "code_filter.max_coverage",
        "pulc_blur_filter.threshold",
        "pulc_code_filter.decode_side",
        "arniqa_filter.batch_size",
        "resolution_filter.min_height",
        "aspect_ratio_filter.max_ratio",
        "filesize_filter.min_size",
    ):
        assert expected in ids


@pytest.mark.parametrize(("op", "name", "kind", "valid", "defaults"), CASES)
def test_the_printed_range_is_the_range_the_constructor_enforces(op, name, kind, valid, defaults):
    match = RANGE.fullmatch(valid)
    assert match, f"{op}.{name}: unreadable range {valid!r}"
    integer = kind.split(" | ")[0] == "int"
    low = match["lo"] or match["flo"] or match["ge"]
    high = match["hi"] or match["fhi"] or match["le"]
    if match["any"]:
        for bad in (math.nan, math.inf):
            _refused(op, _params(op, name, bad, defaults), name)
        _accepted(op, _params(op, name, -1e300, defaults))
        _accepted(op, _params(op, name, 1e300, defaults))
        return
    if low is not None:
        bound = _number(low, defaults)
        below = int(bound) - 1 if integer else math.nextafter(float(bound), -math.inf)
        _refused(op, _params(op, name, below, defaults), name)
        _accepted(op, _params(op, name, int(bound) if integer else float(bound), defaults))
    if high is not None:
        bound = _number(high, defaults)
        above = int(bound) + 1 if integer else math.nextafter(float(bound), math.inf)
        _refused(op, _params(op, name, above, defaults), name)
        _accepted(op, _params(op, name, int(bound) if integer else float(bound), defaults))


def test_a_bound_may_name_another_parameter_and_min_must_not_exceed_max():
    def make(
        low: Annotated[int, Bounds(1, 100)] = 10,
        high: Annotated[int | None, Bounds("low", 1000)] = None,
        min_x: Annotated[float | None, Bounds(0.0, 1.0, threshold="x")] = None,
        max_x: Annotated[float | None, Bounds(0.0, 1.0, threshold="x")] = None,
    ):
        return check_params(make, locals())

    assert make() == {"low": 10, "high": None, "min_x": None, "max_x": None}
    assert make(low=20, high=20)["high"] == 20
    with pytest.raises(ValueError, match="high must be at least 20, not 19"):
        make(low=20, high=19)
    with pytest.raises(ValueError, match="min_x 0.6 is greater than max_x 0.5"):
        make(min_x=0.6, max_x=0.5)
    with pytest.raises(ValueError, match=r"x threshold 2 is outside \[0.0, 1.0\] \(max_x\)"):
        make(max_x=2)
    assert Bounds(1, 64).describe(integer=True) == "1..64"
    assert Bounds(0.0, 1.0).describe() == "[0, 1]"
    assert Bounds(0).describe() == ">= 0"
    assert Bounds().describe() == "any finite number"
