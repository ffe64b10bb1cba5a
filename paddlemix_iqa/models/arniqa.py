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

from .arniqa_protocol import (  # noqa: F401
    CROP,
    DATASETS,
    ENCODER_FILE,
    FEATURE_DIM,
    FORMAT,
    INFERENCE_DIR,
    MEAN,
    META_FILE,
    STD,
    center_corner_crops,
    half_scale,
    regressor_file,
    scale_score,
    to_input,
)

log = logging.getLogger(__name__)

# --- the protocol facts live in arniqa_protocol (no Paddle); re-exported here for the tools

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
