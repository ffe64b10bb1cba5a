"""One registry for scorers and ops: a decorator at the class, lazy ``"module:Class"`` entries, plugins.

``@register_scorer("laplacian")`` / ``@register_op("code_filter", metric="codes")`` on a class is
the only place a name is written. Built-in entries are found by *reading* the modules of
``paddlemix_iqa.scorers`` and ``paddlemix_iqa.ops`` for those decorators (``ast``, no import),
so each entry stays a ``"module:Class"`` string until first use and ``import paddlemix_iqa``
imports no scorer module. Other installed packages add theirs through the entry-point groups
``paddlemix_iqa.scorers`` and ``paddlemix_iqa.ops`` (``name = "pkg.module:Class"``, or a module
whose decorators register ``name`` when it is imported).

Every scorer ``m`` has two ops nobody lists: its filter and its tagger (:func:`op_spec` is the
one place that rule lives). The filter is ``m_filter`` (``iqa_filter`` bound to ``m``), unless an
op registered with ``metric="m"`` is ``m``'s dedicated filter (``code_filter`` for ``codes``,
``pulc_blur_filter`` for ``pulc_clarity``): then that op *is* the filter and ``m_filter`` does not
exist (one name per op). The tagger ``m_tagger`` is the filter with ``keep_all=True``.

This module is layer 0: it imports neither scorers nor ops, only names them by string.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: what a registered name may be (it becomes part of op names, tag keys and config keys)
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: the op that takes its scorer as a ``metric`` parameter; ``<metric>_filter`` binds it
GENERIC_OP = "iqa_filter"
FILTER, TAGGER = "filter", "tagger"
BUILTIN = "paddlemix_iqa"


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Registry:
    """Names -> classes of one kind (``scorer`` or ``op``), loaded on first use.

    ``targets`` maps each name to its ``"module:Class"`` string until the class is
    imported, then to the class; ``meta`` holds the decorator's keywords.
    """

    def __init__(self, kind: str, package: str, stamp: Callable[[type, str, dict], None] | None = None):
        self.kind = kind
        self.package = package  # built-ins: every module of this package is read for decorators
        self.group = package  # the entry-point group has the package's name
        self.decorator = f"register_{kind}"
        self.targets: dict[str, str | type] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.origin: dict[str, str] = {}  # name -> "paddlemix_iqa", a distribution's name, or "runtime"
        self._stamp = stamp
        self._discovered = False
        self._lock = threading.RLock()

    # --- registering -------------------------------------------------------------------------
    def register(self, name: str, target: str | type | None = None, *, force: bool = False, **meta: Any):
        """Register ``target`` (a class or ``"module:Class"``) under ``name``; without a target,
        a class decorator. A name taken by another class is refused unless ``force``."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(
                f"{self.kind} name must be letters, digits and '_' (a letter first), not {name!r}"
            )
        if target is None:

            def decorator(cls: type) -> type:
                self._add(name, cls, force, meta, "runtime")
                return cls

            return decorator
        self._add(name, target, force, meta, "runtime")
        return target

    def _add(self, name: str, target: str | type, force: bool, meta: dict, origin: str) -> None:
        path = target if isinstance(target, str) else _path(target)
        builtin = path.startswith(self.package + ".")
        if not builtin:  # a plugin must not shadow a built-in it has not seen yet
            self._discover()
        with self._lock:
            current = self.targets.get(name)
            current_path = (
                None if current is None else current if isinstance(current, str) else _path(current)
            )
            if current is not None and current_path != path and not force:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered to {current_path} "
                    f"(from {self.origin.get(name, 'runtime')}); pass force=True to replace it"
                )
            self.targets[name] = target
            self.meta[name] = {**(self.meta.get(name, {}) if current_path == path else {}), **meta}
            if current_path != path or name not in self.origin:
                self.origin[name] = BUILTIN if builtin else origin
        if not isinstance(target, str) and self._stamp:
            self._stamp(target, name, self.meta[name])

    # --- finding -----------------------------------------------------------------------------
    def _discover(self) -> None:
        """Built-ins (read from source) then entry points; once per process (see :meth:`refresh`)."""
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for name, path, meta in _scan(self.package, self.decorator):
                current = self.targets.get(name)
                if current is None:
                    self.targets[name], self.meta[name], self.origin[name] = path, meta, BUILTIN
                elif (current if isinstance(current, str) else _path(current)) != path:
                    raise RuntimeError(f"two built-in {self.kind}s are named {name!r}: {path} and {current}")
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        try:
            points = importlib.metadata.entry_points(group=self.group)
        except Exception as exc:  # noqa: BLE001 - a broken distribution must not hide the built-ins
            log.warning("cannot read %s entry points: %s", self.group, exc)
            return
        for point in points:
            dist = getattr(point.dist, "name", None) or "an installed package"
            target = point.module + (f":{point.attr}" if point.attr else "")
            current = self.targets.get(point.name)
            if current is not None:
                if (current if isinstance(current, str) else _path(current)) != target:
                    log.warning(
                        "%s %r from %s is ignored: the name is taken by %s",
                        self.kind,
                        point.name,
                        dist,
                        self.origin.get(point.name, "runtime"),
                    )
                continue
            if not NAME.fullmatch(point.name):
                log.warning(
                    "%s entry point %r from %s is not a valid name; ignored", self.kind, point.name, dist
                )
                continue
            self.targets[point.name], self.meta[point.name], self.origin[point.name] = target, {}, dist

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test's or a reloaded plugin's registration); unknown names are ignored."""
        with self._lock:
            for table in (self.targets, self.meta, self.origin):
                table.pop(name, None)

    def refresh(self) -> None:
        """Read the entry points again (after installing or removing a plugin in a running process)."""
        with self._lock:
            self._discover()
            for name in [n for n, o in self.origin.items() if o not in (BUILTIN, "runtime")]:
                self.unregister(name)
            self._load_entry_points()

    def plugin(self, name: str) -> str | None:
        """The distribution an entry point of ``name`` came from; None for this package's own."""
        origin = self.origin.get(name)
        return None if origin in (None, BUILTIN, "runtime") else origin

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self.targets

    def names(self) -> list[str]:
        """Registered names whose module this installation has (nothing is imported but parents)."""
        self._discover()
        return sorted(name for name, target in list(self.targets.items()) if _importable(target))

    def get(self, name: str) -> type:
        """The class registered under ``name``, importing its module on first use."""
        self._discover()
        try:
            target = self.targets[name]
        except (KeyError, TypeError):
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        loaded = importlib.import_module(module)  # its decorators may register the class themselves
        if attr:
            cls = loaded
            for part in attr.split("."):
                cls = getattr(cls, part)
        else:
            cls = self.targets.get(name)
            if isinstance(cls, str) or cls is None:
                raise ImportError(
                    f"{self.kind} {name!r}: module {module} registered no class under that name"
                )
        if self.targets.get(name) is not cls:
            self._add(name, cls, True, {}, self.origin.get(name, "runtime"))
        return cls


def _importable(target: str | type) -> bool:
    if not isinstance(target, str):
        return True
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except (ImportError, ValueError):
        return False


def _scan(package: str, decorator: str) -> list[tuple[str, str, dict]]:
    """(name, "module:Class", keywords) of each top-level class decorated ``@<decorator>("name", ...)``
    in the package's modules, read with ``ast``. A module whose decorator arguments are not
    literals is imported instead, so its decorators register themselves."""
    spec = importlib.util.find_spec(package)
    folders = (spec.submodule_search_locations or []) if spec else []
    found: list[tuple[str, str, dict]] = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.py")):
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            except (OSError, SyntaxError, UnicodeDecodeError):
                importlib.import_module(module)  # let the import report what is wrong
                continue
            for node in tree.body:
                if not isinstance(node, ast.ClassDef):
                    continue
                for deco in node.decorator_list:
                    func = deco.func if isinstance(deco, ast.Call) else None
                    called = getattr(func, "id", None) or getattr(func, "attr", None)
                    if called != decorator:
                        continue
                    try:
                        (name,) = (ast.literal_eval(a) for a in deco.args)
                        meta = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
                    except ValueError:  # not literals (or not one name): the import registers it
                        importlib.import_module(module)
                        continue
                    if not isinstance(name, str):
                        raise TypeError(f"{path}: @{decorator} takes a name string, not {name!r}")
                    found.append((name, f"{module}:{node.name}", meta))
    return found


# --- the two registries ---------------------------------------------------------------------
def _stamp_scorer(cls: type, name: str, meta: dict) -> None:
    cls.name = name  # the registry name is the scorer's name: one place writes it


def _stamp_op(cls: type, name: str, meta: dict) -> None:
    if meta.get("metric"):  # a scorer's dedicated op: its tags and default name follow from here
        cls.metric, cls.op_name = meta["metric"], name


SCORERS = Registry("scorer", "paddlemix_iqa.scorers", _stamp_scorer)
OPS = Registry("op", "paddlemix_iqa.ops", _stamp_op)


def register_scorer(name: str, target: str | type | None = None, *, force: bool = False):
    """``@register_scorer("name")`` on a Scorer subclass (it sets the class's ``name``), or
    ``register_scorer("name", "pkg.module:Class")`` to register without importing."""
    return SCORERS.register(name, target, force=force)


def register_op(
    name: str, target: str | type | None = None, *, metric: str | None = None, force: bool = False
):
    """``@register_op("name")`` on an op class; ``metric="m"`` makes it scorer ``m``'s dedicated
    filter (it sets the class's ``metric`` and default name, and replaces ``m_filter``)."""
    return OPS.register(name, target, force=force, **({"metric": metric} if metric else {}))


def refresh() -> None:
    """Re-read both entry-point groups (a plugin installed after the registry was first used)."""
    SCORERS.refresh()
    OPS.refresh()


# --- op names: the one place the ``<metric>_filter`` / ``<metric>_tagger`` rule is written ----
def derived_name(metric: str, kind: str = FILTER) -> str:
    """``("laplacian", "tagger")`` -> ``"laplacian_tagger"`` (the inverse of :func:`split_op_name`)."""
    return f"{metric}_{kind}"


def split_op_name(name: str) -> tuple[str, str] | None:
    """``"laplacian_tagger"`` -> ``("laplacian", "tagger")``; None for a name without the suffix."""
    for kind in (FILTER, TAGGER):
        suffix = f"_{kind}"
        if isinstance(name, str) and name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], kind
    return None


def _dedicated() -> dict[str, str]:
    """Scorer name -> the op registered as its dedicated filter."""
    OPS._discover()
    for name, origin in list(OPS.origin.items()):  # a plugin op says its metric when imported
        if origin not in (BUILTIN, "runtime") and isinstance(OPS.targets.get(name), str):
            try:
                OPS.get(name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the other ops
                log.warning("op %r from %s cannot be imported: %s", name, origin, exc)
    return {meta["metric"]: name for name, meta in OPS.meta.items() if meta.get("metric")}


def filter_name(metric: str) -> str:
    """The op that filters by scorer ``metric``: its dedicated op, else ``<metric>_filter``."""
    return _dedicated().get(metric) or derived_name(metric, FILTER)


def tagger_name(metric: str) -> str:
    return derived_name(metric, TAGGER)


@dataclass(frozen=True)
class OpSpec:
    """How to build the op a config names: the registered op class, and what its name fixes."""

    name: str
    op: str  # the registered op whose class builds it
    metric: str | None  # the scorer the name binds (None: no scorer, or iqa_filter's ``metric=``)
    bound: dict[str, Any] = field(default_factory=dict)  # parameters the name fixes
    defaults: dict[str, Any] = field(default_factory=dict)  # parameters a config may still change

    @property
    def cls(self) -> type:
        return OPS.get(self.op)

    @property
    def fixed(self) -> set[str]:
        """Parameters a config may not pass: those the name fixes (``metric`` of a bound op)."""
        return set(self.bound) | ({"metric"} if self.metric else set())

    def build(self, **params: Any):
        clash = sorted(k for k in params if k in self.fixed and params[k] != self.bound.get(k, self.metric))
        if clash:
            raise ValueError(f"op {self.name!r} fixes {', '.join(clash)}; it cannot be set")
        params = {k: v for k, v in params.items() if k not in self.fixed}
        return self.cls(**{**self.defaults, **params, **self.bound})


def op_spec(name: str) -> OpSpec:
    """The op called ``name``: a registered op, or a scorer's filter or tagger (module docstring)."""
    if name in OPS:  # labelled by the name the config wrote; iqa_filter by its metric (laplacian_filter)
        defaults = {} if name == GENERIC_OP else {"name": name}
        return OpSpec(name, name, OPS.meta.get(name, {}).get("metric"), {}, defaults)
    parts = split_op_name(name)
    if parts and parts[0] in SCORERS:
        metric, kind = parts
        dedicated = _dedicated().get(metric)
        if kind == FILTER and dedicated:
            raise KeyError(f"unknown op {name!r}: scorer {metric!r} is filtered by {dedicated!r}")
        if dedicated:
            return OpSpec(name, dedicated, metric, {"keep_all": True}, {"name": name})
        bound = {"metric": metric, **({"keep_all": True} if kind == TAGGER else {})}
        return OpSpec(name, GENERIC_OP, metric, bound, {"name": name})
    raise KeyError(f"unknown op {name!r}; available: {', '.join(op_names())}")


def op_plugin(name: str) -> str | None:
    """The plugin distribution op ``name`` comes from (its scorer's, for a derived op); None: built in."""
    spec = op_spec(name)
    return OPS.plugin(spec.op) if spec.op != GENERIC_OP or not spec.metric else SCORERS.plugin(spec.metric)


def op_names() -> list[str]:
    """Every op a config can name: the registered ones and each scorer's filter and tagger."""
    names = set(OPS.names())
    dedicated = _dedicated()
    for metric in SCORERS.names():
        if metric not in dedicated:
            names.add(derived_name(metric, FILTER))
        names.add(derived_name(metric, TAGGER))
    return sorted(names)
