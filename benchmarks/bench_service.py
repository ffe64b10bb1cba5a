"""Load test of ``paddlemix-iqa serve`` on 127.0.0.1: images/s and latency at 1, 8 and 32 clients, against
the same chain called in-process (the ceiling), and the server's memory over 10,000 requests.

1. Ceiling: the config's chain (decode plus ops, :class:`paddlemix_iqa.pipeline.runner.Chain`)
   over the COCO photos in a process pool of ``--workers`` processes, as ``paddlemix-iqa run``
   drives it (batches of 8), timed in this run.
2. The real server (``paddlemix-iqa serve`` in a subprocess, same config and workers), and
   ``--clients`` concurrent clients (one asyncio process, httpx, keep-alive), each sending one
   photo per ``POST /v1/score`` (JSON path; ``--upload`` sends the file as multipart) until
   ``--images`` answers or ``--seconds`` have passed per level. Every non-200 answer is an error.
3. Soak: ``--soak`` requests at 8 clients, alternating JSON paths and multipart uploads, over
   160-px versions of the photos plus corrupt files (so 10,000 requests take minutes, not an
   hour; the code path is the same), sampling the RSS of the server's process tree
   (``/proc/PID/status`` VmRSS of the server and its workers) every 500 requests.

    python benchmarks/bench_service.py [--config default] [--workers 2] [--clients 1 8 32]
        [--images 192] [--seconds 60] [--soak 10000] [--upload] [--write-docs]

Exit status 1 when a request failed, or memory grew by more than ``--max-growth-mb`` over the
soak after its first 1,000 requests. ``--write-docs`` writes the table into docs/service.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, shared_photos, write_generated  # noqa: E402

DOC = ROOT / "docs" / "service.md"


# --- the ceiling ---------------------------------------------------------------------------------
class Ceiling:
    """The config's chain in a pool of ``workers`` processes, fed as the runner feeds it (batches of 8),
    with no HTTP in between; kept open so it can be timed right before and after each load level."""

    def __init__(self, config_name: str, root: Path, names: list[str], workers: int):
        import pickle

        from paddlemix_iqa.pipeline import load_config
        from paddlemix_iqa.pipeline.runner import Chain, pool_context
        from paddlemix_iqa.service.engine import _init, _rendezvous

        config = load_config(config_name)
        config.image_root = root
        self.chain = Chain(config.build_ops(), root, signer=config.build_dedup())  # the server's chain
        self.names = names
        ctx = pool_context()
        barrier = ctx.Barrier(workers)
        blob = pickle.dumps(self.chain)
        initargs = (blob, os.getpid(), barrier, str(root / names[0]))
        self.pool = ProcessPoolExecutor(workers, ctx, initializer=_init, initargs=initargs)
        self.pids = [f.result() for f in [self.pool.submit(_rendezvous, 300) for _ in range(workers)]]
        head, _, _ = self.chain.run_head([(0, {"id": "0", "image": names[0]})])
        assert head and head[0].rows and head[0].rows[0].get("error") is None, (
            "the ceiling cannot read the photos"
        )

    def measure(self, total: int) -> tuple[float, float]:
        """(seconds, CPU seconds of the workers) for ``total`` images."""
        from paddlemix_iqa.pipeline.runner import work_batch

        records = [(i, {"id": str(i), "image": self.names[i % len(self.names)]}) for i in range(total)]
        batches = [records[i : i + 8] for i in range(0, total, 8)]
        cpu = sum(cpu_seconds(p) for p in self.pids)
        start = time.perf_counter()
        done = 0
        for head, alive, loaded in self.pool.map(work_batch, batches):
            done += len(head)
            if alive:  # a neural tail runs here, in this process, as in the runner
                done += len(self.chain.run_tail(alive, loaded))
        elapsed = time.perf_counter() - start
        assert done == total
        return elapsed, sum(cpu_seconds(p) for p in self.pids) - cpu

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# --- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, RSS of ``pid`` and all its descendants) in bytes, from /proc."""

    def rss(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    return rss(pid), sum(rss(p) for p in tree(pid))


class Server:
    def __init__(self, config: str, root: Path, workers: int):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "paddlemix_iqa.cli", "serve", config, "--root", str(root)]
        cmd += ["--workers", str(workers), "--port", str(self.port), "--max-connections", "1024"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("serve not ready after 300 s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def load(
    url: str,
    requests: list[dict],
    clients: int,
    count: int,
    seconds: float,
    on_progress=None,
) -> dict:
    """``clients`` concurrent loops posting ``requests`` round-robin until ``count`` answers or ``seconds``."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    images = 0
    issued = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, trust_env=False) as client:

        async def worker() -> None:
            nonlocal images, issued
            while issued < count and time.perf_counter() < deadline:
                req = requests[issued % len(requests)]
                issued += 1
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/score", **req)
                    ok = r.status_code == 200
                    if ok:
                        images += len(r.json()["results"])
                    else:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - t)
                if on_progress:
                    on_progress(len(latencies))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "images": images,
        "seconds": elapsed,
        "images_per_s": images / elapsed,
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
        "errors": errors,
        "latencies": np.array(latencies),
    }


def level(server: Server, ceiling: Ceiling, requests: list[dict], clients: int, args) -> dict:
    """``--rounds`` alternations of the in-process chain and the server on ``--images / --rounds``
    images each (the machine is shared: alternating puts both under the same load), pooled."""
    n = max(1, args.images // args.rounds)
    c_time = c_cpu = s_cpu = 0.0
    runs = []
    for _ in range(args.rounds):
        elapsed, cpu = ceiling.measure(n)
        c_time, c_cpu = c_time + elapsed, c_cpu + cpu
        before = sum(cpu_seconds(p) for p in tree(server.proc.pid))
        runs.append(asyncio.run(load(server.url, requests, clients, n, args.seconds)))
        s_cpu += sum(cpu_seconds(p) for p in tree(server.proc.pid)) - before
    lat = np.concatenate([r["latencies"] for r in runs]) * 1000
    images = sum(r["images"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    return {
        "clients": clients,
        "requests": sum(r["requests"] for r in runs),
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "ceiling": n * args.rounds / c_time,
        "ratio": (images / seconds) / (n * args.rounds / c_time),
        "cpu_ms": 1000 * s_cpu / max(images, 1),
        "ceiling_cpu_ms": 1000 * c_cpu / (n * args.rounds),
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
        "errors": [e for r in runs for e in r["errors"]],
    }


def soak_files(root: Path, photos: list[Path]) -> list[str]:
    """160-px versions of the photos, plus truncated and non-image files, under ``root/small``."""
    small = root / "small"
    small.mkdir()
    names = []
    for p in photos:
        img = Image.open(p).convert("RGB")
        img.thumbnail((160, 160))
        img.save(small / p.name, quality=90)
        names.append(f"small/{p.name}")
    data = (small / photos[0].name).read_bytes()
    (small / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (small / "text.png").write_bytes(b"not an image\n" * 20)
    return names + ["small/truncated.jpg", "small/text.png"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="default")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--images", type=int, default=192, help="answers per level (and for the ceiling)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternations of in-process and server per level"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="at most this long per round")
    parser.add_argument("--soak", type=int, default=10_000, help="requests of the memory soak (0: none)")
    parser.add_argument("--soak-seconds", type=float, default=1800.0)
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument(
        "--upload", action="store_true", help="upload the photos (multipart) instead of paths"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out

    photos = shared_photos("coco")
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        root = Path(tmp) / "root"
        (root / "coco").mkdir(parents=True)
        for p in photos:
            shutil.copyfile(p, root / "coco" / p.name)
        names = [f"coco/{p.name}" for p in photos]
        small = soak_files(root, photos) if args.soak else []

        ceiling = Ceiling(args.config, root, names, args.workers)
        if args.upload:
            requests = [{"files": [("file", (n, (root / n).read_bytes()))]} for n in names]
        else:
            requests = [{"json": {"images": [{"path": n}]}} for n in names]
        server = Server(args.config, root, args.workers)
        levels, soak = [], None
        try:
            for clients in args.clients:
                warm = min(8, clients) * 2  # open the connections first
                asyncio.run(load(server.url, requests[:8], clients, warm, 30))
                res = level(server, ceiling, requests, clients, args)
                levels.append(res)
                print(
                    f"{clients:3d} clients: {res['images_per_s']:.2f} images/s, in-process {res['ceiling']:.2f} "
                    f"({res['ratio']:.0%}); CPU per image {res['cpu_ms']:.0f} ms, in-process "
                    f"{res['ceiling_cpu_ms']:.0f} ms; p50 {res['p50']:.0f} ms, p95 {res['p95']:.0f} ms, "
                    f"p99 {res['p99']:.0f} ms, {res['requests']} requests, {len(res['errors'])} errors",
                    flush=True,
                )
                for e in res["errors"][:5]:
                    print("   ", e)
            if args.soak:
                soak = run_soak(server, root, small, args)
        finally:
            server.stop()
            ceiling.close()

    failed = sum(len(r["errors"]) for r in levels) + (len(soak["errors"]) if soak else 0)
    grew = soak is not None and soak["growth_mb"] > args.max_growth_mb
    if args.write_docs:
        write_docs(args, levels, soak)
    for r in [*levels, soak or {}]:
        r.pop("latencies", None)
    print(json.dumps({"levels": levels, "soak": soak}, default=str)[:2000])
    return 1 if failed or grew else 0


def run_soak(server: Server, root: Path, small: list[str], args) -> dict:
    """``--soak`` requests at 8 clients (paths and uploads alternating); RSS every 500 requests."""
    requests = []
    for i, n in enumerate(small):
        requests.append({"json": {"images": [{"path": n}]}})
        requests.append({"files": [("file", (f"{i}.jpg", (root / n).read_bytes()))]})
    samples: list[tuple[int, int, int]] = [(0, *tree_rss(server.proc.pid))]

    def progress(done: int) -> None:
        if done % 500 == 0:
            samples.append((done, *tree_rss(server.proc.pid)))

    res = asyncio.run(load(server.url, requests, 8, args.soak, args.soak_seconds, progress))
    samples.append((res["requests"], *tree_rss(server.proc.pid)))
    after_warmup = [s for s in samples if s[0] >= 1000] or samples
    growth = (after_warmup[-1][2] - after_warmup[0][2]) / 2**20
    res.update(
        samples=samples,
        growth_mb=growth,
        main_mb=(samples[-1][1] / 2**20),
        tree_mb=(samples[-1][2] / 2**20),
    )
    print(
        f"soak: {res['requests']} requests in {res['seconds']:.0f} s, {len(res['errors'])} errors; server tree RSS "
        + ", ".join(f"{n}: {t / 2**20:.0f} MB" for n, _, t in samples[:: max(1, len(samples) // 8)])
        + f", end {samples[-1][2] / 2**20:.0f} MB (main {samples[-1][1] / 2**20:.0f} MB); "
        f"growth after the first 1,000: {growth:+.1f} MB",
        flush=True,
    )
    return res


def write_docs(args, levels: list[dict], soak: dict | None) -> None:
    mode = "multipart uploads" if args.upload else "JSON paths"
    lines = [
        f"In-process: the same chain (decode, ops, dedup signatures) in a pool of {args.workers} processes "
        f"without HTTP, alternated with the server {args.rounds} times per level so both run under the same "
        "load of a shared machine. CPU per image: the server's whole process tree (main and workers) against "
        "the in-process workers, which the machine's load does not change.",
        "",
        "| clients | images/s | in-process images/s | of in-process | CPU ms/image | in-process CPU ms/image "
        "| p50 ms | p95 ms | p99 ms | requests | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in levels:
        lines.append(
            f"| {r['clients']} | {r['images_per_s']:.1f} | {r['ceiling']:.1f} | {r['ratio']:.0%} | "
            f"{r['cpu_ms']:.0f} | {r['ceiling_cpu_ms']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | "
            f"{r['requests']} | {len(r['errors'])} |"
        )
    if soak:
        first = next((s for s in soak["samples"] if s[0] >= 1000), soak["samples"][0])
        lines += [
            "",
            f"Memory over {soak['requests']:,} requests (8 clients, JSON paths and uploads alternating, 160-px "
            f"photos and corrupt files; {len(soak['errors'])} errors, {soak['seconds']:.0f} s): RSS of the "
            f"server's process tree {first[2] / 2**20:.0f} MB after {first[0]:,} requests, "
            f"{soak['tree_mb']:.0f} MB at the end ({soak['growth_mb']:+.1f} MB; main process "
            f"{soak['main_mb']:.0f} MB).",
        ]
    facts = f"config {args.config}, {args.workers} workers, one photo per request as {mode}, 64 COCO photos"
    write_generated(DOC, "bench_service", lines, facts=facts)


if __name__ == "__main__":
    sys.exit(main())
