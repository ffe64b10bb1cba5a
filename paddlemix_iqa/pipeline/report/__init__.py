"""One self-contained HTML report per run, for a curator asking "what did this run throw away, and was it right?".

Three parts: :mod:`.queries` reads the run (``run.json``, ``state.sqlite``) with bounded
memory, :mod:`.plots` draws the histograms (matplotlib, Agg), and the Jinja2 template
``templates/report.html.j2`` lays out the page. This module joins them and reads the
thumbnails. Everything (plots, thumbnails, the filter script) is inlined, so the file
opens offline and can be mailed or archived alone.

The page: counts; a per-op funnel (records in, rejected by each op in chain order, kept);
rejections per op and reason; a browser of rejected records (thumbnail, id, op, reason,
every score; filter by op, reason or id; the first ``PER_REASON`` of each reason plus a
count of the rest); and per metric a histogram with the thresholds and strips of the
worst, borderline and best images, ranked by :mod:`.directions`.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...io import ImageLoadError, load_image
from ..outputs import RunStore, atomic_write
from . import plots, queries
from .directions import badness, direction, distance_to_lines
from .queries import reason_kind

__all__ = ["reason_kind", "write_report"]

log = logging.getLogger(__name__)

STRIP = 8  # thumbnails per strip
THUMB = 128  # thumbnail long side, pixels (8 fit a row of a 1200-pixel window)
PER_REASON = 50  # rejected records shown per reason in the browser
INDEX_CAP = 100_000  # rejected records beyond the previews that the id search still finds (id, op, reason)
MAX_REASONS = 40  # reasons shown apart in the browser; the rest are pooled as "other reasons"
MAX_IMAGES = 4  # thumbnails per record in the browser
OP_REASONS = 5  # reasons named for an op that rejected without a threshold line
TEMPLATE = "report.html.j2"


class Thumbs:
    """JPEG thumbnails as base64, read under the run's image_root rule (never a file the run refused)."""

    def __init__(self, root: str | None, allow_outside_root: bool):
        self.root, self.allow_outside_root = root, allow_outside_root
        self.cache: dict[str, dict[str, str | None]] = {}

    def __call__(self, path: str | None) -> dict[str, str | None]:
        """``{"data": base64 or None, "why": why there is no preview}``."""
        if not path:
            return {"data": None, "why": "no image"}
        if path not in self.cache:
            self.cache[path] = self._read(path)
        return self.cache[path]

    def _read(self, path: str) -> dict[str, str | None]:
        from PIL import Image

        try:
            pixels = load_image(
                path, root=self.root, max_side=THUMB, allow_outside_root=self.allow_outside_root
            )
        except ImageLoadError as exc:
            return {"data": None, "why": exc.code.replace("_", " ")}
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
        return {"data": base64.b64encode(buf.getvalue()).decode("ascii"), "why": None}


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "no value"
    return f"{x:.4g}"


def _score_text(value: float | None, quality: float | None) -> str:
    return _num(value) + (f" · q {quality:.3f}" if quality is not None else "")


def _lines_text(lines: list[dict]) -> str:
    return ", ".join(
        dict.fromkeys(f"{ln['label']}" + (" (quality)" if ln["scale"] == "quality" else "") for ln in lines)
    )


@dataclass
class _Context:
    info: queries.RunInfo
    thumbs: Thumbs
    reasons_by_op: dict[str, list[tuple[str, int]]]
    rejected_by_op: dict[str, int]

    def metric_rank(self, metric: str) -> tuple[int, str]:
        """Sort key: metrics in chain order of their ops, then the rest by name."""
        order = [o["metric"] for o in self.info.ops]
        return (order.index(metric) if metric in order else len(order), metric)

    def rule(self, op: str, lines: list[dict]) -> dict[str, Any]:
        """What an op rejects on: its thresholds, or (no threshold lines) its reasons."""
        if lines:
            return {"kind": "thresholds", "text": _lines_text(lines)}
        reasons = self.reasons_by_op.get(op, [])
        if reasons:
            return {"kind": "reasons", "reasons": reasons}
        return {"kind": "none", "text": "no numeric threshold; rejected nothing"}


def _browser(groups: list[queries.ReasonGroup], ctx: _Context) -> list[dict[str, Any]]:
    view = []
    for i, group in enumerate(groups):
        records = []
        for rec in group.samples:
            op_metric = ctx.info.metric_of(rec.op)
            images = [
                {
                    "path": img.image,
                    "thumb": ctx.thumbs(img.image),
                    "scores": [
                        {"metric": m, "text": _score_text(v, q), "decisive": m == op_metric}
                        for m, (v, q) in sorted(img.scores.items(), key=lambda kv: ctx.metric_rank(kv[0]))
                    ],
                }
                for img in rec.images[:MAX_IMAGES]
            ]
            records.append(
                {
                    "idx": rec.idx,
                    "id": rec.id,
                    "op": rec.op,
                    "reason": rec.reason,
                    "images": images,
                    "more_images": max(0, len(rec.images) - MAX_IMAGES),
                }
            )
        view.append(
            {
                "key": f"g{i}",
                "op": group.op,
                "kind": group.kind,
                "count": group.count,
                "more": group.more,
                "records": records,
            }
        )
    return view


def _strip_cells(store: RunStore, rowids: np.ndarray, ctx: _Context) -> list[dict[str, Any]]:
    return [
        {
            "id": item.id,
            "idx": item.idx,
            "which": f"image {item.pos + 1} of {item.n_images}" if item.n_images > 1 else "",
            "path": item.image,
            "thumb": ctx.thumbs(item.image),
            "text": _score_text(item.value, item.quality),
            "kept": item.kept,
        }
        for item in queries.strip_items(store, rowids)
    ]


def _metric_section(
    store: RunStore, metric: str, ctx: _Context, png_dir: Path | None
) -> dict[str, Any] | None:
    rowids, values, quality = queries.metric_table(store, metric)
    if not len(rowids):
        return None
    lines = ctx.info.lines(metric)
    way = direction(metric, quality is not None)
    key = quality if way.scale == "quality" else values
    ops = [
        {"op": o["op"], "rejected": ctx.rejected_by_op.get(o["op"], 0), "rule": ctx.rule(o["op"], o["lines"])}
        for o in ctx.info.ops
        if o.get("metric") == metric
    ]
    section: dict[str, Any] = {
        "metric": metric,
        "ops": ops,
        "direction": way.describe(metric),
        "count": len(values),
        "median": _num(float(np.median(values))),
        "p5": _num(float(np.percentile(values, 5))),
        "p95": _num(float(np.percentile(values, 95))),
        "plot": None,
        "constant": None,
        "strips": [],
    }
    if values.min() == values.max() and (quality is None or quality.min() == quality.max()):
        section["constant"] = _num(float(values[0]))  # nothing to rank: no histogram, no strips
        return section
    section["plot"] = plots.histogram(metric, values, quality, lines, way, png_dir)
    bad = badness(way, key, lines)
    order = np.argsort(-bad, kind="stable")  # worst first
    worst, best = order[:STRIP], order[::-1][:STRIP]
    # an image tied with the best is not "worst" (most images without a code), nor the reverse
    strips = [("worst", worst[bad[worst] > bad.min()])]
    near = distance_to_lines(way, values, quality, lines)
    if near is not None:
        closest = np.argsort(near, kind="stable")[:STRIP]
        strips.append(("borderline", closest[np.argsort(-bad[closest], kind="stable")]))
    strips.append(("best", best[bad[best] < bad.max()]))
    del order, near, bad
    section["strips"] = [
        {"name": name, "cells": _strip_cells(store, rowids[sel], ctx)} for name, sel in strips
    ]
    return section


DEDUP_GROUPS = 30  # duplicate groups shown (the largest first)


def _dedup_section(store: RunStore, ctx: _Context) -> dict[str, Any] | None:
    """Duplicate groups as thumbnail strips, the kept copy first with its scores, and the counts."""
    groups = store.dedup_groups()
    if not groups:
        return None
    shown = groups[:DEDUP_GROUPS]
    cells = store.dedup_cells([i for kept, dups in shown for i in [kept, *(d[0] for d in dups)]])

    def cell(i: int, kept: bool, text: str) -> dict[str, Any]:
        c = cells.get(i, {})
        scores = ", ".join(f"{m} {_num(v)}" for m, v in sorted(c.get("scores", {}).items()) if v is not None)
        facts = f"{c.get('width')}x{c.get('height')}, {c.get('file_size', 0) / 1024:.0f} KB"
        path = c.get("image")
        return {"id": c.get("id", i), "idx": i, "path": path, "thumb": ctx.thumbs(path),
                "text": text or scores, "facts": facts, "kept": kept}  # fmt: skip

    strips = []
    for kept, dups in shown:
        row = [cell(kept, True, "")]
        row += [
            cell(i, False, how if how.startswith("identical") else f"{how}, distance {dist}")
            for i, dist, how in dups
        ]
        strips.append(row)
    return {
        "groups": len(groups),
        "removed": sum(len(d) for _, d in groups),
        "shown": len(shown),
        "strips": strips,
    }


def _render(**context: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__name__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env.get_template(TEMPLATE).render(**context)


def write_report(out_dir: str | Path, png: bool = False) -> Path:
    """Build ``<out_dir>/report.html`` from a run's state; with ``png`` also ``figures/hist_<metric>.png``."""
    from ..._version import __version__

    out_dir = Path(out_dir)
    info = queries.read_run(out_dir)
    png_dir = None
    if png:
        png_dir = out_dir / "figures"
        png_dir.mkdir(exist_ok=True)
    thumbs = Thumbs(info.image_root, info.allow_outside_root)
    store = RunStore(out_dir)
    try:
        counts = store.counts()
        groups, reason_counts, index = queries.rejected_groups(
            store, PER_REASON, MAX_REASONS, info.chain, index_cap=INDEX_CAP
        )
        reasons_by_op: dict[str, list[tuple[str, int]]] = {}
        for (op, kind), n in reason_counts.most_common():
            if len(reasons_by_op.setdefault(op, [])) < OP_REASONS:
                reasons_by_op[op].append((kind, n))
        rejected_by_op = {str(k): v for k, v in counts["rejected_by_op"].items()}
        ctx = _Context(info, thumbs, reasons_by_op, rejected_by_op)
        browser = _browser(groups, ctx)
        steps = [
            {"step": s, "rule": ctx.rule(s.op, s.lines) if not s.before_chain else None}
            for s in queries.funnel(info, counts)
        ]
        sections = [
            s
            for metric in queries.metrics(store, info)
            if (s := _metric_section(store, metric, ctx, png_dir))
        ]
        dedup = _dedup_section(store, ctx)
    finally:
        store.close()
    page = _render(
        name=info.name,
        config=info.config,
        chain=info.chain,
        summary=info.summary,
        counts=counts,
        funnel=steps,
        groups=browser,
        shown=sum(len(g["records"]) for g in browser),
        ops_with_rejections=[op for op in [*queries.PRE_CHAIN, *info.chain] if rejected_by_op.get(op)]
        + sorted(op for op in rejected_by_op if op not in (*queries.PRE_CHAIN, *info.chain)),
        sections=sections,
        dedup=dedup,
        thumb_side=THUMB,
        per_reason=PER_REASON,
        index=_index_json(index),
        index_cap=INDEX_CAP,
        strip=STRIP,
        version=__version__,
    )
    path = out_dir / "report.html"
    atomic_write(path, page)
    log.info("report written to %s", path)
    return path


def _index_json(index: list[tuple[str, str, str, str]]) -> str:
    """The id-search index as compact JSON for a <script> block: ops and reason kinds listed once,
    each record as [id, op number, kind number] (about 20 bytes a record)."""
    ops: dict[str, int] = {}
    kinds: dict[str, int] = {}
    rows = [
        [rid, ops.setdefault(op, len(ops)), kinds.setdefault(kind, len(kinds))] for rid, op, _, kind in index
    ]
    data = {"ops": list(ops), "kinds": list(kinds), "rows": rows}
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
