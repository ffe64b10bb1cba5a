"""Hugging Face ``datasets`` adapter: the pipeline's op chain as a batched ``Dataset.map`` function.

```python
from paddlemix_iqa.integrations.hf import scorer
ds = ds.map(scorer("default", root="/data/llava"), batched=True, batch_size=32, num_proc=2)
kept = ds.filter(lambda keep: keep, input_columns="iqa_keep")
```

``scorer`` takes a pipeline config (a :class:`~paddlemix_iqa.pipeline.config.PipelineConfig`, a YAML
path or a bundled config's name) or a list of metric names (each becomes ``<metric>_filter`` without
thresholds: it scores, and drops only images it cannot read). Each batch runs through the local
runner's :class:`~paddlemix_iqa.pipeline.runner.Chain` (decode once, ops in order, the first op that
drops a record ends its chain), so verdicts, reasons and scores are those of ``paddlemix-iqa run``.
Columns added (the same set on every batch, as Arrow needs):

- ``iqa_keep`` (bool) and ``iqa_reason`` (``"<op>: <why>"``, ``""`` when kept);
- per metric of the chain ``iqa_<metric>`` (native value) and ``iqa_<metric>_quality`` (normalised,
  higher is better; NaN for a metric without one); NaN where the record was dropped before that op or
  the image could not be read (never None: Arrow would type a column of Nones as null and refuse the
  next batch). Lists, one value per image, when the image column holds lists or the dataset has an
  ``images`` column (LLaVA's multi-image records): the column type must be the same in every batch.

The image column holds paths (resolved against ``root`` under the runner's rules: confined to it
unless the config allows otherwise) or the ``datasets.Image`` feature: a decoded PIL image opened from
a file is read from that file; bytes (``Image(decode=False)``, or a PIL image made in memory, saved
losslessly first) are written to a private temporary file and read by the one image loader, since that
loader reads files only. The chain is built lazily in each process (``num_proc`` works; nothing heavy
is pickled). Dataset-level steps (``dedup``) cannot run inside a per-batch ``map``: they are left out,
with a warning.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..ops.base import REJECT_KEY, TAG_PREFIX, image_refs
from ..pipeline.config import PipelineConfig, load_config, validate
from ..pipeline.runner import Chain

log = logging.getLogger(__name__)

KEEP, REASON, PREFIX = "iqa_keep", "iqa_reason", "iqa_"
NAN = float("nan")


def _config(config_or_metrics: Any, root: str | os.PathLike | None) -> PipelineConfig:
    if isinstance(config_or_metrics, PipelineConfig):
        config = config_or_metrics.model_copy(deep=True)
    elif isinstance(config_or_metrics, (str, os.PathLike)):
        config = load_config(config_or_metrics)
    elif isinstance(config_or_metrics, Sequence) and all(isinstance(m, str) for m in config_or_metrics):
        steps = [{f"{m}_filter": None} for m in config_or_metrics]
        config = validate({"input": "hf-dataset", "process": steps}, source="metrics")
        config.image_root = Path.cwd()
    else:
        raise TypeError(
            f"scorer() takes a PipelineConfig, a config path or name, or metric names; got {config_or_metrics!r}"
        )
    if root is not None:
        config.image_root = Path(root)
    skipped = [s.label or s.name for s in config.steps if s.dataset]
    if skipped:
        log.warning(
            "the dataset-level step(s) %s need every record at once and do not run inside Dataset.map; "
            "run the config with `paddlemix-iqa run` (--engine local or ray) to apply them",
            ", ".join(skipped),
        )
    return config


class Scorer:
    """The picklable map function :func:`scorer` returns (its chains are built on first call, per process)."""

    def __init__(self, config: PipelineConfig, image_column: str | None = None):
        self.config = config
        self.image_column = image_column
        self._chains: dict[bool, Chain] | None = None
        self._spool: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "image_column": self.image_column, "_chains": None, "_spool": None}

    def __del__(self) -> None:
        if getattr(self, "_spool", None):
            shutil.rmtree(self._spool, ignore_errors=True)

    def _chain(self, in_memory: bool) -> Chain:
        """The config's chain; for in-memory images (spooled files, files the Image feature opened) one whose
        ops may read outside image_root, since those paths are this adapter's, not the records'."""
        if self._chains is None:
            # no cv2.setNumThreads(1) here, unlike the runner's workers: in a process that datasets forked
            # from one whose OpenCV thread pool had run, that call never returns
            self._chains = {}
        if in_memory not in self._chains:
            config = self.config
            if in_memory:
                config = config.model_copy(update={"allow_outside_root": True})
            self._chains[in_memory] = Chain(
                config.build_ops(), config.image_root, allow_outside_root=config.allow_outside_root
            )
        return self._chains[in_memory]

    @property
    def metrics(self) -> list[str]:
        return sorted(self._chain(False).metrics)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        columns = list(batch)
        n = len(batch[columns[0]]) if columns else 0
        records = [{c: batch[c][i] for c in columns} for i in range(n)]
        key = self.image_column or next((k for k in ("image", "images") if k in batch), "image")
        spooled: list[str] = []
        in_memory = [self._to_paths(r, key, spooled) for r in records]
        results = {}
        try:
            for flag in (False, True):
                entries = [
                    (i, r) for i, (r, mem) in enumerate(zip(records, in_memory, strict=True)) if mem == flag
                ]
                if entries:
                    chain = self._chain(flag)
                    finished, alive, loaded = chain.run_head(entries)
                    if alive:
                        finished += chain.run_tail(alive, loaded)
                    results.update({r.idx: r for r in finished})
        finally:
            for path in spooled:
                Path(path).unlink(missing_ok=True)
        multi = (key in batch and _is_list(batch[key])) or (self.image_column is None and "images" in batch)
        return self._columns([results[i] for i in range(n)], multi)

    def _columns(self, results: list, multi: bool) -> dict[str, list]:
        out: dict[str, list] = {KEEP: [r.kept for r in results], REASON: []}
        for r in results:
            reason = r.record.get(REJECT_KEY) if isinstance(r.record, dict) else None
            out[REASON].append("" if r.kept else reason or f"{r.op}: {r.reason}")
        for metric in self.metrics:
            values, qualities = [], []
            for r in results:
                tag = r.record.get(TAG_PREFIX + metric) if isinstance(r.record, dict) else None
                raw_key = TAG_PREFIX + metric + "_raw"
                if isinstance(r.record, dict) and raw_key in r.record:
                    value, quality = r.record[raw_key], tag
                else:
                    value, quality = tag, None
                count = len(image_refs(r.record, self.image_column or "image")) if multi else 1
                values.append(_floats(value, multi, count))
                qualities.append(_floats(quality, multi, count))
            out[PREFIX + metric] = values
            out[PREFIX + metric + "_quality"] = qualities
        return out

    def _to_paths(self, record: dict, key: str, spooled: list[str]) -> bool:
        """Replace ``datasets.Image`` values of ``record[key]`` by file paths; True when it held any."""
        value = record.get(key)
        if isinstance(value, list):
            converted = [self._path_of(v, spooled) for v in value]
            if any(c is not None for c in converted):
                record[key] = [c if c is not None else v for c, v in zip(converted, value, strict=True)]
                return True
            return False
        converted = self._path_of(value, spooled)
        if converted is None:
            return False
        record[key] = converted
        return True

    def _path_of(self, value: Any, spooled: list[str]) -> str | None:
        """A file the loader can read for an Image-feature value; None for a plain path (or nothing)."""
        if isinstance(value, dict) and ("bytes" in value or "path" in value):
            if value.get("bytes") is None:
                return os.fspath(value["path"]) if value.get("path") else None
            return self._spool_bytes(bytes(value["bytes"]), Path(value.get("path") or "").suffix, spooled)
        if hasattr(value, "getexif") and hasattr(value, "save"):  # a PIL image
            filename = getattr(value, "filename", "")
            if filename and os.path.isfile(filename):
                return os.fspath(filename)
            import io

            buf = io.BytesIO()
            value.save(buf, format="PNG")  # lossless
            return self._spool_bytes(buf.getvalue(), ".png", spooled)
        return None

    def _spool_bytes(self, data: bytes, suffix: str, spooled: list[str]) -> str:
        if self._spool is None:
            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self._spool = tempfile.mkdtemp(prefix="paddlemix_iqa_hf_", dir=base)
        fd, path = tempfile.mkstemp(suffix=suffix[:16], dir=self._spool)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        spooled.append(path)
        return path


def _is_list(values: list) -> bool:
    return any(isinstance(v, (list, tuple)) for v in values)


def _floats(value: Any, multi: bool, count: int = 1) -> Any:
    """A float (NaN for none: a column whose first batch were all None would get Arrow's null type and the
    next batch would not fit), or for a multi-image column a list of them (``count``: the record's images,
    NaN each when the record was dropped before the op)."""
    if multi:
        items = value if isinstance(value, (list, tuple)) else [None] * count if value is None else [value]
        return [NAN if v is None else float(v) for v in items]
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return NAN if value is None else float(value)


def scorer(
    config_or_metrics: Any = "default",
    *,
    root: str | os.PathLike | None = None,
    image_column: str | None = None,
) -> Scorer:
    """A ``Dataset.map(..., batched=True)`` function that adds ``iqa_keep``, ``iqa_reason`` and score
    columns; ``root`` is where relative image paths are resolved (default: the config's image_root, or the
    current directory for metric names); ``image_column`` defaults to ``image`` (or ``images``)."""
    return Scorer(_config(config_or_metrics, root), image_column)
