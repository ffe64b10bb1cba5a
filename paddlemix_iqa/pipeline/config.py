"""YAML pipeline configs: global settings plus a data-juicer style ``process:`` list of ops.

Everything is checked before a single image is read: an unknown op, a typo'd
parameter or an out-of-range threshold is a :class:`ConfigError` that names the
key and its line in the YAML file.

```yaml
input: demo/records.jsonl      # JSONL or a JSON array of LLaVA-style records
image_root: demo               # relative image paths are joined to this (default: the input's folder)
output_dir: runs/default       # default: runs/<config file stem>
workers: 2                     # processes for CPU ops
batch_size: 32
process:
  - decodable_filter:
  - resolution_filter: {min_width: 64, min_height: 64}
  - laplacian_filter: {min_score: 0.2}
```

Configs are validated, not trusted: YAML aliases (``*name``, the "billion laughs"
expansion) and duplicate keys are refused; settings are strict (``workers: true``
is an error, not 1); op parameters are checked against the op's and scorer's type
annotations (strict: no bool-for-number), then the op is built, which checks
values against the ranges its and its scorer's signatures declare (``Annotated[int,
Bounds(1, 64)]``, :mod:`paddlemix_iqa.params`; ``paddlemix-iqa ops NAME`` prints the same
ranges) and refuses NaN or infinite thresholds.

An op's ``name:`` prefixes its rejection reasons (``res: width 50 < 64``) and must
be unique in the chain. Overrides address a step as ``NAME.PARAM=VALUE`` by that
name, or by its op name when only one step uses that op.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..dedup.step import Dedup
from ..models.weights import WeightsNotFound
from ..ops import ImageOp, MetricFilter, ScorerOp, build_op, list_ops
from ..ops.host import HostOp
from ..params import declared_bounds
from ..registry import op_spec
from ..scorers import scorer_class

#: a config larger than this is not a pipeline config (and is not read whole into memory)
MAX_CONFIG_BYTES = 1 << 20
#: what an op's ``name:`` may be: it prefixes reasons ("NAME: why") and addresses overrides (NAME.PARAM)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


class ConfigError(ValueError):
    """A pipeline config that cannot run; the message names the key and line."""


class MissingWeights(ConfigError):
    """The config is valid but a model it uses is not installed (the CLI's exit code 3, not 2)."""


class _WeightsError(str):
    """An error line that is a missing model, not a config mistake."""


class Settings(BaseModel):
    """The global part of a pipeline config; strict, so ``workers: true`` or ``report: 1`` are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: str = Field(min_length=1)
    image_root: str | None = None
    output_dir: str | None = None
    workers: int = Field(1, ge=1, le=256)
    batch_size: int = Field(32, ge=1, le=65536)
    report: bool = True
    progress: bool = True
    # at most this much work is redone after a crash
    commit_seconds: float = Field(1.0, ge=0.0, le=86400.0, allow_inf_nan=False)
    allow_outside_root: bool = False  # images must lie under image_root unless true
    input_format: Literal["jsonl", "json"] | None = None  # None: by the input's extension
    process: list[Any] = Field(min_length=1)


class Step(BaseModel):
    """One validated op of the chain: its name, its parameters and where it was written."""

    name: str
    params: dict[str, Any]
    line: int | None = None
    host: bool = False  # a PaddleMIX DataCopilot dataset-level op, not one of ours
    label: str | None = None  # the name its rejection reasons start with (``name:`` or the op's default)
    dataset: bool = False  # a dataset-level step run after every record (``dedup``), not an item op


class PipelineConfig(BaseModel):
    """A validated pipeline: settings with paths resolved, and the op chain."""

    input: Path
    image_root: Path
    output_dir: Path
    workers: int
    batch_size: int
    report: bool
    progress: bool
    commit_seconds: float
    steps: list[Step]
    source: str | None = None  # the YAML file it came from
    allow_outside_root: bool = False
    input_format: Literal["jsonl", "json"] | None = None

    def build_ops(self) -> list[ImageOp]:
        """Fresh op instances for the chain (image root filled in); never loads a model."""
        ops = []
        for step in self.steps:
            if step.dataset:
                continue
            if step.host:
                ops.append(HostOp(step.name, step.params, root=str(self.image_root)))
            else:
                defaults = {"root": str(self.image_root), "allow_outside_root": self.allow_outside_root}
                ops.append(build_op(step.name, **defaults, **step.params))
        return ops

    def build_dedup(self) -> Dedup | None:
        """The ``dedup`` step's settings, or None when the config has none."""
        step = next((s for s in self.steps if s.dataset), None)
        if step is None:
            return None
        dedup = Dedup(**step.params)
        # embeddings re-read the images: from the same root, under the same rule, as the ops
        dedup.root, dedup.allow_outside_root = str(self.image_root), self.allow_outside_root
        return dedup

    def fingerprint(self) -> str:
        """What must match for a resumed run to continue this one."""
        data = {
            "input": str(self.input.resolve()),
            "image_root": str(self.image_root.resolve()),
            "steps": [[s.name, s.params] for s in self.steps],
            "allow_outside_root": self.allow_outside_root,
            "input_format": self.input_format,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "input": str(self.input.resolve()),
            "input_format": self.input_format,
            "image_root": str(self.image_root.resolve()),
            "allow_outside_root": self.allow_outside_root,
            "output_dir": str(self.output_dir),
            "workers": self.workers,
            "batch_size": self.batch_size,
            "process": [{s.name: s.params} for s in self.steps],
        }


# --- YAML with line numbers -------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and duplicate keys, naming the line (``source`` is the file name).

    Aliases are refused, not bounded: nine nested ``*a`` lists ("billion laughs")
    expand a 1 KB file to gigabytes, and a pipeline config never needs one.
    """

    #: nesting deeper than this is refused before Python's recursion limit is (slowly) reached
    MAX_DEPTH = 32

    def __init__(self, text: str, source: str):
        super().__init__(text)
        self.source = source
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(
                f"{self.source} line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) "
                "are not allowed in pipeline configs; write the value out"
            )
        if self.depth >= self.MAX_DEPTH:
            raise ConfigError(
                f"{self.source} line {event.start_mark.line + 1}: nested more than {self.MAX_DEPTH} levels deep"
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise ConfigError(
                        f"{self.source} line {line}: duplicate key {key!r} (first on line {first}); "
                        "YAML would silently keep only the last one"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _parse(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The YAML document and its line map, from one composition (so the text is parsed once)."""
    loader = _Loader(text, source)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, _lines(node)


def _lines(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path (("process", 2, "laplacian_filter", "min_score")) to its 1-based line."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = path + (key_node.value if isinstance(key_node, yaml.ScalarNode) else None,)
            out[sub] = key_node.start_mark.line + 1
            _lines(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _lines(item, path + (i,), out)
    return out


def _where(lines: dict[tuple, int], path: tuple, source: str | None) -> str:
    """``"default.yaml line 12"`` for the closest known ancestor of ``path``."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return f"{source or 'config'} line {lines[path[:n]]}"
    return source or "config"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- op parameter checks -----------------------------------------------------------------
def _accepted(func: Any, skip: int = 1) -> tuple[list[str], bool]:
    """Keyword names a callable accepts (after ``skip`` leading params), and whether it takes **kwargs."""
    params = list(inspect.signature(func).parameters.values())[skip:]
    names = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _signatures(name: str, params: dict[str, Any] | None = None) -> list[Any]:
    """The ``__init__`` methods that take op ``name``'s parameters, most derived first: the op
    class's and the bases' it forwards ``**kwargs`` to, and for a scorer's op the scorer's."""
    spec = op_spec(name)
    cls = spec.cls
    inits = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        inits.append(klass.__init__)
        if not _accepted(klass.__init__)[1] or klass is ImageOp:
            break
    if issubclass(cls, ScorerOp):
        metric = spec.metric or (params or {}).get("metric")  # the name's scorer, or iqa_filter's metric:
        if metric:
            inits.append(scorer_class(metric).__init__)
    return inits


def op_parameters(name: str, params: dict[str, Any] | None = None) -> list[str]:
    """Every parameter op ``name`` accepts in a config: its ``__init__`` and the bases' it forwards
    ``**kwargs`` to, and for a metric op its scorer's too (``allow_outside_root`` is a pipeline setting)."""
    names: list[str] = []
    for init in _signatures(name, params):
        names += _accepted(init)[0]
    fixed = {"allow_outside_root"} | op_spec(name).fixed  # and what the op's name fixes (metric, keep_all)
    return [n for n in dict.fromkeys(names) if n not in fixed]


#: what the threshold parameters every op shares mean, for ``paddlemix-iqa ops NAME`` (their ranges
#: come from the signatures' ``Bounds``)
_MEANINGS = {
    "min_score": "quality, higher is better; keep at or above",
    "max_score": "quality; keep at or below",
    "min_value": "the scorer's native value; keep at or above",
    "max_value": "the scorer's native value; keep at or below",
    "threshold": "probability; drop at or above",
    "keep_all": "true: tag only, never drop",
    "mode": "'any' or 'all' images of a multi-image record must pass",
    "name": "label of this step's rejections and overrides (letters, digits, _ or -)",
    "key": "the record field holding the image(s)",
    "root": "set by the pipeline's image_root",
}


def _plain(annotation: str) -> str:
    """An annotation's text without its ``Annotated[...]`` metadata: ``Annotated[int, Bounds(1, 64)]`` -> ``int``."""
    if not annotation.startswith("Annotated["):
        return annotation
    depth = 0
    for i, ch in enumerate(annotation[len("Annotated[") :], len("Annotated[")):
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "," and depth == 0:
            return annotation[len("Annotated[") : i].strip()
    return annotation


def op_help(name: str) -> tuple[str, list[tuple[str, str, str, str, str]]]:
    """The op's one-line description and, per config parameter, (name, type, default, valid range,
    meaning); the range is the one the constructor checks (``Bounds`` in its signature), "" when none."""
    spec = op_spec(name)
    described = scorer_class(spec.metric) if spec.metric and spec.cls is MetricFilter else spec.cls
    doc = (inspect.getdoc(described) or "").split("\n\n")[0].replace("\n", " ")
    allowed = set(op_parameters(name))
    rows: dict[str, tuple[str, str, str, str, str]] = {}
    for init in _signatures(name):
        declared = declared_bounds(init)
        for pname, p in inspect.signature(init).parameters.items():
            if pname in allowed and pname not in rows:
                kind = _plain(p.annotation) if isinstance(p.annotation, str) else ""
                default = "required" if p.default is inspect.Parameter.empty else repr(p.default)
                valid = declared[pname].describe() if pname in declared else ""
                rows[pname] = (pname, kind or "-", default, valid, _MEANINGS.get(pname, ""))
    return doc, list(rows.values())


@functools.lru_cache(maxsize=256)
def _cached_adapter(hint: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(hint)
    except Exception:  # noqa: BLE001 - an annotation pydantic cannot check is left to the constructor
        return None


def _adapter(hint: Any) -> TypeAdapter | None:
    try:
        return _cached_adapter(hint)
    except TypeError:  # an unhashable annotation: not worth checking
        return None


def _annotations(name: str, params: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Parameter -> (type hint, its source text), from the most derived signature that declares it."""
    out: dict[str, tuple[Any, str]] = {}
    for init in _signatures(name, params):
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
            continue
        for pname, p in inspect.signature(init).parameters.items():
            if pname in hints and pname not in out:
                text = (
                    _plain(p.annotation)
                    if isinstance(p.annotation, str)
                    else getattr(p.annotation, "__name__", "")
                )
                out[pname] = (hints[pname], text)
    return out


def _type_errors(
    label: str, params: dict[str, Any], types: dict[str, tuple[Any, str]], at: tuple, lines: dict, source: str | None
) -> list[str]:
    """Strict type checks (pydantic) of ``params`` against ``types`` (parameter -> (type hint, its text)):
    ``min_score: true``, ``tiles: "4"``, ``mode: 3``; ``label`` names the step in the messages."""
    errors = []
    for key, value in params.items():
        hint, text = types.get(key, (None, ""))
        adapter = None if hint is None else _adapter(hint)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError:
            errors.append(
                f"{_where(lines, at + (key,), source)}: {label}: parameter {key!r} must be "
                f"{text or hint}, not {value!r}"
            )
    return errors


def _host_dataset():
    """PaddleMIX DataCopilot's MMDataset, or None when PaddleMIX is not installed."""
    try:
        from paddlemix.datacopilot.core import MMDataset
    except ImportError:
        return None
    return MMDataset


def _blame(exc: Exception, params: dict[str, Any]) -> str:
    """The error's text; when it names none of the step's parameters and the step has one, that one is added."""
    text = str(exc) if isinstance(exc, (ValueError, FileNotFoundError)) else f"{type(exc).__name__}: {exc}"
    named = [k for k in params if re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", text)]
    return text if named or len(params) != 1 else f"{text} (parameter {next(iter(params))!r})"


def _check_step(raw: Any, index: int, lines: dict, source: str | None, errors: list[str]) -> Step | None:
    at = ("process", index)
    where = _where(lines, at, source)
    if isinstance(raw, str):
        raw = {raw: None}
    if not isinstance(raw, dict) or len(raw) != 1:
        errors.append(f"{where}: each process step is one mapping '<op name>: {{params}}', got {raw!r}")
        return None
    ((name, params),) = raw.items()
    if not isinstance(name, str):
        errors.append(f"{where}: an op name is a string, got {name!r}")
        return None
    params = {} if params is None else params
    at = at + (name,)
    where = _where(lines, at, source)
    if not isinstance(params, dict):
        errors.append(f"{where}: parameters of {name!r} must be a mapping, got {params!r}")
        return None
    params = {str(k): v for k, v in params.items()}

    if name == DEDUP_STEP:
        return _check_dedup(params, index, at, lines, source, errors)
    host = False
    if name in list_ops():
        try:
            accepted = op_parameters(name, params)
        except ImportError as exc:
            errors.append(f"{where}: op {name!r} is not usable in this installation: {exc}")
            return None
        except (KeyError, TypeError) as exc:  # iqa_filter's metric: not a scorer name
            errors.append(f"{_where(lines, at + ('metric',), source)}: op {name!r}: metric: {exc.args[0]}")
            return None
    else:
        dataset = _host_dataset()
        func = getattr(dataset, name, None) if dataset is not None else None
        if func is None:
            hint = _suggest(name, list_ops())
            if dataset is None:
                hint += (
                    "; PaddleMIX is not installed, so DataCopilot ops cannot be chained "
                    "(pip install git+https://github.com/PaddlePaddle/PaddleMIX)"
                )
            errors.append(f"{where}: unknown op {name!r}{hint}; paddlemix-iqa ops: {', '.join(list_ops())}")
            return None
        host = True
        accepted, var_kw = _accepted(func)
        if var_kw:
            accepted = accepted + list(params)

    if not host and "allow_outside_root" in params:  # the runner admits records by the global setting
        errors.append(
            f"{_where(lines, at + ('allow_outside_root',), source)}: op {name!r}: allow_outside_root "
            "is a pipeline setting; set it once at the top level of the config"
        )
        return None
    if _unknown_params(params, accepted, f"op {name!r}", at, lines, source, errors):
        return None
    label = name
    if not host:
        typed = _type_errors(f"op {name!r}", params, _annotations(name, params), at, lines, source)
        label = params.get("name")
        if not typed and label is not None and not NAME_PATTERN.fullmatch(label):
            typed.append(
                f"{_where(lines, at + ('name',), source)}: op {name!r}: name {label!r} must be letters, digits, "
                "'_' or '-' (it starts the rejection reasons and addresses overrides as NAME.PARAM)"
            )
        if typed:
            errors.extend(typed)
            return None
        try:  # constructing checks values (thresholds, modes, sizes) and builds the scorer; it loads no model
            label = build_op(name, **params).name
        except WeightsNotFound as exc:
            errors.append(_WeightsError(f"{where}: op {name!r}: {exc}"))
            return None
        except Exception as exc:  # noqa: BLE001 - whatever a bad value raises, it is a config error
            errors.append(f"{where}: op {name!r}: {_blame(exc, params)}")
            return None
    return Step(name=name, params=params, line=lines.get(("process", index)), host=host, label=label)


def _unknown_params(
    params: dict, accepted, what: str, at: tuple, lines: dict, source: str | None, errors: list
) -> bool:
    """Add an error (with the closest accepted name) for each parameter ``what`` does not accept;
    True when there was one."""
    bad = [k for k in params if k not in accepted]
    for k in bad:
        errors.append(
            f"{_where(lines, at + (k,), source)}: {what} has no parameter {k!r}{_suggest(k, accepted)}; "
            f"it accepts: {', '.join(accepted)}"
        )
    return bool(bad)


#: the dataset-level step (it sees all records, so it runs after the per-image steps)
DEDUP_STEP = "dedup"


def _check_dedup(
    params: dict, index: int, at: tuple, lines: dict, source: str | None, errors: list
) -> Step | None:
    """Check a ``dedup`` step's parameters against :class:`Dedup`'s signature (types, then ranges)."""
    accepted = _accepted(Dedup.__init__)[0]
    if _unknown_params(params, accepted, "step 'dedup'", at, lines, source, errors):
        return None
    hints = typing.get_type_hints(Dedup.__init__)
    types = {key: (hint, _plain(str(hint))) for key, hint in hints.items()}
    typed = _type_errors("step 'dedup'", params, types, at, lines, source)
    if typed:
        errors.extend(typed)
        return None
    try:
        dedup = Dedup(**params)
        label = dedup.name
        if dedup.embedder is not None:  # load the user's model now: a broken export fails before any image
            dedup.embedder.check()
    except WeightsNotFound as exc:  # the embeddings model's folder: a missing model, as for ops
        errors.append(_WeightsError(f"{_where(lines, at + ('embeddings',), source)}: step 'dedup': {exc}"))
        return None
    except Exception as exc:  # noqa: BLE001 - whatever a bad value raises, it is a config error
        errors.append(f"{_where(lines, at, source)}: step 'dedup': {_blame(exc, params)}")
        return None
    return Step(name=DEDUP_STEP, params=params, line=lines.get(("process", index)), label=label, dataset=True)


def _unscored_keep(steps: list[Step | None], lines: dict, source: str | None) -> list[str]:
    """A ``keep`` metric of the dedup step that no step before it scores would rank nothing."""
    step = steps[-1]
    assert step is not None
    scored = {build_op(s.name, **s.params).metric for s in steps[:-1] if s is not None and not s.host}
    index = len(steps) - 1
    return [
        f"{_where(lines, ('process', index, DEDUP_STEP, 'keep'), source)}: step 'dedup': keep: {metric!r} is "
        f"not scored by a step before it (scored: {', '.join(sorted(scored)) or 'none'}); add its tagger "
        f"({metric}_tagger) or filter before dedup"
        for metric in Dedup(**step.params).metrics
        if metric not in scored
    ]


def _check_names(steps: list[Step | None], source: str | None) -> list[str]:
    """Two steps with the same name would make reasons (and overrides) ambiguous."""
    first: dict[str, Step] = {}
    errors = []
    for step in steps:
        if step is None:
            continue
        other = first.setdefault(step.label or step.name, step)
        if other is not step:
            where = f"{source or 'config'} line {step.line}" if step.line else source or "config"
            both = f" (lines {other.line} and {step.line})" if step.line else ""
            errors.append(
                f"{where}: two steps are named {other.label!r}{both}; "
                "give one a different `name:` so reasons tell them apart"
            )
    return errors


def _pydantic_errors(exc: ValidationError, lines: dict, source: str | None) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting {key!r}{_suggest(str(loc[-1]), list(Settings.model_fields))}"
        else:
            msg = f"{key}: {err['msg']}"
            if err["type"] != "missing":
                msg += f", not {err['input']!r}"
        out.append(f"{_where(lines, loc, source)}: {msg}")
    return out


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``workers=2`` or ``laplacian_filter.min_score=0.3`` -> (key path, YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    parsed, _ = _parse(value, f"override {text!r}")
    return tuple(key.strip().split(".")), parsed


def _step_index(process: list, target: str, text: str) -> int:
    """The step an override ``TARGET.PARAM`` means: the one named TARGET (its ``name:``, else its op
    name), else the only step of op TARGET."""
    named, by_op = [], []
    for i, step in enumerate(process):
        step = {step: None} if isinstance(step, str) else step
        if not isinstance(step, dict) or len(step) != 1:
            continue
        ((op, params),) = step.items()
        label = params.get("name") if isinstance(params, dict) else None
        if (label or op) == target:
            named.append(i)
        elif op == target:
            by_op.append(i)
    candidates = named or by_op
    if not candidates:
        raise ConfigError(f"override {text!r}: no op {target!r} in the process list")
    if len(candidates) > 1:
        raise ConfigError(
            f"override {text!r}: {len(candidates)} steps match {target!r}; give them distinct `name:` values "
            "and address one as NAME.PARAM"
        )
    return candidates[0]


def _apply_overrides(data: dict, overrides: list[str]) -> None:
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 1:
            data[path[0]] = value
            continue
        if len(path) != 2:
            raise ConfigError(f"override {text!r}: use SETTING=VALUE or OP_NAME.PARAM=VALUE")
        target, param = path
        process = data.get("process")
        if not isinstance(process, list):
            raise ConfigError(f"override {text!r}: the config's 'process' is not a list of ops")
        i = _step_index(process, target, text)
        step = {process[i]: None} if isinstance(process[i], str) else process[i]
        ((op, params),) = step.items()
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"override {text!r}: parameters of {op!r} must be a mapping, got {params!r}")
        process[i] = {op: {**(params or {}), param: value}}


def _read(path: Path) -> str:
    """The config's text; a directory, a huge file or non-UTF-8 bytes are config errors."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ConfigError(f"cannot read config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path.name}: larger than {MAX_CONFIG_BYTES} bytes; not a pipeline config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path.name}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from None


#: the configs that ship inside the package (``paddlemix-iqa run default`` works from any folder)
BUNDLED = Path(__file__).resolve().parents[1] / "configs"


def bundled_configs() -> dict[str, Path]:
    """Name -> file of every config shipped with the package."""
    return {p.stem: p for p in sorted(BUNDLED.glob("*.yaml"))}


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config file: an existing path, else the bundled config of that name (``default``, ``pulc``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    bundled = bundled_configs()
    key = path.name.removesuffix(".yaml").removesuffix(".yml")
    if path.parent == Path(".") and key in bundled:
        return bundled[key]
    raise ConfigError(
        f"no config file {str(path)!r} and no bundled config of that name{_suggest(key, list(bundled))}; "
        f"bundled: {', '.join(bundled)} (paddlemix-iqa configs)"
    )


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a YAML pipeline (a path, or a bundled config's name); relative paths in it
    are relative to the current directory."""
    path = find_config(path)
    source = path.name
    data, lines = _parse(_read(path), source)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{source}: a pipeline config is a mapping with 'input' and 'process', got {got}")
    _apply_overrides(data, overrides or [])
    return validate(data, lines, source, default_output=Path("runs") / path.stem)


def _max_pixels_error() -> str | None:
    """PADDLEMIX_IQA_MAX_PIXELS is read per image; a bad value is reported now, as a config error."""
    from .. import io as iqa_io

    try:
        iqa_io.max_pixels_limit()
    except ValueError as exc:
        return str(exc) if "PADDLEMIX_IQA_MAX_PIXELS" in str(exc) else f"PADDLEMIX_IQA_MAX_PIXELS: {exc}"
    return None


def validate(
    data: dict, lines: dict | None = None, source: str | None = None, default_output: Path | None = None
) -> PipelineConfig:
    """Check a config mapping (settings with pydantic, ops against the registry); collect every error."""
    lines = lines or {}
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_pydantic_errors(exc, lines, source))) from None
    errors: list[str] = []
    steps = [_check_step(raw, i, lines, source, errors) for i, raw in enumerate(settings.process)]
    errors += _check_names(steps, source)
    dataset = [i for i, s in enumerate(steps) if s is not None and s.dataset]
    if dataset and (len(dataset) > 1 or dataset[-1] != len(steps) - 1):
        errors.append(
            f"{source or 'config'}: 'dedup' must be the last step, once: it runs after the per-image steps "
            "(so a blurred copy is filtered out before it could be kept over a sharp one)"
        )
    elif dataset and not errors:
        errors += _unscored_keep(steps, lines, source)
    pixels = _max_pixels_error()
    if pixels:
        errors.append(pixels)
    if errors:
        weights_only = all(isinstance(e, _WeightsError) for e in errors)
        raise (MissingWeights if weights_only else ConfigError)("\n".join(errors))
    input_path = Path(settings.input).expanduser()
    return PipelineConfig(
        input=input_path,
        image_root=Path(settings.image_root).expanduser() if settings.image_root else input_path.parent,
        output_dir=Path(settings.output_dir or default_output or Path("runs") / "run").expanduser(),
        workers=settings.workers,
        batch_size=settings.batch_size,
        report=settings.report,
        progress=settings.progress,
        commit_seconds=settings.commit_seconds,
        steps=[s for s in steps if s is not None],
        source=source,
        allow_outside_root=settings.allow_outside_root,
        input_format=settings.input_format,
    )
