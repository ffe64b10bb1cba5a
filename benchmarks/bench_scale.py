"""Images/s of the default chain on the local runner and on a local Ray (1 and 2 CPUs), and memory at scale.

Speed (default): the COCO photos of ../shared/data as records, run at two sizes (``--repeat`` copies
and three times that) on each engine in the same process, so that the fixed cost of a run (starting
the worker pool or the Ray actors and their imports) and the per-image rate are told apart:
rate = (n2 - n1) / (t2 - t1), fixed = t1 - n1 / rate. Ray's own start-up (``ray.init``) is timed
separately. Per-image overhead = 1 / rate(Ray) - 1 / rate(local) at the same CPU count. Goal: Ray
within 15% of the local runner at 2 CPUs once started.

    python benchmarks/bench_scale.py [--repeat 1] [--config default]

Memory (``--memory N``): N records (most name a missing image, some a broken line, one in 1000 a real
photo) through ``paddlemix-iqa run --engine local|ray`` in a subprocess; the resident memory of the
whole process tree (driver, Ray's raylet, GCS and workers, or the runner's pool) is sampled every
0.5 s, so flat memory shows as the same figure at 25% and at 100% of the run.

    python benchmarks/bench_scale.py --memory 1000000 [--engines local ray]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, process_tree, shared_photos, write_generated

from paddlemix_iqa.pipeline import load_config, run_pipeline
from paddlemix_iqa.pipeline.outputs import committed_count

DOC = ROOT / "docs" / "scaling.md"


def write_records(photos: list[Path], repeat: int, path: Path) -> int:
    with open(path, "w") as f:
        for i in range(repeat):
            for p in photos:
                f.write(json.dumps({"id": f"{i}-{p.stem}", "image": p.name}) + "\n")
    return repeat * len(photos)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rate_and_fixed(n1: int, t1: float, n2: int, t2: float) -> tuple[float, float]:
    rate = (n2 - n1) / max(t2 - t1, 1e-9)
    return rate, t1 - n1 / rate


def speed(args: argparse.Namespace) -> int:
    photos = shared_photos("coco")
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    small, big = work / "small.jsonl", work / "big.jsonl"
    n1 = write_records(photos, args.repeat, small)
    n2 = write_records(photos, 3 * args.repeat, big)

    def config(records: Path, out: str, workers: int):
        return load_config(
            args.config,
            [f"input={records}", f"image_root={photos[0].parent}", f"output_dir={work / out}",
             f"workers={workers}", "report=false", "progress=false"],
        )  # fmt: skip

    rows: dict[str, tuple[float, float]] = {}
    for cpus in (1, 2):
        t1 = timed(lambda c=cpus: run_pipeline(config(small, f"local{c}a", c), fresh=True))
        t2 = timed(lambda c=cpus: run_pipeline(config(big, f"local{c}b", c), fresh=True))
        rows[f"local runner, {cpus} worker(s)"] = rate_and_fixed(n1, t1, n2, t2)
    import ray

    from paddlemix_iqa.integrations.ray import run_ray

    startup = {}
    for cpus in (1, 2):
        startup[cpus] = timed(
            lambda c=cpus: ray.init(num_cpus=c, include_dashboard=False, log_to_driver=False)
        )
        t1 = timed(lambda c=cpus: run_ray(config(small, f"ray{c}a", c), fresh=True))
        t2 = timed(lambda c=cpus: run_ray(config(big, f"ray{c}b", c), fresh=True))
        rows[f"Ray, {cpus} CPU(s)"] = rate_and_fixed(n1, t1, n2, t2)
        ray.shutdown()
    identical = True
    for name in ("kept.jsonl", "rejected.jsonl"):
        same = (work / "local2b" / name).read_bytes() == (work / "ray2b" / name).read_bytes()
        identical &= same
        print(f"{name}: Ray and local runner {'identical' if same else 'DIFFER'}")
    print(f"\n{n1} and {n2} records ({len(photos)} COCO photos); config {args.config}")
    print(f"{'':28s} {'images/s':>9s} {'fixed s/run':>12s}")
    for name, (rate, fixed) in rows.items():
        print(f"{name:28s} {rate:9.2f} {fixed:12.1f}")
    for cpus in (1, 2):
        local, on_ray = rows[f"local runner, {cpus} worker(s)"][0], rows[f"Ray, {cpus} CPU(s)"][0]
        print(
            f"{cpus} CPU(s): Ray {on_ray / local:.2f}x the local runner; per-image overhead "
            f"{1000 * (1 / on_ray - 1 / local):+.1f} ms; ray.init {startup[cpus]:.1f} s"
        )
    growth = rows["Ray, 2 CPU(s)"][0] / rows["Ray, 1 CPU(s)"][0]
    print(
        f"growth 1 -> 2 CPUs: Ray {growth:.2f}x, local {rows['local runner, 2 worker(s)'][0] / rows['local runner, 1 worker(s)'][0]:.2f}x"
    )
    ratio = rows["Ray, 2 CPU(s)"][0] / rows["local runner, 2 worker(s)"][0]
    print(
        f"goal (Ray >= 0.85x the local runner at 2 CPUs once started): {'met' if ratio >= 0.85 else 'NOT met'}"
    )
    if args.write_docs:
        table = ["| engine | images/s once started | fixed cost per run (s) | vs local runner, same CPUs |"]
        table.append("|---|---|---|---|")
        for name, (rate, fixed) in rows.items():
            local = rows[f"local runner, {1 if '1' in name.split(',')[1] else 2} worker(s)"][0]
            table.append(f"| {name} | {rate:.2f} | {fixed:.1f} | {rate / local:.2f}x |")
        overhead = 1000 * (1 / rows["Ray, 2 CPU(s)"][0] - 1 / rows["local runner, 2 worker(s)"][0])
        table += [
            "",
            f"`ray.init`: {startup[1]:.1f} s (1 CPU), {startup[2]:.1f} s (2 CPUs). Per-image overhead of Ray at "
            f"2 CPUs: {overhead:+.1f} ms. Ray's kept and rejected files were "
            f"{'byte-identical to' if identical else 'DIFFERENT from'} the local runner's.",
        ]
        facts = f"{n1} and {n2} records of {len(photos)} COCO photos, config {args.config}"
        write_generated(DOC, "bench_scale", table, facts=facts)
    return 0 if ratio >= 0.85 else 1


# --- memory -------------------------------------------------------------------------------------
def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(args: argparse.Namespace) -> int:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_scale_mem_"))
    work.mkdir(parents=True, exist_ok=True)
    photo = shared_photos("coco")[0]
    (work / "real.jpg").write_bytes(photo.read_bytes())
    records = work / f"records_{args.memory}.jsonl"
    if not records.exists():
        with open(records, "w") as f:
            for i in range(args.memory):
                if i % 1000 == 0:
                    f.write(json.dumps({"id": f"r{i}", "image": "real.jpg"}) + "\n")
                elif i % 100 == 1:
                    f.write('{"id": "broken", "image": \n')
                else:
                    f.write(json.dumps({"id": f"m{i}", "image": f"missing/{i}.jpg", "text": "x" * 64}) + "\n")
    print(f"{args.memory} records in {records} ({records.stat().st_size / 2**20:.0f} MB)")
    table = [
        "| engine | records/s | driver RSS at 25% / 50% / 100% (MB) | whole process tree at 25% / 50% / 100% (MB) "
        "| peak driver / tree (MB) |",
        "|---|---|---|---|---|",
    ]
    for engine in args.engines:
        out = work / f"out_{engine}"
        cmd = [
            sys.executable, "-m", "paddlemix_iqa.cli", "run", args.config, f"batch_size={args.batch_size}",
            "--input", str(records), "--output", str(out), "--fresh", "--no-report", "--no-progress",
            "--engine", engine,
        ] + (["--num-cpus", "2"] if engine == "ray" else ["--workers", "2"])  # fmt: skip
        print("$", " ".join(cmd))
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, int, int, int]] = []  # (seconds, committed, driver kB, tree kB)
        while proc.poll() is None and time.monotonic() - start < args.timeout:
            pids = process_tree(proc.pid)
            samples.append(
                (time.monotonic() - start, committed_count(out), _rss_kb(proc.pid), sum(_rss_kb(p) for p in pids))
            )
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
            raise SystemExit(f"{engine}: not finished in {args.timeout:.0f} s")
        stdout, stderr = proc.communicate()
        if proc.returncode not in (0, 4):
            raise SystemExit(f"{engine} failed ({proc.returncode}): {stderr[-2000:]}")
        seconds = time.monotonic() - start
        print(stdout.strip().splitlines()[0])
        print(f"{engine}: {seconds:.0f} s, {args.memory / seconds:.0f} records/s")
        at = {}
        for frac in (0.25, 0.5, 0.75, 1.0):
            s = at[frac] = next((s for s in samples if s[1] >= frac * args.memory), samples[-1])
            print(
                f"  at {s[1]:>8d} records committed: driver {s[2] / 1024:6.0f} MB, whole tree {s[3] / 1024:6.0f} MB"
            )
        peak_driver, peak_tree = max(s[2] for s in samples) / 1024, max(s[3] for s in samples) / 1024
        print(f"  peak: driver {peak_driver:.0f} MB, whole tree {peak_tree:.0f} MB")
        driver = " / ".join(f"{at[f][2] / 1024:.0f}" for f in (0.25, 0.5, 1.0))
        tree = " / ".join(f"{at[f][3] / 1024:.0f}" for f in (0.25, 0.5, 1.0))
        rate = args.memory / seconds
        table.append(f"| {engine} | {rate:.0f} | {driver} | {tree} | {peak_driver:.0f} / {peak_tree:.0f} |")
    if args.write_docs:
        table.append("")
        table.append(
            "The tree is every process of the run (on Ray: the driver plus Ray's GCS, raylet, dashboard agent "
            "and worker processes; shared object-store pages count in each process that maps them)."
        )
        facts = f"{args.memory} records, batch_size {args.batch_size}"
        write_generated(DOC, "bench_scale_memory", table, facts=facts)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default", help="a config file or a bundled config name")
    parser.add_argument("--repeat", type=int, default=1, help="copies of the 64 photos in the smaller run")
    parser.add_argument("--memory", type=int, default=None, help="records of the memory run (e.g. 1000000)")
    parser.add_argument("--engines", nargs="+", default=["local", "ray"])
    parser.add_argument("--batch-size", type=int, default=256, help="memory run: records per batch")
    parser.add_argument("--work", default=None, help="memory run: folder for the records (kept)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/scaling.md")
    args = parser.parse_args()
    return memory(args) if args.memory else speed(args)


if __name__ == "__main__":
    sys.exit(main())
