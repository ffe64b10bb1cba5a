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
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..ops import ImageOp, MetricFilter, build_op, list_ops, op_class
from ..scorers import get_scorer, scorer_params


class ConfigError(ValueError):
    """A pipeline config that cannot run; the message names the key and line."""


class Settings(BaseModel):
    """The global part of a pipeline config."""

    model_config = ConfigDict(extra="forbid")

    input: str
    image_root: str | None = None
    output_dir: str | None = None
    workers: int = Field(1, ge=1, le=256)
    batch_size: int = Field(32, ge=1, le=65536)
    report: bool = True
    progress: bool = True
    commit_seconds: float = Field(1.0, ge=0.0)  # at most this much work is redone after a crash
    process: list[Any] = Field(min_length=1)


class Step(BaseModel):
    """One validated op of the chain: its name, its parameters and where it was written."""

    name: str
    params: dict[str, Any]
    line: int | None = None
    host: bool = False  # a PaddleMIX DataCopilot dataset-level op, not one of ours


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

    def build_ops(self) -> list[ImageOp]:
        """Fresh op instances for the chain (image root filled in); never loads a model."""
        from .runner import HostOp

        ops = []
        for step in self.steps:
            if step.host:
                ops.append(HostOp(step.name, step.params, root=str(self.image_root)))
            else:
                ops.append(build_op(step.name, **{"root": str(self.image_root), **step.params}))
        return ops

    def fingerprint(self) -> str:
        """What must match for a resumed run to continue this one."""
        data = {
            "input": str(self.input.resolve()),
            "image_root": str(self.image_root.resolve()),
            "steps": [[s.name, s.params] for s in self.steps],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "input": str(self.input.resolve()),
            "image_root": str(self.image_root.resolve()),
            "output_dir": str(self.output_dir),
            "workers": self.workers,
            "batch_size": self.batch_size,
            "process": [{s.name: s.params} for s in self.steps],
        }


# --- YAML with line numbers -------------------------------------------------------------
def _lines(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path (("process", 2, "laplacian_filter", "min_score")) to its 1-based line."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = path + (key_node.value,)
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


def op_parameters(name: str, params: dict[str, Any] | None = None) -> list[str]:
    """Every parameter op ``name`` accepts: its ``__init__`` and the bases' it forwards ``**kwargs`` to,
    and for a metric op its scorer's too."""
    cls = op_class(name)
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        own, var_kw = _accepted(klass.__init__)
        names += own
        if not var_kw or klass is ImageOp:
            break
    if issubclass(cls, MetricFilter):
        metric = getattr(cls, "scorer_name", "") or (
            (params or {}).get("metric") if name == "iqa_filter" else name[: -len("_filter")]
        )
        names = [n for n in names if n != "metric" or name == "iqa_filter"]
        if metric:
            names += list(scorer_params(metric))
    return list(dict.fromkeys(names))


def _host_dataset():
    """PaddleMIX DataCopilot's MMDataset, or None when PaddleMIX is not installed."""
    try:
        from paddlemix.datacopilot.core import MMDataset
    except ImportError:
        return None
    return MMDataset


def _check_step(raw: Any, index: int, lines: dict, source: str | None, errors: list[str]) -> Step | None:
    at = ("process", index)
    where = _where(lines, at, source)
    if isinstance(raw, str):
        raw = {raw: None}
    if not isinstance(raw, dict) or len(raw) != 1:
        errors.append(f"{where}: each process step is one mapping '<op name>: {{params}}', got {raw!r}")
        return None
    ((name, params),) = raw.items()
    name = str(name)
    params = {} if params is None else params
    at = at + (name,)
    where = _where(lines, at, source)
    if not isinstance(params, dict):
        errors.append(f"{where}: parameters of {name!r} must be a mapping, got {params!r}")
        return None
    params = {str(k): v for k, v in params.items()}

    host = False
    if name in list_ops():
        try:
            accepted = op_parameters(name, params)
        except (ImportError, KeyError) as exc:
            errors.append(f"{where}: op {name!r} is not usable in this installation: {exc}")
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

    bad = [k for k in params if k not in accepted]
    for k in bad:
        errors.append(
            f"{_where(lines, at + (k,), source)}: op {name!r} has no parameter {k!r}{_suggest(k, accepted)}; "
            f"it accepts: {', '.join(accepted)}"
        )
    if bad:
        return None
    if not host:
        try:  # constructing checks ranges (thresholds, modes); it never loads a model
            op = build_op(name, **params)
            if isinstance(op, MetricFilter):
                get_scorer(op.metric, **op.scorer_params)
        except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:  # bad value, missing weights
            errors.append(f"{where}: op {name!r}: {exc}")
            return None
    return Step(name=name, params=params, line=lines.get(("process", index)), host=host)


def _pydantic_errors(exc: ValidationError, lines: dict, source: str | None) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting {key!r}{_suggest(str(loc[-1]), list(Settings.model_fields))}"
        else:
            msg = f"{key}: {err['msg']}"
        out.append(f"{_where(lines, loc, source)}: {msg}")
    return out


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``workers=2`` or ``laplacian_filter.min_score=0.3`` -> (key path, YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    return tuple(key.strip().split(".")), yaml.safe_load(value)


def _apply_overrides(data: dict, overrides: list[str]) -> None:
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 1:
            data[path[0]] = value
            continue
        if len(path) != 2:
            raise ConfigError(f"override {text!r}: use SETTING=VALUE or OP_NAME.PARAM=VALUE")
        op_name, param = path
        for i, step in enumerate(data.get("process") or []):
            step = {step: None} if isinstance(step, str) else step
            if isinstance(step, dict) and op_name in step:
                data["process"][i] = {op_name: {**(step[op_name] or {}), param: value}}
                break
        else:
            raise ConfigError(f"override {text!r}: no op {op_name!r} in the process list")


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a YAML pipeline; relative paths in it are relative to the current directory."""
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        lines = _lines(yaml.compose(text))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a pipeline config is a mapping with 'input' and 'process'")
    _apply_overrides(data, overrides or [])
    return validate(data, lines, source, default_output=Path("runs") / path.stem)


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
    if errors:
        raise ConfigError("\n".join(errors))
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
    )
