"""The scoring service: a real ``paddlemix-iqa serve`` on 127.0.0.1 judged against ``paddlemix-iqa run``.

One server (a subprocess, the real command) serves the module; its verdicts, reasons and
scores must equal those of ``run`` with the same config on the same files (good, blurred,
corrupt, large, 16-bit, animated images), and every refusal must be a 4xx with a JSON body.
The token check runs on the ASGI app in-process (it needs no model); the neural batching
runs the engine in-process with a real PP-LCNet.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import shared, write_png_header_only

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

MAX_PIXELS = 40_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(config: Path | str, *args: str, env: dict | None = None, wait: float = 120.0) -> Iterator[str]:
    """``paddlemix-iqa serve`` in a subprocess on a free 127.0.0.1 port, ready; stopped (by its pid) after."""
    port = free_port()
    cmd = [sys.executable, "-m", "paddlemix_iqa.cli", "serve", str(config), "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited with {proc.returncode}: {proc.stdout.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"serve not ready after {wait} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- the images ----------------------------------------------------------------------------
def make_images(folder: Path) -> dict[str, Path]:
    """Good photos and what goes wrong with real files: blur, truncation, not an image, an empty
    file, 16-bit, an animation, a large photo, a flat image, tiny and very wide ones."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    out = {}
    for name, img in photos.items():
        out[name] = folder / f"{name}.jpg"
        Image.fromarray(img).save(out[name], quality=92)
        out[f"{name}_blur"] = folder / f"{name}_blur.jpg"
        Image.fromarray(cv2.GaussianBlur(img, (0, 0), 3.0)).save(out[f"{name}_blur"], quality=92)
    out["truncated"] = folder / "truncated.jpg"
    out["truncated"].write_bytes(out["astronaut"].read_bytes()[:5000])
    out["text"] = folder / "notes.png"
    out["text"].write_bytes(b"not an image at all\n" * 50)
    out["empty"] = folder / "empty.jpg"
    out["empty"].write_bytes(b"")
    out["gray16"] = folder / "gray16.png"
    gray = cv2.cvtColor(photos["coffee"], cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    Image.fromarray(gray).save(out["gray16"])
    out["animated"] = folder / "animated.gif"
    frames = [Image.fromarray(photos["chelsea"]), Image.fromarray(photos["coffee"][:300, :451])]
    frames[0].save(out["animated"], save_all=True, append_images=frames[1:], duration=100)
    out["large"] = folder / "large.jpg"
    Image.fromarray(cv2.resize(photos["astronaut"], (3000, 3000), interpolation=cv2.INTER_CUBIC)).save(
        out["large"], quality=90
    )
    out["flat"] = folder / "flat.png"
    Image.new("RGB", (300, 200), (120, 130, 140)).save(out["flat"])
    out["tiny"] = folder / "tiny.png"
    Image.fromarray(photos["coffee"][:40, :40]).save(out["tiny"])
    out["wide"] = folder / "wide.jpg"
    Image.fromarray(photos["coffee"][:100]).save(out["wide"], quality=92)
    return out


def run_verdicts(
    tmp: Path, config: Path, root: Path, names: list[str], env: dict | None = None
) -> list[dict]:
    """``paddlemix-iqa run`` (a subprocess, the real command) on ``names`` under ``root``: per image,
    the verdict, the reason and the scores the service must give."""
    records = tmp / f"records-{len(names)}-{abs(hash(tuple(names)))}.jsonl"
    records.write_text("".join(json.dumps({"id": str(i), "image": n}) + "\n" for i, n in enumerate(names)))
    out = records.with_suffix("")
    cmd = [
        sys.executable,
        "-m",
        "paddlemix_iqa.cli",
        "run",
        str(config),
        f"image_root={json.dumps(str(root))}",
    ]
    cmd += ["--input", str(records), "--output", str(out), "--no-report", "--no-progress"]
    done = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 4), done.stderr
    verdicts: dict[str, dict] = {}
    for name, verdict in (("kept.jsonl", "kept"), ("rejected.jsonl", "rejected")):
        for line in (out / name).read_text().splitlines():
            rec = json.loads(line)
            verdicts[rec["id"]] = {"verdict": verdict, "reason": rec.get("__iqa_reject")}
    for line in (out / "scores.jsonl").read_text().splitlines():
        row = json.loads(line)
        verdicts[row["id"]]["scores"] = {k: v for k, v in row.items() if k not in ("index", "id", "image")}
    return [verdicts[str(i)] for i in range(len(names))]


def same(service: list[dict], run: list[dict]) -> None:
    assert len(service) == len(run)
    for got, want in zip(service, run, strict=True):
        assert got["verdict"] == want["verdict"], (got, want)
        assert got["reason"] == want["reason"]
        assert got["scores"].keys() == want["scores"].keys()
        for key, value in want["scores"].items():
            if isinstance(value, float):
                assert got["scores"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert got["scores"][key] == value, key


# --- the module's server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("service")
    root = tmp / "root"
    images = make_images(root / "img")
    (root / "sub").mkdir()
    secret = tmp / "secret.jpg"  # outside the root; a symlink under the root points to it
    secret.write_bytes(images["coffee"].read_bytes())
    (root / "sub" / "link.jpg").symlink_to(secret)
    write_png_header_only(root / "img" / "huge.png", 10_000, 10_000)  # 100 MP by its header
    config = tmp / "service.yaml"
    config.write_text(
        Path(__import__("paddlemix_iqa").__file__).parent.joinpath("configs", "default.yaml").read_text()
    )
    args = ["--root", str(root), "--workers", "2", "--max-images", "12", "--max-upload-bytes", str(8 << 20)]
    args += ["--max-pixels", str(MAX_PIXELS), "--timeout", "5"]
    with serve(config, *args) as url:
        yield {"url": url, "root": root, "images": images, "config": config, "tmp": tmp}


CASES = [
    "astronaut",
    "astronaut_blur",
    "coffee",
    "coffee_blur",
    "chelsea",
    "chelsea_blur",
    "truncated",
    "text",
    "empty",
    "gray16",
    "animated",
    "large",
]
MORE = ["flat", "tiny", "wide"]


def test_uploads_paths_and_base64_get_the_verdicts_of_run(site):
    names = CASES + MORE
    rel = [str(site["images"][n].relative_to(site["root"])) for n in names]
    want = run_verdicts(site["tmp"], site["config"], site["root"], rel)
    assert {w["verdict"] for w in want} == {"kept", "rejected"}
    assert any(w["reason"] and w["reason"].startswith("blur:") for w in want)
    assert any(w["reason"] and "truncated" in w["reason"] for w in want)
    if "- dedup:" in site["config"].read_text():  # 'large' is 'astronaut' upscaled: one copy goes
        assert any(w["reason"] and w["reason"].startswith("dedup: duplicate_of") for w in want)

    # one request holds the run's whole set, so a dataset-level step (dedup) sees the same images
    url = site["url"] + "/v1/score:batch"  # the batch timeout: 15 images on a busy machine may take 5 s
    files = [("file", (n, site["images"][n].read_bytes())) for n in names]
    same(httpx.post(url, files=files, timeout=60).json()["results"], want)
    got = httpx.post(url, json={"images": [{"path": p} for p in rel]}, timeout=60).json()["results"]
    same(got, want)
    b64 = [{"base64": base64.b64encode(site["images"][n].read_bytes()).decode()} for n in names]
    same(httpx.post(url, json={"images": b64}, timeout=60).json()["results"], want)
    small = httpx.post(site["url"] + "/v1/score", files=files[:4], timeout=60).json()["results"]
    same(small, run_verdicts(site["tmp"], site["config"], site["root"], rel[:4]))


def test_coco_photos_and_their_blurs_get_the_verdicts_of_run(site, tmp_path):
    coco = sorted(shared("photos", "coco").glob("*.jpg"))[:6]
    root = site["root"] / "coco"
    root.mkdir(exist_ok=True)
    names = []
    for p in coco:
        img = np.asarray(Image.open(p).convert("RGB"))
        (root / p.name).write_bytes(p.read_bytes())
        Image.fromarray(cv2.GaussianBlur(img, (0, 0), 2.5)).save(root / f"blur_{p.name}", quality=92)
        names += [f"coco/{p.name}", f"coco/blur_{p.name}"]
    want = run_verdicts(tmp_path, site["config"], site["root"], names)
    assert [w["verdict"] for w in want[1::2]].count("rejected") >= 4  # the blurred ones
    got = httpx.post(
        site["url"] + "/v1/score:batch", json={"images": [{"path": n} for n in names]}, timeout=60
    )
    same(got.json()["results"], want)


def test_an_image_over_the_pixel_limit_is_refused_as_run_rejects_it(site, tmp_path):
    want = run_verdicts(
        tmp_path,
        site["config"],
        site["root"],
        ["img/huge.png"],
        env={"PADDLEMIX_IQA_MAX_PIXELS": str(MAX_PIXELS)},
    )
    assert want[0]["verdict"] == "rejected" and "too_large" in want[0]["reason"]
    r = httpx.post(
        site["url"] + "/v1/score", json={"images": [{"path": "img/astronaut.jpg"}, {"path": "img/huge.png"}]}
    )
    assert r.status_code == 413
    assert r.json()["error"] == "too_many_pixels" and r.json()["index"] == 1
    upload = [("file", ("huge.png", (site["root"] / "img" / "huge.png").read_bytes()))]
    assert httpx.post(site["url"] + "/v1/score", files=upload).status_code == 413


@pytest.mark.parametrize(
    "ref", ["../secret.jpg", "sub/../../secret.jpg", "sub/link.jpg", "/etc/passwd", "img/../../secret.jpg"]
)
def test_no_path_outside_the_root_is_read(site, ref):
    r = httpx.post(site["url"] + "/v1/score", json={"images": [{"path": "img/coffee.jpg"}, {"path": ref}]})
    assert r.status_code == 403
    assert r.json() == {
        "error": "outside_root",
        "detail": "images[1].path is outside the allowed root",
        "index": 1,
    }


def test_refusals_are_4xx_with_a_json_error(site):
    url = site["url"] + "/v1/score"
    one = site["images"]["coffee"].read_bytes()

    def refused(response, status: int, error: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"] == error

    refused(httpx.post(url, json={"images": [{"path": "img/coffee.jpg"}] * 13}), 413, "too_many_images")
    refused(httpx.post(url, files=[("file", ("a.jpg", one))] * 13), 413, "too_many_images")
    assert (
        httpx.post(
            site["url"] + "/v1/score:batch", json={"images": [{"path": "img/coffee.jpg"}] * 13}
        ).status_code
        == 200
    )
    refused(
        httpx.post(url, content=b"x" * (9 << 20), headers={"content-type": "application/json"}),
        413,
        "too_large",
    )

    def chunks():  # no Content-Length: the limit stops the stream itself
        for _ in range(160):
            yield b"y" * (64 << 10)

    refused(httpx.post(url, content=chunks(), headers={"content-type": "application/json"}), 413, "too_large")
    refused(
        httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "bad_request",
    )
    refused(httpx.post(url, json={"images": []}), 400, "no_images")
    refused(httpx.post(url, json={"images": [{"path": 3}]}), 400, "bad_request")
    refused(httpx.post(url, json={"images": [{"base64": "***"}]}), 400, "bad_base64")
    refused(httpx.post(url, json={"images": [{"path": "http://example.com/a.jpg"}]}), 400, "bad_path")
    form = {"data": {"file": "text, not a file"}, "files": [("other", ("a.jpg", one))]}
    refused(httpx.post(url, **form), 400, "bad_request")
    refused(
        httpx.post(url, content=b"abc", headers={"content-type": "text/plain"}), 415, "unsupported_media_type"
    )
    refused(httpx.get(url), 405, "method_not_allowed")
    refused(httpx.get(site["url"] + "/nope"), 404, "not_found")
    # the server is still fine
    assert httpx.post(url, files=[("file", ("a.jpg", one))]).json()["results"][0]["verdict"] == "kept"


def test_a_stalled_upload_times_out_with_504(site):
    port = int(site["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        start = time.monotonic()
        head = s.recv(4096).decode()
        elapsed = time.monotonic() - start
        while not head.endswith("}") and (more := s.recv(4096)):
            head += more.decode()
    assert head.startswith("HTTP/1.1 504"), head
    assert '"error": "timeout"' in head
    assert 4.5 < elapsed < 15


def test_one_slow_image_does_not_block_the_others(site):
    big = site["root"] / "img" / "big.jpg"
    # sharp (tiles of the photo at its own scale), so no cheap step rejects it: BRISQUE reads all 31 MP
    photo = cv2.imread(str(site["images"]["chelsea"]))
    reps = (5600 // photo.shape[0] + 1, 5600 // photo.shape[1] + 1, 1)
    img = np.ascontiguousarray(np.tile(photo, reps)[:5600, :5600])
    cv2.imwrite(str(big), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    finished: dict[str, float] = {}

    def slow() -> None:
        httpx.post(site["url"] + "/v1/score:batch", json={"images": [{"path": "img/big.jpg"}]}, timeout=120)
        finished["slow"] = time.monotonic()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    for i in range(4):
        r = httpx.post(site["url"] + "/v1/score", json={"images": [{"path": "img/coffee.jpg"}]}, timeout=60)
        assert r.json()["results"][0]["verdict"] == "kept"
        finished[f"fast{i}"] = time.monotonic()
    thread.join(120)
    assert "slow" in finished
    assert max(v for k, v in finished.items() if k != "slow") < finished["slow"], finished


def test_health_readiness_and_metrics(site):
    assert httpx.get(site["url"] + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(site["url"] + "/readyz").json()
    assert ready["ready"] is True and ready["workers"] == 2 and "blur" in ready["ops"]
    upload = [("file", (n, site["images"][n].read_bytes())) for n in ("coffee", "coffee_blur", "truncated")]
    verdicts = [r["verdict"] for r in httpx.post(site["url"] + "/v1/score", files=upload).json()["results"]]
    assert verdicts == ["kept", "rejected", "rejected"]
    httpx.post(site["url"] + "/v1/score", json={"images": [{"path": "/etc/passwd"}]})
    text = httpx.get(site["url"] + "/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("iqa_requests_total", (("endpoint", "/v1/score"), ("status", "200")))] >= 1
    assert samples[("iqa_requests_total", (("endpoint", "/v1/score"), ("status", "403")))] >= 1
    assert samples[("iqa_request_duration_seconds_count", (("endpoint", "/v1/score"),))] >= 2
    assert ("iqa_request_duration_seconds_bucket", (("endpoint", "/v1/score"), ("le", "0.5"))) in samples
    assert samples[("iqa_rejections_total", (("reason", "blur"),))] >= 1
    assert samples[("iqa_rejections_total", (("reason", "decodable_filter: truncated"),))] >= 1
    assert samples[("iqa_refused_requests_total", (("error", "outside_root"),))] >= 1
    assert samples[("iqa_ready", ())] == 1


def test_a_dead_worker_is_replaced_and_no_request_gets_a_500(site):
    url = site["url"]
    dead = httpx.get(url + "/readyz").json()["worker_pids"][0]
    os.kill(dead, signal.SIGKILL)
    statuses: list[int] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        r = httpx.post(url + "/v1/score", json={"images": [{"path": "img/coffee.jpg"}]}, timeout=60)
        statuses.append(r.status_code)
        ready = httpx.get(url + "/readyz").json()
        if r.status_code == 200 and ready["ready"] and dead not in ready["worker_pids"]:
            break
        time.sleep(0.2)
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and statuses[-1] == 200, statuses
    assert len(httpx.get(url + "/readyz").json()["worker_pids"]) == 2


def test_serve_help_does_not_import_the_web_stack():
    code = (
        "import sys; from paddlemix_iqa.cli import build_parser; build_parser(); "
        "print([m for m in ('fastapi', 'starlette', 'uvicorn', 'prometheus_client', 'paddle') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "paddlemix_iqa.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "--max-pixels" in done.stdout and "127.0.0.1" in done.stdout


def test_a_bad_config_or_missing_weights_exit_before_listening(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: x.jsonl\nprocess:\n  - laplacian_filter: {min_scor: 0.5}\n")
    cmd = [sys.executable, "-m", "paddlemix_iqa.cli", "serve", str(bad), "--port", str(free_port())]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "min_scor" in done.stderr
    cmd[4] = "pulc"
    env = {**os.environ, "PADDLEMIX_IQA_HOME": str(tmp_path / "no-weights")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3 and "weights download pulc_clarity" in done.stderr


# --- in-process: the token, and the neural batching --------------------------------------------
def test_bearer_token_is_required_when_set(tmp_path):
    import asyncio

    from paddlemix_iqa.pipeline import load_config
    from paddlemix_iqa.service.engine import Engine
    from paddlemix_iqa.service.server import create_app

    engine = Engine(load_config("default"), tmp_path)
    app = create_app(engine, token="s3cret-token")  # the lifespan does not run: models stay unloaded

    async def calls() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"images": [{"path": "a.jpg"}]}
            return [
                await client.post("/v1/score", json=body),
                await client.post("/v1/score", json=body, headers={"Authorization": "Bearer wrong"}),
                await client.get("/metrics"),
                await client.post("/v1/score", json=body, headers={"Authorization": "Bearer s3cret-token"}),
                await client.get("/healthz"),
                await client.get("/readyz"),
            ]

    no, wrong, metrics, right, health, ready = asyncio.run(calls())
    for r in (no, wrong, metrics):
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 503 and right.json()["error"] == "not_ready"  # past the token check
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.json()["ready"] is False


def test_neural_ops_are_batched_across_requests_and_match_run(tmp_path):
    """A PP-LCNet (random weights, the PULC graph) after the CPU ops: concurrent requests are scored
    in shared batches, with the verdicts and scores of ``run``."""
    import asyncio

    pytest.importorskip("paddle")
    import paddle

    from paddlemix_iqa.models.pplcnet import PPLCNet, export_inference
    from paddlemix_iqa.pipeline import load_config
    from paddlemix_iqa.service.engine import Engine

    paddle.seed(0)
    model = export_inference(PPLCNet(), tmp_path / "pplcnet")
    images = make_images(tmp_path / "root")
    names = ["astronaut", "coffee", "chelsea", "coffee_blur", "truncated", "large", "gray16", "animated"]
    config = tmp_path / "neural.yaml"
    config.write_text(
        "input: records.jsonl\nworkers: 1\nprocess:\n  - decodable_filter:\n"
        f"  - pulc_blur_filter: {{model_dir: {json.dumps(str(model))}, threshold: 0.5, threads: 1}}\n"
    )
    want = run_verdicts(tmp_path, config, tmp_path / "root", [images[n].name for n in names])
    assert sum("pulc_clarity" in w["scores"] for w in want) >= 6  # all but the truncated (and blurred?) ones

    sizes: list[int] = []
    engine = Engine(load_config(config), tmp_path / "root", workers=1, batch_images=16, batch_wait=0.2)
    engine.start()
    try:
        assert engine.ready, engine.error

        async def go() -> list:
            engine.observe_batch = sizes.append
            engine.start_batcher()
            return await asyncio.gather(*(engine.score([str(images[n].resolve())]) for n in names))

        got = [r[0].to_dict() for r in asyncio.run(go())]
    finally:
        engine.close()
    same(got, want)
    assert sum(sizes) == sum(1 for w in want if "pulc_clarity" in w["scores"])
    assert max(sizes) > 1, sizes  # requests shared a batch
