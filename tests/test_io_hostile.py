"""Hostile inputs to the loader: special files, paths escaping the image root, odd references,
pixel limits, damaged metadata, wide pixel formats, Pillow warnings and huge frame counts."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import paddlemix_iqa.io.loading as loading
from conftest import write_png_header_only
from paddlemix_iqa.io import (
    ImageLoadError,
    ImageMissing,
    ImageTooLarge,
    NotARegularFile,
    OutsideImageRoot,
    decode_image,
    decode_or_error,
    load_image,
    max_pixels_limit,
    probe_image,
    resolve_path,
)


@pytest.fixture()
def dataset(tmp_path: Path) -> dict[str, Path]:
    """An image root with one image, and an image outside it (the attacker's target)."""
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(root / "imgs" / "a.png")
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(secret)
    return {"root": root, "image": root / "imgs" / "a.png", "secret": secret}


def _in_thread(call, timeout: float = 10.0):
    """Run ``call`` in a thread; a call still blocked after ``timeout`` fails the test instead of hanging it."""
    result: dict = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    return worker.is_alive(), result


# --- special files ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_at_once_instead_of_blocking_the_run(tmp_path):
    fifo = tmp_path / "image.jpg"
    os.mkfifo(fifo)
    try:
        for call in (lambda: decode_image(fifo), lambda: probe_image(fifo)):
            hung, result = _in_thread(call)
            assert not hung, "decoding a FIFO blocks"
            assert isinstance(result.get("error"), NotARegularFile), result
            assert result["error"].reason == "not_a_regular_file: a FIFO (named pipe)"
    finally:  # a regressed loader sits in open(): a writer that connects and leaves frees it
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_device_files_are_not_images(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    hung, result = _in_thread(lambda: decode_image(device))
    assert not hung
    assert isinstance(result.get("error"), NotARegularFile) and "character device" in result["error"].reason


def test_a_directory_and_a_symlink_to_a_device_are_not_images(tmp_path):
    with pytest.raises(NotARegularFile, match="directory"):
        decode_image(tmp_path)
    link = tmp_path / "photo.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(NotARegularFile):
        decode_image(link)
    assert decode_or_error(link).code == "not_a_regular_file"


def test_a_missing_file_names_its_path(tmp_path):
    with pytest.raises(ImageMissing) as info:
        decode_image(tmp_path / "nope.jpg")
    assert info.value.reason.startswith("missing: file not found: /")
    assert str(tmp_path / "nope.jpg") in str(info.value)


# --- the image root --------------------------------------------------------------------------


def test_paths_inside_the_root_resolve_as_before(dataset):
    root = dataset["root"]
    assert resolve_path("imgs/a.png", root) == str(root / "imgs" / "a.png")
    assert resolve_path("imgs/../imgs/a.png", root) == str(root / "imgs/../imgs/a.png")
    assert resolve_path(str(dataset["image"]), root) == str(dataset["image"])  # absolute, but inside
    assert load_image("imgs/a.png", root=root).shape == (6, 8, 3)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked_dir", "file_url"])
def test_paths_escaping_the_root_are_refused_unless_allowed(dataset, how):
    root, secret = dataset["root"], dataset["secret"]
    ref = {
        "absolute": str(secret),
        "dotdot": "../outside/secret.png",
        "symlink": "imgs/innocent.png",
        "symlinked_dir": "linked/secret.png",
        "file_url": f"file://{secret}",
    }[how]
    (root / "imgs" / "innocent.png").symlink_to(secret)
    (root / "linked").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(OutsideImageRoot) as info:
        decode_image(ref, root=root)
    assert info.value.code == "outside_image_root"
    assert str(secret.resolve()) in info.value.detail and str(root.resolve()) in info.value.detail
    for call in (resolve_path, probe_image, load_image):
        with pytest.raises(OutsideImageRoot):
            call(ref, root)
    assert isinstance(decode_or_error(ref, root), OutsideImageRoot)
    # allowed explicitly, or with no root at all (a library user decoding any file)
    assert load_image(ref, root=root, allow_outside_root=True).shape == (4, 4, 3)
    assert probe_image(ref, root=root, allow_outside_root=True).width == 4
    assert decode_or_error(ref, root, allow_outside_root=True).pixels.shape == (4, 4, 3)
    if how in ("absolute", "file_url"):
        assert load_image(ref).shape == (4, 4, 3)


def test_symlinks_within_the_root_and_a_symlinked_root_are_fine(dataset, tmp_path):
    root = dataset["root"]
    (root / "alias.png").symlink_to(root / "imgs" / "a.png")
    assert load_image("alias.png", root=root).shape == (6, 8, 3)
    link_root = tmp_path / "link_root"
    link_root.symlink_to(root, target_is_directory=True)
    assert load_image("imgs/a.png", root=link_root).shape == (6, 8, 3)


def test_a_tilde_in_a_record_is_a_literal_name(dataset):
    root = dataset["root"]
    for ref in ("~nosuchuser_iqa/a.jpg", "~/a.jpg", "~root/.bashrc"):
        with pytest.raises(ImageMissing):
            decode_image(ref, root=root)
        with pytest.raises(ImageMissing):
            decode_image(ref)  # no root: still never the home directory
        assert resolve_path(ref, root) == str(root / ref)
    (root / "~").mkdir()
    Image.new("RGB", (3, 3)).save(root / "~" / "a.png")
    assert load_image("~/a.png", root=root).shape == (3, 3, 3)


def test_a_bad_root_is_a_typed_error(dataset):
    with pytest.raises(ImageLoadError, match="invalid image root"):
        decode_image("a.png", root="~nosuchuser_iqa/data")
    with pytest.raises(ImageLoadError):
        decode_image("a.png", root="data\x00")


@pytest.mark.parametrize(
    "ref",
    [
        "a\x00.jpg",
        "x" * 5000 + ".jpg",
        "/".join(["d" * 200] * 40),
        "\ud800.jpg",
        42,
        b"a.jpg",
        ["a.jpg"],
        1.5,
    ],
)
def test_malformed_references_are_typed_errors(dataset, ref):
    for root in (None, dataset["root"]):
        with pytest.raises(ImageLoadError) as info:
            decode_image(ref, root=root)
        assert info.value.code in ("unreadable", "missing")
        assert isinstance(decode_or_error(ref, root), ImageLoadError)


def test_a_nul_byte_is_reported_as_an_invalid_path():
    with pytest.raises(ImageLoadError, match="invalid path: contains a NUL byte"):
        decode_image("a\x00.jpg")


# --- the pixel limit -------------------------------------------------------------------------


def test_a_raised_limit_lets_images_past_pillows_own_check(tmp_path, monkeypatch):
    write_png_header_only(tmp_path / "200mp.png", 20000, 10000)  # over Pillow's 179 MP refusal
    before = Image.MAX_IMAGE_PIXELS
    monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", "300000000")
    with pytest.raises(ImageLoadError) as info:
        decode_image(tmp_path / "200mp.png")
    assert info.value.code in ("truncated", "unreadable")  # got as far as decoding the (empty) data
    assert probe_image(tmp_path / "200mp.png").width == 20000
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's setting is only lifted while we decode
    monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", "150000000")
    with pytest.raises(
        ImageTooLarge, match=r"200 MP exceeds the limit of 150 MP \(PADDLEMIX_IQA_MAX_PIXELS\)"
    ):
        decode_image(tmp_path / "200mp.png")


def test_the_default_limit_and_a_lowered_one_refuse_with_our_reason(tmp_path, monkeypatch):
    write_png_header_only(tmp_path / "900mp.png", 30000, 30000)
    with pytest.raises(ImageTooLarge) as info:
        decode_image(tmp_path / "900mp.png")
    assert info.value.reason == "too_large: 900 MP exceeds the limit of 200 MP (PADDLEMIX_IQA_MAX_PIXELS)"
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLarge, match=r"100x100 = 10,000 pixels exceeds the limit of 1,000 pixels"):
        decode_image(tmp_path / "small.png")
    assert decode_image(tmp_path / "small.png", max_pixels=10_000).pixels.shape == (100, 100, 3)
    with pytest.raises(ImageTooLarge, match=r"\(max_pixels\)"):
        decode_image(tmp_path / "small.png", max_pixels=9_999)


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "-5", "1e400", "nan", "200 MP"])
def test_a_bad_limit_setting_is_a_clear_value_error(monkeypatch, bad):
    monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", bad)
    with pytest.raises(ValueError, match="PADDLEMIX_IQA_MAX_PIXELS must be a positive whole number"):
        max_pixels_limit()


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        (None, 200_000_000),
        ("", 200_000_000),
        ("300000000", 300_000_000),
        ("2e8", 200_000_000),
        ("1_000", 1000),
    ],
)
def test_good_limit_settings(monkeypatch, value, limit):
    if value is None:
        monkeypatch.delenv("PADDLEMIX_IQA_MAX_PIXELS", raising=False)
    else:
        monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", value)
    assert max_pixels_limit() == limit


# --- damaged metadata and Pillow's warnings ----------------------------------------------------


def _jpeg_with_corrupt_exif(path: Path) -> None:
    """A photo whose EXIF IFD claims 62,465 entries: Pillow warns 'Corrupt EXIF data' when reading it."""
    exif = Image.Exif()
    exif[0x010F] = "camera"
    raw = bytearray(exif.tobytes())
    raw[14:16] = b"\xf4\x01"  # the entry count of IFD0 (big-endian)
    Image.new("RGB", (32, 16), (0, 128, 255)).save(path, exif=bytes(raw), quality=95)


def test_a_photo_with_damaged_exif_decodes_as_stored(tmp_path):
    path = tmp_path / "broken_exif.webp"
    header = b"Exif\x00\x00MM\x00y\x00\x00\x00\x08"  # not a TIFF header: Pillow's getexif() raises
    Image.new("RGB", (32, 16), (0, 128, 255)).save(path, exif=header + b"\x00" * 16, lossless=True)
    with pytest.raises(SyntaxError):
        Image.open(path).getexif()
    decoded = decode_image(path)
    assert decoded.pixels.shape == (16, 32, 3) and (decoded.width, decoded.height) == (32, 16)
    assert tuple(decoded.pixels[0, 0]) == (0, 128, 255)
    assert probe_image(path).width == 32


def test_pillows_warnings_stay_inside_the_loader(tmp_path, recwarn):
    path = tmp_path / "corrupt_exif.jpg"
    _jpeg_with_corrupt_exif(path)
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # the file does make Pillow warn
        Image.open(path).getexif()
    recwarn.clear()
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a caller running with -W error must not see failures
        assert load_image(path).shape == (16, 32, 3)
        assert probe_image(path).width == 32
    assert not recwarn.list
    assert warnings.filters == filters


def test_concurrent_decodes_restore_pillow_and_warning_state(tmp_path, photo):
    _jpeg_with_corrupt_exif(tmp_path / "warns.jpg")
    Image.fromarray(photo).save(tmp_path / "good.png")
    write_png_header_only(tmp_path / "big.png", 30000, 30000)
    filters, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    refs = ["warns.jpg", "good.png", "big.png", "missing.png"] * 16
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda r: decode_or_error(r, tmp_path, 128), refs))
    assert [type(r).__name__ for r in results[:4]] == [
        "DecodedImage",
        "DecodedImage",
        "ImageTooLarge",
        "ImageMissing",
    ]
    assert warnings.filters == filters and Image.MAX_IMAGE_PIXELS == limit


# --- wide pixel formats ------------------------------------------------------------------------


def _gray(path: Path) -> np.ndarray:
    pixels = load_image(path)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return pixels[..., 0]


def test_sixteen_bit_values_map_to_the_nearest_eight_bit_level(tmp_path):
    every = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
    expected = np.rint(every / 257.0).astype(np.uint8)
    Image.fromarray(every).save(tmp_path / "le.png")
    Image.frombytes("I;16B", (256, 256), every.astype(">u2").tobytes()).save(tmp_path / "be.tif")
    assert Image.open(tmp_path / "be.tif").mode == "I;16B"
    for name in ("le.png", "be.tif"):
        assert np.array_equal(_gray(tmp_path / name), expected), name


def test_32_bit_integer_and_float_images(tmp_path):
    ints = np.array([[-5, 0, 100, 255]], dtype=np.int32)  # an 8-bit range stays as it is
    Image.fromarray(ints).save(tmp_path / "i8.tif")
    assert _gray(tmp_path / "i8.tif").tolist() == [[0, 0, 100, 255]]
    wide = np.array([[-5, 257, 65535, 1 << 20]], dtype=np.int32)  # above 255: a 16-bit range
    Image.fromarray(wide).save(tmp_path / "i16.tif")
    assert _gray(tmp_path / "i16.tif").tolist() == [[0, 1, 255, 255]]
    unit = np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32)  # 0..1 floats scale to 0..255
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert _gray(tmp_path / "unit.tif").tolist() == [[0, 128, 255, 0]]
    levels = np.array([[np.nan, -3.0, 128.4, np.inf]], dtype=np.float32)  # already 0..255
    Image.fromarray(levels).save(tmp_path / "levels.tif")
    assert _gray(tmp_path / "levels.tif").tolist() == [[0, 0, 128, 255]]


def test_sixteen_bit_decoding_makes_no_full_size_float_copies(tmp_path):
    ramp = (np.arange(3000, dtype=np.uint32)[None, :] * 21 + np.arange(3000)[:, None] * 7) % 65536
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "g16.png", compress_level=1)
    tracemalloc.start()
    try:
        pixels = load_image(tmp_path / "g16.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pixels.shape == (3000, 3000, 3)
    assert peak < 8 * ramp.size  # RGB output is 3 B/px; one float64 copy alone would be 8 B/px


def test_big_images_convert_in_bands_exactly_as_small_ones(odd_mode_files, monkeypatch):
    whole = {mode: load_image(path) for mode, path in odd_mode_files.items()}
    monkeypatch.setattr(loading, "_BAND_PIXELS", 5000)  # about 10 rows of the 512 px test images
    for mode, path in odd_mode_files.items():
        assert np.array_equal(load_image(path), whole[mode]), mode


# --- many frames ---------------------------------------------------------------------------------


def test_a_gif_with_ten_thousand_frames_decodes_its_first_frame_quickly(tmp_path):
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (
        b"\x21\xf9\x04\x00\x01\x00\x00\x00\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"
    )
    (tmp_path / "many.gif").write_bytes(header + frame * 10_000 + b"\x3b")
    started = time.monotonic()
    decoded = decode_image(tmp_path / "many.gif")
    assert decoded.pixels.shape == (1, 1, 3) and decoded.n_frames == 10_000
    assert time.monotonic() - started < 10


def test_a_tiff_with_twenty_thousand_pages_is_counted_only_up_to_a_cap(tmp_path):
    """Pillow's own page count is quadratic here (minutes for a 2 MB file)."""
    tags = [
        (256, 3, 1),
        (257, 3, 1),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (278, 3, 1),
        (279, 4, 1),
    ]
    out = io.BytesIO()
    out.write(b"II*\x00" + struct.pack("<I", 12) + b"\x80\x00\x00\x00")
    pages, size = 20_000, 2 + 12 * len(tags) + 4
    for page in range(pages):
        following = out.tell() + size if page < pages - 1 else 0
        out.write(struct.pack("<H", len(tags)))
        for tag, kind, value in tags:
            out.write(
                struct.pack("<HHI", tag, kind, 1)
                + struct.pack("<I" if kind == 4 else "<HH", value, *([0] if kind == 3 else []))
            )
        out.write(struct.pack("<I", following))
    (tmp_path / "pages.tif").write_bytes(out.getvalue())
    started = time.monotonic()
    decoded = decode_image(tmp_path / "pages.tif")
    assert decoded.pixels.shape == (1, 1, 3) and decoded.n_frames == loading.MAX_COUNTED_FRAMES
    assert probe_image(tmp_path / "pages.tif").n_frames == loading.MAX_COUNTED_FRAMES
    assert time.monotonic() - started < 10
