"""Images/s of configs/default.yaml with 1 and 2 workers, next to decoding the same files alone.

Decode-only is the floor a filter cannot beat: the same files read by ``cv2.imread`` (full
size, colour, one process), timed in the same run; the goal (issue 13) is the pipeline with
one worker at >= 0.25x that rate on 0.3-MP photos and >= 0.5x on photos of 2 MP and more.
Photo sets from ``../shared/data/photos``: the 64 COCO photos (0.3 MP); the nine 2048-px
blur triplets (3 MP; six of them blurred, which the blur step rejects before BRISQUE and the
code check run); and their three sharp ones alone, which go through every step (the worst
case). Each record names its own copy of the file, so nothing is decoded once for two records.
The report is off (its cost is per run, not per image); dedup runs as shipped. Figures are
ratios measured in the same run: the machine is shared and noisy.

    python benchmarks/bench_pipeline.py [--repeat 4] [--runs 2] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
from _common import ROOT, best_of, shared_photos, write_generated

from paddlemix_iqa.io import decode_image
from paddlemix_iqa.pipeline import load_config, run_pipeline
from paddlemix_iqa.pipeline.runner import Chain

README = ROOT / "README.md"
DOCS = ROOT / "docs" / "pipeline.md"

#: (name, photos folder, file pattern, long-side megapixels note, goal ratio with one worker)
SETS = (
    ("COCO, 0.3 MP", "coco", "*.jpg", 0.25),
    ("blur triplets, 3 MP", "blur_triplets", "*", 0.5),
    ("sharp triplets only, 3 MP", "blur_triplets", "*_S.*", 0.5),
)


def copies(photos: list[Path], repeat: int, folder: Path) -> list[Path]:
    """``repeat`` copies of each photo under ``folder`` (distinct paths: decoded once per record)."""
    folder.mkdir(parents=True)
    out = []
    for i in range(repeat):
        for p in photos:
            out.append(folder / f"{i}-{p.name}")
            shutil.copyfile(p, out[-1])
    return out


def measure(config_path: str, paths: list[Path], runs: int, work: Path) -> dict[str, float]:
    """Images/s of decode-only and of the pipeline with 1 and 2 workers."""
    records = work / f"{paths[0].parent.name}.jsonl"
    with open(records, "w") as f:
        for p in paths:
            f.write(json.dumps({"id": p.stem, "image": p.name}) + "\n")

    def config(workers: int):
        return load_config(
            config_path,
            [
                f"input={records}",
                f"image_root={paths[0].parent}",
                f"output_dir={work / f'out_{paths[0].parent.name}_{workers}'}",
                f"workers={workers}",
                "report=false",
                "progress=false",
            ],
        )

    n = len(paths)
    rates = {
        "decode only (cv2.imread, 1 process)": n / best_of(lambda: [cv2.imread(str(p)) for p in paths], runs)
    }
    for workers in (1, 2):
        rates[f"pipeline, {workers} worker{'s' if workers > 1 else ''}"] = n / best_of(
            lambda w=workers: run_pipeline(config(w), fresh=True), runs
        )
    return rates


def step_costs(config_path: str, photos: list[Path], rounds: int = 2) -> dict[str, float]:
    """CPU ms per image of ``cv2.imread``, of the run's one decode, and of each step run on every
    photo in the config's order (as if no earlier step had rejected it: what a kept image costs),
    sharing the grey copies as in a run; per photo the best of ``rounds``."""
    cfg = load_config(config_path, [f"input={config_path}"])
    chain = Chain(cfg.build_ops(), photos[0].parent, signer=cfg.build_dedup())
    ops = [op for op in chain.ops if op.needs_pixels]
    clock = time.process_time
    total: dict[str, float] = {}
    for p in photos:
        best: dict[str, float] = {}

        def timed(name: str, fn, best=best):
            start = clock()
            out = fn()
            best[name] = min(best.get(name, float("inf")), clock() - start)
            return out

        for _ in range(rounds):
            timed("cv2.imread (decode-only)", lambda p=p: cv2.imread(str(p)))
            image = timed(
                "decode (the run's one decode)", lambda p=p: decode_image(p, max_side=chain.decode_side)
            )
            for op in ops:
                timed(op.name, lambda op=op, image=image: op.judge([image]))
            if chain.signer is not None:
                timed("dedup signature", lambda image=image: chain.signer.sign(image))
        for k, v in best.items():
            total[k] = total.get(k, 0.0) + v
    return {k: 1000 * v / len(photos) for k, v in total.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument(
        "--repeat", type=int, default=4, help="copies of each COCO photo (x4 for the 3-MP sets)"
    )
    parser.add_argument("--runs", type=int, default=2, help="best of this many timed runs")
    parser.add_argument("--write-docs", action="store_true", help="replace the generated table in README.md")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # decode-only on one core, as each pipeline worker runs
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    table = [
        "| photos | records | decode-only images/s | pipeline, 1 worker | vs decode-only | goal "
        "| pipeline, 2 workers | vs decode-only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    met = True
    steps: list[str] = []
    step_names: list[str] = []
    started = time.perf_counter()
    try:
        for i, (name, folder, pattern, goal) in enumerate(SETS):
            photos = shared_photos(folder, pattern)
            repeat = args.repeat if folder == "coco" else 4 * args.repeat
            paths = copies(photos, repeat, work / f"set{i}")
            rates = measure(args.config, paths, args.runs, work)
            floor, one, two = rates.values()
            print(f"\n{name}: {len(paths)} records ({len(photos)} photos x {repeat})")
            for label, rate in rates.items():
                print(f"  {label:40s} {rate:8.1f} images/s  {rate / floor:5.2f}x")
            ok = one / floor >= goal
            met &= ok
            table.append(
                f"| {name} | {len(paths)} | {floor:.1f} | {one:.1f} | **{one / floor:.2f}x** "
                f"| >= {goal}x: {'met' if ok else 'not met'} | {two:.1f} | {two / floor:.2f}x |"
            )
            costs = step_costs(args.config, photos)
            base = costs["cv2.imread (decode-only)"]
            print(f"  CPU per image, each step run on every photo ({len(photos)} photos):")
            for label, ms in costs.items():
                print(f"    {label:34s} {ms:7.1f} ms  {ms / base:5.2f}x decode-only")
            steps.append(
                f"| {name} | " + " | ".join(f"{ms:.1f} ms ({ms / base:.2f}x)" for ms in costs.values()) + " |"
            )
            step_names = list(costs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\ngoal (1 worker: >= 0.25x decode-only on 0.3 MP, >= 0.5x on 3 MP): {'met' if met else 'NOT met'}"
    )
    if args.write_docs:  # figures are generated, never typed
        chain = " -> ".join(s.name for s in load_config(args.config, [f"input={args.config}"]).steps)
        write_generated(
            README,
            "bench_pipeline",
            [*table, "", f"Chain: {chain}; {time.perf_counter() - started:.0f} s in all."],
            facts=f"best of {args.runs}",
        )
        head = ["| photos | " + " | ".join(step_names) + " |", "|---" * (len(step_names) + 1) + "|"]
        write_generated(DOCS, "bench_steps", [*head, *steps], facts="CPU time, best of 2 per photo")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
