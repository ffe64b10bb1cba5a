"""The ARNIQA protocol without Paddle: dataset ranges, artifact file names, score scaling, preprocessing.

Kept apart from :mod:`paddlemix_iqa.models.arniqa` (which imports Paddle) so the
scorer can validate its settings and prepare inputs without loading a framework.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CROP = 224
FEATURE_DIM = 2048
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

#: regressor dataset -> (low, high, score type); "dmos" means lower is better (the scaled score is inverted)
DATASETS: dict[str, tuple[float, float, str]] = {
    "live": (1.0, 100.0, "dmos"),
    "csiq": (0.0, 1.0, "dmos"),
    "tid2013": (0.0, 9.0, "mos"),
    "kadid10k": (1.0, 5.0, "mos"),
    "flive": (1.0, 100.0, "mos"),
    "spaq": (1.0, 100.0, "mos"),
    "clive": (1.0, 100.0, "mos"),
    "koniq10k": (1.0, 100.0, "mos"),
}

ENCODER_FILE = "arniqa.pdparams"
META_FILE = "arniqa.json"
INFERENCE_DIR = "inference"
FORMAT = "paddlemix_iqa.arniqa/1"


def regressor_file(dataset: str) -> str:
    return f"regressor_{dataset}.pdparams"


def scale_score(native: np.ndarray | float, dataset: str) -> np.ndarray:
    """The authors' score scaling to [0, 1], higher is better (not clipped, as theirs)."""
    low, high, kind = DATASETS[dataset]
    scaled = (np.asarray(native, dtype=np.float64) - low) / (high - low)
    return 1.0 - scaled if kind == "dmos" else scaled


# --- preprocessing of the official protocol (numpy, uint8 RGB in) ------------------------


def half_scale(image: np.ndarray) -> np.ndarray:
    """The half-size copy (width // 2, height // 2) with PIL's bicubic filter, as the authors' evaluation."""
    h, w = image.shape[:2]
    size = (max(1, w // 2), max(1, h // 2))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def center_corner_crops(image: np.ndarray, size: int = CROP) -> np.ndarray:
    """The centre and four corner ``size`` crops (5, size, size, 3); pixels outside the image are 0.

    Same boxes as the authors' ``center_corners_crop`` (torchvision ``crop`` pads with zeros).
    """
    h, w = image.shape[:2]
    tops_lefts = [
        (h // 2 - size // 2, w // 2 - size // 2),
        (0, 0),
        (h - size, 0),
        (0, w - size),
        (h - size, w - size),
    ]
    crops = np.zeros((len(tops_lefts), size, size, 3), dtype=np.uint8)
    for crop, (top, left) in zip(crops, tops_lefts, strict=True):
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + size, h), min(left + size, w)
        if y1 > y0 and x1 > x0:
            crop[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return crops


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC (or HWC) RGB to float32 NCHW in [0, 1], normalised with ImageNet mean/std."""
    x = np.asarray(images, dtype=np.float32) * np.float32(1 / 255)
    x = (x - MEAN) / STD
    x = x[None] if x.ndim == 3 else x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
