"""Scorers by name: the public face of the scorer half of :mod:`paddlemix_iqa.registry`.

A scorer registers with ``@register_scorer("name")`` on its class; built-in scorer
modules are imported on first use, so ``import paddlemix_iqa`` never pulls in Paddle
or a model.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

from ..models.weights import weights_home
from ..registry import SCORERS, register_scorer
from .base import Scorer, UnscorableImage

__all__ = ["Scorer", "UnscorableImage", "get_scorer", "list_scorers", "register_scorer", "scorer_class"]

#: the registry's name -> class (or "module:Class") table; tests plant scorers in it
_REGISTRY = SCORERS.targets
_CACHE: dict[tuple, Scorer] = {}
_LOCK = threading.RLock()  # re-entrant: a scorer may build the scorers it combines (fused)


def list_scorers() -> list[str]:
    """Names of the scorers that this installation can build (built-in and plugins)."""
    return SCORERS.names()


def scorer_class(name: str) -> type[Scorer]:
    """The class registered under ``name`` (imports its module on first use)."""
    return SCORERS.get(name)


def scorer_params(name: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters a scorer accepts (for config validation and ``ops`` listings)."""
    sig = inspect.signature(scorer_class(name).__init__)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p for k, p in sig.parameters.items() if k != "self" and p.kind in named}


def get_scorer(name: str, **params: Any) -> Scorer:
    """A scorer instance, shared between callers asking for the same name and parameters.

    Sharing matters for neural scorers: their weights load once per process. The
    cache is keyed by the class too, so a replaced registration is never served stale, and
    by the weights home, so ``--weights-dir`` / ``$PADDLEMIX_IQA_HOME`` changes are seen.
    """
    cls = scorer_class(name)
    key = (name, cls, tuple(sorted((k, repr(v)) for k, v in params.items())), str(weights_home()))
    with _LOCK:
        scorer = _CACHE.get(key)
        if scorer is None:
            scorer = _CACHE[key] = cls(**params)
    return scorer
