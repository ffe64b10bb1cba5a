"""A small demo dataset built offline from the photos that ship inside scikit-image.

Sharp originals plus degraded variants (blurred, motion-blurred, noisy,
JPEG-crushed, code-stamped, near-duplicate copies, tiny, extreme aspect ratio,
truncated, not an image, missing) as LLaVA-style records with conversations, and ``expected.json`` saying
which op of ``configs/default.yaml`` must reject each record (None: kept).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

QUESTIONS = [
    "What is shown in this image?",
    "Describe the image in one sentence.",
    "What colours dominate the picture?",
    "Is there a person in the image?",
]


def _photos() -> dict[str, np.ndarray]:
    """Colour photos bundled with scikit-image (no download), as RGB uint8."""
    from skimage import data

    photos = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "hubble": data.hubble_deep_field(),
        "ihc": data.immunohistochemistry(),
        "camera": data.camera(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    return {
        k: np.ascontiguousarray(np.dstack([v] * 3) if v.ndim == 2 else v[..., :3]) for k, v in photos.items()
    }


def qr_code(text: str, size: int) -> tuple[np.ndarray, bool]:
    """A QR code image (gray uint8, about ``size`` px) and whether it is a real, decodable code.

    zxing-cpp >= 2.3 writes real codes; without it a QR-like pattern is drawn,
    which a decoder will not read (only a classifier such as PULC code_exists may flag it).
    """
    try:
        import zxingcpp

        code = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=1))
        real = True
    except (ImportError, AttributeError):
        rng = np.random.default_rng(7)
        code = np.where(rng.random((25, 25)) < 0.5, 0, 255).astype(np.uint8)
        for y, x in ((0, 0), (0, 18), (18, 0)):
            code[y : y + 7, x : x + 7] = 0
            code[y + 1 : y + 6, x + 1 : x + 6] = 255
            code[y + 2 : y + 5, x + 2 : x + 5] = 0
        code = np.pad(code, 4, constant_values=255)
        real = False
    scale = max(1, size // code.shape[0])
    return cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), real


def _motion_blur(img: np.ndarray, length: int = 21) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(img, -1, kernel)


def _crush(img: np.ndarray) -> np.ndarray:
    """What repeated re-posting does: a quarter-size JPEG at quality 8, scaled back up."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    ok, enc = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 8])
    assert ok
    return cv2.resize(cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1], (w, h), interpolation=cv2.INTER_CUBIC)


def _noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _stamp(img: np.ndarray, code: np.ndarray) -> np.ndarray:
    out = img.copy()
    ch, cw = code.shape
    y, x = out.shape[0] - ch - 16, out.shape[1] - cw - 16
    out[y : y + ch, x : x + cw] = code[..., None]
    return out


def build_demo(out: str | Path = "demo", force: bool = False) -> dict[str, Any]:
    """Write ``out/images/*``, ``out/records.jsonl`` and ``out/expected.json``; returns a summary."""
    out = Path(out)
    if out.exists() and force:
        shutil.rmtree(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    records: list[dict[str, Any]] = []
    expected: dict[str, dict[str, Any]] = {}

    def save(name: str, pixels: np.ndarray, quality: int = 92) -> str:
        Image.fromarray(pixels).save(images / name, quality=quality)
        return f"images/{name}"

    def add(variant: str, image: Any, op: str | None, reason: str | None = None, key: str = "image") -> None:
        rid = f"demo-{len(records):03d}"
        question = QUESTIONS[len(records) % len(QUESTIONS)]
        records.append(
            {
                "id": rid,
                key: image,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{question}"},
                    {"from": "gpt", "value": f"A {variant} picture from the scikit-image sample set."},
                ],
            }
        )
        expected[rid] = {"variant": variant, "expected_op": op, "reason_contains": reason}

    for name, img in photos.items():
        add(f"original {name}", save(f"{name}.jpg", img), None)
    for name in ("astronaut", "rocket", "camera"):
        blurred = cv2.GaussianBlur(photos[name], (0, 0), 3)
        add(f"blurred {name}", save(f"{name}_blur.jpg", blurred), "blur", "p(blurred)")
    add(
        "motion-blurred coffee",
        save("coffee_motion.jpg", _motion_blur(photos["coffee"])),
        "blur",
        "p(blurred)",
    )
    for i, name in enumerate(("astronaut", "camera", "ihc")):
        noisy = _noisy(photos[name], 50, seed=i)
        add(f"noisy {name}", save(f"{name}_noise.jpg", noisy), "brisque_filter", "brisque quality")
    for name in ("chelsea", "motorcycle"):
        add(
            f"JPEG-crushed {name}",
            save(f"{name}_crushed.jpg", _crush(photos[name]), 95),
            "blur",
            "p(blurred)",
        )
    code, real = qr_code("https://example.com/win-a-prize?id=12345", 160)
    for name in ("coffee", "hubble"):
        add(
            f"code-stamped {name}",
            save(f"{name}_qr.jpg", _stamp(photos[name], code), 95),
            "codes",
            "code",
        )
    add(
        "tiny",
        save("tiny.jpg", cv2.resize(photos["coffee"], (48, 32), interpolation=cv2.INTER_AREA)),
        "resolution_filter",
        "width 48 < 64",
    )
    add(
        "extreme aspect ratio",
        save("strip.jpg", photos["rocket"][180:260]),
        "aspect_ratio_filter",
        "aspect ratio",
    )
    # near-duplicates: the dedup step keeps the original (larger) and rejects the copy
    small = cv2.resize(photos["chelsea"], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    add(
        "half-size, recompressed copy of chelsea",
        save("chelsea_small.jpg", small, 60),
        "dedup",
        "duplicate_of: demo-002",
    )
    add(
        "mirrored copy of rocket",
        save("rocket_mirror.jpg", photos["rocket"][:, ::-1]),
        "dedup",
        "duplicate_of: demo-003",
    )
    full = (images / "astronaut.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(full[: len(full) // 3])
    add("truncated JPEG", "images/truncated.jpg", "decodable_filter", "decode_error: truncated")
    (images / "notes.jpg").write_text("a text file with a .jpg name\n")
    add("not an image", "images/notes.jpg", "decodable_filter", "decode_error: not_an_image")
    add("missing file", "images/does_not_exist.jpg", "decodable_filter", "decode_error: missing")
    add("two photos", ["images/coffee.jpg", "images/rocket.jpg"], None, key="images")
    add(
        "two photos, one truncated",
        ["images/chelsea.jpg", "images/truncated.jpg"],
        "decodable_filter",
        "decode_error: truncated",
        key="images",
    )

    with open(out / "records.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    summary = {
        "dir": str(out),
        "records": len(records),
        "expected_rejected": sum(e["expected_op"] is not None for e in expected.values()),
        "real_qr_code": real,
    }
    log.info("demo dataset: %s", summary)
    return summary
