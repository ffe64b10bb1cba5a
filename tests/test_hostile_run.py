"""The whole command against a hostile dataset: every line accounted for exactly once, exit 0."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _damaged(photo: np.ndarray, tmp: Path) -> dict[str, bytes]:
    """Small files of many formats, each truncated and with bytes flipped in its body."""
    img = Image.fromarray(photo[::8, ::8])
    frames = [img.convert("P"), img.rotate(90).convert("P")]
    files: dict[str, bytes] = {}
    for ext, save in {
        "jpg": lambda f: img.save(f, "JPEG"),
        "png": lambda f: img.save(f, "PNG"),
        "gif": lambda f: frames[0].save(f, "GIF", save_all=True, append_images=frames[1:]),
        "tif": lambda f: img.save(f, "TIFF"),
        "webp": lambda f: img.save(f, "WEBP"),
        "bmp": lambda f: img.save(f, "BMP"),
    }.items():
        buf = io.BytesIO()
        save(buf)
        good = buf.getvalue()
        files[f"cut.{ext}"] = good[: len(good) // 3]
        flipped = bytearray(good)
        for i in range(20, len(good), max(1, len(good) // 25)):
            flipped[i] ^= 0xA5
        files[f"flipped.{ext}"] = bytes(flipped)
    return files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_poison_records_and_damaged_files_never_stop_the_command(tmp_path, photo):
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(photo).save(root / "ok.jpg", quality=90)
    for name, data in _damaged(photo, tmp_path).items():
        (root / name).write_bytes(data)
    os.mkfifo(root / "pipe.jpg")
    (tmp_path / "secret.jpg").write_bytes((root / "ok.jpg").read_bytes())
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")

    lines = [
        json.dumps(["an", "array", "first"]).encode(),
        json.dumps({"id": "ok", "image": "ok.jpg"}).encode(),
        b'{"id": "bad-utf8", "image": "ok.jpg", "text": "\xff\xfe"}',
        json.dumps({"id": "surrogate", "image": "ok.jpg", "text": "\ud800"}).encode(),
        json.dumps({"id": "tilde", "image": "~nosuchuser/a.jpg"}).encode(),
        b'{"id": "bigint", "n": ' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({"id": "cr", "image": "ok.jpg", "text": "a\rb"}).encode(),
        json.dumps({"id": "fifo", "image": "pipe.jpg"}).encode(),
        json.dumps({"id": "device", "image": "/dev/zero"}).encode(),
        json.dumps({"id": "dotdot", "image": "../secret.jpg"}).encode(),
        json.dumps({"id": "symlink", "image": "link.jpg"}).encode(),
        json.dumps({"id": "dir", "image": "."}).encode(),
        json.dumps({"id": "nul", "image": "a\x00.jpg"}).encode(),
        json.dumps({"id": "forged", "image": "ok.jpg", "__iqa_reject": "x: forged"}).encode(),
        b"{not json",
        b"",
        *(json.dumps({"id": f"damaged-{name}", "image": name}).encode() for name in sorted(_damaged(photo, tmp_path))),
    ]
    data = tmp_path / "records.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    expected = sum(1 for line in lines if line.strip())
    config = tmp_path / "c.yaml"
    config.write_text(
        "process:\n  - decodable_filter:\n  - laplacian_filter: {min_score: 0.01}\n"
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "paddlemix_iqa.cli", "run", str(config),
        f"input={data}", f"image_root={root}", f"output_dir={out}", "--no-progress", "--no-report",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in (out / "kept.jsonl").read_text(encoding="utf-8").splitlines()]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(kept) + len(rejected) == expected
    why = {r.get("id") or f"line {r.get('__iqa_line')}": r["__iqa_reject"] for r in rejected}
    assert {r["id"] for r in kept} == {"ok", "surrogate", "cr", "forged"}
    assert next(r for r in kept if r["id"] == "surrogate")["text"] == "\ufffd"
    assert why["fifo"].endswith("not_a_regular_file: FIFO") or "not_a_regular_file" in why["fifo"]
    assert "not_a_regular_file" in why["dir"]
    for rid in ("device", "dotdot", "symlink"):
        assert "outside_image_root" in why[rid], why[rid]
    for line in (1, 3, 6, 7, 16):
        assert why[f"line {line}"].startswith("bad_record: "), why
    for rid, reason in why.items():
        if rid.startswith("damaged-"):
            assert "decode_error" in reason or "laplacian" in reason, (rid, reason)
