"""``monitor report``: each source's metric over time, with the threshold, the alerts and the change points.

One matplotlib PNG per (metric, source) and an HTML page showing them with a table of the
alerts and of the images that could not be read. The detection is recomputed from the
stored series with the settings the last ``monitor run`` stored, so the plot shows exactly
what the run decided.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

from .core import Monitor, MonitorSettings
from .store import Store

_KIND_STYLE = {
    "threshold": ("#c0392b", "v", "threshold"),
    "drift": ("#d35400", "D", "drift"),
    "recovery": ("#27ae60", "^", "recovery"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _when(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    return t.replace(tzinfo=None) if t.tzinfo is None else t.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80] or "source"


def source_figure(monitor: Monitor, source: str, path: Path, title: str | None = None) -> dict[str, Any]:
    """Draw one source's series into ``path`` (PNG); facts for the page."""
    import matplotlib.dates as mdates

    plt = _pyplot()
    points, found = monitor.detection(source)
    settings = monitor.settings
    label = (
        f"{settings.metric} quality (0..1)" if settings.scale == "quality" else f"{settings.metric} (native)"
    )
    times = [_when(p[0]) for p in points]
    values = [monitor.shown(p[2]) for p in points]
    baseline = [monitor.shown(b) for b in found.baseline]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.plot(times, values, "o-", color="#2c3e50", markersize=3, linewidth=1, label=settings.metric)
    ax.plot(
        times, baseline, "-", color="#7f8c8d", linewidth=1.5, alpha=0.8, label="baseline (rolling median)"
    )
    if settings.threshold is not None:
        ax.axhline(
            settings.threshold,
            color="#c0392b",
            linestyle="--",
            linewidth=1.2,
            label=f"threshold {settings.threshold:g}",
        )
    for i, change in enumerate(found.changes):
        ax.axvline(
            times[change.index],
            color="#8e44ad",
            linestyle=":",
            linewidth=1.2,
            label="change point" if i == 0 else None,
        )
    seen: set[str] = set()
    for alert in found.alerts:
        colour, marker, name = _KIND_STYLE[alert.kind]
        ax.plot(
            [times[alert.index]],
            [values[alert.index]],
            marker,
            color=colour,
            markersize=10,
            markeredgecolor="black",
            label=f"{name} alert" if name not in seen else None,
            zorder=5,
        )
        seen.add(name)
    ax.set_ylabel(label)
    ax.set_title(title or f"{source}: {settings.metric}")
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=10))
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
    return {
        "points": len(points),
        "alerts": [(a.kind, points[a.index][0], monitor.shown(a.value), a.detail) for a in found.alerts],
        "changes": [(c.detail, points[c.index][0]) for c in found.changes],
    }


def write_report(db: str | Path, out: str | Path) -> Path:
    """``out``/index.html plus one PNG per (metric, source); returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    with Store(db) as store:
        for metric in store.metrics():
            settings = MonitorSettings.from_json(store.settings(metric) or {"metric": metric})
            monitor = Monitor(store, settings, save=False)
            for _, source in store.sources(metric):
                png = out / f"{_slug(metric)}__{_slug(source)}.png"
                facts = source_figure(monitor, source, png)
                bad = [(p[4], p[5], p[0]) for p in store.series(metric, source) if p[5]]
                sections.append(_section(metric, source, png.name, facts, bad, settings))
        problems = store.problems()
    page = out / "index.html"
    rows = "".join(
        f"<tr><td>{html.escape(f)}</td><td>{html.escape(w)}</td><td>{html.escape(r)}</td></tr>"
        for f, w, r in problems
    )
    skipped = (
        f"<h2>Skipped rows</h2><table><tr><th>file</th><th>where</th><th>reason</th></tr>{rows}</table>"
        if rows
        else ""
    )
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>paddlemix-iqa monitor</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}img{max-width:100%}</style>"
        f"</head><body><h1>Image quality monitor</h1><p>Database: {html.escape(str(db))}</p>"
        + ("".join(sections) or "<p>No images scored yet.</p>")
        + skipped
        + "</body></html>",
        encoding="utf-8",
    )
    return page


def _section(metric: str, source: str, png: str, facts: dict, bad: list, settings: MonitorSettings) -> str:
    alerts = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(k)}</td><td>{v:.4g}</td><td>{html.escape(d)}</td></tr>"
        for k, t, v, d in facts["alerts"]
    )
    changes = ", ".join(f"{html.escape(t)} ({d})" for d, t in facts["changes"]) or "none"
    unreadable = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(p)}</td><td>{html.escape(e)}</td></tr>"
        for p, e, t in bad
    )
    scale = "normalised quality" if settings.scale == "quality" else "native value"
    return (
        f"<h2>{html.escape(source)} &middot; {html.escape(metric)}</h2>"
        f"<p>{facts['points']} readable images; threshold {settings.threshold} on the {scale}; "
        f"change points: {changes}</p><img src='{html.escape(png)}' alt='{html.escape(source)}'>"
        + (
            f"<table><tr><th>timestamp</th><th>alert</th><th>value</th><th>why</th></tr>{alerts}</table>"
            if alerts
            else "<p>No alerts.</p>"
        )
        + (
            f"<h3>Unreadable images ({len(bad)})</h3><table><tr><th>timestamp</th><th>path</th><th>reason</th>"
            f"</tr>{unreadable}</table>"
            if bad
            else ""
        )
    )
