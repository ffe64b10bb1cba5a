"""Ops: item-level filters and taggers (``item -> item | None``), by the names configs use.

Names come from :mod:`paddlemix_iqa.registry`: ops registered with ``@register_op``, and
each scorer's ``<metric>_filter`` / ``<metric>_tagger``.
"""

from __future__ import annotations

from typing import Any

from ..registry import op_names, op_spec, register_op
from .base import ERROR_KEY, REJECT_KEY, TAG_PREFIX, ImageOp, Judgement, image_refs
from .geometry import AspectRatioFilter, DecodableFilter, FileSizeFilter, ResolutionFilter
from .host import iqa_arniqa, iqa_brisque
from .metric import MetricFilter, ScorerOp, iqa_filter, iqa_tagger

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
    "ScorerOp",
    "build_op",
    "image_refs",
    "iqa_arniqa",
    "iqa_brisque",
    "iqa_filter",
    "iqa_tagger",
    "list_ops",
    "op_class",
    "register_op",
]


def list_ops() -> list[str]:
    """Every op name a config can use (built-in, plugins, and each scorer's filter and tagger)."""
    return op_names()


def op_class(name: str) -> type[ImageOp]:
    """The class that builds op ``name`` (``MetricFilter`` for ``laplacian_filter``)."""
    return op_spec(name).cls


def build_op(op: str, /, **params: Any) -> ImageOp:
    """Build an op by name, e.g. ``build_op("laplacian_filter", min_score=0.5)``; ``params`` may
    hold the op's own ``name=`` (how its rejections are labelled)."""
    return op_spec(op).build(**params)
