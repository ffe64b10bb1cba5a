"""Image loading: every mode to RGB uint8, typed errors, reduced-size decoding, EXIF, roots."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import write_png_header_only
from paddlemix_iqa import ImageLoadError, load_image
from paddlemix_iqa.io import ImageTooLarge, decode_image, probe_image


def test_every_mode_loads_as_rgb_uint8(odd_mode_files):
    for mode, path in odd_mode_files.items():
        pixels = load_image(path)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3, mode
        assert pixels.shape[:2] == (512, 512), mode
        assert pixels.std() > 10, f"{mode} decoded to a flat image"


def test_sixteen_bit_keeps_its_range(odd_mode_files, photo):
    expected = np.asarray(Image.fromarray(photo).convert("L"))
    got = load_image(odd_mode_files["I;16"])[:, :, 0]
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_transparency_is_composited_on_white(tmp_path):
    clear = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    clear.save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png") == 255).all()


def test_animated_gives_first_frame(odd_mode_files, photo):
    first = load_image(odd_mode_files["animated"]).astype(int)
    # the second frame is rotated; the first frame must match the unrotated photo closely
    assert np.abs(first - photo).mean() < np.abs(first - np.rot90(photo)).mean()
    assert decode_image(odd_mode_files["animated"]).n_frames == 2


@pytest.mark.parametrize("code", ["truncated", "not_an_image/empty", "not_an_image", "missing", "too_large"])
def test_bad_files_raise_typed_errors(bad_files, code):
    with pytest.raises(ImageLoadError) as info:
        load_image(bad_files[code])
    assert info.value.code == code.split("/")[0]
    assert info.value.reason.startswith(info.value.code + ": ")
    if code.endswith("/empty"):
        assert "empty" in info.value.reason


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    write_png_header_only(tmp_path / "big.png", 5000, 5000)
    monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", "1000000")
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        load_image(tmp_path / "big.png")


def test_reduced_decoding_uses_jpeg_draft(tmp_path, photo):
    big = np.asarray(Image.fromarray(photo).resize((2048, 2048), Image.BICUBIC))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=92)
    small = decode_image(tmp_path / "big.jpg", max_side=512)
    assert small.pixels.shape == (512, 512, 3)
    assert (small.width, small.height) == (2048, 2048)  # the original size is still known
    full = load_image(tmp_path / "big.jpg")
    assert full.shape == (2048, 2048, 3)
    reference = np.asarray(Image.fromarray(full).resize((512, 512), Image.BOX), dtype=float)
    assert np.abs(small.pixels - reference).mean() < 3.0  # DCT scaling ~ box downscale


def test_max_side_never_upscales_and_shrinks_png(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", max_side=1024).shape == (512, 512, 3)
    assert load_image(tmp_path / "p.png", max_side=256).shape == (256, 256, 3)


def test_exif_orientation_is_applied(tmp_path, photo):
    wide = photo[:256]  # 256 x 512
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    Image.fromarray(wide).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    decoded = decode_image(tmp_path / "rot.jpg")
    assert decoded.pixels.shape == (512, 256, 3)
    assert (decoded.width, decoded.height) == (256, 512)
    assert (probe_image(tmp_path / "rot.jpg").width, probe_image(tmp_path / "rot.jpg").height) == (256, 512)


def test_relative_paths_resolve_against_root(tmp_path, photo):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(photo).save(tmp_path / "imgs" / "a.png")
    assert load_image("imgs/a.png", root=tmp_path).shape == (512, 512, 3)
    assert load_image({"url": "imgs/a.png"}, root=tmp_path).shape == (512, 512, 3)
    with pytest.raises(ImageLoadError, match="remote URL"):
        load_image("https://example.com/a.jpg")
