"""ARNIQA scorer: the learned no-reference quality model, Paddle-native, batched over images and crops.

``protocol="crops"`` (default) is the authors' evaluation: at full and half scale,
five 224 crops (centre + corners, zero-padded when the image is smaller), one
regressor score per crop pair, averaged. ``protocol="whole"`` feeds the whole image
and its half-size copy instead (no crops; same-size images are batched together).

Weights are the converted artifact of ``tools/convert_arniqa.py``, found at
``weights=`` or ``$PADDLEMIX_IQA_HOME/arniqa`` (default ``~/.cache/paddlemix_iqa/arniqa``);
they load on first use, once, under a lock, so one scorer serves many threads.
``backend="inference"`` runs the encoder with Paddle Inference (oneDNN) instead of
the dynamic graph: same numbers, several times faster on CPU.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np

from ..models.arniqa_protocol import (
    DATASETS,
    center_corner_crops,
    half_scale,
    scale_score,
    to_input,
)
from ..models.weights import locate_weights
from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer

log = logging.getLogger(__name__)


@register_scorer("arniqa")
class ArniqaScorer(Scorer):
    """ARNIQA quality; native score in the regressor dataset's range, normalised to [0, 1]."""

    neural = True
    color = "rgb"
    #: the default regressor's (kadid10k, MOS); an instance takes its own dataset's range
    native_range = DATASETS["kadid10k"][:2]

    def __init__(
        self,
        weights: str | None = None,
        dataset: str = "kadid10k",
        protocol: str = "crops",
        batch_size: Annotated[int, Bounds(1, 1024)] = 4,
        backend: str = "dygraph",
        working_size: Annotated[int | None, Bounds(32, 8192)] = None,
        threads: Annotated[int | None, Bounds(1, 64)] = None,
    ):
        if not isinstance(dataset, str) or dataset not in DATASETS:
            raise ValueError(f"unknown ARNIQA regressor dataset {dataset!r}; known: {', '.join(DATASETS)}")
        if protocol not in ("crops", "whole"):
            raise ValueError(f"protocol must be 'crops' or 'whole', not {protocol!r}")
        if backend not in ("dygraph", "inference"):
            raise ValueError(f"backend must be 'dygraph' or 'inference', not {backend!r}")
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise ValueError(f"weights must be a folder path, not {weights!r}")
        self.weights = None if weights is None else str(weights)
        self.dataset = dataset
        self.protocol = protocol
        checked = check_params(ArniqaScorer.__init__, locals())
        self.batch_size = checked["batch_size"]
        self.backend = backend
        self.working_size, self.threads = checked["working_size"], checked["threads"]
        low, high, kind = DATASETS[dataset]
        self.native_range = (low, high)
        self.higher_is_better = kind == "mos"
        self._lock = threading.Lock()
        self._runtime: _Runtime | None = None

    # --- pickling: ship the settings, never the loaded model ------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_runtime"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- loading ------------------------------------------------------------------------------
    def check_weights(self) -> None:
        self.weights_dir()

    def weights_dir(self) -> Path:
        """The artifact folder; the files and the message come from the weights catalogue."""
        return locate_weights("arniqa", path=self.weights, variant=self.dataset)

    def _load(self) -> _Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = _Runtime(self.weights_dir(), self.dataset, self.backend, self.threads)
                runtime = self._runtime
        return runtime

    # --- scoring ------------------------------------------------------------------------------
    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros(0, dtype=np.float64)
        self.require_scorable(images)
        runtime = self._load()

        images = [self._fit(img) for img in images]
        scores = np.empty(len(images), dtype=np.float64)
        if self.protocol == "crops":
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                full = np.concatenate([center_corner_crops(img) for img in chunk])
                half = np.concatenate([center_corner_crops(half_scale(img)) for img in chunk])
                feats = runtime.encode(to_input(np.concatenate([full, half])))
                n = len(full)
                per_crop = runtime.regress(feats[:n], feats[n:])
                scores[start : start + len(chunk)] = per_crop.reshape(len(chunk), -1).mean(axis=1)
        else:
            groups: dict[tuple, list[int]] = defaultdict(list)
            for i, img in enumerate(images):
                groups[img.shape].append(i)
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    part = indices[start : start + self.batch_size]
                    feats = runtime.encode(to_input(np.stack([images[i] for i in part])))
                    feats_ds = runtime.encode(to_input(np.stack([half_scale(images[i]) for i in part])))
                    scores[part] = runtime.regress(feats, feats_ds)
        return scores

    def scale(self, native: float | np.ndarray) -> np.ndarray:
        """The authors' ``_scale_score``: linear to [0, 1], inverted for DMOS, not clipped (``normalize`` clips)."""
        return scale_score(native, self.dataset)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """Shrink (never enlarge) to ``working_size`` when one is set; RGB uint8 contiguous."""
        from .base import resize_long_side

        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if self.working_size and max(image.shape[:2]) > self.working_size:
            image = resize_long_side(image, self.working_size)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "dataset": self.dataset,
            "protocol": self.protocol,
            "backend": self.backend,
            "batch_size": self.batch_size,
        }

    def __repr__(self) -> str:
        return (
            f"ArniqaScorer(dataset={self.dataset!r}, protocol={self.protocol!r}, backend={self.backend!r}, "
            f"weights={self.weights!r})"
        )


class _Runtime:
    """The loaded model: ``encode`` (dygraph or Paddle Inference) and the regressor in numpy."""

    def __init__(self, directory: Path, dataset: str, backend: str, threads: int | None):
        import paddle

        from ..models.arniqa import INFERENCE_DIR, export_encoder, load_arniqa

        model = load_arniqa(directory, dataset)
        self.weight, self.bias = model.regressor_numpy()
        self._lock = threading.Lock()
        self.encode: Callable[[np.ndarray], np.ndarray]
        if backend == "dygraph":
            encoder = model.encoder

            def encode(batch: np.ndarray) -> np.ndarray:
                with self._lock, paddle.no_grad():
                    return encoder(paddle.to_tensor(batch)).numpy()

            self.encode = encode
        else:
            from ..models.inference import InferenceRunner, find_program

            program_dir = directory / INFERENCE_DIR
            if find_program(program_dir) is None:
                try:
                    export_encoder(model.encoder, program_dir)
                except OSError as exc:  # a read-only weights directory: export next to the temp files
                    program_dir = Path(tempfile.mkdtemp(prefix="arniqa_inference_"))
                    log.warning(
                        "cannot write %s (%s); exporting to %s", directory / INFERENCE_DIR, exc, program_dir
                    )
                    export_encoder(model.encoder, program_dir)
            self.encode = InferenceRunner(program_dir, threads=threads).run
        log.info("ARNIQA (%s regressor, %s) loaded from %s", dataset, backend, directory)

    def regress(self, features: np.ndarray, features_ds: np.ndarray) -> np.ndarray:
        combined = np.concatenate([features, features_ds], axis=1).astype(np.float64)
        return combined @ self.weight + self.bias
