"""Valid ranges of numeric parameters, declared once, in the constructor's signature.

A parameter's range is ``typing.Annotated`` metadata on its annotation::

    def __init__(self, tiles: Annotated[int, Bounds(1, 64)] = 1, midpoint: Annotated[float | None,
                 Bounds(1e-12, 1e12)] = None):
        checked = check_params(MyScorer.__init__, locals())

:func:`check_params` refuses a value outside it with a ValueError naming the parameter
(library use; a pipeline config builds its ops, so config validation refuses the same
values with the same message), and ``paddlemix-iqa ops NAME`` prints it
(:func:`declared_bounds`, :meth:`Bounds.describe`). Pydantic, which type-checks config
values against the same annotations, ignores the metadata.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Bounds:
    """The closed range ``[low, high]`` of a numeric parameter (None is always allowed when the
    annotation admits it). A bound may name another parameter of the same signature (``"working_size"``:
    at least that parameter's value). ``threshold`` marks a filter threshold and names what it bounds
    (``"score"``): it is refused in the thresholds' words (``score threshold 1.5 is outside [0.0, 1.0]
    (min_score)``), need not be an integer, and a ``min_X`` must not exceed its ``max_X``."""

    low: float | str = -math.inf
    high: float | str = math.inf
    threshold: str | None = None

    def resolve(self, values: Mapping[str, Any]) -> tuple[float, float]:
        """(low, high) as numbers; a bound naming another parameter takes its value from ``values``."""
        low, high = (values.get(b, -math.inf) if isinstance(b, str) else b for b in (self.low, self.high))
        return (-math.inf if low is None else low), (math.inf if high is None else high)

    def describe(self, integer: bool = False) -> str:
        """The range as ``paddlemix-iqa ops NAME`` prints it: ``1..64``, ``[0, 1]``, ``>= 0``, ``any finite number``."""

        def num(x: float | str) -> str:
            if isinstance(x, str):
                return x
            return str(int(x)) if integer else f"{x:g}"

        has_low = isinstance(self.low, str) or math.isfinite(self.low)
        has_high = isinstance(self.high, str) or math.isfinite(self.high)
        if has_low and has_high:
            return f"{num(self.low)}..{num(self.high)}" if integer else f"[{num(self.low)}, {num(self.high)}]"
        if has_low:
            return f">= {num(self.low)}"
        if has_high:
            return f"<= {num(self.high)}"
        return "any integer" if integer else "any finite number"


class Declared(NamedTuple):
    """A bounded parameter's declaration: its range, whether it is an integer, whether None is allowed."""

    bounds: Bounds
    integer: bool
    optional: bool

    def describe(self) -> str:
        return self.bounds.describe(self.integer)


@functools.lru_cache(maxsize=256)
def declared_bounds(func: Callable) -> dict[str, Declared]:
    """Parameter -> its declaration, for every parameter of ``func`` annotated with :class:`Bounds`,
    in signature order (annotations are resolved, so ``from __future__ import annotations`` is fine)."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - annotations that do not resolve declare no bounds...
        if any("Bounds(" in str(a) for a in getattr(func, "__annotations__", {}).values()):
            # ...but a range that cannot be read must not silently go unchecked
            raise TypeError(f"cannot read the parameter ranges of {func.__qualname__}: {exc}") from exc
        return {}
    out = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        bounds = next((m for m in hint.__metadata__ if isinstance(m, Bounds)), None)
        if bounds is None:
            continue
        base = typing.get_args(hint)[0]
        members = (
            typing.get_args(base) if typing.get_origin(base) in (typing.Union, types.UnionType) else (base,)
        )
        kinds = [m for m in members if m is not type(None)]
        out[name] = Declared(bounds, kinds == [int], len(kinds) < len(members))
    return out


def check_params(func: Callable, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check the values of ``func``'s bounded parameters (``values``: e.g. the constructor's ``locals()``)
    against their declarations; returns them checked (ints as ``int``, other numbers as ``float``;
    thresholds as given). Raises ValueError naming the parameter."""
    out: dict[str, Any] = {}
    declared = declared_bounds(func)
    for name, decl in declared.items():
        if name not in values:
            continue
        value = values[name]
        low, high = decl.bounds.resolve({**values, **out})
        if decl.bounds.threshold is not None:
            check_threshold(name, value, decl.bounds.threshold, decl.bounds)
            out[name] = value
        elif decl.integer:
            out[name] = check_int(name, value, low, high, optional=decl.optional)
        else:
            out[name] = check_float(name, value, low, high, optional=decl.optional)
    for name, low in out.items():  # min_X <= max_X
        high = out.get("max_" + name[4:]) if name.startswith("min_") else None
        if (
            declared[name].bounds.threshold is not None
            and low is not None
            and high is not None
            and low > high
        ):
            raise ValueError(f"{name} {low} is greater than max_{name[4:]} {high}")
    return out


def check_threshold(name: str, value: Any, what: str, bounds: Bounds | None = None) -> None:
    """A filter threshold: None (no bound), or a finite number within ``bounds``; booleans (YAML ``yes``),
    non-numbers, NaN (it compares false with everything, so it would silently keep all) and infinities
    (use None) are refused."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number or null, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (null for no bound), not {value}")
    if bounds is not None and not bounds.low <= value <= bounds.high:
        raise ValueError(f"{what} threshold {value} is outside [{bounds.low}, {bounds.high}] ({name})")


def check_int(name: str, value: Any, low: float, high: float, *, optional: bool = False) -> int | None:
    """An integer parameter in [low, high] (None too when ``optional``); bools and floats are refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer{' or None' if optional else ''}, not {value!r}")
    _check_bounds(name, value, low, high)
    return int(value)


def check_float(name: str, value: Any, low: float, high: float, *, optional: bool = False) -> float | None:
    """A finite number in [low, high] (None too when ``optional``); bools, NaN and infinities are refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number{' or None' if optional else ''}, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value}")
    _check_bounds(name, value, low, high)
    return float(value)


def _check_bounds(name: str, value: float, low: float, high: float) -> None:
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value}")
    if value > high:
        raise ValueError(f"{name} must be at most {high}, not {value}")
