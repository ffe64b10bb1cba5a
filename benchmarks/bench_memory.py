"""Peak RSS per process of a pipeline run over a corpus built to exhaust memory.

The corpus (generated, nothing downloaded): huge JPEG and PNG photos just under
the pixel limit, a 16-bit PNG that compresses to a few hundred KB, decompression
bombs (a header claiming 3.6 GP, and a real zlib bomb), a GIF with thousands of
frames, 24-MP phone-size photos in one batch, a float TIFF, and normal photos.
The run is ``paddlemix-iqa run`` in a subprocess; every process of its tree
(main, fork server, workers) is sampled for its kernel-reported peak RSS
(``VmHWM``), so the figure is what the OS saw, not an estimate.

    python benchmarks/bench_memory.py [--config configs/default.yaml] [--workers 1 2] [--limit-gb 1.5]

Exit status 1 when any process peaks above ``--limit-gb``.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from _common import ROOT, process_tree
from PIL import Image


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _zlib_bomb_png(path: Path, side: int) -> None:
    """A valid grey PNG of side x side zeros: kilobytes on disk, side^2 bytes decoded."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    )


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like RGB texture (smooth noise plus edges) without holding float64 of the full size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    import cv2

    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    big[:: max(1, h // 50)] = 255
    return big


def build_corpus(root: Path, max_pixels: int) -> list[dict]:
    """Files and records; each file is made once and reused across runs."""
    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def make(name: str, fn) -> None:
        path = img / name
        if not path.exists():
            fn(path)
        files[name] = f"img/{name}"

    side = int((max_pixels * 0.95) ** 0.5)  # just under the limit: decoded, not refused
    make("huge.jpg", lambda p: Image.fromarray(_texture(side, side, 1)).save(p, quality=85))
    make("huge.png", lambda p: Image.fromarray(_texture(side // 2, side, 2)).save(p, compress_level=1))
    make("gray16.png", lambda p: Image.fromarray(np.full((10000, 10000), 40000, np.uint16)).save(p))
    make("zlib_bomb.png", lambda p: _zlib_bomb_png(p, 30000))  # 900 MP of zeros, ~1 MB on disk
    make("header_bomb.png", lambda p: p.write_bytes(_header_only_png(60000, 60000)))
    make("float.tif", lambda p: Image.fromarray(np.full((6000, 6000), 0.5, np.float32), mode="F").save(p))

    def frames(p: Path) -> None:
        first = Image.fromarray(_texture(64, 64, 3)).convert("P")
        others = [Image.fromarray(_texture(64, 64, 4 + i % 3)).convert("P") for i in range(5000)]
        first.save(p, save_all=True, append_images=others, duration=10, loop=0)

    make("frames.gif", frames)
    for i in range(8):
        make(f"phone{i}.jpg", lambda p, i=i: Image.fromarray(_texture(4000, 6000, 10 + i)).save(p, quality=90))
    records = [{"id": name, "image": rel} for name, rel in files.items()]
    records.append({"id": "all_phones", "images": [files[f"phone{i}.jpg"] for i in range(8)]})
    return records


def _header_only_png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def every_op_on_every_image(config: Path, work: Path) -> Path:
    """The config with ``keep_all: true`` on every step: a rejection ends a record's chain, and
    the worst case for memory is every op seeing every image."""
    import yaml

    data = yaml.safe_load(config.read_text())
    steps = []
    for step in data["process"]:
        ((name, params),) = (step if isinstance(step, dict) else {step: None}).items()
        steps.append({name: {**(params or {}), "keep_all": True}})
    data["process"] = steps
    path = work / f"keep_all_{config.name}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _peak_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run(config: str, root: Path, workers: int, timeout: float) -> tuple[int, dict[int, int], dict]:
    out = root / f"out_w{workers}"
    cmd = [
        sys.executable, "-m", "paddlemix_iqa.cli", "run", config, f"input={root / 'records.jsonl'}",
        f"image_root={root}", f"output_dir={out}", f"workers={workers}", "batch_size=32",
        "--fresh", "--no-progress", "--no-report",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in process_tree(proc.pid):
            kb = _peak_kb(pid)
            if kb:
                peaks[pid] = max(peaks.get(pid, 0), kb)
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        raise SystemExit(f"run did not finish in {timeout:.0f} s")
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {stderr[-2000:]}")
    lines = [json.loads(line) for name in ("kept.jsonl", "rejected.jsonl") for line in (out / name).open()]
    return proc.pid, peaks, {r["id"]: r.get("__iqa_error", "decoded and scored by every op") for r in lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit-gb", type=float, default=1.5)
    parser.add_argument("--max-pixels", type=int, default=None, help="PADDLEMIX_IQA_MAX_PIXELS of the corpus")
    parser.add_argument("--work", default=None, help="corpus folder (kept between runs); default: a temp dir")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    from paddlemix_iqa.io import max_pixels_limit

    limit = args.max_pixels or max_pixels_limit()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_memory_"))
    records = build_corpus(work, limit)
    (work / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = every_op_on_every_image(Path(args.config), work)
    print(f"corpus: {len(records)} records in {work} (pixel limit {limit / 1e6:.0f} MP)")
    worst = 0.0
    for workers in args.workers:
        main_pid, peaks, outcome = run(str(config), work, workers, args.timeout)
        gb = {pid: kb / 2**20 for pid, kb in peaks.items()}
        others = sorted((v for p, v in gb.items() if p != main_pid), reverse=True)
        print(
            f"workers={workers}: peak RSS main {gb[main_pid]:.2f} GB; "
            f"other processes {', '.join(f'{v:.2f}' for v in others) or '-'} GB; "
            f"{len(outcome)} records"
        )
        for rid, what in sorted(outcome.items()):
            print(f"    {rid:15s} {what[:110]}")
        worst = max(worst, *gb.values())
    verdict = "OK" if worst <= args.limit_gb else "OVER"
    print(f"largest peak of any process: {worst:.2f} GB (limit {args.limit_gb} GB): {verdict}")
    return 0 if worst <= args.limit_gb else 1


if __name__ == "__main__":
    sys.exit(main())
