"""``fused``: several scores plus image size through a small fitted model, one calibrated probability.

A fused model is a JSON file written by ``paddlemix-iqa calibrate`` (never a pickle). Its
*features* are registered scorers' native scores, each with a transform (``none``, ``log``:
``log(max(x, 1e-6))``, ``log1p``: ``log1p(max(x, 0))``), and the built-in image features
``log_long_side`` / ``log_pixels``. Its *model* is a standardised logistic regression or
gradient-boosted trees, evaluated here with numpy alone (scikit-learn is needed only to fit),
in scikit-learn's own arithmetic order: the probabilities equal ``predict_proba(X)[:, 1]`` of
the fitted estimator bit for bit.

Native score: ``p``, the probability that the image is *positive* (degraded: ``"blurred"``...),
in [0, 1], lower is better; quality ``1 - p``. ``max_value: t`` rejects ``p > t``; the model
file stores the ``t`` chosen on out-of-fold predictions (``threshold.max_value``) with its
cross-validated FPR and TPR. ``model="NAME"`` (no path separator, no ``.json``) names a model
bundled in ``paddlemix_iqa/data/fused/NAME.json``; anything else is a file path.

The image features are measured at the model's decode side (the largest of its scorers'):
an image decoded larger (a pipeline that also runs a full-resolution op) counts as if shrunk
to that side, so the features match what ``calibrate`` measured. With the sharpness scorers
(512 px) ``log_long_side`` therefore separates images smaller than 512 px, not large ones.

The file (version 1; keys sorted, indent 1, floats by ``repr`` so they read back bit for bit)::

    {"format": "paddlemix-iqa/fused", "version": 1, "positive": "blurred",
     "features": [{"name": "log_laplacian", "metric": "laplacian", "params": {}, "transform": "log"},
                  {"name": "log_long_side", "image": "log_long_side"}],
     "model": {"type": "logistic", "mean": [...], "scale": [...], "coef": [...], "intercept": x}
           | {"type": "gbt", "init": raw0, "learning_rate": r, "trees": [{"feature": [...],
              "threshold": [...], "left": [...], "right": [...], "value": [...]}, ...]},
     "threshold": {"max_value": t, "target_fpr": F, "cv_fpr": ..., "cv_tpr": ..., "cv_auc": ...},
     "training": {counts, classes, seed, cv_folds, split, fold_auc, sklearn version, data_sha256, ...}}

``logistic`` is StandardScaler + LogisticRegression (p = expit((x - mean) / scale . coef +
intercept)); ``gbt`` is GradientBoostingClassifier, tree by tree (a leaf has ``left == right ==
-1``; ``float32(x) <= threshold`` goes left; p = expit(init + sum learning_rate * leaf value)).
Unknown keys, formats, versions, metrics or transforms, and arrays of the wrong length are refused
with a :class:`FusedModelError` (a ValueError) naming the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import SCORERS, register_scorer
from . import get_scorer, scorer_class
from .base import Scorer, resized_shape

FORMAT = "paddlemix-iqa/fused"
VERSION = 1
#: bundled models: ``model="NAME"`` -> ``BUNDLED / "NAME.json"``
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "fused"
TRANSFORMS = ("none", "log", "log1p")
IMAGE_FEATURES = ("log_long_side", "log_pixels")
MODEL_TYPES = ("logistic", "gbt")
LOG_FLOOR = 1e-6


class FusedModelError(ValueError):
    """A fused model file that cannot be used: the message names the file and what is wrong."""


# --- features -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """One column of the model's input: a scorer's native score under a transform, or an image feature."""

    name: str
    metric: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    transform: str = "none"
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.image is not None:
            return {"name": self.name, "image": self.image}
        return {
            "name": self.name,
            "metric": self.metric,
            "params": dict(self.params),
            "transform": self.transform,
        }

    @property
    def scorer_key(self) -> tuple[str, str] | None:
        """(metric, params as canonical JSON): features sharing it share one scorer call."""
        if self.metric is None:
            return None
        return self.metric, json.dumps(self.params, sort_keys=True)


def apply_transform(values: np.ndarray, transform: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if transform == "log":
        return np.log(np.maximum(values, LOG_FLOOR))
    if transform == "log1p":
        return np.log1p(np.maximum(values, 0.0))
    return values.copy()


def parse_feature(spec: Any, where: str = "feature") -> Feature:
    """A :class:`Feature` from its JSON object; ValueError saying what is wrong (not which file)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be an object, not {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} has no name")
    where = f"feature {name!r}"
    if "image" in spec:
        extra = sorted(set(spec) - {"name", "image"})
        if extra:
            raise ValueError(f"{where}: an image feature has only name and image, not {extra}")
        if spec["image"] not in IMAGE_FEATURES:
            raise ValueError(
                f"{where}: unknown image feature {spec['image']!r} (one of {', '.join(IMAGE_FEATURES)})"
            )
        return Feature(name=name, image=spec["image"])
    extra = sorted(set(spec) - {"name", "metric", "params", "transform"})
    if extra:
        raise ValueError(f"{where}: unknown keys {extra}")
    metric = spec.get("metric")
    if not isinstance(metric, str):
        raise ValueError(f"{where} needs a metric (a registered scorer) or an image feature")
    if metric == "fused":
        raise ValueError(f"{where}: a fused model cannot use another fused model as a feature")
    if metric not in SCORERS:
        raise ValueError(f"{where}: unknown metric {metric!r}; available: {', '.join(SCORERS.names())}")
    params = spec.get("params", {})
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ValueError(f"{where}: params must be an object of scorer parameters")
    transform = spec.get("transform", "none")
    if transform not in TRANSFORMS:
        raise ValueError(f"{where}: transform {transform!r} is not one of {', '.join(TRANSFORMS)}")
    return Feature(name=name, metric=metric, params=dict(params), transform=transform)


class FeatureSet:
    """The features of a model with their scorers: the one place features are computed
    (the ``fused`` scorer at run time, ``calibrate`` when fitting)."""

    def __init__(self, features: Sequence[Feature]):
        if not features:
            raise ValueError("a fused model needs at least one feature")
        names = [f.name for f in features]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"feature names must be unique: {', '.join(twice)} given more than once")
        self.features = list(features)
        self._specs: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._built: dict[tuple[str, str], Scorer] = {}  # for the static facts: decode side, neural
        for feature in self.features:
            key = feature.scorer_key
            if key is None or key in self._specs:
                continue
            try:  # built here to check the parameters now; shared instances come from get_scorer on use
                self._built[key] = scorer_class(feature.metric)(**feature.params)
            except Exception as exc:  # noqa: BLE001 - bad parameters raise ValueError, TypeError...
                raise ValueError(f"feature {feature.name!r}: {type(exc).__name__}: {exc}") from exc
            self._specs[key] = (feature.metric, dict(feature.params))
        self._scorers: dict[tuple[str, str], Scorer] | None = None

    @property
    def scorers(self) -> dict[tuple[str, str], Scorer]:
        """(metric, params) -> the shared scorer instance (one model load per process for neural ones).

        Resolved on first use, not in ``__init__``: ``get_scorer("fused")`` holds the scorer cache's
        lock while it builds this, and asking it for the feature scorers then would wait on itself.
        """
        if self._scorers is None:
            self._scorers = {
                key: get_scorer(metric, **params) for key, (metric, params) in self._specs.items()
            }
        return self._scorers

    @classmethod
    def from_dicts(cls, specs: Sequence[Mapping[str, Any]]) -> FeatureSet:
        return cls([parse_feature(spec, f"feature {i}") for i, spec in enumerate(specs)])

    def to_dicts(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def accepts_gray_copy(self, side: int | None) -> bool:
        """True when every feature is a scorer that accepts the grey copy at ``side`` (no size feature)."""
        return all(f.scorer_key is not None for f in self.features) and all(
            s.accepts_gray_copy and s.working_size == side for s in self._built.values()
        )

    @property
    def decode_side(self) -> int | None:
        """The largest decode side of the scorers (None if one needs full resolution, or none is used)."""
        sides = [s.decode_side for s in self._built.values()]
        if not sides or any(side is None for side in sides):
            return None
        return max(sides)

    @property
    def neural(self) -> bool:
        return any(s.neural for s in self._built.values())

    def check_image(self, image: np.ndarray) -> str | None:
        """The first refusal of any feature scorer (None: every one can score ``image``)."""
        for scorer in self.scorers.values():
            reason = scorer.check_image(image)
            if reason is not None:
                return reason
        return None

    def check_weights(self) -> None:
        for scorer in self.scorers.values():
            scorer.check_weights()

    def _image_feature(self, kind: str, image: np.ndarray) -> float:
        """log of the long side or pixel count, of the image as decoded at most at the decode side."""
        h, w = image.shape[:2]
        side = self.decode_side
        if side and max(h, w) > side:
            h, w = resized_shape(h, w, side)
        return math.log(max(h, w)) if kind == "log_long_side" else math.log(h * w)

    def feature_matrix(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Rows = images, columns = features (float64); raises UnscorableImage as the scorers do."""
        out = np.empty((len(images), len(self.features)), dtype=np.float64)
        if not len(images):
            return out
        native = {
            key: np.asarray(scorer.score_batch(images), dtype=np.float64).reshape(len(images))
            for key, scorer in self.scorers.items()
        }
        for j, feature in enumerate(self.features):
            if feature.image is not None:
                out[:, j] = [self._image_feature(feature.image, image) for image in images]
            else:
                out[:, j] = apply_transform(native[feature.scorer_key], feature.transform)
        return out


# --- the numpy models ---------------------------------------------------------------------------
def _expit(raw: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` as scipy.special.expit computes it (libm ``exp``, as ``math.exp``;
    numpy's vectorised exp may differ in the last bit)."""
    out = np.empty(raw.shape, dtype=np.float64)
    for i, x in enumerate(raw.tolist()):
        try:
            out[i] = 1.0 / (1.0 + math.exp(-x))
        except OverflowError:  # exp(-x) beyond the float range: p is 0, as scipy gives
            out[i] = 0.0
    return out


class LogisticModel:
    """StandardScaler + LogisticRegression: ``expit((X - mean) / scale @ coef.T + intercept)``."""

    type = "logistic"

    def __init__(self, mean, scale, coef, intercept):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64).reshape(1, -1)  # C-ordered (1, k), as coef_
        self.intercept = np.asarray([intercept], dtype=np.float64)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], n_features: int) -> LogisticModel:
        for key in ("mean", "scale", "coef"):
            _numbers(spec.get(key), f"model.{key}", n_features)
        scale = spec["scale"]
        if any(s == 0 for s in scale):
            raise ValueError("model.scale must not hold 0")
        return cls(spec["mean"], scale, spec["coef"], _number(spec.get("intercept"), "model.intercept"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "mean": _floats(self.mean),
            "scale": _floats(self.scale),
            "coef": _floats(self.coef.ravel()),
            "intercept": float(self.intercept[0]),
        }

    def raw(self, X: np.ndarray) -> np.ndarray:
        Xs = np.array(X, dtype=np.float64, copy=True)
        Xs -= self.mean  # StandardScaler.transform, in place and in this order
        Xs /= self.scale
        return (Xs @ self.coef.T + self.intercept).reshape(-1)  # LinearClassifierMixin.decision_function


class TreesModel:
    """GradientBoostingClassifier (binary): ``expit(init + sum_i learning_rate * leaf_i(X))``,
    the trees walked as sklearn does: ``float32(x) <= threshold`` goes left."""

    type = "gbt"

    def __init__(self, init: float, learning_rate: float, trees: Sequence[Mapping[str, Sequence]]):
        self.init = float(init)
        self.learning_rate = float(learning_rate)
        self.trees = [
            {
                "feature": np.asarray(t["feature"], dtype=np.intp),
                "threshold": np.asarray(t["threshold"], dtype=np.float64),
                "left": np.asarray(t["left"], dtype=np.intp),
                "right": np.asarray(t["right"], dtype=np.intp),
                "value": np.asarray(t["value"], dtype=np.float64),
            }
            for t in trees
        ]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], n_features: int) -> TreesModel:
        init = _number(spec.get("init"), "model.init")
        rate = _number(spec.get("learning_rate"), "model.learning_rate")
        if rate <= 0:
            raise ValueError(f"model.learning_rate must be positive, not {rate}")
        trees = spec.get("trees")
        if not isinstance(trees, list) or not trees:
            raise ValueError("model.trees must be a non-empty list")
        for i, tree in enumerate(trees):
            where = f"model.trees[{i}]"
            if not isinstance(tree, Mapping):
                raise ValueError(f"{where} must be an object")
            left = tree.get("left")
            if not isinstance(left, list) or not left:
                raise ValueError(f"{where}.left must be a non-empty list")
            n = len(left)
            for key in ("feature", "left", "right"):
                _integers(tree.get(key), f"{where}.{key}", n)
            for key in ("threshold", "value"):
                _numbers(tree.get(key), f"{where}.{key}", n)
            for node, (f, lo, hi) in enumerate(
                zip(tree["feature"], tree["left"], tree["right"], strict=True)
            ):
                leaf = lo == -1
                if leaf != (hi == -1) or (
                    not leaf and not (node < lo < n and node < hi < n and 0 <= f < n_features)
                ):
                    raise ValueError(
                        f"{where} node {node}: children ({lo}, {hi}) or feature {f} do not form a tree "
                        f"over {n_features} features"
                    )
        return cls(init, rate, trees)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "init": self.init,
            "learning_rate": self.learning_rate,
            "trees": [
                {
                    "feature": [int(v) for v in t["feature"]],
                    "threshold": _floats(t["threshold"]),
                    "left": [int(v) for v in t["left"]],
                    "right": [int(v) for v in t["right"]],
                    "value": _floats(t["value"]),
                }
                for t in self.trees
            ],
        }

    def _packed(self) -> tuple[np.ndarray, ...]:
        """The trees as (trees x nodes) arrays (shorter trees padded with leaves) and the deepest depth."""
        packed = getattr(self, "_pack", None)
        if packed is None:
            n = max(len(t["left"]) for t in self.trees)
            arrays = {k: np.full((len(self.trees), n), -1 if k != "value" else 0, dtype=dt)
                      for k, dt in (("feature", np.intp), ("threshold", np.float64), ("left", np.intp),
                                    ("right", np.intp), ("value", np.float64))}  # fmt: skip
            for i, t in enumerate(self.trees):
                for k, a in arrays.items():
                    a[i, : len(t[k])] = t[k]
            depth = max(_tree_depth(t["left"], t["right"]) for t in self.trees)
            packed = self._pack = (
                *(arrays[k] for k in ("feature", "threshold", "left", "right", "value")),
                depth,
            )
        return packed

    def raw(self, X: np.ndarray) -> np.ndarray:
        """All trees walked together, level by level; the leaves summed stage by stage (a
        sequential cumulative sum: the same float additions, in the same order, as sklearn)."""
        X = (
            np.asarray(X, dtype=np.float64).astype(np.float32).astype(np.float64)
        )  # sklearn predicts on float32
        feature, threshold, left, right, value, depth = self._packed()
        trees = np.arange(len(self.trees))[:, None]
        rows = np.arange(len(X))[None, :]
        node = np.zeros((len(self.trees), len(X)), dtype=np.intp)
        for _ in range(depth):
            lo = left[trees, node]
            go_left = X[rows, np.maximum(feature[trees, node], 0)] <= threshold[trees, node]
            node = np.where(lo == -1, node, np.where(go_left, lo, right[trees, node]))
        steps = np.empty((len(self.trees) + 1, len(X)))
        steps[0] = self.init
        steps[1:] = self.learning_rate * value[trees, node]  # out += scale * value, stage by stage
        return np.cumsum(steps, axis=0)[-1]


def _tree_depth(left: Sequence[int], right: Sequence[int]) -> int:
    """Edges on the longest root-to-leaf path."""
    depth, level = 0, [0]
    while True:
        level = [c for n in level for c in (left[n], right[n]) if left[n] != -1]
        if not level:
            return depth
        depth += 1


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def _numbers(values: Any, where: str, n: int) -> None:
    if not isinstance(values, list) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, list) else repr(values)
        raise ValueError(f"{where} must be a list of {n} numbers (one per feature or node), not {got}")
    for v in values:
        _number(v, where)


def _integers(values: Any, where: str, n: int) -> None:
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{where} must be a list of {n} integers")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where} must hold integers only")


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


# --- the model file -----------------------------------------------------------------------------
class FusedModel:
    """A loaded model file: ``features``, ``predict_proba(X)`` (p of the positive class per row),
    ``threshold`` (the stored ``max_value`` and its cross-validated rates), ``positive``, ``training``."""

    def __init__(
        self,
        features: FeatureSet,
        predictor: LogisticModel | TreesModel,
        *,
        positive: str,
        threshold: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        path: str | None = None,
    ):
        self.feature_set = features
        self.predictor = predictor
        self.positive = positive
        self.threshold = dict(threshold or {})
        self.training = dict(training or {})
        self.path = path

    @property
    def features(self) -> list[Feature]:
        return self.feature_set.features

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """p (probability of ``positive``) per row of ``X``; NaN for a row with a non-finite feature."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"X must be (n, {len(self.features)}), not {X.shape}")
        p = _expit(self.predictor.raw(X))
        p[~np.isfinite(X).all(axis=1)] = np.nan
        return p

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "positive": self.positive,
            "features": self.feature_set.to_dicts(),
            "model": self.predictor.to_dict(),
            "threshold": dict(self.threshold),
            "training": dict(self.training),
        }

    def dumps(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Any, where: str = "fused model") -> FusedModel:
        """A model from its JSON object; :class:`FusedModelError` naming ``where`` and the fault."""
        try:
            return cls._from_dict(doc, where)
        except FusedModelError:
            raise
        except ValueError as exc:
            raise FusedModelError(f"{where}: {exc}") from None

    @classmethod
    def _from_dict(cls, doc: Any, where: str) -> FusedModel:
        if not isinstance(doc, Mapping):
            raise ValueError(f"a fused model is a JSON object, not {type(doc).__name__}")
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r} is not {FORMAT!r} (not a fused model file)")
        version = doc.get("version")
        if version != VERSION or isinstance(version, bool):
            raise ValueError(
                f"version {version!r} is not supported (this paddlemix-iqa reads version {VERSION})"
            )
        unknown = sorted(
            set(doc) - {"format", "version", "positive", "features", "model", "threshold", "training"}
        )
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        positive = doc.get("positive")
        if not isinstance(positive, str) or not positive:
            raise ValueError(
                "positive (what p is the probability of, e.g. 'blurred') must be a non-empty string"
            )
        specs = doc.get("features")
        if not isinstance(specs, list) or not specs:
            raise ValueError("features must be a non-empty list")
        features = FeatureSet.from_dicts(specs)
        spec = doc.get("model")
        if not isinstance(spec, Mapping) or spec.get("type") not in MODEL_TYPES:
            kind = spec.get("type") if isinstance(spec, Mapping) else spec
            raise ValueError(f"model type {kind!r} is not one of {', '.join(MODEL_TYPES)}")
        known = {
            "logistic": {"type", "mean", "scale", "coef", "intercept"},
            "gbt": {"type", "init", "learning_rate", "trees"},
        }
        extra = sorted(set(spec) - known[spec["type"]])
        if extra:
            raise ValueError(f"model: unknown keys {extra} for type {spec['type']!r}")
        builder = LogisticModel if spec["type"] == "logistic" else TreesModel
        predictor = builder.from_dict(spec, len(features.features))
        threshold = doc.get("threshold", {})
        if not isinstance(threshold, Mapping):
            raise ValueError("threshold must be an object")
        t = threshold.get("max_value")
        if t is not None and not (0.0 <= _number(t, "threshold.max_value") <= 1.0):
            raise ValueError(f"threshold.max_value {t} is not a probability in [0, 1]")
        training = doc.get("training", {})
        if not isinstance(training, Mapping):
            raise ValueError("training must be an object")
        return cls(features, predictor, positive=positive, threshold=threshold, training=training, path=where)


def dumps(doc: Any, indent: int = 1) -> str:
    """JSON with sorted keys and a fixed indent; lists of plain values on one line (trees stay
    readable); floats by ``repr``, so they read back bit for bit. NaN and infinities are refused."""

    def enc(obj: Any, level: int) -> str:
        pad = " " * (indent * (level + 1))
        if isinstance(obj, Mapping):
            if not obj:
                return "{}"
            body = ",\n".join(
                f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {enc(obj[k], level + 1)}"
                for k in sorted(obj)
            )
            return "{\n" + body + "\n" + " " * (indent * level) + "}"
        if isinstance(obj, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in obj):
            body = ",\n".join(pad + enc(v, level + 1) for v in obj)
            return "[\n" + body + "\n" + " " * (indent * level) + "]"
        return json.dumps(obj, allow_nan=False, ensure_ascii=False)

    return enc(doc, 0) + "\n"


def model_path(model: str | os.PathLike) -> Path:
    """``"NAME"`` (no path separator, no ``.json``) -> the bundled ``data/fused/NAME.json``; else the path."""
    text = os.fspath(model)
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if text and not any(s in text for s in separators) and not text.lower().endswith(".json"):
        return BUNDLED / f"{text}.json"
    return Path(text).expanduser()


def bundled_models() -> list[str]:
    return sorted(p.stem for p in BUNDLED.glob("*.json")) if BUNDLED.is_dir() else []


def load_model(model: str | os.PathLike) -> FusedModel:
    """Read and check a model file (or a bundled model's name); :class:`FusedModelError` says what is wrong."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise FusedModelError(f"model must be a model file path or a bundled model's name, not {model!r}")
    path = model_path(model)
    if not path.is_file():
        if path.parent == BUNDLED and os.fspath(model) == path.stem:
            names = ", ".join(bundled_models()) or "none"
            raise FusedModelError(
                f"no bundled fused model {path.stem!r} (bundled: {names}); pass the path of a .json "
                "file written by `paddlemix-iqa calibrate`"
            )
        raise FusedModelError(f"fused model {path} not found (write one with `paddlemix-iqa calibrate`)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FusedModelError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise FusedModelError(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    return FusedModel.from_dict(doc, str(path))


# --- the scorer ---------------------------------------------------------------------------------
@register_scorer("fused")
class FusedScorer(Scorer):
    """A fused model (``paddlemix-iqa calibrate``): native p of the positive class, quality 1 - p."""

    higher_is_better = False
    native_range = (0.0, 1.0)

    def __init__(self, model: str | os.PathLike = "blur"):
        """``model``: a model file, or a bundled model's name; the default ``blur`` is the shipped
        weight-free blur model (p(blurred), the ``blur`` step of the default config)."""
        self.model_ref = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
        self.model = load_model(model)
        self.feature_set = self.model.feature_set
        self.neural = self.feature_set.neural  # an instance fact: it depends on the model's features
        self.working_size = self.feature_set.decode_side
        # one shared grey copy serves every feature (the two edge_sharpness of the blur model) when
        # each would make that same copy itself and no feature reads the image's size
        self.accepts_gray_copy = self.feature_set.accepts_gray_copy(self.working_size)
        if self.accepts_gray_copy:
            self.color = "gray"

    @property
    def decode_side(self) -> int | None:
        return self.feature_set.decode_side

    @property
    def value_label(self) -> str:
        return f"p({self.model.positive})"  # "blur: p(blurred) 0.97 > 0.9"

    def check_image(self, image: np.ndarray) -> str | None:
        return super().check_image(image) or self.feature_set.check_image(image)

    def check_weights(self) -> None:
        self.feature_set.check_weights()

    def feature_matrix(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Rows = images, columns = the model's features (what calibrate fits on)."""
        return self.feature_set.feature_matrix(images)

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.require_scorable(images)
        if not len(images):
            return np.zeros(0)
        return self.model.predict_proba(self.feature_matrix(images))

    def describe(self) -> dict:
        return {
            **super().describe(),
            "model": str(model_path(self.model_ref)),
            "positive": self.model.positive,
            "model_type": self.model.predictor.type,
            "features": self.feature_set.to_dicts(),
            "threshold": dict(self.model.threshold),
        }

    def __repr__(self) -> str:
        return f"FusedScorer(model={self.model_ref!r})"
