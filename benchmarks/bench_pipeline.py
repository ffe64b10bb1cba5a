"""Images/s of configs/default.yaml on the COCO photos with 1 and 2 workers, next to decode alone.

Decode alone is the floor the pipeline cannot beat: the same images decoded, in
one process, at the size the pipeline decodes them (and at full size, for
reference). Figures are ratios measured in the same run (the machine is shared).

    python benchmarks/bench_pipeline.py [--repeat 4] [--config configs/default.yaml] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import ROOT, best_of, shared_photos, write_generated

from paddlemix_iqa.io import decode_image
from paddlemix_iqa.pipeline import load_config, run_pipeline
from paddlemix_iqa.pipeline.runner import Chain

DOCS = ROOT / "docs" / "pipeline.md"


def measure(
    config_path: str, drop: set[str], repeat: int, runs: int, photos: list[Path], work: Path, table: list[str]
) -> bool:
    """Time decode-only and the chain with 1 and 2 workers; print the ratios and add them to ``table``."""
    records = work / f"records_{repeat}.jsonl"
    with open(records, "w") as f:
        for i in range(repeat):
            for p in photos:
                f.write(json.dumps({"id": f"{i}-{p.stem}", "image": p.name}) + "\n")
    n = repeat * len(photos)

    def config(workers: int, out: str):
        cfg = load_config(
            config_path,
            [
                f"input={records}",
                f"image_root={photos[0].parent}",  # records name photos relative to their folder
                f"output_dir={work / out}",
                f"workers={workers}",
                "report=false",
                "progress=false",
            ],
        )
        cfg.steps = [s for s in cfg.steps if s.name not in drop]
        return cfg

    probe = config(1, "probe")
    side = Chain(probe.build_ops(), work).decode_side
    paths = [p for _ in range(repeat) for p in photos]

    def decode(max_side):
        return lambda: [decode_image(p, max_side=max_side) for p in paths]

    floor_name = f"decode only, 1 process, long side {side}"
    rates = {floor_name: n / best_of(decode(side), runs)}
    if side is not None:
        rates["decode only, 1 process, full size"] = n / best_of(decode(None), runs)
    for workers in (1, 2):
        rates[f"pipeline, {workers} worker(s)"] = n / best_of(
            lambda w=workers: run_pipeline(config(w, f"w{w}"), fresh=True), runs
        )
    floor = rates[floor_name]
    print(
        f"\n{n} records ({len(photos)} COCO photos x {repeat}); chain: {' -> '.join(s.name for s in probe.steps)}"
    )
    print(f"{'':45s} {'images/s':>9s} {'vs decode-only':>15s}")
    chain = " -> ".join(s.name for s in probe.steps)
    for name, rate in rates.items():
        print(f"{name:45s} {rate:9.1f} {rate / floor:14.2f}x")
        table.append(f"| {chain} | {n} | {name} | {rate:.1f} | {rate / floor:.2f}x |")
    return rates["pipeline, 1 worker(s)"] >= 0.5 * floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument(
        "--repeat", type=int, default=8, help="records per photo (the photos are re-read each time)"
    )
    parser.add_argument("--runs", type=int, default=3, help="best of this many timed runs")
    parser.add_argument(
        "--slow-ops",
        default="code_filter,brisque_filter,arniqa_filter,pulc_blur_filter,pulc_code_filter",
        help="ops left out of the fast chain (measured separately as the whole config)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the generated table in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args()
    photos = shared_photos("coco")
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    slow = set(args.slow_ops.split(","))
    table = ["| chain | records | run | images/s | vs decode-only |", "|---|---|---|---|---|"]
    fast_ok = measure(args.config, slow, args.repeat, args.runs, photos, work, table)
    print(f"target (fast chain, 1 worker >= 0.5x decode-only): {'met' if fast_ok else 'NOT met'}")
    if any(s.name in slow for s in load_config(args.config, [f"input={args.config}"]).steps):
        measure(args.config, set(), max(1, args.repeat // 4), args.runs, photos, work, table)  # as shipped
    if args.write_docs:  # figures are generated, never typed
        write_generated(DOCS, "bench_pipeline", table, facts=f"best of {args.runs}")
    return 0 if fast_ok else 1


if __name__ == "__main__":
    sys.exit(main())
