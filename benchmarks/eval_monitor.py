"""How fast and how reliably ``monitor run`` alerts, over many generated dusty and stable cameras.

For each seed: a COCO scene (``../shared/data``; scikit-image photos without it), a random dust
scenario (start, speed, blur, haze, sensor noise, exposure changes, misty days; the generator of
``paddlemix-iqa monitor demo``), and a threshold placed at the quality the noise-free scene has at
a random dust level (where "the user decided the image stops being usable"). The sharpness
crosses the threshold when the dust reaches that level; the lens is cleaned 4-15 days later.
Measured per metric, with the monitor's default settings and its own code (``Monitor.failing``,
``detect``):

* alert delay: first alert (drift or threshold) after the crossing; negative = before it
  (goal <= 3 days); also the threshold alert's own delay;
* lead over the blur filter: days between the first alert and the first frame the package's
  default blur filter rejects;
* cleaning delay: the recovery alert's time minus the cleaning (goal 0..1 day);
* false alerts: any alert on the stable camera (same nuisances, no dust), or on the dusty one
  before its dust started.

``python benchmarks/eval_monitor.py --seeds 30 --write-docs`` writes the table into docs/monitor.md;
``--tracking`` measures instead how each metric follows the dust level on every 4th COCO scene
(the table that chose the default metric).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED_DATA, write_generated  # noqa: E402

from paddlemix_iqa.monitor.core import Monitor, MonitorSettings  # noqa: E402
from paddlemix_iqa.monitor.demo import (  # noqa: E402
    Scenario,
    _specks,
    blur_step,
    camera,
    degrade,
    dust_level,
    frame_times,
    unusable,
)
from paddlemix_iqa.monitor.detect import DAY, detect  # noqa: E402
from paddlemix_iqa.monitor.store import Store  # noqa: E402

METRICS = ("gradient_mean", "tenengrad", "laplacian", "edge_sharpness")


def scenes() -> list[np.ndarray]:
    from paddlemix_iqa.io import load_image

    paths = sorted((SHARED_DATA / "photos" / "coco").glob("*.jpg"))
    if paths:
        return [load_image(str(p)) for p in paths]
    from skimage import data

    return [
        np.ascontiguousarray(f()[..., :3]) for f in (data.astronaut, data.coffee, data.rocket, data.chelsea)
    ]


def jpeg_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def scenario(rng: np.random.Generator, days: int, per_day: int) -> Scenario:
    start = float(rng.uniform(2, 10))
    return Scenario(
        days=days,
        per_day=per_day,
        start_day=start,
        full_day=start + float(rng.uniform(25, 45)),
        clean_day=None,
        blur_max=float(rng.uniform(1.5, 3.5)),
        haze_max=float(rng.uniform(0.3, 0.6)),
        gain_sd=float(rng.uniform(0.03, 0.1)),
        noise_sd=float(rng.uniform(1.0, 5.0)),
    )


def one_seed(seed: int, photos: list[np.ndarray], scorers: dict, op, days: int, per_day: int) -> dict:
    rng = np.random.default_rng(seed)
    photo = photos[seed % len(photos)]
    s = scenario(rng, days, per_day)
    specks = _specks(photo.shape[:2], s.specks, np.random.default_rng(seed + 1000))
    level_star = float(rng.uniform(0.3, 0.6))  # the dust level the threshold stands for
    cross_day = s.start_day + level_star ** (1 / 1.5) * (s.full_day - s.start_day)
    s.clean_day = cross_day + float(rng.uniform(4, 15))
    if s.clean_day > days - 6:
        s.clean_day = days - 6.0
    clean_ref = degrade(photo, level_star, s, specks)
    reference = np.clip(np.rint(clean_ref), 0, 255).astype(np.uint8)
    thresholds = {m: float(sc.normalize(sc.score(reference))) for m, sc in scorers.items()}
    out = {"seed": seed, "cross": cross_day, "clean": s.clean_day, "start": s.start_day, "metrics": {}}
    series = {}
    for label, dusty in (("dusty", True), ("stable", False)):
        s.dusty = dusty
        frame_rng = np.random.default_rng(seed * 7 + (1 if dusty else 2))
        times, values, bad = [], {m: [] for m in scorers}, []
        for day in frame_times(s, frame_rng):
            pixels, quality, _ = camera(degrade(photo, dust_level(day, s), s, specks), s, frame_rng)
            decoded = jpeg_roundtrip(pixels, quality)
            times.append(day)
            for m, sc in scorers.items():
                values[m].append(float(sc.normalize(sc.score(decoded))))
            if dusty:
                bad.append(unusable(decoded, op))
        series[label] = (times, values, bad)
    times, _, bad = series["dusty"]
    out["unusable"] = next((t for t, b in zip(times, bad, strict=True) if b and t < s.clean_day), None)
    for m in scorers:
        with Store(":memory:") as store:
            monitor = Monitor(store, MonitorSettings(metric=m, threshold=thresholds[m]), save=False)
            row = {}
            for label in ("dusty", "stable"):
                t, values, _ = series[label]
                found = detect([x * DAY for x in t], values[m], monitor.settings.detector, monitor.failing)
                row[label] = [(a.kind, t[a.index]) for a in found.alerts]
        dusty_alerts = row["dusty"]
        before_clean = [(k, t) for k, t in dusty_alerts if t < s.clean_day and t >= s.start_day]
        first = min((t for _, t in before_clean), default=None)
        thr = min((t for k, t in before_clean if k == "threshold"), default=None)
        rec = min((t for k, t in dusty_alerts if k == "recovery" and t >= s.clean_day), default=None)
        out["metrics"][m] = {
            "delay": None if first is None else first - cross_day,
            "threshold_delay": None if thr is None else thr - cross_day,
            "lead_over_blur_filter": None
            if first is None or out["unusable"] is None
            else out["unusable"] - first,
            "cleaning_delay": None if rec is None else rec - s.clean_day,
            "false_dusty": sum(1 for _, t in dusty_alerts if t < s.start_day),
            "false_stable": len(row["stable"]),
        }
    return out


def summarise(results: list[dict], metric: str) -> dict:
    rows = [r["metrics"][metric] for r in results]
    n = len(rows)
    delays = [r["delay"] for r in rows if r["delay"] is not None]
    thr = [r["threshold_delay"] for r in rows if r["threshold_delay"] is not None]
    lead = [r["lead_over_blur_filter"] for r in rows if r["lead_over_blur_filter"] is not None]
    clean = [r["cleaning_delay"] for r in rows if r["cleaning_delay"] is not None]
    return {
        "n": n,
        "alert_ok": sum(1 for r in rows if r["delay"] is not None and r["delay"] <= 3),
        "delay_median": float(np.median(delays)) if delays else float("nan"),
        "delay_max": max(delays) if delays else float("nan"),
        "thr_median": float(np.median(thr)) if thr else float("nan"),
        "thr_max": max(thr) if thr else float("nan"),
        "lead_median": float(np.median(lead)) if lead else float("nan"),
        "clean_ok": sum(1 for r in rows if r["cleaning_delay"] is not None and 0 <= r["cleaning_delay"] <= 1),
        "clean_max": max(clean) if clean else float("nan"),
        "false_stable": sum(1 for r in rows if r["false_stable"]),
        "false_dusty": sum(1 for r in rows if r["false_dusty"]),
    }


def table(results: list[dict], metrics: list[str]) -> list[str]:
    lines = [
        "| metric | alert <= 3 days after the crossing | first alert - crossing, median / worst (days) "
        "| threshold alert - crossing, median / worst | first alert before the blur filter rejects, median (days) "
        "| cleaning found within 1 day (worst) | stable cameras with any alert | dusty cameras alerting before the dust |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        s = summarise(results, m)
        lines.append(
            f"| {m}{' (default)' if m == 'gradient_mean' else ''} | {s['alert_ok']}/{s['n']} "
            f"| {s['delay_median']:+.1f} / {s['delay_max']:+.1f} | {s['thr_median']:+.1f} / {s['thr_max']:+.1f} "
            f"| {s['lead_median']:.1f} | {s['clean_ok']}/{s['n']} ({s['clean_max']:.2f} d) "
            f"| {s['false_stable']}/{s['n']} | {s['false_dusty']}/{s['n']} |"
        )
    return lines


def tracking(metrics: list[str], photos: list[np.ndarray]) -> list[str]:
    """How each metric follows the dust level: Spearman rho, and the drop from clean frames in units
    of the clean frames' spread (4 clean and 2 degraded frames per level, per scene; median over scenes)."""
    from scipy.stats import spearmanr

    from paddlemix_iqa.scorers import get_scorer

    scorers = {m: get_scorer(m) for m in metrics}
    levels = (0.0, 0.2, 0.4, 1.0)
    haze_only = Scenario(blur_max=0.0, haze_max=0.25)  # at level 1: a veil of 0.25 and no blur
    rng = np.random.default_rng(0)
    s = Scenario(specks=0)
    rows: dict[str, dict[str, list[float]]] = {
        m: {"rho": [], **{str(x): [] for x in levels[1:]}, "haze": []} for m in metrics
    }
    for photo in photos[::4]:
        specks = _specks(photo.shape[:2], 0, rng)
        frames = {
            x: [camera(degrade(photo, x, s, specks), s, rng) for _ in range(4 if x == 0 else 2)]
            for x in levels
        }
        frames["haze"] = [camera(degrade(photo, 1.0, haze_only, specks), s, rng) for _ in range(2)]
        for m, sc in scorers.items():
            q = {
                k: np.array([float(sc.normalize(sc.score(jpeg_roundtrip(px, jq)))) for px, jq, _ in v])
                for k, v in frames.items()
            }
            spread = max(float(q[0.0].std(ddof=1)), 1e-9)
            xs = np.concatenate([[x] * len(q[x]) for x in levels])
            rows[m]["rho"].append(spearmanr(xs, np.concatenate([q[x] for x in levels])).statistic)
            for x in levels[1:]:
                rows[m][str(x)].append((q[0.0].mean() - q[x].mean()) / spread)
            rows[m]["haze"].append((q[0.0].mean() - q["haze"].mean()) / spread)
    lines = [
        "| metric | follows the dust level (Spearman, mean over scenes) | drop / spread at dust 0.2 / 0.4 / 1.0 "
        "| haze alone (veil 0.25, no blur) |",
        "|---|---|---|---|",
    ]
    for m in metrics:
        r = rows[m]
        drops = " / ".join(f"{np.median(r[str(x)]):.1f}" for x in levels[1:])
        lines.append(f"| {m} | {np.mean(r['rho']):+.3f} | {drops} | {np.median(r['haze']):.1f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=1)
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--tracking", action="store_true", help="how each metric follows the dust level")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/monitor.md")
    args = parser.parse_args()
    from paddlemix_iqa.scorers import get_scorer

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    scorers = {m: get_scorer(m) for m in metrics}
    photos = scenes()
    if args.tracking:
        lines = tracking(metrics, photos)
        print("\n".join(lines))
        if args.write_docs:
            facts = f"every 4th of {len(photos)} scenes, the demo's degradations and nuisances"
            write_generated(ROOT / "docs" / "monitor.md", "monitor-tracking", lines, facts=facts)
        return 0
    op = blur_step()
    started = time.perf_counter()
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        results.append(one_seed(seed, photos, scorers, op, args.days, args.per_day))
        r = results[-1]
        print(
            f"seed {seed}: crossing day {r['cross']:.1f}, cleaning {r['clean']:.1f}, blur filter from "
            f"{r['unusable'] if r['unusable'] is None else round(r['unusable'], 1)}; "
            + "; ".join(
                f"{m} delay {v['delay'] if v['delay'] is None else round(v['delay'], 1)} "
                f"clean {v['cleaning_delay'] if v['cleaning_delay'] is None else round(v['cleaning_delay'], 2)} "
                f"false {v['false_stable']}+{v['false_dusty']}"
                for m, v in r["metrics"].items()
            ),
            flush=True,
        )
    lines = table(results, metrics)
    print("\n".join(lines))
    print(f"({time.perf_counter() - started:.0f} s, {dt.date.today()})")
    if args.write_docs:
        facts = f"{args.seeds} seeds from {args.first_seed}, {args.days} days, {args.per_day} frame(s) a day"
        write_generated(ROOT / "docs" / "monitor.md", "monitor-eval", lines, facts=facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
