"""Images/s of ARNIQA on 1-MP photos in the official crops protocol: one at a time vs batched vs Paddle Inference.

    python benchmarks/bench_arniqa.py [--weights DIR] [--n 8] [--batch-size 8] [--repeats 2] [--write-docs]

(a) the host's way: ``iqa_arniqa(item)`` per item (decode + dynamic graph, one image per call);
(b) batched dynamic graph: the dataset-level op path (``run_batched``, decode in threads, one
    scorer call per batch); (c) the same with ``backend="inference"`` (Paddle Inference, oneDNN).
All three run in the same process on the same files, so the ratios hold on a noisy machine.
Without ``--weights`` a randomly initialised artifact is written to a temp dir: speed does not
depend on the weight values. ``--write-docs`` writes the table into docs/arniqa.md (between
its ``bench_arniqa`` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _common import ROOT, best_of, shared_photos, write_generated
from PIL import Image

DOCS = ROOT / "docs" / "arniqa.md"


def one_megapixel_copies(paths: list[Path], folder: Path, size: tuple[int, int] = (1152, 864)) -> list[Path]:
    out = []
    for path in paths:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.height > img.width:
                size = size[::-1]
            out.append(folder / path.name)
            img.resize(size, Image.Resampling.BICUBIC).save(out[-1], quality=90)
    return out


def random_artifact(folder: Path) -> Path:
    """A Paddle artifact in the converted format with random weights (same shapes, same speed)."""
    import numpy as np
    import paddle

    from paddlemix_iqa.models.arniqa import ENCODER_FILE, FORMAT, META_FILE, ArniqaEncoder, regressor_file

    directory = folder / "arniqa"
    directory.mkdir(parents=True)
    paddle.save(ArniqaEncoder().backbone.state_dict(), str(directory / ENCODER_FILE))
    rng = np.random.default_rng(0)
    weights = (rng.standard_normal((1, 4096)) * 0.05).astype(np.float32)
    paddle.save({"weights": weights, "biases": np.float32(3.0)}, str(directory / regressor_file("kadid10k")))
    meta = {"format": FORMAT, "regressors": {"kadid10k": {"score_range": [1, 5]}}, "note": "random, for speed"}
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a converted ARNIQA artifact (default: random weights)")
    parser.add_argument("--n", type=int, default=8, help="number of 1-MP photos")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the generated table in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights or random_artifact(tmp / "home")
        os.environ["PADDLEMIX_IQA_HOME"] = str(weights.parent)  # for the host-style function (default scorer)
        photos = one_megapixel_copies(shared_photos("coco")[: args.n], tmp)
        items = [{"image": str(p)} for p in photos]
        n = len(items)

        from paddlemix_iqa.integrations.datacopilot import run_batched
        from paddlemix_iqa.ops import MetricFilter, iqa_arniqa

        def one_at_a_time():
            return [iqa_arniqa(dict(item)) for item in items]

        def batched(backend: str):
            op = MetricFilter("arniqa", keep_all=True, weights=str(weights), backend=backend, batch_size=args.batch_size)
            op.process([dict(items[0])])  # warm-up: load weights (and export/compile for inference)
            return lambda: run_batched(op, [dict(i) for i in items], batch_size=args.batch_size, workers=2)

        one_at_a_time_warm = iqa_arniqa(dict(items[0]))  # warm-up: load the default scorer
        assert isinstance(one_at_a_time_warm, bool)
        timings = {
            "(a) one at a time, dygraph (iqa_arniqa)": best_of(one_at_a_time, args.repeats),
            "(b) batched, dygraph": best_of(batched("dygraph"), args.repeats),
            "(c) batched, Paddle Inference": best_of(batched("inference"), args.repeats),
        }
        base = timings["(a) one at a time, dygraph (iqa_arniqa)"]
        size = Image.open(photos[0]).size
        print(f"ARNIQA crops protocol, {n} photos at {size[0]}x{size[1]}, batch {args.batch_size}, {os.cpu_count()} cores")
        table = ["| path | img/s | s / image | vs (a) |", "|---|---|---|---|"]
        for label, seconds in timings.items():
            print(f"{label:42s} {n / seconds:6.2f} img/s  {seconds / n:6.3f} s/img  x{base / seconds:.2f}")
            table.append(f"| {label} | {n / seconds:.2f} | {seconds / n:.3f} | x{base / seconds:.2f} |")
        ratio = base / timings["(c) batched, Paddle Inference"]
        print(f"target ((c) >= 3x (a)): {'met' if ratio >= 3 else 'NOT met'}")
        if args.write_docs:
            which = f"weights {args.weights}" if args.weights else "random weights (speed does not depend on them)"
            facts = (
                f"{n} photos at {size[0]}x{size[1]}, batch {args.batch_size}, best of {args.repeats}, {which}"
            )
            table += ["", f"(c) over (a): x{ratio:.2f}, target x3 {'met' if ratio >= 3 else 'NOT met'}."]
            write_generated(DOCS, "bench_arniqa", table, facts=facts)


if __name__ == "__main__":
    main()
