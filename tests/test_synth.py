"""make-eval-set: deterministic synthetic labelled sets (paddlemix_iqa.evaluation.synth)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import shared
from paddlemix_iqa.cli import main
from paddlemix_iqa.evaluation import EvalError, synth
from paddlemix_iqa.evaluation.labelled import load_labelled
from paddlemix_iqa.io import load_image

SMALL_CODES = {"code_sizes": "60,120", "code_angles": "0,30", "code_blurs": "0,1"}
PER_SOURCE = 1 + 8 + len(synth.DEFOCUS_RADII) + 3 + 3 + 3 + len(synth.CODE_KINDS)


def _make_sources(root: Path, photo: np.ndarray) -> Path:
    """Three small photos (a JPEG, a PNG and a JPEG in a subfolder) and a file that is not an image."""
    (root / "sub").mkdir(parents=True)
    small = cv2.resize(photo, (128, 96), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(root / "a.jpg", quality=92)
    Image.fromarray(np.ascontiguousarray(small[:, ::-1])).save(root / "sub" / "b.png")
    Image.fromarray(cv2.resize(photo[100:400, 50:450], (120, 90))).save(root / "sub" / "c.jpg", quality=90)
    (root / "notes.txt").write_text("not an image")
    return root


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory, photo):
    """One set from three small photos, built in-process."""
    root = tmp_path_factory.mktemp("synth")
    src = _make_sources(root / "src", photo)
    out = root / "out"
    summary = synth.make_eval_set(src, out, seed=3, workers=1, **SMALL_CODES)
    return src, out, summary


# --- the set ----------------------------------------------------------------------------------------


def test_rows_match_files_and_counts(built):
    src, out, summary = built
    rows = _rows(out)
    assert summary["sources"] == summary["used"] == 3 and summary["skipped"] == 0
    assert len(rows) == summary["images"] == 3 * PER_SOURCE
    listed = {r["image"] for r in rows}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - listed == {"labels.jsonl", "README.md"}  # no stray or temporary files
    assert len(listed) == len(rows)
    for row in rows:
        assert set(row) == {"image", "label", "subset", "degradation", "params", "source"}
        assert row["image"].split("/")[0] == row["label"]
        assert (src / row["source"]).is_file()
    assert summary["subsets"]["blur"] == {
        f"{kind}_k{k}": 3 for kind in ("gaussian", "motion") for k in (5, 7, 9, 11)
    }
    assert summary["subsets"]["defocus"] == {f"defocus_r{r}": 3 for r in synth.DEFOCUS_RADII}
    assert set(summary["subsets"]["jpeg"]) == {"jpeg_q5-10", "jpeg_q11-20", "jpeg_q21-30"}
    assert summary["classes"]["code"] == 3 * len(synth.CODE_KINDS)
    readme = (out / "README.md").read_text()
    assert "--seed 3" in readme and "| blur | 24 |" in readme and f"| total | {3 * PER_SOURCE} |" in readme


def test_clean_copies_are_the_source_files(built):
    src, out, _ = built
    clean = [r for r in _rows(out) if r["label"] == "clean"]
    assert sorted(r["source"] for r in clean) == ["a.jpg", "sub/b.png", "sub/c.jpg"]
    for row in clean:
        assert row["subset"] == "clean"
        assert (out / row["image"]).read_bytes() == (src / row["source"]).read_bytes()


def test_loads_as_labelled_file_and_folder(built):
    _, out, _ = built
    items = load_labelled(out / "labels.jsonl", positive="blur")
    assert sum(i.label == 0 for i in items) == 3 and sum(i.label == 1 for i in items) == 24
    assert all(Path(i.path).is_file() for i in items)
    assert {i.extra["subset"] for i in items if i.label} == {
        f"{kind}_k{k}" for kind in ("gaussian", "motion") for k in (5, 7, 9, 11)
    }
    codes = load_labelled(out / "labels.jsonl", positive="code")
    assert {i.extra["degradation"] for i in codes if i.label} == set(synth.CODE_KINDS)
    folder = load_labelled(out, positive="blur")
    assert sorted(Path(i.path).name for i in folder) == sorted(Path(i.path).name for i in items)


def test_gaussian_images_are_cv2_gaussian_blur(built):
    src, out, _ = built
    for row in _rows(out):
        if row["degradation"] == "gaussian":
            k = row["params"]["ksize"]
            expected = cv2.GaussianBlur(load_image(src / row["source"]), (k, k), 0)
            assert np.array_equal(load_image(out / row["image"]), expected), row["image"]


def test_motion_images_are_paddleclas_motion_blur(built):
    src, out, _ = built
    angles = set()
    for row in _rows(out):
        if row["degradation"] == "motion":
            k, angle = row["params"]["ksize"], row["params"]["angle"]
            assert isinstance(angle, int) and -45 <= angle < 45
            angles.add(angle)
            img = load_image(src / row["source"])
            # PaddleClas BlurImage._motion_blur, written out again
            rotation = cv2.getRotationMatrix2D((k / 2, k / 2), angle, 1)
            kernel = cv2.warpAffine(np.diag(np.ones(k)), rotation, (k, k)) / k
            blurred = cv2.filter2D(img, -1, kernel)
            cv2.normalize(blurred, blurred, 0, 255, cv2.NORM_MINMAX)
            assert np.array_equal(load_image(out / row["image"]), blurred), row["image"]
            assert row["params"]["kernel_sum"] == pytest.approx(kernel.sum(), abs=1e-6)
    assert len(angles) > 3  # random per image


def test_other_recipes_match_their_params(built):
    src, out, _ = built
    for row in _rows(out):
        img = load_image(src / row["source"])
        got = load_image(out / row["image"])
        p = row["params"]
        if row["label"] == "defocus":
            assert np.array_equal(got, synth.defocus_blur(img, p["radius"]))
        elif row["label"] == "jpeg":
            low, high = map(int, row["subset"][len("jpeg_q") :].split("-"))
            assert low <= p["quality"] <= high
            assert np.array_equal(got, synth.jpeg_compress(img, p["quality"]))
        elif row["label"] == "downscale":
            assert np.array_equal(got, synth.down_up(img, p["factor"]))
        elif row["label"] == "noise":
            low, high = map(float, row["subset"][len("noise_s") :].split("-"))
            assert low <= p["sigma"] <= high
            diff = got.astype(float) - img
            assert abs(diff.std() - p["sigma"]) < 0.25 * p["sigma"]
        elif row["label"] == "code":
            assert row["subset"] == f"{p['kind']}_s{p['size']}_a{p['angle']:g}_b{p['blur']:g}"
            assert p["size"] in (60, 120) and p["angle"] in (0, 30) and p["blur"] in (0, 1)
            assert len(p["polygon"]) == 4 and p["text"]
            if p["photo_scale"] > 1:  # enlarged rather than the code cropped
                assert got.shape[1] > img.shape[1]


# --- determinism -----------------------------------------------------------------------------------


def test_same_inputs_give_byte_identical_sets(tmp_path, photo, monkeypatch):
    src = _make_sources(tmp_path / "src", photo)
    out = tmp_path / "out"
    synth.make_eval_set(src, out, seed=7, workers=1, **SMALL_CODES)
    first = _hashes(out)
    out.rename(tmp_path / "first")

    listing = synth._list_files

    def shuffled(root):
        files = listing(root)
        random.Random(1).shuffle(files)
        return files[::-1]

    monkeypatch.setattr(synth, "_list_files", shuffled)
    synth.make_eval_set(src, out, seed=7, workers=2, **SMALL_CODES)
    assert _hashes(out) == first
    assert len(first) == 3 * PER_SOURCE + 2

    synth.make_eval_set(src, tmp_path / "other", seed=8, workers=1, **SMALL_CODES)
    other = _hashes(tmp_path / "other")
    assert other["clean/a.jpg"] == first["clean/a.jpg"]
    assert other["blur/a__gaussian_k5.png"] == first["blur/a__gaussian_k5.png"]  # no randomness there
    assert other["labels.jsonl"] != first["labels.jsonl"]


def test_a_source_does_not_depend_on_the_others(tmp_path, photo):
    src = _make_sources(tmp_path / "src", photo)
    synth.make_eval_set(src, tmp_path / "all", seed=1, workers=1, recipes="blur,codes")
    synth.make_eval_set(src, tmp_path / "one", seed=1, workers=1, recipes="blur,codes", limit=1)
    one, every = _hashes(tmp_path / "one"), _hashes(tmp_path / "all")
    images = [name for name in one if "/" in name]
    assert images and all(one[name] == every[name] for name in images)


def test_per_image_copies_and_jpg_format(tmp_path, photo):
    src = _make_sources(tmp_path / "src", photo)
    out = tmp_path / "out"
    summary = synth.make_eval_set(
        src, out, recipes="blur,jpeg", per_image=2, fmt="jpg", jpeg_quality=90, limit=1
    )
    rows = _rows(out)
    assert summary["classes"] == {"clean": 1, "blur": 16, "jpeg": 6}
    motion = [r for r in rows if r["subset"] == "motion_k9"]
    assert [r["copy"] for r in motion] == [0, 1] and [r["image"] for r in motion] == [
        "blur/a__motion_k9_c0.jpg",
        "blur/a__motion_k9_c1.jpg",
    ]
    img = load_image(src / "a.jpg")
    for row in rows:
        if row["label"] == "jpeg":  # the file is the JPEG at the recipe's quality, not a re-encode at 90
            assert (out / row["image"]).read_bytes() == synth._jpeg_bytes(img, row["params"]["quality"])


# --- kernels and codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 7, 9, 11])
def test_motion_kernel_is_a_line_of_length_k_along_the_angle(k):
    straight = synth.motion_kernel(k, 0)
    assert np.array_equal(straight, np.eye(k) / k) and straight.sum() == pytest.approx(1.0)
    for angle in range(-45, 45, 7):
        kernel = synth.motion_kernel(k, angle)
        # PaddleClas divides by k and does not renormalise: the line's ends leave the box when turned
        assert 0.6 < kernel.sum() <= 1 + 1e-9
        ys, xs = np.nonzero(kernel > 1e-9)
        assert max(xs.max() - xs.min(), ys.max() - ys.min()) + 1 == k
        w = kernel[ys, xs]
        cov = np.cov(np.stack([xs, ys]), aweights=w)
        major = np.linalg.eigh(cov)[1][:, 1]
        seen = np.degrees(np.arctan2(-major[1], major[0]))  # counter-clockwise, y up
        assert abs((seen - (angle - 45) + 90) % 180 - 90) < 6


def test_motion_blur_keeps_shape_and_range(photo):
    out = synth.motion_blur(photo, 9, 20)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # PaddleClas's min-max stretch


def test_disk_kernel_and_defocus():
    kernel = synth.disk_kernel(3)
    assert kernel.shape == (7, 7) and kernel.sum() == pytest.approx(1.0)
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1])
    assert kernel[3, 3] == kernel.max() and kernel[0, 0] == 0


@pytest.mark.parametrize("kind", synth.CODE_KINDS)
def test_pasted_codes_decode_where_they_are_said_to_be(kind, photo):
    zxingcpp = pytest.importorskip("zxingcpp")
    rng = np.random.default_rng(5)
    small = cv2.resize(photo, (160, 120))  # smaller than the label: the photo is enlarged
    for angle in (0, 20):
        code, text = synth.make_code(kind, rng)
        module = 8
        dark = np.argwhere(code < 128)
        assert dark.min(0).min() >= synth.QUIET_MODULES * module  # a white quiet zone on every side
        assert (np.array(code.shape) - dark.max(0) - 1).min() >= synth.QUIET_MODULES * module
        image, polygon = synth.paste_code(small, code, 200, angle, 0, rng)
        assert image.shape[0] > small.shape[0]
        found = zxingcpp.read_barcodes(image)
        assert [r.text for r in found] == [text], (kind, angle)
        centre = np.mean(polygon, axis=0)
        corners = found[0].position
        seen = np.mean(
            [
                [p.x, p.y]
                for p in (corners.top_left, corners.top_right, corners.bottom_right, corners.bottom_left)
            ],
            axis=0,
        )
        assert np.linalg.norm(centre - seen) < 15
        xs, ys = np.array(polygon).T
        assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= image.shape[1] and ys.max() <= image.shape[0]


def test_codes_decode_on_a_real_photo():
    zxingcpp = pytest.importorskip("zxingcpp")
    coco = shared("photos", "coco")
    img = load_image(sorted(coco.glob("*.jpg"))[0])
    rng = np.random.default_rng(0)
    for kind in synth.CODE_KINDS:
        code, text = synth.make_code(kind, rng)
        image, _ = synth.paste_code(img, code, 200, 0, 0, rng)
        assert image.shape == img.shape
        assert text in [r.text for r in zxingcpp.read_barcodes(image)], kind


# --- refusals and bad sources ------------------------------------------------------------------------


def test_refuses_unsafe_or_occupied_outputs(tmp_path, photo):
    src = _make_sources(tmp_path / "src", photo)
    for out in (src, src / "sub" / "set", tmp_path):
        with pytest.raises(EvalError, match="SRC_DIR"):
            synth.make_eval_set(src, out, recipes="blur", force=True)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep me")
    with pytest.raises(EvalError, match="not empty"):
        synth.make_eval_set(src, occupied, recipes="blur")
    with pytest.raises(EvalError, match="does not exist"):
        synth.make_eval_set(tmp_path / "missing", tmp_path / "x")
    for bad in (
        {"recipes": "blur,sharpen"},
        {"fmt": "gif"},
        {"per_image": 0},
        {"code_sizes": "40,big"},
        {"seed": -1},
    ):
        with pytest.raises(EvalError):
            synth.make_eval_set(src, tmp_path / "bad", **bad)
    with pytest.raises(EvalError, match="unknown option"):
        synth.make_eval_set(src, tmp_path / "bad", code_colour="red")
    assert not (tmp_path / "bad").exists()


def test_force_replaces_only_a_previous_build(tmp_path, photo):
    src = _make_sources(tmp_path / "src", photo)
    out = tmp_path / "out"
    synth.make_eval_set(src, out, recipes="blur", workers=1)
    (out / "mine.txt").write_text("keep me")
    (out / "blur" / ".x.png.tmp-123").write_bytes(b"half")  # an interrupted build's temporary file
    before = _hashes(src)
    synth.make_eval_set(src, out, recipes="jpeg", workers=1, force=True)
    assert not (out / "blur").exists()
    assert (out / "mine.txt").read_text() == "keep me"
    assert {r["label"] for r in _rows(out)} == {"clean", "jpeg"}
    assert _hashes(src) == before


def test_unreadable_sources_are_skipped_and_counted(tmp_path, photo, caplog):
    src = _make_sources(tmp_path / "src", photo)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (src / "sub" / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="paddlemix_iqa.evaluation.synth"):
        summary = synth.make_eval_set(src, tmp_path / "out", recipes="blur", workers=1)
    assert summary["sources"] == 5 and summary["used"] == 3 and summary["skipped"] == 2
    assert {s["source"] for s in summary["skipped_sources"]} == {"broken.jpg", "sub/empty.png"}
    assert "broken.jpg" in caplog.text
    assert all("broken" not in r["source"] for r in _rows(tmp_path / "out"))
    assert not (tmp_path / "out" / "clean" / "broken.jpg").exists()
    assert "Skipped sources (2" in (tmp_path / "out" / "README.md").read_text()


# --- the command --------------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path, photo, capsys):
    src = _make_sources(tmp_path / "src", photo)
    out = tmp_path / "out"
    args = ["make-eval-set", str(src), str(out), "--recipes", "blur,codes", "--workers", "1"]
    assert main([*args, "--code-sizes", "80", "--code-blurs", "0"]) == 0
    assert "made 39 images from 3 photos" in capsys.readouterr().out
    assert {r["params"]["size"] for r in _rows(out) if r["label"] == "code"} == {80}
    assert main(args) == 2 and "not empty" in capsys.readouterr().err
    assert main([*args, "--force", "--limit", "1"]) == 0
    assert len(_rows(out)) == 1 + 8 + 4
    assert main([*args, "--force", "--recipes", "sharpen"]) == 2
    assert main([*args, "--force", "--format", "gif"]) == 2
    assert main(["make-eval-set", str(src), str(src / "sub" / "set")]) == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["make-eval-set", str(empty), str(tmp_path / "o2")]) == 2
    assert "no image files" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "x.jpg").write_bytes(b"garbage")
    assert main(["make-eval-set", str(corrupt), str(tmp_path / "o3"), "--workers", "1"]) == 4
    assert main(["make-eval-set", "--help"]) == 0
