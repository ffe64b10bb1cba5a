"""Shared fixtures: real photos from scikit-image, bad files made on the fly, ../shared/data when present."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STANDIN = Path(__file__).parent / "host_standin"


def shared(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test cleanly when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real 512x512 RGB photo that ships with scikit-image."""
    from skimage import data

    return data.astronaut()


def write_png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height but holds one empty IDAT (a decompression-bomb header)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def bad_files(tmp_path: Path, photo: np.ndarray) -> dict[str, Path]:
    """One file per kind of bad input, keyed by the reason code the loader must give (or 'ok')."""
    files = {}
    full = tmp_path / "full.jpg"
    Image.fromarray(photo).save(full, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    files["truncated"] = truncated
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files["not_an_image/empty"] = empty
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    files["not_an_image"] = text
    files["missing"] = tmp_path / "nope.jpg"
    bomb = tmp_path / "bomb.png"
    write_png_header_only(bomb, 60000, 60000)
    files["too_large"] = bomb
    return files


@pytest.fixture()
def odd_mode_files(tmp_path: Path, photo: np.ndarray) -> dict[str, Path]:
    """Valid images in every awkward PIL mode: each must load as RGB uint8."""
    img = Image.fromarray(photo)
    out = {}
    gray16 = np.asarray(img.convert("L")).astype(np.uint16) * 257
    out["I;16"] = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(out["I;16"])
    out["CMYK"] = tmp_path / "cmyk.jpg"
    img.convert("CMYK").save(out["CMYK"])
    out["P+transparency"] = tmp_path / "palette.png"
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    pal.save(out["P+transparency"], transparency=0)
    out["RGBA"] = tmp_path / "rgba.png"
    rgba = img.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(out["RGBA"])
    out["LA"] = tmp_path / "la.png"
    img.convert("LA").save(out["LA"])
    out["L"] = tmp_path / "gray.jpg"
    img.convert("L").save(out["L"])
    out["1"] = tmp_path / "bilevel.png"
    img.convert("1").save(out["1"])
    out["animated"] = tmp_path / "anim.gif"
    frames = [img.convert("P"), img.rotate(90).convert("P")]
    frames[0].save(out["animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["webp"] = tmp_path / "photo.webp"
    img.save(out["webp"])
    return out


@pytest.fixture()
def host(monkeypatch):
    """The DataCopilot stand-in on sys.path, freshly imported for each test and forgotten after it."""

    def paddlemix_modules():
        return [m for m in sys.modules if m == "paddlemix" or m.startswith("paddlemix.")]

    for name in paddlemix_modules():
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.syspath_prepend(str(STANDIN))
    import paddlemix.datacopilot.core as core

    yield core
    for name in paddlemix_modules():  # the stand-in must not leak into tests that expect no host
        del sys.modules[name]
