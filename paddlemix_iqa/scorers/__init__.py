"""Scorer registry: configs and ops name scorers by string.

Built-in scorers are listed as import paths and imported on first use, so
``import paddlemix_iqa`` never pulls in Paddle or a model.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import threading
from typing import Any

from .base import Scorer, UnscorableImage

__all__ = ["Scorer", "UnscorableImage", "get_scorer", "list_scorers", "register_scorer", "scorer_class"]

_REGISTRY: dict[str, str | type[Scorer]] = {
    "laplacian": "paddlemix_iqa.scorers.sharpness:LaplacianScorer",
    "tenengrad": "paddlemix_iqa.scorers.sharpness:TenengradScorer",
    "gradient_mean": "paddlemix_iqa.scorers.sharpness:GradientMeanScorer",
    "brisque": "paddlemix_iqa.scorers.brisque:BrisqueScorer",
    "arniqa": "paddlemix_iqa.scorers.arniqa:ArniqaScorer",
    "pulc_clarity": "paddlemix_iqa.scorers.pulc:PulcClarityScorer",
    "pulc_code": "paddlemix_iqa.scorers.pulc:PulcCodeScorer",
    "codes": "paddlemix_iqa.scorers.codes:CodeScorer",
}
_CACHE: dict[tuple, Scorer] = {}
_LOCK = threading.Lock()


def register_scorer(name: str, cls: type[Scorer] | str, *, force: bool = False) -> None:
    """Add a scorer class (or ``"module:Class"`` path) under ``name``."""
    if name in _REGISTRY and not force:
        raise ValueError(f"scorer {name!r} is already registered (pass force=True to replace it)")
    _REGISTRY[name] = cls


def _available(target: str | type[Scorer]) -> bool:
    if not isinstance(target, str):
        return True
    return importlib.util.find_spec(target.split(":")[0]) is not None


def list_scorers() -> list[str]:
    """Names of the scorers that this installation can build."""
    return sorted(name for name, target in _REGISTRY.items() if _available(target))


def scorer_class(name: str) -> type[Scorer]:
    """The class registered under ``name`` (imports its module on first use)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; available: {', '.join(list_scorers())}") from None
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = target
    return target


def scorer_params(name: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters a scorer accepts (for config validation and ``ops`` listings)."""
    sig = inspect.signature(scorer_class(name).__init__)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p for k, p in sig.parameters.items() if k != "self" and p.kind in named}


def get_scorer(name: str, **params: Any) -> Scorer:
    """A scorer instance, shared between callers asking for the same name and parameters.

    Sharing matters for neural scorers: their weights load once per process.
    """
    key = (name, tuple(sorted((k, repr(v)) for k, v in params.items())))
    with _LOCK:
        scorer = _CACHE.get(key)
        if scorer is None:
            scorer = _CACHE[key] = scorer_class(name)(**params)
    return scorer
