"""Optional embeddings for the ``dedup`` step: a Paddle model the user supplies, cosine similarity.

Hashes and thumbnails miss heavy crops and edits (large overlays, off-centre crops); a feature
vector from a classification backbone often does not. The user exports the model as PaddleClas
does (``inference.json`` or ``inference.pdmodel``, plus ``inference.pdiparams``) with a feature
vector per image as its first output; it runs on the package's Paddle Inference runner
(:class:`paddlemix_iqa.models.inference.InferenceRunner`), in batches, on images preprocessed the
PaddleClas way (short side 256, centre crop 224, ``x * 0.00392157``, ImageNet mean/std, CHW).
Vectors are L2-normalised and every pair with cosine >= ``threshold`` is found exactly: faiss's
``IndexFlatIP.range_search`` when faiss is installed, else chunked numpy products. Both keep
candidates a little below the threshold and decide in float64 on the same rows, so they return
the same pairs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: PaddleClas deploy defaults (the preprocessing itself is :func:`paddlemix_iqa.scorers.pulc.preprocess`)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: candidates are gathered this far below the threshold, then decided in float64
_SLACK = 1e-4
#: query rows per search step (bounds the (rows, n) similarity block of the numpy search)
_ROWS = 1024


def _floats(name: str, value: Any) -> tuple[float, float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
    ):
        raise ValueError(f"embeddings: {name} must be three numbers (R, G, B), not {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"embeddings: {name} must be an integer in [{low}, {high}], not {value!r}")
    return value


class Embedder:
    """The ``embeddings:`` option of a ``dedup`` step: a user's Paddle model and the cosine threshold.

    ``model``: the exported model's folder (checked here: a missing file raises
    ``WeightsNotFound``; :meth:`check` loads it). ``threshold``: cosine similarity at or above
    which two images are duplicates. ``resize_short`` / ``crop`` / ``mean`` / ``std``: the
    preprocessing (PaddleClas's by default). ``batch_size``, ``threads``: inference batching.
    """

    KEYS = ("model", "threshold", "resize_short", "crop", "mean", "std", "batch_size", "threads")

    def __init__(
        self,
        model: str | os.PathLike,
        threshold: float = 0.95,
        resize_short: int = 256,
        crop: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 16,
        threads: int | None = None,
    ):
        from ..models.inference import PARAMS_FILE, PROGRAM_FILES, find_program
        from ..models.weights import WeightsNotFound

        if not isinstance(model, (str, os.PathLike)) or not str(model):
            raise ValueError(
                f"embeddings: model must be the folder of an exported Paddle model, not {model!r}"
            )
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0.0 < threshold <= 1.0
        ):
            raise ValueError(
                f"embeddings: threshold must be a cosine similarity in (0, 1], not {threshold!r}"
            )
        self.resize_short = _integer("resize_short", resize_short, 8, 4096)
        self.crop = _integer("crop", crop, 8, 4096)
        if self.crop > self.resize_short:
            raise ValueError(f"embeddings: crop {crop} is larger than resize_short {resize_short}")
        self.mean, self.std = _floats("mean", mean), _floats("std", std)
        if min(self.std) <= 0:
            raise ValueError(f"embeddings: std must be positive, not {std!r}")
        self.batch_size = _integer("batch_size", batch_size, 1, 1024)
        self.threads = None if threads is None else _integer("threads", threads, 1, 256)
        self.threshold = float(threshold)
        # a file check now, so a missing model fails when the config is read, not after the run
        self.model = Path(model).expanduser()
        if find_program(self.model) is None:
            where = "" if self.model.is_dir() else " (no such folder)"
            raise WeightsNotFound(
                f"embeddings: no exported Paddle model in {self.model}{where}: expected "
                f"{' or '.join(PROGRAM_FILES)} with {PARAMS_FILE}, as paddle.jit.save or PaddleClas's "
                "export_model.py write them"
            )
        self._runner = None

    def params(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "threshold": self.threshold,
            "resize_short": self.resize_short,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "batch_size": self.batch_size,
            "threads": self.threads,
        }

    def __getstate__(self) -> dict[str, Any]:
        """A loaded predictor does not pickle (a pipeline ships its dedup step to worker processes)."""
        return {**self.__dict__, "_runner": None}

    @property
    def runner(self):
        if self._runner is None:
            from ..models.inference import InferenceRunner

            self._runner = InferenceRunner(self.model, threads=self.threads)
        return self._runner

    def check(self) -> int:
        """Load the model and run one blank image: its vector length; a clear ValueError when broken."""
        try:
            out = self.runner.run(np.zeros((1, 3, self.crop, self.crop), np.float32))
        except Exception as exc:  # noqa: BLE001 - whatever Paddle raises on a broken export
            self._runner = None
            raise ValueError(
                f"embeddings: model {self.model} cannot be loaded or run on a 1x3x{self.crop}x{self.crop} "
                f"batch: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            ) from None
        if out.ndim < 1 or out.shape[0] != 1 or out.size < 2:
            raise ValueError(
                f"embeddings: model {self.model} returns shape {list(out.shape)} for one image; "
                "it must return a feature vector per image"
            )
        return int(out.size)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """PaddleClas deploy preprocessing with this model's sizes and normalisation (PULC's function)."""
        from ..scorers.pulc import preprocess

        return preprocess(image, self.resize_short, self.crop, self.mean, self.std)

    def embed(self, images: Sequence[np.ndarray | None]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per RGB uint8 image; a None image, or one too thin to
        resize (:func:`_embeddable`), gets a zero row (cosine 0 with everything: it never merges)."""
        rows: list[np.ndarray | None] = [None] * len(images)
        live = [i for i, img in enumerate(images) if img is not None and _embeddable(img)]
        for start in range(0, len(live), self.batch_size):
            part = live[start : start + self.batch_size]
            out = self.runner.run(np.stack([self.preprocess(images[i]) for i in part]))
            out = np.asarray(out, np.float32).reshape(len(part), -1)
            for i, row in zip(part, out, strict=True):
                rows[i] = row
        dim = next((len(r) for r in rows if r is not None), 1)
        vectors = np.zeros((len(images), dim), np.float32)
        for i, row in enumerate(rows):
            if row is not None:
                vectors[i] = row
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 1e-12)

    def embed_refs(
        self, refs: Sequence[Any], root: str | os.PathLike | None = None, allow_outside_root: bool = False
    ) -> np.ndarray:
        """:meth:`embed` of image references, decoded at full size (PaddleClas resizes the original),
        ``batch_size`` at a time so only one batch of pixels is held; unreadable ones get zero rows."""
        from ..io import DecodedImage, decode_or_error

        chunks = [np.zeros((0, 1), np.float32)]
        for start in range(0, len(refs), self.batch_size):
            images = []
            for ref in refs[start : start + self.batch_size]:
                image = decode_or_error(ref, root, allow_outside_root=allow_outside_root)
                images.append(image.pixels if isinstance(image, DecodedImage) else None)
            chunks.append(self.embed(images))
        dim = max(c.shape[1] for c in chunks)  # a batch of unreadable images has width 1
        return np.concatenate(
            [c if c.shape[1] == dim else np.zeros((len(c), dim), np.float32) for c in chunks]
        )

    def pairs(self, vectors: np.ndarray, use_faiss: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`cosine_pairs` at this threshold."""
        return cosine_pairs(vectors, self.threshold, use_faiss=use_faiss)


def _embeddable(image: np.ndarray) -> bool:
    """Short side >= 8 px and >= 1/64 of the long side (as PULC): the resize to ``resize_short``
    would otherwise enlarge it past meaning or make the long side huge (1x500 px -> 256x128000)."""
    h, w = image.shape[:2]
    return image.ndim == 3 and image.shape[2] == 3 and min(h, w) >= 8 and max(h, w) <= 64 * min(h, w)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def cosine_pairs(
    vectors: np.ndarray, threshold: float, use_faiss: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, of L2-normalised rows with cosine >= ``threshold``, exact:
    ``((k, 2) int64 pairs sorted, (k,) float64 cosines)``.

    ``use_faiss``: None uses faiss (``IndexFlatIP.range_search``) when installed, else numpy; True
    requires it. Both gather candidates ``1e-4`` below the threshold and keep those whose float64
    cosine reaches it, so they agree pair for pair.
    """
    x = np.ascontiguousarray(vectors, np.float32)
    n = len(x)
    faiss = _faiss() if use_faiss is not False else None
    if use_faiss and faiss is None:
        raise ImportError("faiss is not installed (pip install faiss-cpu)")
    found: list[np.ndarray] = []
    if n >= 2:
        low = float(threshold) - _SLACK
        if faiss is not None:
            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x)
        for start in range(0, n, _ROWS):
            q = x[start : start + _ROWS]
            if faiss is not None:
                lims, _, ids = index.range_search(q, low)  # keeps inner products > low
                rows = np.repeat(np.arange(len(q)), np.diff(lims).astype(np.int64)) + start
                cols = ids.astype(np.int64)
            else:
                sims = q @ x[start:].T  # pairs i < j: only columns from this block on
                r, c = np.nonzero(sims > low)
                rows, cols = r + start, c + start
            keep = cols > rows
            found.append(np.stack([rows[keep], cols[keep]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), np.int64)
    pairs = pairs.astype(np.int64).reshape(-1, 2)
    left, right = x[pairs[:, 0]].astype(np.float64), x[pairs[:, 1]].astype(np.float64)
    cos = np.einsum("ij,ij->i", left, right) if len(pairs) else np.zeros(0)
    ok = cos >= threshold
    pairs, cos = pairs[ok], cos[ok]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], cos[order]


def embedder_from(option: Any) -> Embedder | None:
    """The :class:`Embedder` of a ``dedup`` step's ``embeddings`` option (None: off)."""
    if option is None or option is False:
        return None
    if isinstance(option, Embedder):
        return option
    if isinstance(option, (str, Path)):
        option = {"model": option}
    if not isinstance(option, dict):
        raise ValueError(
            f"embeddings must be a mapping such as {{model: DIR, threshold: 0.95}}, not {option!r}"
        )
    unknown = [k for k in option if k not in Embedder.KEYS]
    if unknown:
        raise ValueError(f"embeddings: unknown key {unknown[0]!r}; it accepts: {', '.join(Embedder.KEYS)}")
    if "model" not in option:
        raise ValueError("embeddings: model (the folder of an exported Paddle model) is required")
    return Embedder(**option)
