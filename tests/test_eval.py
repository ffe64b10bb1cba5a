"""``paddlemix-iqa eval``: tables checked by hand, AUC / AP against scikit-learn, chosen thresholds that
reproduce their counts, the bootstrap, and the command end to end (folders, JSONL, a run's scores, errors)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa.cli import main
from paddlemix_iqa.evaluation import EvalError
from paddlemix_iqa.evaluation.evaluate import parse_metrics
from paddlemix_iqa.evaluation.metrics import (
    average_precision,
    best_f1_threshold,
    confusion,
    evaluate,
    operating_points,
    roc_auc,
    threshold_for_fpr,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")  # an optional extra: only the tests use it

# --- a small set computed by hand ------------------------------------------------------------------
NEG = [0.55, 0.72, 0.81, 0.85, 0.93, 0.97]
POS = [0.30, 0.52, 0.75, 0.90]
HAND_Q, HAND_Y = NEG + POS, [0] * 6 + [1] * 4
#: min_score -> (TP, FP, TN, FN), flagged iff quality < min_score (0.9 keeps the positive at 0.90)
HAND_TABLE = {
    0.2: (0, 0, 6, 4),
    0.5: (1, 0, 6, 3),
    0.7: (2, 1, 5, 2),
    0.8: (3, 2, 4, 1),
    0.9: (3, 4, 2, 1),
    0.95: (4, 5, 1, 0),
}


def counts(row) -> tuple[int, int, int, int]:
    return row.tp, row.fp, row.tn, row.fn


def test_table_rows_equal_a_hand_computation():
    result = evaluate(HAND_Q, HAND_Y, thresholds=list(HAND_TABLE), bootstrap=0)
    assert {r.threshold: counts(r) for r in result.rows} == HAND_TABLE
    by_t = {r.threshold: r for r in result.rows}
    assert by_t[0.2].precision is None and by_t[0.2].f1 == 0.0  # nothing flagged
    assert by_t[0.5].precision == 1.0 and by_t[0.5].f1 == pytest.approx(2 / 5)
    assert by_t[0.8].fpr == pytest.approx(2 / 6) and by_t[0.8].tpr == pytest.approx(3 / 4)
    assert by_t[0.9].precision == pytest.approx(3 / 7) and by_t[0.9].f1 == pytest.approx(6 / 11)
    # pairs (positive below negative): 6 + 6 + 4 + 2 of 24
    assert result.auc == pytest.approx(18 / 24)
    # no clean image may go (FPR <= 0.05 of 6): flag below 0.55, catching 0.30 and 0.52
    assert 0.52 < result.at_target.threshold <= 0.55 and counts(result.at_target) == (2, 0, 6, 2)
    # F1 2/3 three times (below 0.55, 0.81, 0.93): the one flagging fewest wins
    assert counts(result.best_f1) == (2, 0, 6, 2) and result.best_f1.f1 == pytest.approx(2 / 3)
    assert all(r.ci == {k: (None, None) for k in ("fpr", "tpr", "precision", "f1")} for r in result.rows)


def test_tie_heavy_table_with_thresholds_on_tied_values():
    q = [0.5] * 4 + [0.8] * 4 + [0.5] * 3 + [0.2] * 2 + [0.8]
    y = [0] * 8 + [1] * 6
    result = evaluate(q, y, thresholds=[0.2, 0.5, 0.8, 0.81], bootstrap=0)
    assert [counts(r) for r in result.rows] == [(0, 0, 8, 6), (2, 0, 8, 4), (5, 4, 4, 1), (6, 8, 0, 0)]
    assert result.auc == pytest.approx(sklearn_metrics.roc_auc_score(y, -np.array(q)))
    # by hand: a 0.2 positive beats all 8 negatives; a 0.5 one beats 4 and ties 4; a 0.8 one ties 4
    assert result.auc == pytest.approx((2 * 8 + 3 * (4 + 4 / 2) + 1 * (4 / 2)) / 48)
    for max_fpr, expected in [
        (0.0, (2, 0, 8, 4)),
        (0.4, (2, 0, 8, 4)),
        (0.5, (5, 4, 4, 1)),
        (1.0, (6, 8, 0, 0)),
    ]:
        t = threshold_for_fpr(q, y, max_fpr)
        assert counts(confusion(q, y, t)) == expected, (max_fpr, t)
    assert 0.2 < threshold_for_fpr(q, y, 0.05) <= 0.5


@pytest.mark.parametrize("seed", range(6))
def test_auc_ap_equal_sklearn_and_chosen_thresholds_reproduce_their_counts(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    q = np.round(rng.random(n) - 0.3 * y, int(rng.integers(1, 3)))  # 1-2 decimals: many ties
    assert roc_auc(q, y) == pytest.approx(sklearn_metrics.roc_auc_score(y, -q), abs=1e-12)
    assert average_precision(q, y) == pytest.approx(sklearn_metrics.average_precision_score(y, -q), abs=1e-12)
    thresholds, tp, fp = operating_points(q, y)
    for t, want_tp, want_fp in zip(thresholds, tp, fp, strict=True):
        assert (confusion(q, y, t).tp, confusion(q, y, t).fp) == (want_tp, want_fp)
    cuts = [*np.unique(q), np.inf]  # every way to split by min_score, by brute force
    for max_fpr in (0.0, 0.05, 0.2, 0.5):
        row = confusion(q, y, threshold_for_fpr(q, y, max_fpr))
        assert row.fpr <= max_fpr
        assert row.tpr == max(confusion(q, y, c).tpr for c in cuts if confusion(q, y, c).fpr <= max_fpr)
    best = confusion(q, y, best_f1_threshold(q, y))
    assert best.f1 == pytest.approx(max(confusion(q, y, c).f1 for c in cuts))
    result = evaluate(q, y, bootstrap=0)
    assert counts(result.at_target) == counts(confusion(q, y, result.at_target.threshold))


def test_bootstrap_is_deterministic_stratified_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(60, int), np.ones(40, int)]
    q = np.round(rng.random(100) * 0.7 + 0.3 * (1 - y), 2)
    groups = ["a" if i % 2 else "b" for i in range(100)]
    one = evaluate(q, y, bootstrap=300, seed=7, groups=groups)
    again = evaluate(q, y, bootstrap=300, seed=7, groups=groups)
    other = evaluate(q, y, bootstrap=300, seed=8, groups=groups)
    assert [r.ci for r in one.rows] == [r.ci for r in again.rows] and one.auc_ci == again.auc_ci
    assert [g.tpr_ci for g in one.groups] == [g.tpr_ci for g in again.groups]
    assert [r.ci for r in one.rows] != [r.ci for r in other.rows]
    for row in [*one.rows, one.at_target, one.best_f1]:
        for rate, (low, high) in row.ci.items():
            value = getattr(row, rate)
            assert value is None or low <= value <= high, (row.threshold, rate)
    assert one.auc_ci[0] <= one.auc <= one.auc_ci[1] and one.ap_ci[0] <= one.ap <= one.ap_ci[1]
    # stratified: every resample keeps 60 negatives, so an FPR is a multiple of 1/60
    low, high = one.rows[0].ci["fpr"]
    assert round(low * 60, 6) == round(low * 60) and round(high * 60, 6) == round(high * 60)
    assert [(g.value, g.positives) for g in one.groups] == [("a", 20), ("b", 20)]
    for g in one.groups:
        members = q[(y == 1) & (np.array(groups) == g.value)]
        assert g.tp[0] == int(np.sum(members < 0.5))
        assert all(lo <= tpr <= hi for tpr, (lo, hi) in zip(g.tpr, g.tpr_ci, strict=True))


def test_metric_specs_carry_yaml_parameters():
    specs = parse_metrics("laplacian, laplacian(tiles=4,tile_quantile=0.5),fused(model=path/blur.json)")
    assert [(s.label, s.name, s.params) for s in specs] == [
        ("laplacian", "laplacian", {}),
        ("laplacian(tiles=4,tile_quantile=0.5)", "laplacian", {"tiles": 4, "tile_quantile": 0.5}),
        ("fused(model=path/blur.json)", "fused", {"model": "path/blur.json"}),
    ]
    for bad in ("laplacian(tiles)", "laplacian(tiles=4", "laplacian,laplacian", "(x=1)"):
        with pytest.raises(EvalError):
            parse_metrics(bad)


# --- the command -----------------------------------------------------------------------------------
def textured(seed: int) -> np.ndarray:
    """A sharp, textured 128 px RGB image (blurring it is what the metrics must notice)."""
    noise = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    return cv2.resize(noise, (128, 128), interpolation=cv2.INTER_NEAREST)


@pytest.fixture()
def blur_set(tmp_path: Path) -> Path:
    """clean/ (textured images) and blur/ (their GaussianBlur copies), 8 each."""
    root = tmp_path / "set"
    (root / "clean").mkdir(parents=True)
    (root / "blur").mkdir()
    for i in range(8):
        img = textured(i)
        Image.fromarray(img).save(root / "clean" / f"{i}.png")
        Image.fromarray(cv2.GaussianBlur(img, (0, 0), 1.5 + i % 3)).save(root / "blur" / f"{i}.png")
    return root


def eval_json(out: Path) -> dict:
    return json.loads((out / "eval.json").read_text(encoding="utf-8"))


def test_eval_on_a_folder_writes_tables_and_plots(blur_set, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["eval", str(blur_set), "--metrics", "laplacian,laplacian(tiles=2)", "--out", str(out)]
    assert main([*argv, "--workers", "2", "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["eval.csv", "eval.json", "eval.md", "pr.png", "roc.png"]
    assert (out / "eval.md").read_text(encoding="utf-8") == printed
    assert "| min_score | flagged | TP | FP | TN | FN |" in printed and "## laplacian(tiles=2)" in printed
    report = eval_json(out)
    lap = report["metrics"]["laplacian"]
    assert lap["auc"] >= 0.95 and lap["scored"] == 16 and lap["positive"] == lap["negative"] == 8
    assert report["metrics"]["laplacian(tiles=2)"]["params"] == {"tiles": 2}
    rows = list(csv.DictReader((out / "eval.csv").open(encoding="utf-8")))
    assert len(rows) == 2 * (5 + 2)
    assert [r["kind"] for r in rows[:7]] == ["threshold"] * 5 + ["target_fpr", "best_f1"]
    # the table's counts are what the threshold does to the items' qualities
    items = report["items"]
    for row in lap["rows"] + [lap["target_fpr"], lap["best_f1"]]:
        flagged = [i for i in items if i["quality"]["laplacian"] < row["threshold"]]
        assert row["tp"] == sum(i["label"] for i in flagged) and row["flagged"] == len(flagged)
    assert Image.open(out / "roc.png").size[0] > 200
    # the same run again (workers=1, in this process): the same numbers, our own files overwritten
    assert main([*argv, "--workers", "1", "--bootstrap", "200"]) == 0
    assert eval_json(out)["metrics"] == report["metrics"]


def test_an_unreadable_image_is_counted_not_fatal(blur_set, tmp_path, capsys):
    (blur_set / "clean" / "broken.jpg").write_text("not a picture")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(blur_set / "blur" / "tiny.png")
    out = tmp_path / "out"
    assert main(["eval", str(blur_set), "--metrics", "laplacian", "--out", str(out), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    lap = eval_json(out)["metrics"]["laplacian"]
    assert lap["scored"] == 16 and lap["excluded"] == 2
    assert set(lap["excluded_by_reason"]) == {"too_small", "not_an_image"}
    assert "## Excluded images (2)" in printed and "broken.jpg" in printed
    assert {e["reason"].split(":")[0] for e in eval_json(out)["excluded"]} == {"too_small", "not_an_image"}


def test_jsonl_with_label_column_and_by_subset(blur_set, tmp_path, capsys):
    lines = []
    for f in sorted(blur_set.rglob("*.png")):
        cls = f.parent.name
        subset = "clean" if cls == "clean" else ("strong" if int(f.stem) % 3 == 2 else "mild")
        lines.append({"img": f"{cls}/{f.name}", "quality_label": cls, "subset": subset})
    records = blur_set / "set.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["eval", str(records), "--metrics", "laplacian", "--out", str(out), "--bootstrap", "50"]
    argv += [
        "--label-column",
        "quality_label",
        "--image-column",
        "img",
        "--positive",
        "blur",
        "--by",
        "subset",
    ]
    assert main([*argv, "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    by = {g["value"]: g for g in eval_json(out)["metrics"]["laplacian"]["by"]}
    assert {k: g["positives"] for k, g in by.items()} == {"mild": 6, "strong": 2}
    assert "TPR of the positives by subset" in printed
    assert main([*argv[:-2], "--by", "nonesuch"]) == 2
    assert "no positive image has that column" in capsys.readouterr().err


def test_scores_of_a_pipeline_run_give_the_same_tables(blur_set, tmp_path):
    from paddlemix_iqa.pipeline import load_config, run_pipeline

    records = tmp_path / "records.jsonl"
    paths = sorted(blur_set.rglob("*.png"))
    records.write_text(
        "".join(
            json.dumps({"id": str(i), "image": str(p.relative_to(blur_set))}) + "\n"
            for i, p in enumerate(paths)
        ),
        encoding="utf-8",
    )
    config = tmp_path / "tag.yaml"
    config.write_text("process:\n  - laplacian_tagger:\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    run_pipeline(
        load_config(
            config,
            [
                f"input={records}",
                f"image_root={blur_set}",
                f"output_dir={run_dir}",
                "workers=1",
                "progress=false",
                "report=false",
            ],
        )
    )
    common = [str(blur_set), "--metrics", "laplacian", "--bootstrap", "100", "--workers", "1"]
    assert main(["eval", *common, "--out", str(tmp_path / "fly")]) == 0
    assert main(["eval", *common, "--scores", str(run_dir), "--out", str(tmp_path / "run_eval")]) == 0
    fly, from_run = eval_json(tmp_path / "fly"), eval_json(tmp_path / "run_eval")
    assert from_run["metrics"]["laplacian"]["rows"] == fly["metrics"]["laplacian"]["rows"]
    assert from_run["metrics"]["laplacian"]["auc"] == fly["metrics"]["laplacian"]["auc"]
    assert from_run["scores_from"] == str(run_dir)
    # an image the run never saw is reported missing, not scored
    Image.fromarray(textured(99)).save(blur_set / "clean" / "extra.png")
    assert (
        main(
            [
                "eval",
                *common,
                "--scores",
                str(run_dir),
                "--out",
                str(tmp_path / "run_eval"),
                "--bootstrap",
                "0",
            ]
        )
        == 0
    )
    excluded = eval_json(tmp_path / "run_eval")["excluded"]
    assert [(Path(e["image"]).name, e["reason"].split(":")[0]) for e in excluded] == [
        ("extra.png", "missing")
    ]


def test_bad_input_exits_2_with_a_clear_message(blur_set, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out"), "--bootstrap", "0", "--workers", "1"]
    cases = [
        (["eval", str(tmp_path / "nope"), "--metrics", "laplacian"], "does not exist"),
        (
            ["eval", str(blur_set), "--metrics", "laplacian", "--positive", "clean", "--negative", "x"],
            "both are needed",
        ),
        (["eval", str(blur_set), "--metrics", "laplacain"], "did you mean 'laplacian'"),
        (["eval", str(blur_set), "--metrics", "laplacian(tiles=0)"], "tiles"),
        (["eval", str(blur_set)], "--metrics"),
        (["eval", str(blur_set), "--metrics", "laplacian", "--thresholds", "0.5,1.5"], "[0, 1]"),
        (
            ["eval", str(blur_set), "--metrics", "laplacian", "--scores", str(tmp_path)],
            "not a finished pipeline run",
        ),
    ]
    for argv, message in cases:
        assert main([*argv, *out]) == 2, argv
        err = capsys.readouterr().err
        assert "paddlemix-iqa eval: error:" in err and message in err, (argv, err)
    assert (
        "available: "
        in (main(["eval", str(blur_set), "--metrics", "nonesuch", *out]), capsys.readouterr().err)[1]
    )
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["eval", str(blur_set), "--metrics", "laplacian", "--out", str(foreign)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "keep me"
