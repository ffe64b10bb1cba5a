"""The contract every scorer and op must keep, built-in or from a plugin (as scikit-learn's
``parametrize_with_checks`` does for estimators).

``tests/test_contract.py`` runs every check on everything the registry lists, so a new
scorer is tested the moment it registers; a plugin's own tests can do the same::

    from paddlemix_iqa.testing import OP_CHECKS, SCORER_CHECKS
    for check in SCORER_CHECKS:
        check(MyScorer())

A check raises AssertionError saying what broke, or ``unittest.SkipTest`` (pytest skips
on it) when it does not apply: a scorer whose weights are not installed, a check of the
sharpness family on another scorer, the host check without PaddleMIX DataCopilot.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
import pickle
import tempfile
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .io import decode_image
from .models.weights import WeightsNotFound
from .ops import ERROR_KEY, REJECT_KEY, ImageOp, build_op
from .pipeline.runner import op_thresholds
from .scorers import Scorer, get_scorer

#: what a refusal (:meth:`Scorer.check_image`) must start with
REFUSALS = ("too_small", "flat_image")
#: the large image every scorer sees once (12 MP, a camera photo)
BIG = (3000, 4000)


# --- building what is checked, or skipping for missing weights --------------------------------------
def _no_weights(name: str, exc: WeightsNotFound) -> unittest.SkipTest:
    where = str(exc).split(". ")[0]  # the rest says how to get them: paddlemix-iqa weights list
    return unittest.SkipTest(f"{name}: weights not installed ({where})")


def scorer_or_skip(name: str, **params: Any) -> Scorer:
    """The registered scorer ``name``; SkipTest with the reason when its weights are not installed."""
    try:
        scorer = get_scorer(name, **params)
        scorer.check_weights()
    except WeightsNotFound as exc:
        raise _no_weights(name, exc) from None
    return scorer


def op_or_skip(name: str, **params: Any) -> ImageOp:
    """The op ``name`` built with ``params``; SkipTest with the reason when its weights are missing."""
    try:
        return build_op(name, **params)
    except WeightsNotFound as exc:
        raise _no_weights(name, exc) from None


# --- images -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def photo() -> np.ndarray:
    """A real 512x512 RGB photo (scikit-image's astronaut): texture, edges and flat areas."""
    from skimage import data

    return data.astronaut()


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed * 7919 + h * 1009 + w).integers(0, 256, (h, w, 3), np.uint8)


def _resized(h: int, w: int) -> np.ndarray:
    return cv2.resize(photo(), (w, h), interpolation=cv2.INTER_AREA if h < 512 else cv2.INTER_CUBIC)


def blurred(image: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[tuple[str, np.ndarray], ...]:
    """Direct RGB uint8 arrays: every awkward size a dataset holds, and uniform images."""
    return (
        ("1x1", _noise(1, 1)),
        ("2x2", _noise(2, 2)),
        ("3x3", _noise(3, 3)),
        ("row 500x1", _noise(1, 500)),
        ("column 1x500", _noise(500, 1)),
        ("7x5", _noise(5, 7)),
        ("photo 64x48", _resized(48, 64)),
        ("photo 300x200", _resized(200, 300)),
        ("black 32x32", np.zeros((32, 32, 3), np.uint8)),
        ("grey 256x256", np.full((256, 256, 3), 128, np.uint8)),
        ("white 40x30", np.full((30, 40, 3), 255, np.uint8)),
    )


@functools.lru_cache(maxsize=1)
def _big() -> np.ndarray:
    return _resized(*BIG)


def _files(folder: Path) -> dict[str, Path]:
    """Files in the modes a loader meets (grey, grey+alpha, RGBA, palette, 16-bit, bilevel)."""
    rgb = Image.fromarray(_resized(48, 64))
    out: dict[str, Path] = {}

    def save(label: str, img: Image.Image, name: str, **kw: Any) -> None:
        out[label] = folder / name
        img.save(out[label], **kw)

    save("grey L", rgb.convert("L"), "grey.png")
    save("grey+alpha LA", rgb.convert("LA"), "la.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))))
    save("RGBA", rgba, "rgba.png")
    save("palette P", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32), "palette.png")
    save("palette P+transparency", rgb.convert("P"), "palette_t.png", transparency=0)
    save("16-bit grey I;16", Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257), "g16.png")
    out["16-bit RGB"] = folder / "rgb16.png"
    cv2.imwrite(str(out["16-bit RGB"]), np.asarray(rgb)[..., ::-1].astype(np.uint16) * 257)
    save("bilevel 1", rgb.convert("1"), "bilevel.png")
    save("1x1 RGB", Image.fromarray(_noise(1, 1)), "one.png")
    save("uniform 16-bit", Image.fromarray(np.full((30, 40), 40000, np.uint16)), "flat16.png")
    save("JPEG", rgb, "photo.jpg", quality=90)
    return out


@functools.lru_cache(maxsize=1)
def _decoded() -> tuple[tuple[str, np.ndarray], ...]:
    """The mode files as the package's loader decodes them (RGB uint8)."""
    with tempfile.TemporaryDirectory(prefix="iqa-contract-") as tmp:
        return tuple(
            (f"file {label}", decode_image(path).pixels) for label, path in _files(Path(tmp)).items()
        )


# --- scorer checks ------------------------------------------------------------------------------------
def _native(scorer: Scorer, images: list[np.ndarray]) -> np.ndarray:
    values = np.asarray(scorer.score_batch(images), dtype=np.float64)
    assert values.shape == (len(images),), f"score_batch gave shape {values.shape} for {len(images)} images"
    return values


def _problem(scorer: Scorer, label: str, image: np.ndarray) -> str | None:
    """What is wrong with the scorer's answer on one image (None: a finite score or a named refusal)."""
    reason = scorer.check_image(image)
    if reason is not None:
        if not (isinstance(reason, str) and reason.startswith(REFUSALS)):
            return f"{label}: check_image gave {reason!r}, not a reason starting with {' or '.join(REFUSALS)}"
        try:
            scorer.score_batch([image])
        except ValueError:
            return None
        return f"{label}: check_image refused it ({reason}) but score_batch did not raise UnscorableImage"
    value = float(_native(scorer, [image])[0])
    quality = float(np.asarray(scorer.normalize(np.array([value]))).reshape(-1)[0])
    if not math.isfinite(value):
        return f"{label}: native score {value} is not finite (refuse it in check_image instead)"
    if not (math.isfinite(quality) and 0.0 <= quality <= 1.0):
        return f"{label}: quality {quality} (native {value}) is not in [0, 1]"
    return None


def check_scorer_declares_itself(scorer: Scorer) -> None:
    """Name, direction, native range, decode size: what configs, ops and reports read."""
    assert isinstance(scorer.name, str) and scorer.name, f"name {scorer.name!r} is not a name"
    assert isinstance(scorer.higher_is_better, bool), "higher_is_better must be True or False"
    low, high = scorer.native_range
    assert isinstance(low, numbers.Real) and isinstance(high, numbers.Real) and low < high, (
        f"native_range {scorer.native_range!r} is not (low, high)"
    )
    side = scorer.decode_side
    assert side is None or (isinstance(side, int) and side > 0), f"decode_side {side!r}"
    assert isinstance(scorer.measures, str), f"measures {scorer.measures!r}"
    json.dumps(scorer.describe(), default=str)  # an unbounded range is inf: allowed


def check_scorer_scores_any_image_or_names_why_not(scorer: Scorer) -> None:
    """1x1 to 12 MP, uniform, grey, RGBA, palette, 16-bit: a finite score, or check_image's
    ``too_small`` / ``flat_image`` refusal, never NaN (it passes every threshold)."""
    images = [*_arrays(), *_decoded(), (f"{BIG[1]}x{BIG[0]}", _big())]
    problems = [p for label, image in images if (p := _problem(scorer, label, image.copy()))]
    assert not problems, f"{type(scorer).__name__}: " + "; ".join(problems)


def check_scorer_is_deterministic(scorer: Scorer) -> None:
    images = [photo().copy(), _resized(200, 300)]
    first, second = _native(scorer, images), _native(scorer, [im.copy() for im in images])
    assert np.array_equal(first, second), f"scores changed between two runs: {first} then {second}"


def check_scorer_normalises_monotonically(scorer: Scorer) -> None:
    """Quality in [0, 1], rising with the native score when higher is better (falling otherwise)."""
    low, high = scorer.native_range
    if math.isfinite(low) and math.isfinite(high):
        grid = np.linspace(low, high, 21)
    else:
        start = low if math.isfinite(low) else -1e6
        grid = start + np.array([0, 1e-3, 0.1, 1, 10, 100, 1e3, 1e4, 1e6])
    outside = np.array([grid[0] - 1.0, grid[-1] + 1.0])
    quality = np.asarray(scorer.normalize(grid), dtype=np.float64)
    assert quality.shape == grid.shape, f"normalize changed the shape {grid.shape} to {quality.shape}"
    edges = np.asarray(scorer.normalize(outside), dtype=np.float64)
    for q in (quality, edges):
        assert np.all(np.isfinite(q)) and q.min() >= 0.0 and q.max() <= 1.0, f"quality {q} not in [0, 1]"
    steps = np.diff(quality) if scorer.higher_is_better else -np.diff(quality)
    direction = "rise" if scorer.higher_is_better else "fall"
    assert np.all(steps >= -1e-12), f"quality must {direction} with the native score: {grid} -> {quality}"
    assert quality[-1] != quality[0], f"quality is constant ({quality[0]}) over the native range"
    one = scorer.normalize(float(grid[1]))
    assert isinstance(one, float) and one == quality[1], f"normalize({grid[1]}) gave {one!r}, not a float"


def check_scorer_batch_equals_one_by_one(scorer: Scorer) -> None:
    images = [photo().copy(), _resized(200, 300), _noise(64, 80), blurred(_resized(120, 90))]
    batch = _native(scorer, images)
    single = np.array([_native(scorer, [image])[0] for image in images])
    assert np.allclose(batch, single, rtol=1e-5, atol=1e-6), f"batch {batch} != one by one {single}"


def check_scorer_leaves_its_input_alone(scorer: Scorer) -> None:
    """Ops share one decoded image across every op of a chain: a scorer must not write into it."""
    images = [photo().copy(), _noise(64, 80)]
    before = [image.copy() for image in images]
    for image in images:
        scorer.check_image(image)
    _native(scorer, images)
    changed = [i for i, (a, b) in enumerate(zip(images, before, strict=True)) if not np.array_equal(a, b)]
    assert not changed, f"{type(scorer).__name__} modified its input image(s) {changed}"


def check_sharpness_ranks_sharp_above_blurred(scorer: Scorer) -> None:
    if scorer.measures != "sharpness":
        raise unittest.SkipTest(f"{scorer.name} measures {scorer.measures}, not sharpness")
    sharp, soft = photo().copy(), blurred(photo())
    quality = np.asarray(scorer.normalize(_native(scorer, [sharp, soft])), dtype=np.float64)
    assert quality[0] > quality[1], f"sharp photo quality {quality[0]} <= its blurred copy's {quality[1]}"


SCORER_CHECKS: list[Callable[[Scorer], None]] = [
    check_scorer_declares_itself,
    check_scorer_scores_any_image_or_names_why_not,
    check_scorer_is_deterministic,
    check_scorer_normalises_monotonically,
    check_scorer_batch_equals_one_by_one,
    check_scorer_leaves_its_input_alone,
    check_sharpness_ranks_sharp_above_blurred,
]


def check_scorer(scorer: Scorer) -> None:
    """Every scorer check (a skipped one stops the rest: run them one by one to see all)."""
    for check in SCORER_CHECKS:
        check(scorer)


# --- op checks ----------------------------------------------------------------------------------------
_FOLDER: tempfile.TemporaryDirectory | None = None


@functools.lru_cache(maxsize=1)
def _op_files() -> dict[str, str]:
    """Images for op items, by label; written once per process into a temporary folder."""
    global _FOLDER
    _FOLDER = tempfile.TemporaryDirectory(prefix="iqa-contract-ops-")
    folder = Path(_FOLDER.name)
    pictures = {
        "sharp": _resized(96, 128),
        "blurred": blurred(_resized(96, 128)),
        "tiny": _noise(1, 1),
        "flat": np.full((64, 64, 3), 90, np.uint8),
    }
    files = {}
    for label, pixels in pictures.items():
        files[label] = str(folder / f"{label}.png")
        Image.fromarray(pixels).save(files[label])
    files["grey16"] = str(_files(folder)["16-bit grey I;16"])
    files["broken"] = str(folder / "broken.jpg")
    Path(files["broken"]).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    files["missing"] = str(folder / "missing.png")
    return files


def op_items() -> list[dict[str, Any]]:
    """Fresh LLaVA-style records: good, blurred, tiny, flat, 16-bit, broken and missing images,
    one without an image and one with two images."""
    files = _op_files()

    def record(label: str, image: Any) -> dict[str, Any]:
        return {
            "id": label,
            "image": image,
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is this?"},
                {"from": "gpt", "value": "A."},
            ],
            "meta": {"source": "contract", "tags": ["a", "b"]},
        }

    items = [record(label, path) for label, path in files.items()]
    items.append({"id": "no image", "conversations": [{"from": "human", "value": "hi"}]})
    items.append({**record("two images", None), "image": [files["sharp"], files["tiny"]]})
    return items


def _owned(op: ImageOp, key: str) -> bool:
    """Keys an op may write: its tags (``__tag_<metric>``, ``__tag_<metric>_*``) and the reasons."""
    return key in (REJECT_KEY, ERROR_KEY, op.key()) or key.startswith(op.key() + "_")


def _run(op: ImageOp) -> list[tuple[dict, dict, Any]]:
    """(item before, item after, result) for every op item."""
    out = []
    for item in op_items():
        before = copy.deepcopy(item)
        out.append((before, item, op(item)))
    return out


def check_op_returns_the_item_or_none(op: ImageOp) -> None:
    """``item -> item | None``, one by one and batched alike (``dataset.map(op).nonempty()``)."""
    single = _run(op)
    for before, item, result in single:
        assert result is item or result is None, f"{before['id']}: returned {type(result).__name__}"
    items = op_items()
    batched = op.process(items)
    assert len(batched) == len(items), f"process gave {len(batched)} results for {len(items)} items"
    for item, result, (_, _, one) in zip(items, batched, single, strict=True):
        assert result is item or result is None, f"{item['id']}: process returned {type(result).__name__}"
        assert (result is None) == (one is None), f"{item['id']}: batched and single runs disagree"


def check_op_changes_only_its_own_keys(op: ImageOp) -> None:
    """An op tags the item it is given (the host's tagger protocol), and touches nothing else."""
    assert op.key() == f"__tag_{op.metric}", f"key() {op.key()!r} is not the host's __tag_<metric>"
    for before, item, _ in _run(op):
        changed = sorted(k for k in before if not _owned(op, k) and item.get(k, ...) != before[k])
        assert not changed, f"{before['id']}: {op.name} changed {changed}"
        added = sorted(k for k in item if k not in before and not _owned(op, k))
        assert not added, f"{before['id']}: {op.name} added keys it does not own: {added}"


def check_op_explains_every_rejection(op: ImageOp) -> None:
    """A dropped item says ``"<op name>: <reason>"``; unreadable images are dropped, not raised on."""
    for before, item, result in _run(op):
        if result is None:
            reason = item.get(REJECT_KEY)
            assert isinstance(reason, str) and reason.startswith(f"{op.name}: "), (
                f"{before['id']}: dropped with reason {reason!r}, not '{op.name}: <reason>'"
            )
            assert reason[len(op.name) + 2 :].strip(), f"{before['id']}: an empty reason"
        else:
            assert REJECT_KEY not in item, f"{before['id']}: kept but marked rejected ({item[REJECT_KEY]!r})"
        if before["id"] == "no image":
            assert result is item, "an item without an image is kept (the host's rule)"
        if before["id"] in ("missing", "broken"):
            assert op.keep_all or result is None, f"{before['id']}: an unreadable image was kept"
            assert str(item.get(ERROR_KEY, "")).startswith("decode_error: "), (
                f"{before['id']}: {ERROR_KEY} is {item.get(ERROR_KEY)!r}, not 'decode_error: ...'"
            )


def check_op_tags_are_plain_numbers(op: ImageOp) -> None:
    """Tags are finite numbers or None (per image for multi-image items): JSON without NaN."""
    for before, item, _ in _run(op):
        json.dumps(item, allow_nan=False)
        if before["id"] == "no image":
            continue
        tag = item.get(op.key(), ...)
        assert tag is not ..., f"{before['id']}: no {op.key()} tag"
        values = tag if isinstance(tag, list) else [tag]
        for v in values:
            assert v is None or (isinstance(v, numbers.Real) and math.isfinite(v)), (
                f"{before['id']}: tag {tag!r}"
            )


def check_op_reports_its_thresholds(op: ImageOp) -> None:
    """``thresholds()`` names the op's bounds as its parameters; run.json draws them from it."""
    bounds = op.thresholds()
    assert isinstance(bounds, dict), f"thresholds() gave {type(bounds).__name__}, not a dict"
    params = op.params()
    for name, value in bounds.items():
        assert value is None or (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        ), f"threshold {name}={value!r} is not a finite number or None"
        assert name in params and params[name] == value, f"threshold {name} is not the op's parameter {name}"
        if name in op.quality_thresholds and value is not None:
            assert 0.0 <= value <= 1.0, f"quality threshold {name}={value} outside [0, 1]"
    assert set(op.quality_thresholds) <= set(bounds), "quality_thresholds names a bound thresholds() lacks"
    entry = op_thresholds(op)
    json.dumps(entry, allow_nan=False)
    assert entry["op"] == op.name and entry["metric"] == op.metric, entry
    unplotted = getattr(op, "unplotted_thresholds", frozenset())
    assert set(unplotted) <= set(bounds), "unplotted_thresholds names a bound thresholds() lacks"
    drawn = {} if op.keep_all else {k: v for k, v in bounds.items() if v is not None and k not in unplotted}
    assert [ln["x"] for ln in entry["lines"]] == [float(v) for v in drawn.values()], entry
    for line, name in zip(entry["lines"], drawn, strict=True):
        assert line["label"].startswith(f"{name}=") and line["scale"] in ("quality", "value"), line
        assert (line["scale"] == "quality") == (name in op.quality_thresholds), line


def check_op_survives_pickling(op: ImageOp) -> None:
    """Pipelines and the host's process mode send ops to worker processes."""
    clone = pickle.loads(pickle.dumps(op))
    for (_, item, result), twin in zip(_run(op), op_items(), strict=True):
        again = clone(twin)
        assert (again is None) == (result is None), f"{twin['id']}: the unpickled op decides otherwise"
        assert twin.get(op.key()) == item.get(op.key()), f"{twin['id']}: the unpickled op tags otherwise"


def check_op_runs_in_the_host(op: ImageOp) -> None:
    """``dataset.map(op).nonempty()`` and ``dataset.filter(op)`` in PaddleMIX DataCopilot keep
    what calling the op keeps."""
    try:
        from paddlemix.datacopilot.core import MMDataset
    except ImportError:
        raise unittest.SkipTest("paddlemix.datacopilot is not importable") from None
    expected = [before["id"] for before, _, result in _run(op) if result is not None]
    mapped = MMDataset(op_items()).map(op, max_workers=2).nonempty()
    filtered = MMDataset(op_items()).filter(op, max_workers=2)
    assert [it["id"] for it in mapped.items] == expected, "map(op).nonempty() kept other items"
    assert [it["id"] for it in filtered.items] == expected, "filter(op) kept other items"


OP_CHECKS: list[Callable[[ImageOp], None]] = [
    check_op_returns_the_item_or_none,
    check_op_changes_only_its_own_keys,
    check_op_explains_every_rejection,
    check_op_tags_are_plain_numbers,
    check_op_reports_its_thresholds,
    check_op_survives_pickling,
    check_op_runs_in_the_host,
]


def check_op(op: ImageOp) -> None:
    """Every op check (a skipped one stops the rest: run them one by one to see all)."""
    for check in OP_CHECKS:
        check(op)
