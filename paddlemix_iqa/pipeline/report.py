"""One self-contained HTML report per run: counts, histograms with thresholds, thumbnail strips.

Everything (plots, thumbnails) is inlined as base64 so the file can be mailed or
archived alone. Per metric: a histogram of every scored image with the op's
thresholds drawn on it, and strips of the worst, borderline (closest to a
threshold) and best images, so a person can check a threshold by eye.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..io import ImageLoadError, load_image
from .outputs import RunStore, atomic_write

log = logging.getLogger(__name__)

STRIP = 8  # thumbnails per strip
THUMB = 144  # thumbnail long side, pixels


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _thumb(path: str, root: str | None, allow_outside_root: bool = False) -> str | None:
    """A JPEG thumbnail, read under the same image_root rule as the run (never a file it refused)."""
    from PIL import Image

    try:
        pixels = load_image(path, root=root, max_side=THUMB, allow_outside_root=allow_outside_root)
    except ImageLoadError:
        return None
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode()


def reason_kind(reason: str | None) -> str:
    """A reason without its numbers, so reasons group: ``laplacian quality 0.03 < 0.2`` -> ``laplacian quality < 0.2``."""
    text = reason or ""
    text = re.sub(r"^(.*?)\s-?[\d.]+(?:e[-+]?\d+)?\s([<>])", r"\1 \2", text)  # drop the measured value
    text = re.sub(r"\(\d+ bytes[^)]*\)", "", text)
    return text.strip()


def _histogram(metric: str, values: np.ndarray, quality: np.ndarray | None, lines: list[dict], png_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("value", values)] + ([("quality", quality)] if quality is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.0), squeeze=False)
    for ax, (scale, data) in zip(axes[0], panels, strict=True):
        ax.hist(data, bins=min(50, max(10, len(data) // 4)), color="#4a7ab5", alpha=0.85)
        for line in (ln for ln in lines if ln["scale"] == scale):
            ax.axvline(line["x"], color="#c0392b", linestyle="--", linewidth=1.5)
            ax.annotate(
                line["label"], (line["x"], ax.get_ylim()[1] * 0.92), color="#c0392b", fontsize=8, ha="left"
            )
        ax.set_xlabel(
            f"{metric} ({'native value' if scale == 'value' else 'quality 0..1, higher is better'})"
        )
        ax.set_ylabel("images")
    fig.tight_layout()
    data = _png(fig)
    if png_dir is not None:
        fig.savefig(png_dir / f"hist_{metric}.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return data


def _strips(key: np.ndarray, scale: str, lines: list[dict]) -> dict[str, np.ndarray]:
    """Positions in ``key`` of the worst / borderline / best images of one metric."""
    order = np.argsort(key, kind="stable")
    xs = [ln["x"] for ln in lines if ln["scale"] == scale]
    strips = {"worst": order[:STRIP], "best": order[::-1][:STRIP]}
    if xs:
        distance = np.min(np.abs(key[:, None] - np.array(xs)[None, :]), axis=1)
        near = np.argsort(distance, kind="stable")[:STRIP]
        strips["borderline"] = near[np.argsort(key[near], kind="stable")]
    return strips


def _cell(row: tuple, root: str | None, allow_outside_root: bool = False) -> str:
    value, quality, image, kept, idx = row
    data = _thumb(image, root, allow_outside_root) if image else None
    label = f"{value:.4g}" + (f" / q {quality:.2f}" if quality is not None else "")
    status = "kept" if kept else "rejected"
    pic = f'<img src="data:image/jpeg;base64,{data}">' if data else '<div class="missing">no preview</div>'
    return (
        f'<figure class="{status}" title="{html.escape(str(image))}">{pic}'
        f"<figcaption>#{idx} {html.escape(label)}<br>{status}</figcaption></figure>"
    )


def write_report(out_dir: str | Path, png: bool = False) -> Path:
    """Build ``<out_dir>/report.html`` from a run's state; with ``png`` also ``figures/hist_<metric>.png``."""
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    png_dir = None
    if png:
        png_dir = out_dir / "figures"
        png_dir.mkdir(exist_ok=True)
    root = summary.get("config", {}).get("image_root")
    outside = bool(summary.get("config", {}).get("allow_outside_root", False))
    store = RunStore(out_dir)
    try:
        counts = store.counts()
        reasons = Counter((op, reason_kind(reason)) for op, reason in store.reasons())
        sections = []
        thresholds: dict[str, list[dict]] = {}
        for op in summary.get("ops", []):
            thresholds.setdefault(op["metric"], []).extend(op["lines"])
        chain_order = list(thresholds)  # the ops' metrics in chain order; tag-only metrics follow
        for metric in sorted(
            store.metrics(), key=lambda m: (chain_order.index(m) if m in chain_order else len(chain_order), m)
        ):
            rowids, table = store.metric_values(metric)
            if not len(rowids):
                continue
            values, quality = table[:, 0], table[:, 1]
            if np.isnan(quality).any():
                quality = None
            lines = thresholds.get(metric, [])
            hist = _histogram(metric, values, quality, lines, png_dir)
            key, scale = (values, "value") if quality is None else (quality, "quality")
            strips = "".join(
                f'<h4>{name} ({len(sel)})</h4><div class="strip">'
                f"{''.join(_cell(r, root, outside) for r in store.score_rows(rowids[sel]))}</div>"
                for name, sel in _strips(key, scale, lines).items()
            )
            stats = (
                f"{len(values)} images; median {np.median(values):.4g}, "
                f"5% {np.percentile(values, 5):.4g}, 95% {np.percentile(values, 95):.4g}"
            )
            marks = ", ".join(f"{ln['label']} ({ln['scale']})" for ln in lines) or "none (tagged only)"
            stats += f"; thresholds: {html.escape(marks)}"
            sections.append(
                f"<section><h3>{html.escape(metric)}</h3><p>{stats}</p>"
                f'<img class="plot" src="data:image/png;base64,{hist}">{strips}</section>'
            )
    finally:
        store.close()
    config = summary.get("config", {})
    reason_rows = "".join(
        f"<tr><td>{html.escape(str(op))}</td><td>{html.escape(kind)}</td><td>{n}</td></tr>"
        for (op, kind), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    op_rows = "".join(
        f"<tr><td>{html.escape(str(op))}</td><td>{n}</td></tr>" for op, n in counts["rejected_by_op"].items()
    )
    chain = " &rarr; ".join(html.escape(next(iter(step))) for step in config.get("process", []))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>paddlemix-iqa report: {html.escape(str(out_dir.name))}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 16px; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
.strip {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure {{ margin: 0; width: {THUMB + 8}px; font-size: 11px; text-align: center; }}
figure img {{ max-width: {THUMB}px; max-height: {THUMB}px; }}
figure.rejected {{ outline: 3px solid #c0392b; }} figure.kept {{ outline: 3px solid #27ae60; }}
.missing {{ width: {THUMB}px; height: 60px; background: #eee; line-height: 60px; }}
img.plot {{ max-width: 100%; }}
</style></head><body>
<h1>paddlemix-iqa run report</h1>
<p>Input <code>{html.escape(str(config.get("input")))}</code>, images under <code>{html.escape(str(config.get("image_root")))}</code>,
config <code>{html.escape(str(config.get("source")))}</code>. Chain: {chain}.</p>
<h2>Counts</h2>
<table><tr><th>records</th><th>kept</th><th>rejected</th></tr>
<tr><td>{counts["records"]}</td><td>{counts["kept"]}</td><td>{counts["rejected"]}</td></tr></table>
<h3>Rejected per op</h3><table><tr><th>op</th><th>records</th></tr>{op_rows}</table>
<h3>Rejected per op and reason</h3><table><tr><th>op</th><th>reason</th><th>records</th></tr>{reason_rows}</table>
<h2>Metrics</h2>
<p>Histograms of every scored image (red dashed lines: thresholds); strips of the worst, borderline
(closest to a threshold) and best images. Green outline: kept; red: rejected (by this or another op).</p>
{"".join(sections) or "<p>No scores recorded.</p>"}
</body></html>
"""
    path = out_dir / "report.html"
    atomic_write(path, page)
    log.info("report written to %s", path)
    return path


def report_facts(out_dir: str | Path) -> dict[str, Any]:
    """Counts of a finished run (for the CLI's summary)."""
    store = RunStore(out_dir)
    try:
        return store.counts()
    finally:
        store.close()
