"""The op shape shared by every filter and tagger: ``item -> item | None``.

An op finds the item's image references (``image: "a.jpg"`` or
``images: [...]``), decodes them through :mod:`paddlemix_iqa.io`, judges all of
them in one batch, stores its measurements under the host's tagger key
(``item["__tag_<metric>"]``) and returns the item when kept, ``None`` when
dropped. The same object therefore works with ``dataset.map(op).nonempty()``
and ``dataset.filter(op)``. Bad images never raise out of an op: the item is
dropped and the reason is written to ``item["__iqa_error"]`` and
``item["__iqa_reject"]``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from ..io import DecodedImage, ImageLoadError, decode_or_error, resolve_path
from ..params import Bounds, check_threshold, declared_bounds
from ..registry import derived_name

TAG_PREFIX = "__tag_"
ERROR_KEY = "__iqa_error"  # why an image of the item could not be read
REJECT_KEY = "__iqa_reject"  # "<op name>: <reason>" of the op that dropped the item

Item = dict[str, Any]
Loaded = DecodedImage | ImageLoadError


@dataclass
class Judgement:
    """One image's verdict: its native value, its quality in [0, 1], and why it fails (None: passes)."""

    value: float | None = None
    quality: float | None = None
    reason: str | None = None


def image_refs(item: Mapping[str, Any], key: str = "image") -> list[Any]:
    """The image references of a record: ``item[key]`` as a list (``images`` when ``image`` is absent)."""
    value = item.get(key)
    if value is None and key == "image":
        value = item.get("images")
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _fmt(x: float | None) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


class ImageOp:
    """Base of item-level ops. Subclasses set ``metric`` and implement :meth:`judge`."""

    #: the measurement's name: tags go to ``item["__tag_<metric>"]``
    metric: str = "op"
    #: False when header facts (size, file size) are enough and pixels need not be decoded
    needs_pixels: bool = True
    #: True when a neural network scores (pipelines then batch it in the main process)
    neural: bool = False
    #: the default ``name`` (how rejections are labelled); set by ``@register_op(..., metric=...)``
    op_name: str | None = None
    #: the thresholds on the normalised quality (0..1, higher is better); all others are on the
    #: native value. Reports draw each on its own scale.

    def __init__(
        self,
        key: str = "image",
        root: str | os.PathLike | None = None,
        mode: Literal["any", "all"] = "any",
        keep_all: bool = False,
        name: str | None = None,
        allow_outside_root: bool = False,
    ):
        if mode not in ("any", "all"):
            raise ValueError(f"mode must be 'any' or 'all', not {mode!r}")
        self.image_key = key
        self.root = None if root is None else os.fspath(root)
        self.allow_outside_root = allow_outside_root  # else a path resolving outside ``root`` is refused
        self.mode = mode
        self.keep_all = keep_all
        self.name = name or self.op_name or derived_name(self.metric)

    # --- what subclasses provide -------------------------------------------------------
    @property
    def decode_side(self) -> int | None:
        """The long side this op needs decoded (None: full resolution)."""
        return None

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        """Verdicts for a batch of decoded images (all images of all items of a batch at once)."""
        raise NotImplementedError

    # --- the host's tagger protocol --------------------------------------------------
    def key(self) -> str:
        return TAG_PREFIX + self.metric

    # --- running ---------------------------------------------------------------------
    def __call__(self, item: Item) -> Item | None:
        return self.process([item])[0]

    def load(self, refs: Sequence[Any], workers: int = 1) -> list[Loaded]:
        """Decode (or only probe) references; failures come back as ImageLoadError values."""

        def one(ref: Any) -> Loaded:
            return decode_or_error(
                ref,
                self.root,
                self.decode_side,
                pixels=self.needs_pixels,
                allow_outside_root=self.allow_outside_root,
            )

        if workers > 1 and len(refs) > 1:
            with ThreadPoolExecutor(workers) as pool:
                return list(pool.map(one, refs))
        return [one(ref) for ref in refs]

    def process(
        self, items: Sequence[Item], loaded: Mapping[str, Loaded] | None = None, workers: int = 1
    ) -> list[Item | None]:
        """Judge a batch of items in one scorer call; returns each item (kept) or None (dropped).

        ``loaded`` maps resolved paths to images already decoded by the caller (the
        pipeline decodes each image once and shares it across ops); missing entries
        are decoded here.
        """
        refs_per_item = [image_refs(item, self.image_key) for item in items]
        flat: list[Loaded] = []
        todo: list[tuple[int, Any]] = []
        for refs in refs_per_item:
            for ref in refs:
                hit = self._lookup(ref, loaded)
                if hit is None:
                    todo.append((len(flat), ref))
                flat.append(hit)  # type: ignore[arg-type]
        for (index, _), result in zip(todo, self.load([r for _, r in todo], workers), strict=True):
            flat[index] = result

        good = [img for img in flat if isinstance(img, DecodedImage)]
        verdicts = iter(self._safe_judge(good))
        judged = [img if isinstance(img, ImageLoadError) else next(verdicts) for img in flat]

        results: list[Item | None] = []
        start = 0
        for item, refs in zip(items, refs_per_item, strict=True):
            mine = judged[start : start + len(refs)]
            start += len(refs)
            results.append(self._decide(item, mine))
        return results

    def _lookup(self, ref: Any, loaded: Mapping[str, Loaded] | None) -> Loaded | None:
        if not loaded:
            return None
        try:
            return loaded.get(resolve_path(ref, self.root, allow_outside_root=self.allow_outside_root))
        except ImageLoadError as exc:
            return exc

    def _safe_judge(self, images: list[DecodedImage]) -> list[Judgement]:
        """Judge, turning an unexpected scorer failure into per-image reasons instead of a crash."""
        if not images:
            return []
        try:
            verdicts = self.judge(images)
        except Exception as exc:  # noqa: BLE001 - a bad batch must not abort the host's map()
            if len(images) == 1:
                return [Judgement(reason=f"score_error: {type(exc).__name__}: {exc}")]
            return [v for img in images for v in self._safe_judge([img])]
        if len(verdicts) != len(images):
            raise RuntimeError(
                f"{type(self).__name__}.judge returned {len(verdicts)} verdicts for {len(images)} images"
            )
        return verdicts

    def _decide(self, item: Item, verdicts: list[Judgement | ImageLoadError]) -> Item | None:
        if not verdicts:  # no image: the host keeps such items
            return item
        values = [
            None if isinstance(v, ImageLoadError) else v.quality if v.quality is not None else v.value
            for v in verdicts
        ]
        item[self.key()] = values[0] if len(values) == 1 else values
        natives = [None if isinstance(v, ImageLoadError) else v.value for v in verdicts]
        if any(v is not None for v in natives) and natives != values:
            item[self.key() + "_raw"] = natives[0] if len(natives) == 1 else natives

        errors = [v for v in verdicts if isinstance(v, ImageLoadError)]
        if errors:
            reason = item[ERROR_KEY] = "decode_error: " + errors[0].reason
        else:
            failing = [v.reason for v in verdicts if v.reason is not None]
            if (len(failing) < len(verdicts)) if self.mode == "any" else not failing:
                return item
            reason = (
                failing[0] if len(verdicts) == 1 else f"{len(failing)}/{len(verdicts)} images: {failing[0]}"
            )
        if self.keep_all:
            return item
        item[REJECT_KEY] = f"{self.name}: {reason}"
        return None

    def params(self) -> dict[str, Any]:
        return {"key": self.image_key, "root": self.root, "mode": self.mode}

    def thresholds(self) -> dict[str, float | None]:
        """The bounds this op rejects by, named as its parameters (None: open), for reports to draw:
        every constructor parameter declared ``Bounds(..., threshold=...)``, read from the same
        declaration that validates it (most derived class first)."""
        return {name: getattr(self, name) for name in _threshold_kinds(type(self))}

    @property
    def quality_thresholds(self) -> frozenset[str]:
        """The thresholds on the normalised quality scale (declared ``threshold="score"``); the
        others are on the native value."""
        return frozenset(n for n, kind in _threshold_kinds(type(self)).items() if kind == "score")

    @property
    def unplotted_thresholds(self) -> frozenset[str]:
        """Thresholds on neither the quality nor the native value (a likely code's confidence):
        the report draws no line for them on the metric's histogram."""
        return frozenset(n for n, kind in _threshold_kinds(type(self)).items() if kind == "confidence")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if v is not None)
        return f"{type(self).__name__}({args})"


@functools.cache
def _threshold_kinds(cls: type) -> dict[str, str]:
    """Threshold parameter -> its kind (``score``, ``value``, ``width``, ...), over the ``__init__``
    of ``cls`` and its bases, most derived first."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        for name, declared in declared_bounds(init).items():
            if declared.bounds.threshold:
                out.setdefault(name, declared.bounds.threshold)
    return out


def check_range(
    low: float | None,
    high: float | None,
    what: str,
    bounds: tuple[float, float] | None = None,
    names: tuple[str, str] | None = None,
):
    """Validate a (min, max) threshold pair; None means unbounded.

    Refused with a ValueError naming the parameter (``names``, default ``min_<what>``,
    ``max_<what>``) as :func:`paddlemix_iqa.params.check_threshold` refuses it. Built-in ops
    declare their thresholds' ranges in their signatures instead (``Annotated[float | None,
    Bounds(0.0, 1.0, threshold="score")]``) and check them with ``check_params``.
    """
    names = names or (f"min_{what}", f"max_{what}")
    declared = None if bounds is None else Bounds(bounds[0], bounds[1], threshold=what)
    for v, name in zip((low, high), names, strict=True):
        check_threshold(name, v, what, declared)
    if low is not None and high is not None and low > high:
        raise ValueError(f"{names[0]} {low} is greater than {names[1]} {high}")


def range_reason(label: str, value: float, low: float | None, high: float | None) -> str | None:
    """Why ``value`` is outside [low, high], or None when inside (NaN is always outside)."""
    if value is None or math.isnan(value):
        return f"{label} is not a number"
    if low is not None and value < low:
        return f"{label} {_fmt(value)} < {_fmt(low)}"
    if high is not None and value > high:
        return f"{label} {_fmt(value)} > {_fmt(high)}"
    return None
