"""Ops: item-level filters and taggers (``item -> item | None``), and the op registry configs use."""

from __future__ import annotations

import importlib
from typing import Any

from .base import ERROR_KEY, REJECT_KEY, TAG_PREFIX, ImageOp, Judgement, image_refs
from .geometry import AspectRatioFilter, DecodableFilter, FileSizeFilter, ResolutionFilter
from .host import iqa_arniqa, iqa_brisque
from .metric import MetricFilter, iqa_filter, iqa_tagger

__all__ = [
    "ERROR_KEY",
    "REJECT_KEY",
    "TAG_PREFIX",
    "AspectRatioFilter",
    "DecodableFilter",
    "FileSizeFilter",
    "ImageOp",
    "Judgement",
    "MetricFilter",
    "ResolutionFilter",
    "build_op",
    "image_refs",
    "iqa_arniqa",
    "iqa_brisque",
    "iqa_filter",
    "iqa_tagger",
    "list_ops",
    "op_class",
]

#: op name -> class or "module:Class"; metric ops bind their scorer with functools-like defaults
_OPS: dict[str, Any] = {
    "decodable_filter": DecodableFilter,
    "resolution_filter": ResolutionFilter,
    "aspect_ratio_filter": AspectRatioFilter,
    "filesize_filter": FileSizeFilter,
    "iqa_filter": MetricFilter,
    "pulc_blur_filter": "paddlemix_iqa.ops.pulc:PulcBlurFilter",
    "pulc_code_filter": "paddlemix_iqa.ops.pulc:PulcCodeFilter",
    "code_filter": "paddlemix_iqa.ops.codes:CodeFilter",
}
#: ``<metric>_filter`` ops are MetricFilter with the metric fixed
_METRIC_OPS = ("laplacian", "tenengrad", "gradient_mean", "brisque", "arniqa")


def register_op(name: str, cls: Any, *, force: bool = False) -> None:
    if name in _OPS and not force:
        raise ValueError(f"op {name!r} is already registered")
    _OPS[name] = cls


def list_ops() -> list[str]:
    return sorted(set(_OPS) | {f"{m}_filter" for m in _METRIC_OPS})


def op_class(name: str) -> Any:
    target = _OPS.get(name)
    if target is None:
        if name.endswith("_filter") and name[: -len("_filter")] in _METRIC_OPS:
            return MetricFilter
        raise KeyError(f"unknown op {name!r}; available: {', '.join(list_ops())}")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = _OPS[name] = getattr(importlib.import_module(module), attr)
    return target


def build_op(op: str, /, **params: Any) -> ImageOp:
    """Build a registered op by name, e.g. ``build_op("laplacian_filter", min_score=0.5)``;
    ``params`` may hold the op's own ``name=`` (how its rejections are labelled)."""
    name = op
    cls = op_class(name)
    if cls is MetricFilter and name != "iqa_filter":
        return MetricFilter(name[: -len("_filter")], **{"name": name, **params})
    return cls(**params)
