"""The client of the scoring service and ``paddlemix-iqa score --server``, against a real server.

The server runs with a bearer token and a small upload limit, so the client has to
authenticate, split chunks the server refuses for size, and turn per-image refusals into
rejected results without stopping the job.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from PIL import Image

from conftest import write_png_header_only

pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from test_service import free_port, make_images, serve  # noqa: E402

from paddlemix_iqa.client import ScoringClient, ServiceError  # noqa: E402

TOKEN = "client-test-token-8f1c"
UPLOAD_LIMIT = 450_000


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("client")
    root = tmp / "root"
    images = make_images(root)
    write_png_header_only(root / "huge.png", 9000, 9000)
    images["huge"] = root / "huge.png"
    images["heavy"] = root / "heavy.png"  # one upload alone over the limit
    img = cv2.resize(cv2.imread(str(images["coffee"])), (900, 600))
    Image.fromarray(img + (img % 7)).save(images["heavy"], compress_level=0)
    assert images["heavy"].stat().st_size > UPLOAD_LIMIT
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    args = ["--root", str(root), "--workers", "2", "--token-file", str(token_file)]
    args += ["--max-upload-bytes", str(UPLOAD_LIMIT), "--max-pixels", "50000000"]
    with serve("default", *args) as url:
        yield {"url": url, "root": root, "images": images}


def direct(server: dict, name: str) -> dict:
    """The server's answer for one uploaded image, asked without the client."""
    import httpx

    data = server["images"][name].read_bytes()
    r = httpx.post(
        server["url"] + "/v1/score",
        files=[("file", (name, data))],
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def test_score_files_in_chunks_keeps_order_and_survives_bad_files(server, tmp_path):
    names = ["astronaut", "coffee_blur", "truncated", "chelsea", "huge", "empty", "coffee", "heavy", "wide"]
    paths = [server["images"][n] for n in names]
    paths.insert(3, tmp_path / "missing.jpg")
    with ScoringClient(server["url"], token=TOKEN) as client:
        assert client.wait_ready()["ready"] is True
        results = client.score_files(paths, batch_size=4, concurrency=2)
    assert len(results) == len(paths)
    by_name = dict(
        zip(["missing" if p.name == "missing.jpg" else p.stem for p in paths], results, strict=True)
    )
    assert by_name["missing"]["verdict"] == "rejected"
    assert by_name["missing"]["reason"].startswith("client: cannot read")
    assert by_name["huge"]["reason"].startswith("refused: too_many_pixels")
    assert by_name["heavy"]["reason"].startswith("refused: too_large")
    for name in ("astronaut", "coffee_blur", "truncated", "chelsea", "empty", "coffee", "wide"):
        stem = server["images"][name].stem
        assert by_name[stem] == direct(server, name), name  # chunked and split, the same answers
    assert by_name["astronaut"]["verdict"] == "kept" and by_name["coffee_blur"]["reason"].startswith("blur:")


def test_score_paths_and_bytes(server):
    with ScoringClient(server["url"], token=TOKEN) as client:
        got = client.score_paths(["coffee.jpg", "coffee_blur.jpg", "../etc/passwd", "nope.jpg"], batch_size=8)
        raw = client.score_bytes([server["images"]["coffee"].read_bytes(), b"garbage"])
    assert [r["verdict"] for r in got] == ["kept", "rejected", "rejected", "rejected"]
    assert got[0] == direct(server, "coffee")
    assert got[2]["reason"].startswith("refused: outside_root")
    assert "missing" in got[3]["reason"]
    assert raw[0] == got[0] and raw[1]["verdict"] == "rejected" and "not_an_image" in raw[1]["reason"]


def test_wrong_token_and_unreachable_server_raise(server):
    with ScoringClient(server["url"], token="wrong") as client:
        with pytest.raises(ServiceError) as err:
            client.score_paths(["coffee.jpg"])
    assert err.value.status == 401 and err.value.code == "unauthorized"
    with ScoringClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ServiceError, match="cannot reach"):
            client.score_paths(["coffee.jpg"])
        with pytest.raises(ServiceError, match="cannot reach"):
            client.wait_ready(timeout=30)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PADDLEMIX_IQA_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "paddlemix_iqa.cli", "score", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_score_command_with_server(server, tmp_path):
    images = server["images"]
    done = run_cli(
        "--server", server["url"], str(images["coffee"]), str(images["coffee_blur"]), str(images["truncated"]),
        "--format", "csv", "--metrics", "fused,brisque",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == ["path", "verdict", "fused", "brisque", "reason"]
    assert [r["verdict"] for r in rows] == ["kept", "rejected", "rejected"]
    want = direct(server, "coffee_blur")
    assert float(rows[1]["fused"]) == pytest.approx(want["scores"]["fused"], rel=1e-12)
    assert rows[1]["reason"] == want["reason"] and "truncated" in rows[2]["reason"]

    done = run_cli("--server", server["url"], "--by-path", "coffee.jpg", "flat.png", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [x["path"] for x in lines] == ["coffee.jpg", "flat.png"] and lines[0]["verdict"] == "kept"

    done = run_cli("--server", f"http://127.0.0.1:{free_port()}", str(images["coffee"]))
    assert done.returncode == 1 and "cannot reach" in done.stderr
