"""ARNIQA (Agnolucci, Galteri, Bertini, Del Bimbo, WACV 2024) in Paddle.

The model is small to state: a ResNet-50 without ``fc`` (``paddle.vision``, global
average pooling, 2048-d), L2-normalised features of the image and of its half-size
copy, concatenated (4096-d), and a linear (ridge) regressor trained per IQA dataset.
Its native score is in that dataset's range; :func:`scale_score` maps it to [0, 1]
(higher is better) exactly as the authors' ``_scale_score`` does.

The converted artifact (made by ``tools/convert_arniqa.py`` from the official
PyTorch files) is a directory holding ``arniqa.pdparams`` (the encoder),
``regressor_<dataset>.pdparams`` and ``arniqa.json`` (sources, hashes, ranges,
converter version). Nothing here is built at import time; Paddle is imported here,
so import this module only when a model is needed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn
from PIL import Image

log = logging.getLogger(__name__)

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


# --- the network --------------------------------------------------------------------------


class ArniqaEncoder(nn.Layer):
    """ResNet-50 without ``fc`` (ends in global average pooling), L2-normalised 2048-d feature."""

    def __init__(self):
        super().__init__()
        from paddle.vision.models import resnet50

        self.backbone = resnet50(pretrained=False, num_classes=0, with_pool=True)

    def forward(self, x):
        return F.normalize(paddle.flatten(self.backbone(x), start_axis=1), p=2, axis=1)


class ArniqaModel(nn.Layer):
    """Encoder + the linear regressor of one dataset: ``forward(img, img_ds)`` -> native scores (N,)."""

    def __init__(self, dataset: str = "kadid10k"):
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown ARNIQA regressor dataset {dataset!r}; known: {', '.join(DATASETS)}")
        self.dataset = dataset
        self.encoder = ArniqaEncoder()
        self.regressor = nn.Linear(2 * FEATURE_DIM, 1)

    def regress(self, features, features_ds):
        return self.regressor(paddle.concat([features, features_ds], axis=1)).squeeze(-1)

    def forward(self, img, img_ds):
        return self.regress(self.encoder(img), self.encoder(img_ds))

    def regressor_numpy(self) -> tuple[np.ndarray, float]:
        """(weights (4096,), bias) for applying the regressor to features computed elsewhere."""
        return self.regressor.weight.numpy()[:, 0].astype(np.float64), float(self.regressor.bias.numpy()[0])


# --- the converted artifact -------------------------------------------------------------


def read_meta(directory: str | os.PathLike) -> dict:
    with open(Path(directory) / META_FILE, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{Path(directory) / META_FILE} is not an ARNIQA artifact of format {FORMAT}")
    return meta


def load_arniqa(directory: str | os.PathLike, dataset: str = "kadid10k") -> ArniqaModel:
    """The eval-mode Paddle model from a converted artifact directory."""
    directory = Path(directory)
    meta = read_meta(directory)
    if not (directory / regressor_file(dataset)).is_file():
        have = ", ".join(sorted(meta.get("regressors", {}))) or "none"
        raise FileNotFoundError(
            f"{directory / regressor_file(dataset)} not found: this artifact has regressors for {have}. "
            f"Download regressor_{dataset}.pth from https://github.com/miccunifi/ARNIQA/releases/tag/weights "
            f"and re-run tools/convert_arniqa.py with it."
        )
    model = ArniqaModel(dataset)
    model.encoder.backbone.set_state_dict(paddle.load(str(directory / ENCODER_FILE)))
    regressor = paddle.load(str(directory / regressor_file(dataset)))
    weight = np.asarray(regressor["weights"], dtype=np.float32).reshape(1, 2 * FEATURE_DIM)
    model.regressor.weight.set_value(weight.T)  # paddle Linear stores (in, out)
    model.regressor.bias.set_value(np.asarray(regressor["biases"], dtype=np.float32).reshape(1))
    model.eval()
    return model


def export_encoder(encoder: ArniqaEncoder, directory: str | os.PathLike) -> Path:
    """Save the encoder as a Paddle Inference program (dynamic batch and size: [None, 3, None, None]).

    The regressor stays outside the program, so one export serves every dataset's regressor.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder.eval()
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "x")]
    static = paddle.jit.to_static(encoder, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(directory / "inference"))
    log.info("exported the ARNIQA encoder to %s", directory)
    return directory
