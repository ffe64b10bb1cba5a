"""Speed, memory and exactness of ``near_pairs`` (multi-index hashing) at 10k, 100k and 1M hashes.

Hashes are uniform random 64-bit values with planted near-duplicates (1% of them are copies of
another hash with 0..radius bits flipped, a few exact clusters). Each size runs in a fresh
process, so its peak memory (ru_maxrss, minus the process's size before the search) is its own.
Exactness: at 10k the whole brute-force result is compared; at 100k and 1M, every pair of 2,000
random rows against all hashes (brute force on those rows), and every planted pair must be found.
The baseline timed in the same run is brute force at 10k, scaled by N^2 for the ratio.

    python benchmarks/bench_dedup.py                 # 10k, 100k, 1M at radius 8
    python benchmarks/bench_dedup.py --sizes 10000,100000 --radius 10
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def planted(n: int, radius: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hashes and the (i, j) pairs planted within ``radius``."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = max(1, n // 100)
    dst = rng.choice(n, 2 * k, replace=False)
    src, dst = dst[:k], dst[k:]
    flips = np.zeros(k, np.uint64)
    weights = rng.integers(0, radius + 1, k)
    for w in range(1, radius + 1):
        rows = np.flatnonzero(weights == w)
        bits = np.argsort(rng.random((len(rows), 64)), axis=1)[:, :w].astype(np.uint64)
        flips[rows] = np.bitwise_or.reduce(np.uint64(1) << bits, axis=1)
    h[dst] = h[src] ^ flips
    return h, np.sort(np.stack([src, dst], axis=1), axis=1)


def one(n: int, radius: int, sample: int) -> dict:
    from paddlemix_iqa.dedup.search import brute_force_pairs, near_pairs

    h, plant = planted(n, radius)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    pairs = near_pairs(h, radius)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = {(int(a), int(b)) for a, b in pairs}
    planted_found = sum((int(a), int(b)) in found for a, b in plant)
    result = {"n": n, "radius": radius, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
              "pairs": len(pairs),
              "peak_mb": round(peak / 1024, 1), "search_mb": round((peak - before) / 1024, 1),
              "planted": len(plant), "planted_found": planted_found}  # fmt: skip
    if n <= 20_000:
        start = time.perf_counter()
        brute = brute_force_pairs(h, radius)
        result["brute_seconds"] = round(time.perf_counter() - start, 2)
        result["exact"] = bool(np.array_equal(pairs, brute))
        result["checked"] = "all pairs"
    else:
        rows = np.random.default_rng(1).choice(n, sample, replace=False)
        brute = brute_force_pairs(h, radius, queries=h[rows])
        brute = brute[rows[brute[:, 0]] != brute[:, 1]]
        want = {(min(int(rows[a]), int(b)), max(int(rows[a]), int(b))) for a, b in brute}
        mine = {p for p in found if p[0] in set(rows.tolist()) or p[1] in set(rows.tolist())}
        result["exact"] = want == mine
        result["checked"] = f"pairs of {sample} random rows against all {n}"
    return result


def step(n: int, radius: int) -> dict:
    """The dedup step's decision on n signatures: image, mirror and crop searches, grouping, keeping."""
    from paddlemix_iqa.dedup.core import Candidates, find_duplicates

    h, _ = planted(n, radius)
    mirror, crop = planted(n, radius, seed=1)[0], planted(n, radius, seed=2)[0]
    start, cpu = time.perf_counter(), time.process_time()
    decided = find_duplicates(Candidates(h, mirror, crop, [None] * n, [None] * n), np.arange(n),
                              lambda pairs, how: np.ones(len(pairs), bool), radius=radius)  # fmt: skip
    return {"n": n, "step_seconds": round(time.perf_counter() - start, 2),
            "step_cpu_seconds": round(time.process_time() - cpu, 2), "duplicates": decided.stats["duplicates"],
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--step", action="store_true", help="also time the whole dedup decision (3 searches)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one-step", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.radius, args.sample)))
        return
    if args.one_step:
        print(json.dumps(step(args.one_step, args.radius)))
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--radius", str(args.radius), "--sample", str(args.sample)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
        if args.step:
            out = subprocess.run([sys.executable, __file__, "--one-step", str(n), "--radius", str(args.radius)],
                                 check=True, capture_output=True, text=True)  # fmt: skip
            rows[-1]["step"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(rows[-1]["step"]), flush=True)
    base = next((r for r in rows if "brute_seconds" in r), None)
    print(f"\nnear_pairs at radius {args.radius} (uniform hashes, 1% planted near-duplicates; 2 CPUs):")
    print(
        "| hashes | time (CPU) | peak RSS (search alone) | pairs | planted found | exact vs brute force | brute force (N^2 from 10k) / ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = ""
        if base:
            brute = base["brute_seconds"] * (r["n"] / base["n"]) ** 2
            ratio = f"{brute:.0f} s / {r['seconds']} s = {brute / max(r['seconds'], 1e-9):.0f}x"
        print(f"| {r['n']:,} | {r['seconds']} s ({r['cpu_seconds']} s) | {r['peak_mb']} MB ({r['search_mb']} MB) | {r['pairs']:,} | "
              f"{r['planted_found']}/{r['planted']} | {'yes' if r['exact'] else 'NO'} ({r['checked']}) | {ratio} |")  # fmt: skip
    for r in rows:
        if "step" in r:
            st = r["step"]
            print(f"dedup decision at {r['n']:,} (image + mirror + crop searches, grouping): {st['step_seconds']} s "
                  f"({st['step_cpu_seconds']} s CPU), peak {st['peak_mb']} MB")  # fmt: skip
    if len(rows) > 1:
        growth = np.polyfit(
            np.log([r["n"] for r in rows]), np.log([max(r["seconds"], 1e-3) for r in rows]), 1
        )[0]
        print(f"growth: time ~ N^{growth:.2f}")


if __name__ == "__main__":
    main()
