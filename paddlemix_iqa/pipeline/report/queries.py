"""The report's data: everything it shows, read from ``run.json`` and ``state.sqlite`` (RunStore).

Memory stays bounded on a million-record run: rejected records are streamed
once (only the first ``per_group`` of each reason are kept), a metric's scores
are read in chunks into one numpy array at a time (``RunStore.metric_values``),
and only the rows a strip or the browser shows are fetched back by id.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...ops.base import image_refs
from ..outputs import RunStore

#: ops that reject a record before the chain runs (a broken input line, a path outside image_root)
PRE_CHAIN = ("bad_record", "input")
#: the browser's key for records whose reason is not among the groups shown one by one
OTHER = ("", "other reasons")
_CHUNK = 500  # ids per ``IN (...)`` query


def reason_kind(reason: str | None) -> str:
    """A reason without its numbers and paths, so reasons group: ``laplacian quality 0.03 < 0.2`` ->
    ``laplacian quality < 0.2``; ``missing: file not found: /data/a.jpg`` -> ``missing: file not found: <path>``."""
    text = reason or ""
    text = re.sub(r"^(.*?)\s-?[\d.]+(?:e[-+]?\d+)?\s([<>])", r"\1 \2", text)  # drop the measured value
    text = re.sub(r"\(\d+ bytes[^)]*\)", "", text)
    text = re.sub(r"(file not found: ).+$", r"\1<path>", text)  # the path may hold spaces
    text = _PATH.sub("<path>", text)  # "<path> is outside the image root <path>"
    return text.strip()


_PATH = re.compile(r"(?<![\w.<])(?:[A-Za-z]:)?[\\/][^\s:;,()]*")


# --- run.json ----------------------------------------------------------------------------
@dataclass
class RunInfo:
    """What run.json says: the config, the ops in chain order (with their threshold lines), the counts."""

    name: str
    summary: dict[str, Any]
    config: dict[str, Any]
    ops: list[dict[str, Any]]  # [{"op", "metric", "lines": [{"label", "x", "scale"}]}], chain order
    image_root: str | None
    allow_outside_root: bool

    @property
    def chain(self) -> list[str]:
        return [op["op"] for op in self.ops]

    def lines(self, metric: str) -> list[dict]:
        """Every threshold line of every op on ``metric``."""
        return [ln for op in self.ops if op.get("metric") == metric for ln in op.get("lines") or []]

    def metric_of(self, op: str | None) -> str | None:
        return next((o.get("metric") for o in self.ops if o["op"] == op), None)


def read_run(out_dir: Path) -> RunInfo:
    summary = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    config = summary.get("config") or {}
    ops = [
        {"op": str(o.get("op")), "metric": o.get("metric"), "lines": list(o.get("lines") or [])}
        for o in summary.get("ops") or []
    ]
    return RunInfo(
        name=out_dir.name,
        summary=summary,
        config=config,
        ops=ops,
        image_root=config.get("image_root"),
        allow_outside_root=bool(config.get("allow_outside_root", False)),
    )


# --- the funnel --------------------------------------------------------------------------
@dataclass
class FunnelStep:
    op: str
    metric: str | None
    records_in: int
    rejected: int
    lines: list[dict] = field(default_factory=list)
    before_chain: bool = False

    @property
    def records_out(self) -> int:
        return self.records_in - self.rejected


def funnel(info: RunInfo, counts: dict[str, Any]) -> list[FunnelStep]:
    """Records in, rejected by each op in chain order (checks before the chain first), what is left."""
    by_op = {str(k): v for k, v in counts["rejected_by_op"].items()}
    order = [op for op in PRE_CHAIN if op in by_op] + info.chain
    order += sorted(op for op in by_op if op not in order)  # an op the run.json does not list
    steps, left = [], counts["records"]
    for op in order:
        n = by_op.get(op, 0)
        entry = next((o for o in info.ops if o["op"] == op), None)
        steps.append(
            FunnelStep(
                op,
                entry["metric"] if entry else None,
                left,
                n,
                entry["lines"] if entry else [],
                before_chain=op in PRE_CHAIN,
            )
        )
        left -= n
    return steps


# --- rejected records --------------------------------------------------------------------
@dataclass
class Rejected:
    idx: int
    id: str
    op: str
    reason: str
    line: int  # its line in rejected.jsonl (0-based): rejected records are written in input order
    images: list[ImageScores] = field(default_factory=list)


@dataclass
class ImageScores:
    pos: int
    image: str | None
    scores: dict[str, tuple[float | None, float | None]]  # metric -> (value, quality)


@dataclass
class ReasonGroup:
    op: str
    kind: str
    count: int
    samples: list[Rejected]

    @property
    def more(self) -> int:
        return self.count - len(self.samples)


def rejected_groups(
    store: RunStore, per_group: int, max_groups: int, op_order: Sequence[str] = (), index_cap: int = 0
) -> tuple[list[ReasonGroup], Counter[tuple[str, str]], list[tuple[str, str, str, str]]]:
    """Rejected records grouped by (op, reason without numbers), with the first ``per_group`` of each;
    and the count of every (op, reason) group.

    One pass over the rejected records in input order. The ``max_groups`` largest groups are
    kept apart; the rest are pooled as one "other reasons" group (records of up to
    ``4 * max_groups`` groups are sampled for it). Groups come in chain order of their op,
    then largest first.

    Also returns (id, op, reason, reason kind) of up to ``index_cap`` rejected records not previewed, so
    every rejected id stays findable in the report without a thumbnail.
    """
    counts: Counter[tuple[str, str]] = Counter()
    index: list[tuple[int, str, str, str]] = []
    samples: dict[tuple[str, str], list[Rejected]] = {}
    line = 0
    cursor = store.db.execute("SELECT idx, id, op, reason FROM records WHERE kept = 0 ORDER BY idx")
    while rows := cursor.fetchmany(1 << 14):
        for idx, rid, op, reason in rows:
            key = (str(op), reason_kind(reason))
            counts[key] += 1
            kept = samples.get(key)
            if kept is None and len(samples) < 4 * max_groups:
                kept = samples[key] = []
            rid = str(idx if rid is None else rid)
            if kept is not None and len(kept) < per_group:
                kept.append(Rejected(idx, rid, str(op), reason or "", line))
            elif len(index) < index_cap:
                index.append((idx, rid, str(op), reason or ""))
            line += 1
    shown = {key for key, _ in counts.most_common(max_groups)}
    rank = {op: i for i, op in enumerate([*PRE_CHAIN, *op_order])}
    groups = [
        ReasonGroup(op, kind, n, samples.get((op, kind), []))
        for (op, kind), n in counts.items()
        if (op, kind) in shown
    ]
    groups.sort(key=lambda g: (rank.get(g.op, len(rank)), -g.count, g.kind))
    rest = [key for key in counts if key not in shown]
    if rest:
        pooled = sorted((r for key in rest for r in samples.get(key, [])), key=lambda r: r.idx)
        groups.append(ReasonGroup(*OTHER, sum(counts[k] for k in rest), pooled[:per_group]))
    shown_records = [r for g in groups for r in g.samples]
    attach_scores(store, shown_records)
    images_from_rejected(store.dir / "rejected.jsonl", [r for r in shown_records if not r.images])
    previewed = {r.idx for r in shown_records}
    unseen = [r for g in samples.values() for r in g if r.idx not in previewed]  # pooled beyond its cap
    index += [(r.idx, r.id, r.op, r.reason) for r in unseen]
    index.sort()
    return groups, counts, [(rid, op, reason, reason_kind(reason)) for _, rid, op, reason in index[:index_cap]]


def attach_scores(store: RunStore, records: Iterable[Rejected]) -> None:
    """Fill in each record's images and every score of each image."""
    by_idx = {r.idx: r for r in records}
    ids = list(by_idx)
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        rows = store.db.execute(
            "SELECT idx, pos, image, metric, value, quality FROM scores "
            f"WHERE idx IN ({','.join('?' * len(part))}) ORDER BY idx, pos, metric",
            part,
        )
        for idx, pos, image, metric, value, quality in rows:
            images = by_idx[idx].images
            if not images or images[-1].pos != pos:
                images.append(ImageScores(pos, image, {}))
            images[-1].scores[metric] = (value, quality)


def images_from_rejected(path: Path, records: Sequence[Rejected]) -> None:
    """The image references of records that have no score row (rejected before any op tagged them,
    e.g. for a path outside image_root), from their line of ``rejected.jsonl``; streamed, and only
    up to the last line wanted. A line whose id does not match is skipped."""
    wanted = {r.line: r for r in records}
    if not wanted or not path.is_file():
        return
    last = max(wanted)
    with open(path, "rb") as f:
        for n, text in enumerate(f):
            if n > last:
                break
            rec = wanted.get(n)
            if rec is None:
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if not isinstance(obj, dict) or str(obj.get("id", rec.idx)) != rec.id:
                continue
            refs = image_refs(obj, "image")
            rec.images = [
                ImageScores(pos, r if isinstance(r, str) else str(r), {}) for pos, r in enumerate(refs)
            ]


# --- metrics -----------------------------------------------------------------------------
def metrics(store: RunStore, info: RunInfo) -> list[str]:
    """The metrics with scores, in chain order of their ops (tag-only metrics after, by name)."""
    order = [o["metric"] for o in info.ops]
    return sorted(store.metrics(), key=lambda m: (order.index(m) if m in order else len(order), m))


def metric_table(store: RunStore, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(score rowids, native values, quality or None) of every scored image of ``metric``."""
    rowids, table = store.metric_values(metric)
    finite = np.isfinite(table[:, 0])
    if not finite.all():  # an infinite value cannot be binned or ranked
        rowids, table = rowids[finite], table[finite]
    quality = table[:, 1]
    if not len(quality) or not np.isfinite(quality).all():
        quality = None
    return rowids, table[:, 0], quality


@dataclass
class StripItem:
    value: float
    quality: float | None
    image: str | None
    kept: bool
    idx: int
    id: str
    pos: int
    n_images: int


def strip_items(store: RunStore, rowids: Sequence[int]) -> list[StripItem]:
    """The score rows ``rowids`` with their record's id and decision, in the order asked."""
    wanted = [int(i) for i in rowids]
    if not wanted:
        return []
    found = {
        row[0]: StripItem(
            value=row[1],
            quality=row[2],
            image=row[3],
            kept=bool(row[4]),
            idx=row[5],
            id=str(row[5] if row[6] is None else row[6]),
            pos=row[7],
            n_images=row[8] or 1,
        )
        for row in store.db.execute(
            "SELECT s.rowid, s.value, s.quality, s.image, r.kept, s.idx, r.id, s.pos, r.n_images FROM scores s "
            f"JOIN records r USING (idx) WHERE s.rowid IN ({','.join('?' * len(wanted))})",
            wanted,
        )
    }
    return [found[i] for i in wanted if i in found]
