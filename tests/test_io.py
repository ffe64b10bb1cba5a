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


def _pillow_pixels(path, max_side):
    """What Pillow alone decodes (draft, load, shrink by area, EXIF turn), as RGB: the reference."""
    import cv2
    from PIL import ImageOps

    with Image.open(path) as img:
        if max_side and max(img.size) > max_side:
            scale = max_side / max(img.size)
            img.draft(None, (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        pixels = np.asarray(img.convert("RGB") if img.mode != "L" else img)
        orientation = img.getexif().get(0x0112, 1)
    h, w = pixels.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        pixels = cv2.resize(
            pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=2)
    turned = Image.fromarray(pixels)
    turned.getexif()[0x0112] = orientation
    turned.info["exif"] = turned.getexif().tobytes()
    return np.asarray(ImageOps.exif_transpose(turned))


@pytest.mark.parametrize(
    "kind", ["rgb420", "rgb444", "progressive", "grey", "orientation6", "trailer", "cmyk"]
)
def test_jpeg_pixels_equal_pillows_at_every_size(tmp_path, photo, kind):
    """JPEGs are decoded by OpenCV's libjpeg into numpy (no Pillow buffer copy): the pixels must be
    exactly Pillow's, full size and DCT-scaled; CMYK and other modes still go through Pillow."""
    img = Image.fromarray(photo)
    path = tmp_path / f"{kind}.jpg"
    options = {"quality": 85}
    if kind == "rgb444":
        options["subsampling"] = 0
    if kind == "progressive":
        options["progressive"] = True
    if kind == "grey":
        img = img.convert("L")
    if kind == "cmyk":
        img = img.convert("CMYK")
    if kind == "orientation6":
        exif = Image.Exif()
        exif[0x0112] = 6
        options["exif"] = exif.tobytes()
    img.save(path, **options)
    if kind == "trailer":  # bytes after the end-of-image marker, as some cameras append
        path.write_bytes(path.read_bytes() + b"\x00trailer" * 100)
    for side in (None, 300, 97, 40):
        got = decode_image(path, max_side=side).pixels
        assert np.array_equal(got, _pillow_pixels(path, side)), (kind, side)


def test_a_jpeg_cut_short_is_truncated_even_after_a_complete_thumbnail(tmp_path, photo):
    """The end-of-image marker of an embedded EXIF thumbnail must not make a cut file look whole."""
    from io import BytesIO

    from paddlemix_iqa.io import ImageTruncated

    thumb = BytesIO()
    Image.fromarray(photo).resize((64, 48)).save(thumb, "JPEG")
    whole = BytesIO()
    Image.fromarray(photo).save(whole, "JPEG", quality=90)
    data = whole.getvalue()
    app1 = b"Exif\x00\x00" + thumb.getvalue()  # an APP1 segment holding a complete JPEG (SOS ... EOI)
    data = data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]
    path = tmp_path / "thumb.jpg"
    path.write_bytes(data)
    assert decode_image(path).pixels.shape == photo.shape  # whole: decodes
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageTruncated):
        decode_image(path)
