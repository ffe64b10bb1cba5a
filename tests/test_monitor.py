"""``paddlemix-iqa monitor``: series per camera in SQLite, threshold / drift / recovery alerts, report, demo."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa.cli import main
from paddlemix_iqa.monitor import demo as demo_module
from paddlemix_iqa.monitor.detect import DAY, DetectorSettings, detect
from paddlemix_iqa.monitor.sources import Problem, parse_time, read_csv, read_folder, source_of

T0 = dt.datetime(2026, 1, 1, 9, 0, 0)
ALERT_KEYS = {"source", "timestamp", "kind", "metric", "value"}


def _below(threshold):
    return lambda v: f"quality {v:.3f} < {threshold}" if v < threshold else None


# --- the detector on its own ------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_a_stable_noisy_series_raises_no_alert(seed):
    rng = np.random.default_rng(seed)
    days = np.arange(90, dtype=float)
    values = 0.62 * rng.normal(1.0, 0.03, days.size)
    values[rng.integers(0, days.size, 4)] -= 0.08  # a few misty days
    found = detect(days * DAY, values, DetectorSettings(), _below(0.45))
    assert found.alerts == []


def test_a_slow_drift_alerts_before_the_threshold_and_a_cleaning_is_found_at_once():
    rng = np.random.default_rng(0)
    days = np.arange(60, dtype=float)
    clean = 0.62 - 0.006 * np.clip(days - 5, 0, None)  # 0.6% quality a day from day 5
    clean[days >= 45] = 0.62  # cleaned between day 44 and day 45
    values = clean * rng.normal(1.0, 0.02, days.size)
    found = detect(days * DAY, values, DetectorSettings(), _below(0.45))
    kinds = [(a.kind, int(days[a.index])) for a in found.alerts]
    crossing = int(days[np.argmax(clean < 0.45)])
    assert [k for k, _ in kinds] == ["drift", "threshold", "recovery"]
    drift_day, threshold_day, recovery_day = (d for _, d in kinds)
    assert 5 < drift_day < crossing  # before the image is below the threshold
    assert crossing - 3 <= threshold_day <= crossing + 3
    assert recovery_day == 45
    assert any(c.detail == "down" for c in found.changes) and any(c.detail == "up" for c in found.changes)


def test_one_odd_frame_below_the_threshold_is_not_an_alert_two_are():
    days = np.arange(20, dtype=float) * DAY
    values = np.full(20, 0.6)
    values[10] = 0.3
    assert detect(days, values, DetectorSettings(drift=False), _below(0.45)).alerts == []
    values[11] = 0.3
    alerts = detect(days, values, DetectorSettings(drift=False), _below(0.45)).alerts
    assert [(a.kind, a.index, a.at) for a in alerts] == [("threshold", 10, 11), ("recovery", 12, 13)]


def test_bad_detector_settings_are_refused():
    with pytest.raises(ValueError, match="confirm"):
        DetectorSettings(confirm=0).check()
    with pytest.raises(ValueError, match="window"):
        DetectorSettings(window=float("nan")).check()


# --- sources ------------------------------------------------------------------------------
def test_timestamps_in_iso_exif_and_unix_forms():
    assert parse_time("2026-03-01T12:00:00Z") == dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
    assert parse_time("2026:03:01 12:00:00") == dt.datetime(2026, 3, 1, 12)
    assert parse_time("0") == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    for bad in ("", "yesterday", "nan", "1e30"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_camera_id_from_a_pattern_or_the_folder():
    import re

    assert source_of("cam7/2026/a.jpg", re.compile(r"^(cam\d+)/")) == "cam7"
    assert source_of("site-b_cam-3_0001.jpg", re.compile(r"_(?P<source>cam-\d+)_")) == "cam-3"
    assert source_of("north/a.jpg", None) == "north"
    assert source_of("a.jpg", None) == "default"


def test_broken_csv_rows_become_problems_with_reasons(tmp_path):
    csv = tmp_path / "frames.csv"
    csv.write_text(
        "path,timestamp,source\n"
        "a.jpg,2026-01-01T00:00:00,cam1\n"
        ",2026-01-02T00:00:00,cam1\n"
        "b.jpg,not a date,cam1\n"
        "c.jpg\n"
        "\n"
        "/abs/d.jpg,1767225600\n",
        encoding="utf-8",
    )
    items = list(read_csv(csv, None))
    frames = [i for i in items if not isinstance(i, Problem)]
    problems = [(p.where, p.reason.split(":")[0]) for p in items if isinstance(p, Problem)]
    assert [(Path(f.path), f.source) for f in frames] == [
        (tmp_path / "a.jpg", "cam1"),
        (Path("/abs/d.jpg"), "abs"),
    ]
    assert problems == [
        ("frames.csv line 3", "no image path"),
        ("frames.csv line 4", "bad timestamp"),
        ("frames.csv line 5", "bad timestamp"),
    ]


def test_a_row_that_is_not_utf8_is_skipped_not_the_file(tmp_path):
    csv = tmp_path / "frames.csv"
    csv.write_bytes(b"path,timestamp\na.jpg,2026-01-01\n\xff\xfe.jpg,2026-01-02\nb.jpg,2026-01-03\n")
    items = list(read_csv(csv, None))
    assert [Path(i.path).name if not isinstance(i, Problem) else i.reason for i in items] == [
        "a.jpg",
        "not UTF-8 text",
        "b.jpg",
    ]


def test_a_folder_dates_images_by_exif_else_mtime(tmp_path, photo):
    cam = tmp_path / "gate"
    cam.mkdir()
    when = dt.datetime(2025, 6, 2, 8, 30, 0)
    (cam / "exif.jpg").write_bytes(demo_module.jpeg_bytes(photo[:64, :64], 90, when))
    Image.fromarray(photo[:64, :64]).save(cam / "plain.png")
    os.utime(cam / "plain.png", (1_700_000_000, 1_700_000_000))
    frames = {Path(f.path).name: f for f in read_folder(tmp_path, None)}
    assert frames["exif.jpg"].time == when and frames["exif.jpg"].source == "gate"
    assert frames["plain.png"].time == dt.datetime.fromtimestamp(1_700_000_000, dt.timezone.utc)


# --- monitor run end to end ----------------------------------------------------------------
def _frames(folder: Path, photo: np.ndarray, blur: list[float], camera: str, start: dt.datetime = T0):
    """One JPEG a day of ``photo`` blurred by sigma ``blur[i]``; CSV rows ``path,timestamp,source``."""
    (folder / camera).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(camera))
    rows = []
    for i, sigma in enumerate(blur):
        img = photo.astype(np.float32)
        if sigma > 0:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = np.clip(img * rng.normal(1.0, 0.02) + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)
        when = start + dt.timedelta(days=i)
        path = folder / camera / f"{i:03d}.jpg"
        Image.fromarray(img).save(path, quality=92)
        rows.append(f"{camera}/{path.name},{when.isoformat()},{camera}")
    return rows


@pytest.fixture(scope="module")
def series(tmp_path_factory, photo):
    """A camera that goes soft from day 8, is cleaned on day 26; a stable one; two bad rows."""
    folder = tmp_path_factory.mktemp("cams")
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    blur = [0.0] * 8 + [0.12 * (d - 7) for d in range(8, 26)] + [0.0] * 6
    rows = _frames(folder, small, blur, "cam1") + _frames(folder, small, [0.0] * 32, "cam2")
    (folder / "cam1" / "broken.jpg").write_bytes((folder / "cam1" / "003.jpg").read_bytes()[:500])
    rows += [
        f"cam1/broken.jpg,{(T0 + dt.timedelta(days=3, hours=1)).isoformat()},cam1",
        f"cam1/nothere.jpg,{(T0 + dt.timedelta(days=4, hours=1)).isoformat()},cam1",
    ]
    csv = folder / "frames.csv"
    csv.write_text("path,timestamp,source\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return folder, csv, blur


def _alerts(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_run_alerts_as_json_lines_and_a_rerun_neither_rescores_nor_realerts(series, tmp_path, capsys, caplog):
    folder, csv, blur = series
    db = tmp_path / "m.db"
    assert (
        main(["monitor", "run", str(csv), "--db", str(db), "--metric", "laplacian", "--threshold", "0.2"])
        == 0
    )
    captured = capsys.readouterr()
    alerts = _alerts(captured.out)
    assert alerts and all(set(a) == ALERT_KEYS for a in alerts)
    assert {a["source"] for a in alerts} == {"cam1"}  # the stable camera stays silent
    assert all(a["metric"] == "laplacian" for a in alerts)
    kinds = [a["kind"] for a in alerts]
    assert kinds[0] in ("drift", "threshold") and "threshold" in kinds and kinds[-1] == "recovery"
    recovery = alerts[-1]
    assert dt.datetime.fromisoformat(recovery["timestamp"]) == T0 + dt.timedelta(
        days=26
    )  # the first clean image
    threshold = next(a for a in alerts if a["kind"] == "threshold")
    assert threshold["value"] < 0.2
    assert "2 unreadable" in captured.err  # logged with the reason (logging's stderr handler in the console)
    assert "unreadable image" in caplog.text and "broken.jpg" in caplog.text and "nothere.jpg" in caplog.text
    with sqlite3.connect(db) as con:
        errors = dict(con.execute("SELECT path, error FROM frames WHERE error IS NOT NULL"))
        assert con.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 66
    assert errors[str(folder / "cam1" / "broken.jpg")].startswith("truncated")
    assert errors[str(folder / "cam1" / "nothere.jpg")].startswith("missing")

    assert (
        main(["monitor", "run", str(csv), "--db", str(db), "--metric", "laplacian", "--threshold", "0.2"])
        == 0
    )
    again = capsys.readouterr()
    assert again.out == "" and "0 images scored" in again.err


def test_report_draws_each_source_with_its_alerts(series, tmp_path, capsys):
    _, csv, _ = series
    db = tmp_path / "m.db"
    assert (
        main(["monitor", "run", str(csv), "--db", str(db), "--metric", "laplacian", "--threshold", "0.2"])
        == 0
    )
    capsys.readouterr()
    assert main(["monitor", "report", "--db", str(db), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "cam1" in page and "cam2" in page and "recovery" in page and "truncated" in page
    for cam in ("cam1", "cam2"):
        png = tmp_path / "rep" / f"laplacian__{cam}.png"
        assert Image.open(png).size[0] > 400
    assert main(["monitor", "report", "--db", str(tmp_path / "none.db")]) == 2


def test_threshold_scales_follow_the_filters(series, tmp_path, capsys):
    _, csv, _ = series
    assert main(["monitor", "run", str(csv), "--db", str(tmp_path / "a.db"), "--threshold", "40"]) == 2
    assert "--threshold-value 40" in capsys.readouterr().err
    # the native value: laplacian variance; every alert's value is then a native value
    args = ["monitor", "run", str(csv), "--db", str(tmp_path / "b.db"), "--metric", "laplacian", "--no-drift"]
    assert main([*args, "--threshold-value", "60"]) == 0
    alerts = _alerts(capsys.readouterr().out)
    threshold = next(a for a in alerts if a["kind"] == "threshold")
    assert threshold["value"] < 60 and threshold["value"] > 1  # native, not a quality


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.headers.get("Authorization"), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_and_log_file_get_the_same_alerts(series, tmp_path, capsys):
    _, csv, _ = series
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received.clear()
    try:
        url = f"http://127.0.0.1:{server.server_port}/alerts"
        log = tmp_path / "alerts.log"
        args = [
            "monitor",
            "run",
            str(csv),
            "--db",
            str(tmp_path / "w.db"),
            "--metric",
            "laplacian",
            "--threshold",
            "0.2",
            "--webhook",
            url,
            "--webhook-token",
            "s3cret",
            "--log-file",
            str(log),
        ]
        assert main(args) == 0
    finally:
        server.shutdown()
        server.server_close()
    printed = _alerts(capsys.readouterr().out)
    assert printed and [body for _, body in _Hook.received] == printed
    assert {auth for auth, _ in _Hook.received} == {"Bearer s3cret"}
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(printed) and "RECOVERY source=cam1" in lines[-1]


def test_an_unreachable_webhook_is_logged_and_the_exit_code_says_so(series, tmp_path, capsys):
    _, csv, _ = series
    args = [
        "monitor",
        "run",
        str(csv),
        "--db",
        str(tmp_path / "u.db"),
        "--metric",
        "laplacian",
        "--webhook",
        "http://127.0.0.1:9/alerts",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert _alerts(captured.out) and "webhook" in captured.err


def test_watch_follows_a_folder_and_is_bounded(tmp_path, photo, capsys):
    folder = tmp_path / "incoming"
    small = cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA)
    _frames(folder, small, [0.0] * 3, "door")
    db = tmp_path / "watch.db"
    args = [
        "monitor",
        "run",
        str(folder),
        "--db",
        str(db),
        "--metric",
        "laplacian",
        "--watch",
        "--interval",
        "0.3",
        "--settle",
        "0",
        "--max-passes",
        "4",
    ]
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main(args)))
    started = time.monotonic()
    runner.start()
    time.sleep(0.4)
    _frames(folder, small, [0.0] * 5, "door", start=T0 + dt.timedelta(days=10))  # 3 new names
    (folder / "door" / "junk.png").write_bytes(b"not a png")
    runner.join(timeout=30)
    assert result == [0] and time.monotonic() - started < 30
    with sqlite3.connect(db) as con:
        rows = dict(con.execute("SELECT path, error FROM frames"))
    assert len(rows) == 6 and rows[str(folder / "door" / "junk.png")].startswith("not_an_image")


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["monitor", "run", str(tmp_path / "missing.csv")]) == 2
    assert main(["monitor", "run", str(tmp_path), "--metric", "sharpnes"]) == 2
    assert main(["monitor", "run", str(tmp_path), "--source-pattern", "("]) == 2
    assert main(["monitor", "run", str(tmp_path), "--webhook", "file:///etc/passwd"]) == 2
    (tmp_path / "x.csv").write_text("path,when\na.jpg,2026-01-01\n")
    assert main(["monitor", "run", str(tmp_path / "x.csv"), "--db", str(tmp_path / "x.db")]) == 2
    assert "no timestamp column" in capsys.readouterr().err


# --- the demo ------------------------------------------------------------------------------------
# without ../shared/data "default" is the scikit-image scene already: the second case is only slow
@pytest.mark.parametrize("scene", ["default", pytest.param("skimage", marks=pytest.mark.slow)])
def test_the_demo_alerts_before_the_image_is_unusable_and_finds_the_cleaning(
    scene, tmp_path, capsys, monkeypatch
):
    if scene == "skimage":  # what a machine without ../shared/data builds
        monkeypatch.setattr(demo_module, "SHARED_PHOTOS", tmp_path / "absent")
    out = tmp_path / "demo"
    assert main(["monitor", "demo", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())["cameras"]
    capsys.readouterr()
    assert main(["monitor", "run", str(out / "frames.csv"), "--db", str(out / "m.db")]) == 0
    alerts = _alerts(capsys.readouterr().out)
    assert {a["source"] for a in alerts} == {"cam-dusty"}  # the stable camera: no alert
    dusty = truth["cam-dusty"]
    first = dt.datetime.fromisoformat(alerts[0]["timestamp"])
    assert alerts[0]["kind"] == "drift" and first < dt.datetime.fromisoformat(dusty["first_unusable"])
    cleaning = dt.datetime.fromisoformat(dusty["cleaning"])
    recovered = [dt.datetime.fromisoformat(a["timestamp"]) for a in alerts if a["kind"] == "recovery"]
    assert any(dt.timedelta(0) <= r - cleaning <= dt.timedelta(days=1) for r in recovered)
