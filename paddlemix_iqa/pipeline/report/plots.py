"""The report's figures (matplotlib, Agg backend), returned as base64 PNG for inlining.

Threshold lines are named in a legend above the axes rather than annotated on
the plot, so labels never sit on each other or on the bars; lines at the same
position share one legend entry; tick counts are capped so tick labels never touch.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from .directions import Direction, native_higher_is_better

DPI = 90
_LINE_COLOURS = ("#c0392b", "#8e44ad", "#d35400", "#16a085", "#2c3e50")
_LINE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_base64(fig, path: Path | None = None) -> str:
    """The figure as base64 PNG (and written to ``path`` too when given); closes the figure."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
        if path is not None:
            path.write_bytes(buf.getvalue())
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _merged(lines: list[dict], scale: str) -> list[tuple[float, str]]:
    """Lines on ``scale``, one per position: ``min_width=64`` and ``min_height=64`` share one entry."""
    at: dict[float, list[str]] = {}
    for line in lines:
        if line["scale"] == scale:
            at.setdefault(float(line["x"]), []).append(str(line["label"]))
    return [(x, ", ".join(dict.fromkeys(labels))) for x, labels in sorted(at.items())]


def _use_log(data: np.ndarray, way: Direction, scale: str) -> bool:
    """A log x axis for positive native values spanning a decade (geometry) or three (anything else)."""
    if scale != "value" or not len(data) or data.min() <= 0:
        return False
    return data.max() / data.min() > (10 if way.log else 1000)


def histogram_figure(
    metric: str, values: np.ndarray, quality: np.ndarray | None, lines: list[dict], way: Direction
):
    """A histogram per scale (native value; quality when the metric has one) with its thresholds."""
    from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    plt = _pyplot()
    panels = [("value", values)] + ([("quality", quality)] if quality is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 3.2), squeeze=False)
    if way.kind == "range":
        native = "native value, the thresholds bound the accepted range"
    else:
        native = "native value, " + ("higher" if native_higher_is_better(metric) else "lower") + " is better"
    for ax, (scale, data) in zip(axes[0], panels, strict=True):
        log = _use_log(data, way, scale)
        if log:
            bins = np.geomspace(data.min(), data.max() * 1.0001, 41)
            ax.set_xscale("log")
            decades = np.log10(data.max() / data.min())
            ax.xaxis.set_major_locator(
                LogLocator(subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,), numticks=12)
            )
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            bins = min(50, max(10, len(data) // 4))
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.hist(data, bins=bins, color="#4a7ab5", alpha=0.85)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        if metric == "file_size" and scale == "value":
            ax.xaxis.set_major_formatter(EngFormatter(unit="B", places=0))
        ax.tick_params(labelsize=8)
        for i, (x, label) in enumerate(_merged(lines, scale)):
            ax.axvline(
                x,
                color=_LINE_COLOURS[i % len(_LINE_COLOURS)],
                linestyle=_LINE_STYLES[i % len(_LINE_STYLES)],
                linewidth=1.6,
                label=label,
            )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(
                loc="lower left",
                bbox_to_anchor=(0.0, 1.01),
                ncol=1,
                fontsize=8,
                frameon=False,
                borderaxespad=0.0,
                handlelength=2.5,
            )
        what = native if scale == "value" else "quality 0..1, higher is better"
        ax.set_xlabel(f"{metric} ({what})", fontsize=9)
        ax.set_ylabel("images", fontsize=9)
    fig.tight_layout()
    return fig


def histogram(
    metric: str,
    values: np.ndarray,
    quality: np.ndarray | None,
    lines: list[dict],
    way: Direction,
    png_dir: Path | None = None,
) -> str:
    """:func:`histogram_figure` as base64 PNG (also ``<png_dir>/hist_<metric>.png`` when given)."""
    fig = histogram_figure(metric, values, quality, lines, way)
    return to_base64(fig, None if png_dir is None else png_dir / f"hist_{metric}.png")
