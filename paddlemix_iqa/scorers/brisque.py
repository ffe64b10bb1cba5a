"""BRISQUE (Mittal, Moorthy, Bovik 2012) with the official LIVE model, matching the MATLAB release.

Every step follows the reference's semantics, because each one moves scores:
MATLAB ``rgb2gray`` on uint8 (rounded back to uint8), 7x7 Gaussian local
statistics with zero padding, circular neighbour shifts, GGD/AGGD shapes by
lookup in the release's alpha table, and the second scale by MATLAB's
``imresize(img, 0.5)`` (bicubic a=-0.5, antialiased, symmetric borders), which
``cv2.resize`` does not reproduce. The SVR is evaluated as a vectorised RBF
kernel over the support vectors of the package's ``brisque_live.npz`` (converted
from the release by ``tools/convert_brisque_model.py``; see ``BRISQUE_NOTICE.txt``).

The scorer works on gray (``color = "gray"``): a 2-D uint8 image is scored as the
reference's gray image, with no conversion; an RGB image is first converted by
:func:`rgb2gray`. Per pixel the work is float64 local statistics (they cancel), a
float32 MSCN map and moment sums accumulated in double over cache-sized bands.

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
_RGB2GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]

N_FEATURES = 36
#: the smallest side scored: the half-size scale then still holds a 7x7 window plus its border
MIN_SIDE = 16
#: Above this many pixels BRISQUE reads a centred crop of this size at native scale: its
#: float maps cost ~20 bytes a pixel (4 GB for a 200-MP image), and a crop keeps the
#: scale the statistics depend on, where shrinking would not.
MAX_PIXELS = 32_000_000
#: pixels per strip of the colour-to-gray step (its float64 temporaries stay in the 512 KB L2 cache)
GRAY_STRIP_PIXELS = 1 << 14


class ImageTooSmall(ValueError):
    """The image is smaller than BRISQUE's 7x7 window needs at the half-size scale (MIN_SIDE)."""


def rgb2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a uint8 image: weighted sum in double, rounded half away from zero."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    out = np.empty(image.shape[:2], np.uint8)
    rows = max(1, GRAY_STRIP_PIXELS // image.shape[1])
    for top in range(0, image.shape[0], rows):  # strips: the float64 temporaries stay in cache
        rgb = np.asarray(image[top : top + rows, :, :3], dtype=np.float64)
        gray = cv2.transform(rgb, _RGB2GRAY.reshape(1, 3))
        gray += 0.5  # values are >= 0: floor(x + 0.5) is MATLAB's round
        out[top : top + rows] = np.floor(gray, out=gray)
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
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


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
    first when both scales are equal. The taps are dyadic (k/256), so on integer pixels
    every product and partial sum is exact: the first pass (|sums| < 2^9, multiples of
    2^-8) in float32, the second (multiples of 2^-16) in float32 too when the first pass
    stays within +-215 (partial sums then below 2^8: 24 bits), else in float64. Either
    way the result is bit-identical to a float64 computation, in any summation order.
    """
    taps, one = _half_taps(), _ONE
    mirror = cv2.BORDER_REFLECT  # fedcba|abcdef: MATLAB's symmetric padding
    if image.dtype != np.uint8:  # float input (not integer): plain float64
        rows = cv2.sepFilter2D(image, cv2.CV_64F, one, taps, anchor=(0, 3), borderType=mirror)[0::2]
        return cv2.sepFilter2D(rows, cv2.CV_64F, taps, one, anchor=(3, 0), borderType=mirror)[:, 0::2]
    taps32, one32 = _half_taps32()
    rows = cv2.sepFilter2D(image, cv2.CV_32F, one32, taps32, anchor=(0, 3), borderType=mirror)[0::2]
    low, high = cv2.minMaxLoc(rows)[:2]
    if max(-low, high) <= HALF_EXACT32:
        half = cv2.sepFilter2D(rows, cv2.CV_32F, taps32, one32, anchor=(3, 0), borderType=mirror)[:, 0::2]
        return half.astype(np.float64)
    rows = rows.astype(np.float64)
    return cv2.sepFilter2D(rows, cv2.CV_64F, taps, one, anchor=(3, 0), borderType=mirror)[:, 0::2]


_ONE = np.ones(1)  # the identity 1-tap kernel of the other axis
#: the largest first-pass magnitude for which the second pass is exact in float32 (215 * 304/256 < 256)
HALF_EXACT32 = 215.0


@functools.cache
def _half_taps32() -> tuple[np.ndarray, np.ndarray]:
    return _half_taps().astype(np.float32), np.ones(1, np.float32)


@functools.cache
def _alpha_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The release's shape grid 0.2:0.001:10 and its GGD and AGGD moment ratios."""
    alphas = np.round(np.arange(0.2, 10.0 + 5e-4, 0.001), 3)  # MATLAB colon: 9801 values
    g1, g2, g3 = gamma_fn(1 / alphas), gamma_fn(2 / alphas), gamma_fn(3 / alphas)
    return alphas, g1 * g3 / (g2 * g2), g2 * g2 / (g1 * g3)


_BOX = np.ones((7, 7), np.uint8)
_SQUARES = np.arange(256, dtype=np.uint16) ** 2  # x^2 of a uint8 image by table lookup


class _Work:
    """Buffers reused by every strip and band of one image (both scales).

    Fresh arrays of a few hundred KB per OpenCV call are mapped (or the heap trimmed and
    grown again) and faulted in page by page each time: reusing them saves that on every
    strip and band. ``take(name, rows, cols, dtype)`` is a C-contiguous ``rows x cols`` array,
    the first rows of a buffer kept under ``name`` and ``cols`` (made anew when too small);
    its contents are left over from the last use.
    """

    def __init__(self):
        self.buffers: dict[tuple[str, int], np.ndarray] = {}

    def take(self, name: str, rows: int, cols: int, dtype) -> np.ndarray:
        buf = self.buffers.get((name, cols))
        if buf is None or buf.shape[0] < rows or buf.dtype != dtype:
            buf = self.buffers[(name, cols)] = np.empty((rows, cols), dtype)
        return buf[:rows]


def _mscn_block(image: np.ndarray, work: _Work | None = None) -> np.ndarray:
    """MSCN ``(x - mu) / (sigma + 1)`` of a block of rows (uint8, or float); rows within 3 of a cut are wrong.

    The local statistics are float64 (``E[x^2] - mu^2`` cancels: in float32 the scores move
    by up to 0.4); once the variance is formed, the rest is float32, which moves no score
    by more than 1e-5 and halves the memory traffic. With ``work``, the temporaries and the
    result are its buffers (the result is overwritten by the next block).
    """
    work = work or _Work()
    g, zero, (h, w) = _gaussian_window(), cv2.BORDER_CONSTANT, image.shape
    mu, var = work.take("mu", h, w, np.float64), work.take("var", h, w, np.float64)
    if image.dtype == np.uint8:
        squared = cv2.LUT(image, _SQUARES, dst=work.take("squared", h, w, np.uint16))
    else:
        squared = cv2.multiply(image, image, dst=work.take("squared", h, w, image.dtype))
    cv2.sepFilter2D(image, cv2.CV_64F, g, g, dst=mu, borderType=zero)
    cv2.sepFilter2D(squared, cv2.CV_64F, g, g, dst=var, borderType=zero)
    mu_sq = cv2.multiply(mu, mu, dst=work.take("mu_sq", h, w, np.float64))
    cv2.absdiff(var, mu_sq, dst=var)
    sigma = work.take("sigma", h, w, np.float32)
    np.copyto(sigma, var, casting="same_kind")  # float64 -> float32, rounded to nearest
    cv2.sqrt(sigma, dst=sigma)
    cv2.add(sigma, 1.0, dst=sigma)
    out = cv2.subtract(image, mu, dst=work.take("out", h, w, np.float32), dtype=cv2.CV_32F)
    cv2.divide(out, sigma, dst=out)
    _zero_constant_windows(image, out)
    return out


#: |MSCN| below this may be a constant window's rounding residue (those are below 1e-11: |x - mu| is
#: at most 49 roundings of 255, and sigma + 1 >= 1); only rows holding such values are checked
FLAT_CANDIDATE = 1e-6


def _zero_constant_windows(image: np.ndarray, out: np.ndarray) -> None:
    """Set ``out`` to 0 where the whole 7x7 window of ``image`` (zero padding included) is constant.

    There x - mu is exactly 0, but the float sums leave +-1e-15, whose sign would decide
    left/right AGGD counts. The 7x7 min == max test runs only on the runs of rows that hold
    a near-zero MSCN value (a constant window's value is one), with 3 rows of context: the
    same zeros as the test on the whole block, at a fraction of its cost on most photos.
    """
    near = cv2.inRange(out, -FLAT_CANDIDATE, FLAT_CANDIDATE)
    if not cv2.countNonZero(near):
        return
    rows = np.flatnonzero(cv2.reduce(near, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel())
    gaps = np.flatnonzero(np.diff(rows) > 7)  # runs closer than the context they share are merged
    zero, h = cv2.BORDER_CONSTANT, image.shape[0]
    for first, last in zip(rows[np.r_[0, gaps + 1]], rows[np.r_[gaps, len(rows) - 1]], strict=True):
        lo, hi = max(0, first - 3), min(h, last + 4)
        part = image[lo:hi]
        low = cv2.erode(part, _BOX, borderType=zero, borderValue=0)
        high = cv2.dilate(part, _BOX, borderType=zero, borderValue=0)
        flat = cv2.compare(low, high, cv2.CMP_EQ)[first - lo : last + 1 - lo]
        out[first : last + 1][flat.view(bool)] = 0.0


class _Rows:
    """Exact rows of one scale of the image, for MSCN blocks that need context rows around them."""

    def __init__(self, image: np.ndarray, half_of: np.ndarray | None = None):
        # image: the whole scale; or, with half_of, the half scale made on demand from the gray image
        self.image, self.half_of = image, half_of
        src = half_of if half_of is not None else image
        self.height = (src.shape[0] + 1) // 2 if half_of is not None else src.shape[0]
        self.width = (src.shape[1] + 1) // 2 if half_of is not None else src.shape[1]

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """Rows [top, bottom) of this scale (clipped to the image)."""
        top, bottom = max(0, top), min(self.height, bottom)
        if self.half_of is None:
            return self.image[top:bottom]
        # half row i reads gray rows 2i-3 .. 2i+4; a block cut 8 rows further out is exact there
        lo, hi = max(0, 2 * top - 8), min(self.half_of.shape[0], 2 * bottom + 8)
        return imresize_half(self.half_of[lo:hi])[top - lo // 2 : bottom - lo // 2]


def _mscn(image: np.ndarray, work: _Work | None = None) -> np.ndarray:
    """MSCN map of a whole 2-D image, computed in strips of rows (3 rows of context each side)."""
    h, w = image.shape
    out = np.empty((h, w), np.float32)
    strip = max(48, (BAND_PIXELS // 2) // w)
    work = work or _Work()
    for top in range(0, h, strip):
        lo, hi = max(0, top - 3), min(h, top + strip + 3)
        n = min(strip, h - top)
        out[top : top + n] = _mscn_block(image[lo:hi], work)[top - lo : top - lo + n]
    return out


def _mscn_rows(scale: _Rows, top: int, bottom: int, work: _Work | None = None) -> np.ndarray:
    """Exact MSCN rows [top, bottom) of one scale (3 rows of context each side, zero padding at the edges)."""
    lo = max(0, top - 3)
    block = scale.rows(lo, bottom + 3)
    rows = _mscn_block(np.ascontiguousarray(block), work)[top - lo : bottom - lo]
    return rows.copy() if work is not None else rows  # the next block overwrites work's buffer


def _band_ext(
    scale: _Rows, top: int, bottom: int, mscn: np.ndarray | None = None, work: _Work | None = None
) -> np.ndarray:
    """MSCN rows [top - 1, bottom + 1) of one scale, the rows beyond the edges wrapping around
    (MATLAB ``circshift``); from the whole scale's MSCN ``mscn`` when given, else computed here."""
    h = scale.height

    def rows(a: int, b: int) -> np.ndarray:
        return mscn[a:b] if mscn is not None else _mscn_rows(scale, a, b, work)

    parts = [rows(max(0, top - 1), min(h, bottom + 1))]
    if top == 0:  # the row above row 0 is the last row
        parts.insert(0, rows(h - 1, h))
    if bottom == h:
        parts.append(rows(0, 1))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _band_sums(ext: np.ndarray, work: _Work | None = None) -> np.ndarray:
    """Moment sums of the MSCN rows ``ext[1:-1]`` and of their products with circular neighbours.

    Returns 22 sums: GGD (sum of squares, of magnitudes), then per shift of ``SHIFTS``: sums
    of squares and magnitudes of the products, sum of squares of the positive ones, counts of
    positive and of non-zero products. Summed over bands that cover the image they are the
    whole image's sums (:func:`_band_ext` wraps the neighbour rows around). The temporaries
    are ``work``'s buffers when given.
    """
    work = work or _Work()
    rows, w = ext.shape[0] - 2, ext.shape[1]
    wrapped = work.take("wrapped", rows + 2, w + 2, np.float32)
    cv2.copyMakeBorder(ext, 0, 0, 1, 1, cv2.BORDER_WRAP, dst=wrapped)  # columns wrap around too
    centre = wrapped[1 : rows + 1, 1 : w + 1]
    pair, positive = work.take("pair", rows, w, np.float32), work.take("positive", rows, w, np.float32)
    no_zeros = cv2.countNonZero(ext) == ext.size  # then every product is non-zero
    out = np.empty(2 + 5 * len(SHIFTS))
    out[:2] = cv2.norm(centre, cv2.NORM_L2SQR), cv2.norm(centre, cv2.NORM_L1)
    for i, (dy, dx) in enumerate(SHIFTS):
        cv2.multiply(centre, wrapped[1 - dy : 1 - dy + rows, 1 - dx : 1 - dx + w], dst=pair)
        cv2.threshold(pair, 0.0, 0.0, cv2.THRESH_TOZERO, dst=positive)
        out[2 + 5 * i : 7 + 5 * i] = (
            cv2.norm(pair, cv2.NORM_L2SQR),
            cv2.norm(pair, cv2.NORM_L1),
            cv2.norm(positive, cv2.NORM_L2SQR),
            cv2.countNonZero(positive),
            rows * w if no_zeros else cv2.countNonZero(pair),
        )
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
#: pixels per band of the moment sums and per two strips of the MSCN: their float temporaries stay in cache
BAND_PIXELS = 1 << 16
#: rows of each band read when an image is sampled, and the fewest bands (spread over the height)
SAMPLE_BAND = 32
MIN_BANDS = 16
#: images up to this many pixels are always read whole (their scores are exact)
EXACT_PIXELS = 1_000_000


def _features_from_sums(n: float, sums: np.ndarray) -> list[float]:
    """GGD and the 4 AGGD fits of one scale from its moment sums (see :func:`_band_sums`)."""
    feats = _ggd_features(n, sums[0], sums[1])
    for i in range(len(SHIFTS)):
        feats += _aggd_features(n, *sums[2 + 5 * i : 7 + 5 * i])
    return feats


def _scale_sums(image: np.ndarray, mscn: np.ndarray, work: _Work | None = None) -> np.ndarray:
    """The 22 moment sums (:func:`_band_sums`) of one whole scale, over bands of about BAND_PIXELS."""
    scale = _Rows(image)
    rows = max(8, BAND_PIXELS // scale.width)
    bands = [(top, min(scale.height, top + rows)) for top in range(0, scale.height, rows)]
    work = work or _Work()
    return np.sum([_band_sums(_band_ext(scale, top, bottom, mscn), work) for top, bottom in bands], axis=0)


def _scale_features(image: np.ndarray, mscn: np.ndarray, work: _Work | None = None) -> list[float]:
    """The 18 features of one whole scale from its MSCN map."""
    return _features_from_sums(mscn.size, _scale_sums(image, mscn, work))


def _sampled_bands(height: int, width: int, sample_pixels: int) -> tuple[list[tuple[int, int]], float] | None:
    """Bands to read when sampling: the first and the last band of ``SAMPLE_BAND`` rows (they hold the
    top and bottom borders and the pairs that wrap around), and one band centred in each of equal
    slices of the rows between them; at least ``MIN_BANDS`` bands, about ``sample_pixels`` pixels in all.
    Returns the bands (starting on even rows) and the weight of the middle ones (the rows each stands
    for), or None when the bands would cover more than half of the image (then it is read whole)."""
    band = SAMPLE_BAND
    count = max(MIN_BANDS, round(sample_pixels / (width * band)))
    if height * width <= EXACT_PIXELS or 2 * count * band > height:
        return None
    bottom = (height - band) & ~1
    middle, k = bottom - band, count - 2
    bands = [(0, band)]
    for i in range(k):
        top = int(band + (2 * i + 1) * middle / (2 * k) - band / 2) & ~1
        bands.append((top, top + band))
    bands.append((bottom, height))
    return bands, middle / (k * band)


def brisque_features(image: np.ndarray, sample_pixels: int | None = None) -> np.ndarray:
    """The 36 BRISQUE features of one image (RGB uint8, or 2-D gray uint8/float in [0, 255]).

    With ``sample_pixels``, an image of more than ``EXACT_PIXELS`` is read at native scale on
    full-width bands of about that many pixels in all (:func:`_sampled_bands`); the moment sums
    of the middle bands are weighted up to the rows they stand for.
    """
    gray = rgb2gray(image) if image.ndim == 3 else image
    if min(gray.shape) < MIN_SIDE:
        h, w = gray.shape
        raise ImageTooSmall(f"{w}x{h} is too small for BRISQUE ({MIN_SIDE} px minimum)")
    if gray.dtype != np.uint8:
        gray = np.asarray(gray, dtype=np.float64)
    gray = np.ascontiguousarray(gray)
    h, w = gray.shape
    work = _Work()  # buffers shared by every strip and band of both scales
    sampled = _sampled_bands(h, w, sample_pixels) if sample_pixels else None
    if sampled is not None:
        bands, weight = sampled
        full, half = _Rows(gray), _Rows(gray, half_of=gray)
        feats = []
        for scale, div in ((full, 1), (half, 2)):
            spans = [(top // div, -(-bottom // div)) for top, bottom in bands]
            sums = [_band_sums(_band_ext(scale, top, bottom, work=work), work) for top, bottom in spans]
            total = sums[0] + sums[-1] + weight * np.sum(sums[1:-1], axis=0)
            feats += _features_from_sums(scale.height * scale.width, total)
        return np.asarray(feats, dtype=np.float64)
    first = _scale_features(gray, _mscn(gray, work), work)
    half = imresize_half(gray)
    return np.asarray(first + _scale_features(half, _mscn(half, work), work), dtype=np.float64)


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
            raise ValueError(
                f"{self.path}: not a BRISQUE model ({self.support_vectors.shape} support vectors)"
            )

    def scale(self, features: np.ndarray) -> np.ndarray:
        """svm-scale: each feature's (min, max) to (lower, upper); values outside are not clipped."""
        feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if self.quantize:  # the release writes features with %f, svm-scale writes them with %g
            feats = np.round(feats, 6)
        span = self.feature_max - self.feature_min
        scaled = self.lower + (self.upper - self.lower) * (feats - self.feature_min) / np.where(
            span == 0, 1, span
        )
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
    #: The pipeline's shared grey copy (OpenCV RGB2GRAY, fixed-point BT.601) instead of MATLAB's
    #: rgb2gray moves scores by at most 0.048 (median 0.0001) on the 76 shipped photos, with no
    #: decision changed at min_score 0.49 (`python benchmarks/bench_brisque.py --gray-copy`).
    #: Scoring an RGB image directly still uses rgb2gray (the official scores).
    accepts_gray_copy = True

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        working_size: Annotated[int | None, Bounds(MIN_SIDE, 8192)] = None,
        max_pixels: Annotated[int, Bounds(MIN_SIDE * MIN_SIDE, 1 << 31)] = MAX_PIXELS,
        sample_pixels: Annotated[int | None, Bounds(1 << 16, 1 << 31)] = None,
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
        self.sample_pixels = checked["sample_pixels"]

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
            brisque_features(
                central_crop(resize_long_side(image, self.working_size), self.max_pixels), self.sample_pixels
            )
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
        return {**super().describe(), "model_path": self.model_path, "sample_pixels": self.sample_pixels}

    def __repr__(self) -> str:
        return (
            f"BrisqueScorer(model_path={self.model_path!r}, working_size={self.working_size}, "
            f"max_pixels={self.max_pixels}, sample_pixels={self.sample_pixels})"
        )
