"""The run report: layout and facts (funnel, thresholds, directions, the rejected-records browser),
bounded size, plots without overlapping labels, thumbnails under the image_root rule, and the page
in a real browser (headless Chromium via Playwright; skipped when either is missing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import paddlemix_iqa
from paddlemix_iqa.pipeline import load_config, run_pipeline
from paddlemix_iqa.pipeline import report as report_mod
from paddlemix_iqa.pipeline.config import find_config
from paddlemix_iqa.pipeline.demo import build_demo
from paddlemix_iqa.pipeline.outputs import RecordResult, RunStore
from paddlemix_iqa.pipeline.report import reason_kind, write_report
from paddlemix_iqa.pipeline.report.directions import Direction, badness, direction

REPO = Path(__file__).resolve().parents[1]


def config_file(name: str) -> Path:
    for base in (Path(paddlemix_iqa.__file__).parent / "configs", REPO / "configs"):
        if (base / name).is_file():
            return base / name
    raise FileNotFoundError(name)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rejected_key(record: dict) -> tuple[str, str]:
    """(op, reason group) of a rejected.jsonl record, as the report groups it."""
    op, _, reason = record["__iqa_reject"].partition(": ")
    return op, reason_kind(reason)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    demo = tmp_path_factory.mktemp("demo")
    build_demo(demo)
    out = tmp_path_factory.mktemp("run")
    config = load_config(
        config_file("default.yaml"),
        [
            f"input={demo / 'records.jsonl'}",
            f"image_root={demo}",
            f"output_dir={out}",
            "progress=false",
            "workers=1",
        ],
    )
    run_pipeline(config)
    return out


def section(page: str, metric: str) -> str:
    match = re.search(rf'<section class="metric" id="metric-{metric}">(.*?)</section>', page, re.S)
    assert match, metric
    return match.group(1)


def strip_ids(block: str, name: str) -> list[str]:
    match = re.search(rf"<h4>{name} \(\d+\)</h4>(.*?)</div>\s*(?:<h4>|$)", block, re.S)
    return re.findall(r'<span class="rid"[^>]*>([^<]*)</span>', match.group(1)) if match else []


# --- what the page says ------------------------------------------------------------------
def test_the_page_is_self_contained_and_answers_what_was_thrown_away(demo_run):
    page = (demo_run / "report.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(?!data:|#)', page), "everything must be inlined"
    assert "<script src" not in page and "<link" not in page
    rejected = read_jsonl(demo_run / "rejected.jsonl")
    for record in rejected:  # every rejected record has a row with its id, op and reason
        op, _, reason = record["__iqa_reject"].partition(": ")
        row = re.search(
            rf'<tr class="rec" data-op="{op}" data-group="g\d+" data-id="{record["id"]}">(.*?)</tr>',
            page,
            re.S,
        )
        assert row, record["id"]
        assert reason.replace("<", "&lt;").replace(">", "&gt;") in row.group(1)
    # the funnel: in chain order, each op's "in" is the previous op's "left", ending at kept
    summary = json.loads((demo_run / "run.json").read_text())
    chain = [op["op"] for op in summary["ops"]] + (["dedup"] if "dedup" in summary else [])  # the last step
    funnel = re.search(r'<table class="funnel">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(
        r'<tr data-op="([^"]+)">.*?<td class="n">([\d,]+)</td>\s*<td class="n">([\d,]+)', funnel, re.S
    )
    assert [r[0] for r in rows] == chain
    left = summary["counts"]["records"]
    for op, records_in, rejected_n in rows:
        assert int(records_in.replace(",", "")) == left
        assert int(rejected_n.replace(",", "")) == summary["counts"]["rejected_by_op"].get(op, 0)
        left -= int(rejected_n.replace(",", ""))
    assert left == summary["counts"]["kept"]


def test_every_op_that_rejected_shows_its_threshold_or_its_reasons(demo_run):
    page = (demo_run / "report.html").read_text(encoding="utf-8")
    assert "none (tagged only)" not in page
    process = yaml.safe_load(find_config("default").read_text())["process"]
    shipped = {op: params for step in process for op, params in step.items()}  # chosen from data
    blur = shipped["fused_filter"]
    rules = {
        "resolution_filter": "min_width=64, min_height=64",
        "aspect_ratio_filter": "min_ratio=0.333, max_ratio=3",
        "blur": f"max_value={blur['max_value']}",  # the step's name; p(blurred) is native, not a quality
        "brisque_filter": f"min_score={shipped['brisque_filter']['min_score']} (quality)",
    }
    for op, text in rules.items():
        assert re.search(rf"<b>{op}</b>: rejected \d+; thresholds: {re.escape(text)}", page), op
    # code_filter (max_coverage null) and decodable_filter have no line: their reasons are named instead
    codes = section(page, "codes")
    assert "no threshold line; rejects on:" in codes and "1 code(s): QRCode" in codes
    assert "decode_error: missing: file not found" in section(page, "decodable")


def test_worst_and_best_are_the_right_way_round_for_every_metric(demo_run):
    page = (demo_run / "report.html").read_text(encoding="utf-8")
    codes = section(page, "codes")
    # the QR images; the images without a code (coverage 0, tied with the best) are not "worst"
    assert set(strip_ids(codes, "worst")) == {"demo-017", "demo-018"}
    assert not {"demo-017", "demo-018"} & set(strip_ids(codes, "best"))
    aspect = section(page, "aspect_ratio")
    assert strip_ids(aspect, "worst")[0] == "demo-020"  # 8:1, farthest outside [0.333, 3]
    assert "demo-020" not in strip_ids(aspect, "best")
    resolution = section(page, "resolution")
    assert strip_ids(resolution, "worst")[0] == "demo-019"  # 48 x 32 < 64
    blur = section(page, "fused")  # the blur step: p(blurred), lower is better
    worst = strip_ids(blur, "worst")
    assert {"demo-008", "demo-009", "demo-010"} <= set(worst[:6])  # the blurred ones
    assert not {"demo-008", "demo-009", "demo-010"} & set(strip_ids(blur, "best"))
    brisque = section(page, "brisque")
    assert {"demo-012", "demo-013"} <= set(strip_ids(brisque, "worst")[:4])  # the noisy ones
    for metric in ("resolution", "aspect_ratio", "fused", "brisque", "codes"):
        block = section(page, metric)
        assert len(strip_ids(block, "best")) > 0 and 'class="rid"' in block  # ids under thumbnails


def test_directions_are_defined_in_one_place():
    assert direction("laplacian", True) == Direction("higher", "quality")
    assert direction("codes", False).kind == "lower" and direction("codes_count", False).kind == "lower"
    assert direction("brisque", False).kind == "lower"  # the scorer says lower is better
    ratio = direction("aspect_ratio", False)
    lines = [
        {"label": "min_ratio=0.5", "x": 0.5, "scale": "value"},
        {"label": "max_ratio=2", "x": 2.0, "scale": "value"},
    ]
    bad = badness(ratio, np.array([1.0, 0.25, 8.0, 1.5, 0.55]), lines)
    # 8 is farther out than 1/4 (log scale); inside, 0.55 is nearer a bound than 1.5; 1 is deepest inside
    assert list(np.argsort(-bad)) == [2, 1, 4, 3, 0]
    no_bounds = badness(ratio, np.array([1.0, 4.0, 0.2]), [])
    assert list(np.argsort(-no_bounds)) == [2, 1, 0]  # farthest from square first
    size = direction("resolution", False)
    assert list(np.argsort(-badness(size, np.array([500.0, 32.0, 64.0]), lines[:0]))) == [1, 2, 0]


# --- size stays bounded ------------------------------------------------------------------------
def _synthetic_run(out: Path, n: int, reasons: list[str], image: str | None = None) -> None:
    """A run's state written directly (no images scored): ``n`` records, rejected in turn for ``reasons``."""
    store = RunStore(out)
    store.open_outputs()
    try:
        batch = []
        for i in range(n):
            reason = reasons[i % len(reasons)]
            record = {
                "id": f"r{i}",
                "image": image or f"img/{i}.jpg",
                "__iqa_reject": f"resolution_filter: {reason}",
            }
            rows = [{"index": i, "id": f"r{i}", "image": record["image"], "resolution": float(16 + i % 40)}]
            batch.append(RecordResult(i, record, False, "resolution_filter", reason, rows))
            if len(batch) == 5000:
                store.commit(batch)
                batch = []
        store.commit(batch)
    finally:
        store.close()
    ops = [
        {
            "op": "resolution_filter",
            "metric": "resolution",
            "lines": [{"label": "min_width=64", "x": 64.0, "scale": "value"}],
        }
    ]
    run = {
        "config": {
            "input": "x.jsonl",
            "image_root": str(out),
            "process": [{"resolution_filter": {"min_width": 64}}],
        },
        "ops": ops,
    }
    (out / "run.json").write_text(json.dumps(run))


def test_the_browser_shows_the_first_records_per_reason_and_counts_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(report_mod, "PER_REASON", 3)
    _synthetic_run(tmp_path, 20, ["width 16 < 64", "width 17 < 64", "height 9 < 64", "width 5 < 64"])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="rec"[^>]*data-id="([^"]+)"', page)
    # "width < 64" (15 records) then "height < 64" (5), the first 3 of each
    assert rows == ["r0", "r1", "r3", "r2", "r6", "r10"]
    assert "and 12 more" in page and "and 2 more" in page


def test_a_big_run_gives_a_small_page(tmp_path):
    reasons = [f"width {i} < 64" for i in range(10)] + [f"weird {i} reason number {i}" for i in range(80)]
    _synthetic_run(tmp_path, 30_000, reasons)
    start = time.perf_counter()
    path = write_report(tmp_path)
    page = path.read_text(encoding="utf-8")
    rows = page.count('<tr class="rec"')
    assert rows <= (report_mod.MAX_REASONS + 1) * report_mod.PER_REASON
    assert "other reasons" in page  # 81 reason groups: the smallest are pooled
    assert path.stat().st_size < 3_000_000, path.stat().st_size
    assert time.perf_counter() - start < 60


# --- thumbnails follow the run's image_root rule ----------------------------------------------
def test_thumbnails_never_read_outside_image_root_unless_the_run_allowed_it(tmp_path, photo):
    root, outside = tmp_path / "root", tmp_path / "secret.jpg"
    root.mkdir()
    Image.fromarray(photo).save(outside)
    Image.fromarray(photo).save(root / "ok.jpg")
    thumbs = report_mod.Thumbs(str(root), allow_outside_root=False)
    assert thumbs("ok.jpg")["data"] and thumbs(str(outside))["data"] is None
    assert thumbs("../secret.jpg")["why"] == "outside image root"
    assert report_mod.Thumbs(str(root), allow_outside_root=True)("../secret.jpg")["data"]
    # a run over the same records: the outside record is rejected before the chain and shown without a preview
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"id": "in", "image": "ok.jpg"})
        + "\n"
        + json.dumps({"id": "out", "image": "../secret.jpg"})
        + "\n"
    )
    for allowed in (False, True):
        out = tmp_path / f"out{allowed}"
        (tmp_path / "p.yaml").write_text(
            f"input: {tmp_path / 'd.jsonl'}\nimage_root: {root}\noutput_dir: {out}\nprogress: false\n"
            f"allow_outside_root: {str(allowed).lower()}\nprocess:\n  - resolution_filter:\n      min_width: 10000\n"
        )
        run_pipeline(load_config(tmp_path / "p.yaml"))
        page = (out / "report.html").read_text(encoding="utf-8")
        row = re.search(
            r'<tr class="rec" data-op="[^"]+" data-group="g\d+" data-id="out">(.*?)</tr>', page, re.S
        )
        assert ("<img" in row.group(1)) is allowed, allowed
        if not allowed:
            assert "outside image root" in row.group(1)


# --- plots -------------------------------------------------------------------------------------
def _overlaps(fig) -> list[tuple[str, str]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        texts = [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_visible() and t.get_text()]
        legend = ax.get_legend()
        texts += list(legend.get_texts()) if legend else []
        texts += [ax.xaxis.label, ax.yaxis.label]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1 :]:
                if box_a.overlaps(box_b):
                    clashes.append((a, b))
    return clashes


@pytest.mark.parametrize(
    "metric, values, quality, lines",
    [
        (
            "resolution",
            np.r_[32.0, np.full(50, 512.0), 80.0, 4000.0],
            None,
            [
                {"label": "min_width=64", "x": 64.0, "scale": "value"},
                {"label": "min_height=64", "x": 64.0, "scale": "value"},
            ],
        ),
        (
            "aspect_ratio",
            np.r_[np.linspace(0.3, 3.5, 200), 8.0],
            None,
            [
                {"label": "min_ratio=0.95", "x": 0.95, "scale": "value"},
                {"label": "max_ratio=1.05", "x": 1.05, "scale": "value"},
            ],
        ),
        (
            "file_size",
            np.geomspace(2_000, 40_000_000, 300),
            None,
            [
                {"label": "min_size=20480", "x": 20480.0, "scale": "value"},
                {"label": "max_size=10485760", "x": 10485760.0, "scale": "value"},
            ],
        ),
        (
            "laplacian",
            np.geomspace(0.5, 40_000, 300),
            np.linspace(0, 1, 300),
            [
                {"label": "min_score=0.2", "x": 0.2, "scale": "quality"},
                {"label": "max_score=0.21", "x": 0.21, "scale": "quality"},
                {"label": "min_value=1000000", "x": 1e6, "scale": "value"},
            ],
        ),
    ],
)
def test_plot_labels_never_overlap(metric, values, quality, lines):
    from paddlemix_iqa.pipeline.report import plots

    fig = plots.histogram_figure(metric, values, quality, lines, direction(metric, quality is not None))
    try:
        assert _overlaps(fig) == []
        legend_entries = [
            t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
        ]
        assert len(legend_entries) == len({(ln["x"], ln["scale"]) for ln in lines})  # one entry per position
    finally:
        plots.to_base64(fig)  # closes it


def test_the_template_ships_as_package_data():
    from importlib.resources import files

    assert (files("paddlemix_iqa.pipeline.report") / "templates" / report_mod.TEMPLATE).is_file()
    setup = (REPO / "setup.py").read_text()
    assert "templates/*.j2" in setup and "jinja2" in setup


# --- in a real browser -------------------------------------------------------------------------
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    for candidate in (
        os.environ.get("CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("chromium not found (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chromium)")


def test_the_report_works_in_a_real_browser(demo_run):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    executable = _chromium()
    rejected = read_jsonl(demo_run / "rejected.jsonl")
    by_group = Counter(rejected_key(r) for r in rejected)
    by_op = Counter(rejected_key(r)[0] for r in rejected)
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "request",
                lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(f"fetch {r.url}"),
            )
            page.goto((demo_run / "report.html").as_uri(), wait_until="load")

            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])"
            )
            assert len(images) >= 30
            assert [alt for complete, width, alt in images if not (complete and width > 0)] == []

            rows = page.locator("#browser tr.rec")
            assert rows.count() == len(rejected)
            for option in page.locator("#filter-reason option[data-op]").all():  # filter by reason
                key = (option.get_attribute("data-op"), option.get_attribute("data-kind"))
                page.select_option("#filter-reason", option.get_attribute("value"))
                visible = page.locator("#browser tr.rec:visible")
                assert visible.count() == by_group[key], key
                assert {r.get_attribute("data-group") for r in visible.all()} == {
                    option.get_attribute("value")
                }
                assert page.locator("#filter-shown").inner_text() == str(by_group[key])
            page.select_option("#filter-reason", "")
            for op, n in by_op.items():  # filter by op
                page.select_option("#filter-op", op)
                assert page.locator("#browser tr.rec:visible").count() == n, op
            page.select_option("#filter-op", "")
            for record in rejected:  # every rejected id is findable
                page.fill("#filter-id", record["id"])
                assert page.locator(f'#browser tr.rec:visible[data-id="{record["id"]}"]').count() == 1, (
                    record["id"]
                )
                assert (
                    page.locator("#browser tr.rec:visible .rid")
                    .get_by_text(record["id"], exact=True)
                    .is_visible()
                )
            page.fill("#filter-id", "")
            page.locator('a[data-browse="g0"]').click()  # the reasons table's "browse" links set the filter
            assert page.input_value("#filter-reason") == "g0"
            page.select_option("#filter-reason", "")
            assert page.locator("#browser tr.rec:visible").count() == len(rejected)
            shot = demo_run / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ids_beyond_the_previews_are_findable_in_a_real_browser(demo_run, tmp_path, monkeypatch):
    """With one preview per reason, the id search still finds every rejected record (id, op, reason)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    executable = _chromium()
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    monkeypatch.setattr(report_mod, "PER_REASON", 1)
    write_report(run)
    rejected = read_jsonl(run / "rejected.jsonl")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((run / "report.html").as_uri(), wait_until="load")
            assert page.locator("#browser tr.rec").count() < len(rejected)  # some are beyond the previews
            indexed = 0
            for record in rejected:
                page.fill("#filter-id", record["id"])
                hit = f'[data-id="{record["id"]}"]'
                found = page.locator(f"#browser tr.rec:visible{hit}, #index-matches tr.indexed{hit}")
                assert found.count() == 1, record["id"]
                indexed += page.locator(f"#index-matches tr.indexed{hit}").count()
                if page.locator(f"#index-matches tr.indexed{hit}").count():
                    assert page.locator("#index-matches").is_visible()
                    assert reason_kind(record["__iqa_reject"].split(": ", 1)[1]) in found.inner_text()
            assert indexed > 0 and errors == []
        finally:
            browser.close()
