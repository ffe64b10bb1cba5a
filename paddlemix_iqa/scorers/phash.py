"""Perceptual signatures for near-duplicate search (``phash``), computed on the pixels the run decodes.

The hash is imagehash's 64-bit DCT pHash (``imagehash.phash``, a well-kept library) of the grey
image area-resized to 32x32 first (area resampling kept 10% crops closer than imagehash's own
Lanczos resize: benchmarks/eval_dedup.py). Besides the hash of the image, a signature holds the
hash of its mirror (a mirrored copy is found by comparing it to the other image's hash) and of
its centre crop keeping 92% of each side (a copy cropped by 5-10% is found the same way), the
16x16 grey thumbnails the candidate pairs are verified with (a second, independent check:
correlation of pixels, not signs of DCT coefficients), and a digest of the decoded grey pixels
(exact copies in another file format). :mod:`paddlemix_iqa.dedup` searches and groups them.

As a scorer (``phash_tagger``), its native value is the contrast of the 32x32 grey image the
hash is computed from (its standard deviation, 0-127.5): a flat image's hash is noise, so a
low value says the signature cannot tell such images apart.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

import cv2
import numpy as np

from ..params import Bounds, check_params
from ..registry import register_scorer
from .base import Scorer, resize_long_side, to_gray

HASH_SIDE = 32  # imagehash.phash: 8x8 low frequencies of the DCT of a 32x32 image
THUMB_SIDE = 16  # the verification thumbnail
THUMB_BYTES = THUMB_SIDE * THUMB_SIDE


@dataclass(frozen=True)
class Signature:
    """What near-duplicate search keeps of one image (a few hundred bytes, never pixels)."""

    phash: int  # 64-bit pHash of the image
    mirror: int  # of its left-right mirror
    crop: int  # of its centre crop (``crop`` of each side)
    thumb: bytes  # 16x16 grey thumbnail of the image (verification)
    thumb_crop: bytes  # of the centre crop
    pixels: str  # digest of the decoded pixels and their shape (exact copies)


def _phash(grey32: np.ndarray) -> int:
    """imagehash's pHash of an already 32x32 grey image, as an int (bit 63 = first coefficient)."""
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(np.ascontiguousarray(grey32)), hash_size=8).hash.reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _area(grey: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)


def _centre(grey: np.ndarray, keep: float) -> np.ndarray:
    h, w = grey.shape
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = (h - ch) // 2, (w - cw) // 2
    return grey[top : top + ch, left : left + cw]


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 of decoded pixels and their shape: equal for the same picture in two file formats.

    The signature digests the grey copy (a third of the bytes; the same picture in colour and as
    its exact grey version then counts as one, which the perceptual hash would say anyway). SHA-256
    runs on the CPU's SHA instructions: 2.7x faster here than BLAKE2b.
    """
    digest = hashlib.sha256()
    digest.update(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


@register_scorer("phash")
class PHash(Scorer):
    """Perceptual hash signature for near-duplicate removal (the ``dedup`` step); as a score, the
    contrast of the hashed 32x32 grey image (a flat image's hash is unreliable)."""

    measures: ClassVar[str] = "signature"
    native_range = (0.0, 127.5)
    color = "gray"
    accepts_gray_copy = True  # hashed from the grey copy shrunk to working_size (never enlarged)
    working_size = 1024

    def __init__(self, crop: Annotated[float, Bounds(0.5, 0.99)] = 0.92):
        check_params(PHash.__init__, locals())
        self.crop = float(crop)

    def score_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.require_scorable(images)
        return np.array([float(_area(to_gray(img), HASH_SIDE).std()) for img in images], dtype=np.float64)

    def signatures(self, images: Sequence[np.ndarray]) -> list[Signature]:
        """One :class:`Signature` per RGB uint8 image (any size; the pixels are only read)."""
        out = []
        for img in images:
            grey = to_gray(img)
            out.append(self.signature(grey, resize_long_side(grey, min(self.working_size, max(grey.shape)))))
        return out

    def signature(self, grey: np.ndarray, small: np.ndarray) -> Signature:
        """The signature of a decoded image from its grey pixels (their digest: exact copies) and
        their copy at :attr:`working_size` (the hashes and thumbnails; the run shares that copy with
        the sharpness ops, and hashing a 12-MP image whole cost more than its decode). The
        thumbnails are the 32x32 hash inputs halved, not another pass over the image."""
        hashed = _area(small, HASH_SIDE)
        cropped = _area(_centre(small, self.crop), HASH_SIDE)
        return Signature(
            phash=_phash(hashed),
            mirror=_phash(hashed[:, ::-1]),
            crop=_phash(cropped),
            thumb=_area(hashed, THUMB_SIDE).tobytes(),
            thumb_crop=_area(cropped, THUMB_SIDE).tobytes(),
            pixels=pixel_digest(grey),
        )


def thumbnail_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of paired rows of two (k, 256) uint8 thumbnail arrays (0 when one is flat)."""
    x = a.astype(np.float32)
    y = b.astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    y -= y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    num = (x * y).sum(axis=1)
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)


def mirrored_thumbs(thumbs: np.ndarray) -> np.ndarray:
    """Left-right mirror of (k, 256) thumbnails."""
    side = int(math.isqrt(thumbs.shape[1]))
    return thumbs.reshape(-1, side, side)[:, :, ::-1].reshape(len(thumbs), -1)
