"""BRISQUE (Mittal, Moorthy, Bovik 2012) with the official LIVE model, matching the MATLAB release.

Every step follows the reference's semantics, because each one moves scores:
MATLAB ``rgb2gray`` on uint8 (rounded back to uint8), 7x7 Gaussian local
statistics with zero padding, circular neighbour shifts, GGD/AGGD shapes by
lookup in the release's alpha table, and the second scale by MATLAB's
``imresize(img, 0.5)`` (bicubic a=-0.5, antialiased, symmetric borders), which
``cv2.resize`` does not reproduce. The SVR is evaluated as a vectorised RBF
kernel over the support vectors of the package's ``brisque_live.npz`` (converted
from the release by ``tools/convert_brisque_model.py``; see ``BRISQUE_NOTICE.txt``).

Native score: lower is better, about 0..100 (not clamped, as in the reference).
Normalised quality: ``(100 - clip(s, 0, 100)) / 100``, the host's mapping.

Images it cannot score are refused by :meth:`BrisqueScorer.check_image`: below
16 px on a side (at working size) the half-size scale is too small for a 7x7
window and its product maps often lack one sign (NaN), ``too_small``; a uniform
image has zero local variance, ``flat_image``. Other images with undefined
statistics (a lone step edge, 1-px stripes) still score NaN, which ops reject.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from scipy.special import gamma as gamma_fn

from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer, _like, is_flat, resize_long_side, too_small

#: the official model, shipped as package data with its notice
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "brisque_live.npz"

#: MATLAB rgb2gray weights: the first row of inv of the NTSC YIQ matrix
_RGB2GRAY = np.linalg.inv(
    np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
)[0]

N_FEATURES = 36
#: the smallest side scored: the half-size scale then still holds a 7x7 window plus its border
MIN_SIDE = 16
#: Above this many pixels BRISQUE reads a centred crop of this size at native scale: its
#: float maps cost ~20 bytes a pixel (4 GB for a 200-MP image), and a crop keeps the
#: scale the statistics depend on, where shrinking would not.
MAX_PIXELS = 32_000_000
#: rows per strip for the per-pixel stages (a few hundred KB of float64 per temporary)
STRIP = 128


class ImageTooSmall(ValueError):
    """The image is smaller than BRISQUE's 7x7 window needs at the half-size scale (MIN_SIDE)."""


def rgb2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a uint8 image: weighted sum in double, rounded half away from zero."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    out = np.empty(image.shape[:2], np.uint8)
    for top in range(0, image.shape[0], STRIP):  # strips: the float64 temporaries stay in cache
        rgb = np.asarray(image[top : top + STRIP, :, :3], dtype=np.float64)
        gray = cv2.transform(rgb, _RGB2GRAY.reshape(1, 3))
        gray += 0.5  # values are >= 0: floor(x + 0.5) is MATLAB's round
        out[top : top + STRIP] = np.floor(gray, out=gray)
    return out


@functools.cache
def _gaussian_window() -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', 7, 7/6)`` normalised to sum 1 (the 2-D window is separable)."""
    x = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(x * x) / (2 * (7 / 6) ** 2))
    return g / g.sum()


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a = -0.5, as in MATLAB imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@functools.cache
def _half_taps() -> np.ndarray:
    """The 8 taps of MATLAB ``imresize(x, 0.5)`` along one axis.

    With scale 1/2 the antialiased kernel ``h(d) = cubic(d / 2) / 2`` is 8 pixels
    wide; output i (0-based) sits at input coordinate ``2 i + 0.5``, so it reads
    inputs ``2 i - 3 .. 2 i + 4`` at distances ``3.5 .. -3.5``. MATLAB normalises
    the weights to sum 1; the same weights apply at every output, and borders are
    mirrored with the edge sample repeated (numpy's ``symmetric``).
    """
    d = np.arange(3.5, -4.0, -1.0)
    w = _cubic(d / 2) / 2
    return w / w.sum()


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiasing) of a 2-D array, as float64; output ceil(n/2).

    Each axis is an 8-tap correlation with mirrored borders, kept at every second
    sample (anchor 3: output i reads inputs 2i-3 .. 2i+4). MATLAB resizes dimension 1
    first when both scales are equal. The taps are dyadic, so integer pixels stay exact.
    """
    taps, one = _half_taps(), np.ones(1)
    mirror = cv2.BORDER_REFLECT  # fedcba|abcdef: MATLAB's symmetric padding
    rows = cv2.sepFilter2D(image, cv2.CV_64F, one, taps, anchor=(0, 3), borderType=mirror)[0::2]
    return cv2.sepFilter2D(rows, cv2.CV_64F, taps, one, anchor=(3, 0), borderType=mirror)[:, 0::2]


@functools.cache
def _alpha_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The release's shape grid 0.2:0.001:10 and its GGD and AGGD moment ratios."""
    alphas = np.round(np.arange(0.2, 10.0 + 5e-4, 0.001), 3)  # MATLAB colon: 9801 values
    g1, g2, g3 = gamma_fn(1 / alphas), gamma_fn(2 / alphas), gamma_fn(3 / alphas)
    return alphas, g1 * g3 / (g2 * g2), g2 * g2 / (g1 * g3)


_BOX = np.ones((7, 7), np.uint8)
_SQUARES = np.arange(256, dtype=np.uint16) ** 2  # x^2 of a uint8 image by table lookup


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised map: 7x7 Gaussian stats, zero padding, ``(x-mu)/(sigma+1)``.

    Computed in strips of rows (with 3 rows of context each side) so the float64
    temporaries stay in cache; the result is exactly that of the whole image.
    """
    h, w = image.shape
    out = np.empty((h, w), np.float32)
    for top in range(0, h, STRIP):
        lo, hi = max(0, top - 3), min(h, top + STRIP + 3)
        n = min(STRIP, h - top)
        out[top : top + n] = _mscn_block(image[lo:hi])[top - lo : top - lo + n]
    return out


def _mscn_block(image: np.ndarray) -> np.ndarray:
    """MSCN of a block (uint8: the filters read bytes; or float64). Rows within 3 of a cut are wrong.

    The statistics are float64 (E[x^2] - mu^2 cancels); the map is returned as
    float32, plenty for the moments and half the memory traffic after it.
    """
    g = _gaussian_window()
    zero = cv2.BORDER_CONSTANT
    squared = cv2.LUT(image, _SQUARES) if image.dtype == np.uint8 else cv2.multiply(image, image)
    mu = cv2.sepFilter2D(image, cv2.CV_64F, g, g, borderType=zero)
    sigma = cv2.sepFilter2D(squared, cv2.CV_64F, g, g, borderType=zero)
    cv2.absdiff(sigma, cv2.multiply(mu, mu), dst=sigma)
    cv2.sqrt(sigma, dst=sigma)
    cv2.add(sigma, 1.0, dst=sigma)
    cv2.subtract(image, mu, dst=mu, dtype=cv2.CV_64F)
    out = cv2.divide(mu, sigma, dtype=cv2.CV_32F)
    # Where the whole 7x7 window (zero padding included) is constant, x - mu is exactly 0;
    # the float sums leave +-1e-15 there, whose sign would decide left/right AGGD counts.
    low = cv2.erode(image, _BOX, borderType=zero, borderValue=0)
    high = cv2.dilate(image, _BOX, borderType=zero, borderValue=0)
    out[low == high] = 0.0
    return out


def _ggd_features(n: int, sq_sum: float, abs_sum: float) -> list[float]:
    """GGD shape (table lookup of the moment ratio) and variance of the MSCN map."""
    alphas, r_ggd, _ = _alpha_tables()
    sigma_sq = sq_sum / n
    e_abs = abs_sum / n
    rho = sigma_sq / (e_abs * e_abs) if e_abs else np.nan
    return [float(alphas[np.argmin(np.abs(rho - r_ggd))]), sigma_sq]


def _aggd_features(n: int, sq_all: float, abs_all: float, sq_pos: float, n_pos: float, n_nonzero: float):
    """AGGD shape, mean, left and right variances of a product map (the release's estimator)."""
    alphas, _, r_aggd = _alpha_tables()
    n_neg = n_nonzero - n_pos
    left_std = np.sqrt((sq_all - sq_pos) / n_neg) if n_neg else np.nan
    right_std = np.sqrt(sq_pos / n_pos) if n_pos else np.nan
    gamma_hat = left_std / right_std
    r_hat = (abs_all / n) ** 2 / (sq_all / n) if sq_all else np.nan
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = float(alphas[np.argmin((r_aggd - r_norm) ** 2)])
    g1, g2, g3 = gamma_fn(1 / alpha), gamma_fn(2 / alpha), gamma_fn(3 / alpha)
    mean = (right_std - left_std) * (g2 / g1) * np.sqrt(g1) / np.sqrt(g3)
    return [alpha, float(mean), float(left_std**2), float(right_std**2)]


#: neighbour shifts of the release, as (rows, cols) of MATLAB circshift
SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def _scale_features(mscn: np.ndarray) -> list[float]:
    """The 18 features of one scale, from sums accumulated over strips of rows.

    GGD: sum of squares and of magnitudes. AGGD, for each circular shift: sums of
    squares and magnitudes of the products, the sum of squares of the positive
    ones, and the counts of positive and non-zero products (the negative side is
    the difference).
    """
    h, w = mscn.shape
    wrapped = np.pad(mscn, 1, mode="wrap")  # circshift by one in any direction is a view of this
    ggd = np.zeros(2)
    aggd = np.zeros((len(SHIFTS), 5))
    for top in range(0, h, STRIP):
        block = mscn[top : top + STRIP]
        rows = block.shape[0]
        ggd += (cv2.norm(block, cv2.NORM_L2SQR), cv2.norm(block, cv2.NORM_L1))
        for i, (dy, dx) in enumerate(SHIFTS):
            pair = cv2.multiply(block, wrapped[top + 1 - dy : top + 1 - dy + rows, 1 - dx : 1 - dx + w])
            positive = cv2.threshold(pair, 0.0, 0.0, cv2.THRESH_TOZERO)[1]
            aggd[i] += (
                cv2.norm(pair, cv2.NORM_L2SQR),
                cv2.norm(pair, cv2.NORM_L1),
                cv2.norm(positive, cv2.NORM_L2SQR),
                cv2.countNonZero(positive),
                cv2.countNonZero(pair),
            )
    feats = _ggd_features(mscn.size, *ggd)
    for sums in aggd:
        feats += _aggd_features(mscn.size, *sums)
    return feats


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of one image (RGB uint8, or 2-D gray uint8/float in [0, 255])."""
    gray = rgb2gray(image) if image.ndim == 3 else image
    if min(gray.shape) < MIN_SIDE:
        h, w = gray.shape
        raise ImageTooSmall(f"{w}x{h} is too small for BRISQUE ({MIN_SIDE} px minimum)")
    if gray.dtype != np.uint8:
        gray = np.asarray(gray, dtype=np.float64)
    gray = np.ascontiguousarray(gray)
    first = _scale_features(_mscn(gray))
    second = _scale_features(_mscn(imresize_half(gray)))
    return np.asarray(first + second, dtype=np.float64)


class BrisqueModel:
    """An epsilon-SVR with RBF kernel plus svm-scale ranges, loaded from an ``.npz`` file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with np.load(self.path, allow_pickle=False) as data:
            self.support_vectors = np.asarray(data["support_vectors"], dtype=np.float64)
            self.coefs = np.asarray(data["coefs"], dtype=np.float64)
            self.rho = float(data["rho"])
            self.gamma = float(data["gamma"])
            self.lower = float(data["range_lower"])
            self.upper = float(data["range_upper"])
            self.feature_min = np.asarray(data["feature_min"], dtype=np.float64)
            self.feature_max = np.asarray(data["feature_max"], dtype=np.float64)
            self.quantize = bool(data["quantize"]) if "quantize" in data.files else False
        if self.support_vectors.shape[1] != N_FEATURES or len(self.coefs) != len(self.support_vectors):
            raise ValueError(f"{self.path}: not a BRISQUE model ({self.support_vectors.shape} support vectors)")

    def scale(self, features: np.ndarray) -> np.ndarray:
        """svm-scale: each feature's (min, max) to (lower, upper); values outside are not clipped."""
        feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if self.quantize:  # the release writes features with %f, svm-scale writes them with %g
            feats = np.round(feats, 6)
        span = self.feature_max - self.feature_min
        scaled = self.lower + (self.upper - self.lower) * (feats - self.feature_min) / np.where(span == 0, 1, span)
        scaled = np.where(span == 0, 0.0, scaled)
        if self.quantize:
            scaled = _round_significant(scaled, 6)
        return scaled

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``sum_i coef_i exp(-gamma |sv_i - x|^2) - rho`` for each row of features (NaN rows give NaN).

        Distances and sums are taken row by row (no BLAS matmul), so an image's score is
        bit-identical whatever batch it arrives in: resumed and multi-worker runs match.
        """
        x = self.scale(features)
        d2 = np.square(x[:, None, :] - self.support_vectors[None, :, :]).sum(axis=2)
        return (np.exp(-self.gamma * d2) * self.coefs).sum(axis=1) - self.rho


def _round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits, as C's ``%g`` prints."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(x == 0, 0, np.floor(np.log10(np.abs(np.where(x == 0, 1, x)))))
    factor = 10.0 ** (digits - 1 - mag)
    return np.round(x * factor) / factor


@functools.lru_cache(maxsize=8)
def _load_model(path: str) -> BrisqueModel:
    return BrisqueModel(path)


def central_crop(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """The centred view of ``image`` with at most ``max_pixels`` pixels and the same aspect ratio."""
    h, w = image.shape[:2]
    if h * w <= max_pixels:
        return image
    scale = (max_pixels / (h * w)) ** 0.5
    ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


@register_scorer("brisque")
class BrisqueScorer(Scorer):
    """BRISQUE with the official LIVE model (or a model from ``tools/train_brisque.py``)."""

    higher_is_better = False
    native_range = (0.0, 100.0)
    color = "gray"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        working_size: Annotated[int | None, Bounds(MIN_SIDE, 8192)] = None,
        max_pixels: Annotated[int, Bounds(MIN_SIDE * MIN_SIDE, 1 << 31)] = MAX_PIXELS,
    ):
        if model_path is not None and not isinstance(model_path, (str, os.PathLike)):
            raise ValueError(f"model_path must be a file path, not {model_path!r}")
        path = Path(model_path).expanduser() if model_path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise FileNotFoundError(
                f"BRISQUE model {path} not found; train one with tools/train_brisque.py "
                "or leave model_path unset for the official LIVE model"
            )
        checked = check_params(BrisqueScorer.__init__, locals())
        self.model_path = str(path)
        self.working_size, self.max_pixels = checked["working_size"], checked["max_pixels"]

    @property
    def model(self) -> BrisqueModel:
        return _load_model(self.model_path)

    def check_image(self, image: np.ndarray) -> str | None:
        reason = super().check_image(image) or too_small(image, MIN_SIDE, self.working_size, "BRISQUE's ")
        if reason is None and is_flat(image):
            reason = "flat_image: every pixel is the same colour, so BRISQUE's local statistics are undefined"
        return reason

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The 36 features per image; raises UnscorableImage for an image :meth:`check_image` refuses."""
        self.require_scorable(images)
        rows = [
            brisque_features(central_crop(resize_long_side(image, self.working_size), self.max_pixels))
            for image in images
        ]
        return np.stack(rows) if rows else np.zeros((0, N_FEATURES))

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros(0)
        return self.model.predict(self.features(images))

    def normalize(self, native):
        """Quality ``(100 - clip(s, 0, 100)) / 100``: the host's mapping, higher is better."""
        values = np.asarray(native, dtype=np.float64)
        return _like(native, (100.0 - np.clip(values, 0.0, 100.0)) / 100.0)

    def describe(self) -> dict:
        return {**super().describe(), "model_path": self.model_path}

    def __repr__(self) -> str:
        return (
            f"BrisqueScorer(model_path={self.model_path!r}, working_size={self.working_size}, "
            f"max_pixels={self.max_pixels})"
        )
