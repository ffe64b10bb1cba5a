"""Seeded mutation fuzzing of the loader: a damaged file of any format Pillow reads must fail
with ImageLoadError (a per-image rejection), never with another exception that aborts a run.

Other seeds or counts: PADDLEMIX_IQA_FUZZ_SEED=7 PADDLEMIX_IQA_FUZZ_CASES=20000 pytest tests/test_io_fuzz.py
"""

from __future__ import annotations

import io
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, features

from paddlemix_iqa.io import ImageLoadError, decode_image, probe_image

SEED = int(os.environ.get("PADDLEMIX_IQA_FUZZ_SEED", "1234"))
CASES = int(os.environ.get("PADDLEMIX_IQA_FUZZ_CASES", "1200"))
LIMIT = 1 << 22  # mutated headers claim huge sizes; decoding 200 MP of nothing proves nothing and is slow
HANG = 30.0  # seconds for one case before the test calls it a hang


def _encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def small_files(rs: np.random.RandomState) -> dict[str, bytes]:
    """32x24 images in the formats a dataset holds, plus others Pillow writes cheaply."""
    ramp = np.linspace(0, 255, 32)[None, :, None] * np.ones((24, 1, 3))
    rgb = np.clip(ramp + rs.normal(0, 40, (24, 32, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    turned = img.rotate(90)
    palette = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "fuzz"
    files = {
        "jpeg": _encode(img, "JPEG", quality=85),
        "jpeg_exif": _encode(img, "JPEG", quality=85, exif=exif),
        "jpeg_progressive": _encode(img.convert("L"), "JPEG", progressive=True),
        "png": _encode(img, "PNG"),
        "png_palette_alpha": _encode(palette, "PNG", transparency=0),
        "png_rgba": _encode(img.convert("RGBA"), "PNG"),
        "png16": _encode(Image.fromarray(rs.randint(0, 1 << 16, (24, 32)).astype(np.uint16)), "PNG"),
        "apng": _encode(img, "PNG", save_all=True, append_images=[turned], duration=50),
        "gif_animated": _encode(
            img.convert("P"), "GIF", save_all=True, append_images=[turned.convert("P"), palette], duration=50
        ),
        "tiff": _encode(img, "TIFF"),
        "tiff_lzw_pages": _encode(img, "TIFF", compression="tiff_lzw", save_all=True, append_images=[turned]),
        "webp": _encode(img, "WEBP", quality=80),
        "webp_animated": _encode(img, "WEBP", save_all=True, append_images=[turned], duration=50),
        "bmp": _encode(img, "BMP"),
        "ico": _encode(img, "ICO", sizes=[(16, 16), (32, 32)]),
        "tga_rle": _encode(img, "TGA", compression="tga_rle"),
        "pcx": _encode(img, "PCX"),
        "dds": _encode(img.convert("RGBA"), "DDS"),
        "blp": _encode(img.convert("P"), "BLP"),
        "qoi": _encode(img, "QOI"),
        "sgi": _encode(img, "SGI"),
        "ppm": _encode(img, "PPM"),
    }
    if features.check("jpg_2000"):
        files["jpeg2000"] = _encode(img, "JPEG2000")
    if features.check("avif"):
        files["avif"] = _encode(img, "AVIF", quality=50, speed=10)
    return files


def mutate(rs: np.random.RandomState, data: bytes) -> tuple[bytes, str]:
    """A truncation at a random point, or 1 to 20 bytes changed (half of them in the header)."""
    if rs.rand() < 0.2:
        cut = int(rs.randint(0, len(data)))
        return data[:cut], f"truncated at {cut}"
    out = bytearray(data)
    changes = []
    for _ in range(int(rs.randint(1, 21))):
        where = int(rs.randint(0, min(len(out), 64) if rs.rand() < 0.5 else len(out)))
        value = int(rs.choice([0, 0xFF, 0x7F, 0x80])) if rs.rand() < 0.3 else int(rs.randint(0, 256))
        out[where] = value
        changes.append(f"{where}={value}")
    return bytes(out), "bytes " + ",".join(changes)


def run_cases(seed: int, cases: int, work: Path, failures: list[str], timing: dict) -> None:
    rs = np.random.RandomState(seed)
    bases = small_files(rs)
    names = sorted(bases)
    for case in range(cases):
        name = names[rs.randint(len(names))]
        data, how = mutate(rs, bases[name])
        path = work / f"case.{name}"
        path.write_bytes(data)
        max_side = None if rs.rand() < 0.5 else 16
        probe = rs.rand() < 0.25
        timing["current"] = (case, name, how, time.monotonic())
        try:
            if probe:
                probe_image(path)
            decoded = decode_image(path, max_side=max_side, max_pixels=LIMIT)
            pixels = decoded.pixels
            if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
                raise AssertionError(f"decoded to {pixels.dtype} {pixels.shape}")
        except ImageLoadError as exc:
            if not exc.reason.startswith(f"{exc.code}: "):
                failures.append(f"case {case} ({name}, {how}): bad reason {exc.reason!r}")
        except Exception as exc:  # noqa: BLE001 - exactly what this test hunts for
            keep = work / f"failure_{case}.{name}"
            keep.write_bytes(data)
            failures.append(f"case {case} ({name}, {how}): {type(exc).__name__}: {exc} -> {keep}")
        spent = time.monotonic() - timing["current"][3]
        timing["slowest"] = max(timing["slowest"], (spent, case, name, how))
    timing["current"] = None


def test_mutated_files_raise_only_image_load_errors(tmp_path):
    failures: list[str] = []
    timing: dict = {"slowest": (0.0, -1, "", ""), "current": None}

    def fuzz():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow's warnings must not turn into failures either
            try:
                run_cases(SEED, CASES, tmp_path, failures, timing)
            except BaseException as exc:  # noqa: BLE001 - reported below instead of lost in the thread
                failures.append(f"the fuzz loop itself failed: {type(exc).__name__}: {exc}")

    started = time.monotonic()
    worker = threading.Thread(target=fuzz, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=1.0)
        current = timing["current"]
        if current is not None and time.monotonic() - current[3] > HANG:
            raise AssertionError(f"seed {SEED}: case {current[0]} ({current[1]}, {current[2]}) hangs")
    spent, case, name, how = timing["slowest"]
    print(f"seed {SEED}: {CASES} cases in {time.monotonic() - started:.1f} s; slowest {spent:.2f} s ({name})")
    assert not failures, f"seed {SEED} (PADDLEMIX_IQA_FUZZ_SEED): {len(failures)} failures:\n" + "\n".join(
        failures[:20]
    )
