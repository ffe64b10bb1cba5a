"""A realistic monitoring demo: a fixed camera whose lens gathers dust, is cleaned, and gathers it again.

Each day the camera takes a photo of the same scene (a COCO street photo of
``../shared/data`` when present, else a photo that ships with scikit-image). Dust makes the
lens slowly blur (Gaussian, up to ``blur_max`` px at 640 px wide) and veil the image with
scattered light (haze toward a bright airlight, up to ``haze_max``), with dark specks; it
grows as ``((t - start) / (full - start)) ** 1.5`` until the cleaning day restores the lens,
and starts again a week later. Each frame also gets what a real camera adds on a clean day:
exposure (gain, offset) changes, sensor noise, a sub-pixel shake, JPEG at varying quality,
and now and then a misty day. A second camera films another scene with the same nuisances
and no dust: the stable reference on which the monitor must stay silent.

Frames are written as JPEG with their EXIF ``DateTimeOriginal`` plus ``frames.csv``
(``path,timestamp,source``); ``truth.json`` holds each frame's dust level, the cleaning
time and the first frame the package's default blur filter rejects (the lens made the
image unusable), so a monitor run can be checked against them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

DAY = 86400.0
START = dt.datetime(2026, 3, 1, 12, 0, 0)
#: the COCO photos used when ../shared/data is present (busy street scenes, like a camera's view)
SHARED_PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos" / "coco"
SCENES = ("000000000257.jpg", "000000000064.jpg")  # a square with a street; a street corner


@dataclass
class Scenario:
    days: int = 60
    per_day: int = 1
    start_day: float = 4.0  # dust starts to settle
    full_day: float = 40.0  # dust level 1 (when never cleaned)
    clean_day: float | None = 44.6  # the lens is cleaned (None: never)
    regrow_after: float = 7.0  # days after the cleaning before dust settles again
    blur_max: float = 2.0  # Gaussian sigma in px at 640 px wide, at dust level 1
    haze_max: float = 0.6  # veiling glare at dust level 1
    specks: int = 10
    gain_sd: float = 0.06  # exposure changes from day to day
    noise_sd: float = 2.5  # sensor noise (8-bit levels)
    shake_px: float = 0.5
    jpeg: tuple[int, int] = (80, 95)
    mist_prob: float = 0.05  # a misty day: extra haze on one frame
    dusty: bool = True  # False: the stable camera (nuisances only)


def dust_level(day: float, s: Scenario) -> float:
    """The dust on the lens on ``day`` (0 clean .. 1 severe; more than 1 if left long enough)."""
    if not s.dusty:
        return 0.0
    start = s.start_day
    if s.clean_day is not None and day >= s.clean_day:
        start = s.clean_day + s.regrow_after
    return max(0.0, (day - start) / (s.full_day - s.start_day)) ** 1.5


def scene_photo(name: str | None = None, index: int = 0) -> tuple[np.ndarray, str]:
    """An RGB photo of a fixed scene and where it came from (shared COCO photo, else scikit-image)."""
    if name is not None:
        from ..io import load_image

        return load_image(name), str(name)
    candidates = [SHARED_PHOTOS / SCENES[index % len(SCENES)]]
    for path in candidates:
        if path.is_file():
            from ..io import load_image

            return load_image(str(path)), str(path)
    from skimage import data

    photo = (data.astronaut, data.coffee, data.rocket)[index % 3]()
    return np.ascontiguousarray(
        photo[..., :3]
    ), f"skimage.data.{('astronaut', 'coffee', 'rocket')[index % 3]}"


def _specks(shape: tuple[int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """A fixed pattern of soft dark dust specks (0..1 opacity map)."""
    h, w = shape
    mask = np.zeros((h, w), np.float32)
    for _ in range(count):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        r = float(rng.uniform(4, 14)) * w / 640
        cv2.circle(mask, (x, y), max(1, int(r)), 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, 4 * w / 640))


def degrade(photo: np.ndarray, level: float, s: Scenario, specks: np.ndarray) -> np.ndarray:
    """The scene through a lens with dust ``level`` (float32, no noise yet)."""
    out = photo.astype(np.float32)
    if level <= 0:
        return out
    scale = photo.shape[1] / 640
    out = cv2.GaussianBlur(out, (0, 0), max(0.05, s.blur_max * level * scale))
    haze = min(0.95, s.haze_max * level)
    out = (1 - haze) * out + haze * 0.8 * 255
    dark = np.clip(0.6 * level, 0, 0.9) * specks
    return out * (1 - dark[..., None]) + 60.0 * dark[..., None]


def camera(image: np.ndarray, s: Scenario, rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    """What the camera stores on a given day: exposure, noise, shake, mist, JPEG (uint8 RGB, quality, misty)."""
    out = image
    misty = bool(rng.random() < s.mist_prob)
    if misty:
        out = 0.8 * out + 0.2 * 200.0
    out = out * rng.normal(1.0, s.gain_sd) + rng.normal(0.0, 4.0)
    dx, dy = rng.uniform(-s.shake_px, s.shake_px, 2)
    out = cv2.warpAffine(
        out,
        np.float32([[1, 0, dx], [0, 1, dy]]),
        (out.shape[1], out.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    out = out + rng.normal(0.0, s.noise_sd, out.shape).astype(np.float32)
    pixels = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return pixels, int(rng.integers(s.jpeg[0], s.jpeg[1] + 1)), misty


def frame_times(s: Scenario, rng: np.random.Generator) -> list[float]:
    """Frame times in days since the start: ``per_day`` a day, between 8:00 and 18:00 (noon for one)."""
    out = []
    for day in range(s.days):
        for k in range(s.per_day):
            hour = 12.0 if s.per_day == 1 else 8.0 + 10.0 * (k + 0.5) / s.per_day
            hour += float(rng.normal(0, 0.25))
            out.append(day + (hour - 12.0) / 24.0)
    return out


def jpeg_bytes(pixels: np.ndarray, quality: int, when: dt.datetime | None = None) -> bytes:
    """JPEG file bytes, with EXIF DateTimeOriginal/DateTime when ``when`` is given."""
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if when is None:
        img.save(buf, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        stamp = when.strftime("%Y:%m:%d %H:%M:%S")
        exif[306] = stamp
        exif.get_ifd(0x8769)[36867] = stamp
        img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def sequence(photo: np.ndarray, s: Scenario, seed: int):
    """Yield (day, dust level, pixels, JPEG quality, misty) per frame of one camera."""
    rng = np.random.default_rng(seed)
    specks = _specks(photo.shape[:2], s.specks, np.random.default_rng(seed + 1000))
    for day in frame_times(s, rng):
        level = dust_level(day, s)
        pixels, quality, misty = camera(degrade(photo, level, s, specks), s, rng)
        yield day, level, pixels, quality, misty


def blur_step():
    """The default pipeline's blur filter (``configs/default.yaml``, step ``blur``): what 'unusable' means."""
    from ..pipeline import load_config

    for op in load_config("default").build_ops():
        if op.name == "blur":
            return op
    raise RuntimeError("the default config has no blur step")


def unusable(pixels: np.ndarray, op) -> bool:
    from ..io import DecodedImage

    h, w = pixels.shape[:2]
    image = DecodedImage(pixels, w, h, "<frame>", 0, "JPEG")
    return op.judge([image])[0].reason is not None


def build_demo(out: str | Path, days: int = 60, seed: int = 0, photo: str | None = None) -> dict:
    """Write the dusty and the stable camera's frames, ``frames.csv`` and ``truth.json`` under ``out``."""
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    op = blur_step()
    rows = ["path,timestamp,source"]
    truth: dict = {"cameras": {}}
    for index, (name, dusty) in enumerate((("cam-dusty", True), ("cam-stable", False))):
        scene, where = scene_photo(photo if dusty else None, index)
        s = Scenario(days=days, dusty=dusty)
        folder = out / "frames" / name
        folder.mkdir(exist_ok=True)
        frames = []
        first_unusable = None
        for day, level, pixels, quality, misty in sequence(scene, s, seed + 17 * index):
            when = START + dt.timedelta(days=day)
            when = when.replace(microsecond=0)
            data = jpeg_bytes(pixels, quality, when)
            path = folder / f"{when:%Y%m%d-%H%M%S}.jpg"
            path.write_bytes(data)
            bad = dusty and unusable(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), op)
            if bad and first_unusable is None and dusty:
                first_unusable = when.isoformat()
            rows.append(f"{path.relative_to(out)},{when.isoformat()},{name}")
            frames.append(
                {
                    "timestamp": when.isoformat(),
                    "dust": round(level, 4),
                    "misty": misty,
                    "blur_filter_rejects": bad,
                }
            )
        clean = None
        if dusty and s.clean_day is not None:
            clean = (START + dt.timedelta(days=s.clean_day)).replace(microsecond=0).isoformat()
        truth["cameras"][name] = {
            "scene": where,
            "scenario": asdict(s),
            "cleaning": clean,
            "first_unusable": first_unusable,
            "frames": frames,
        }
    (out / "frames.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (out / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return {"dir": str(out), "frames": len(rows) - 1, "truth": truth}
