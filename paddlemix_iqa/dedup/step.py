"""The ``dedup`` step: its settings, the signing of decoded images, and deduplication of items.

A pipeline runs it after the per-image steps (``process:`` ends with ``- dedup: {...}``): the
runner signs each kept image in the same decode pass as the scorers (:meth:`Dedup.sign`) and
stores the signature with the scores; once every record is done, :func:`paddlemix_iqa.dedup.core.
find_duplicates` decides from the stored hashes and scores. :func:`dedup_items` does the same on
a list of items in memory (the DataCopilot ``iqa_dedup`` dataset method).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np

from ..io import DecodedImage, decode_or_error
from ..ops.base import REJECT_KEY, TAG_PREFIX, image_refs
from ..ops.metric import scorer_input
from ..params import Bounds, check_params
from ..scorers import get_scorer
from ..scorers.phash import THUMB_BYTES, Signature, mirrored_thumbs, thumbnail_correlation
from .core import CROP, FILESIZE, MIRROR, RESOLUTION, Candidates, Decisions, find_duplicates, rank_order

#: the long side signatures need (a 32x32 hash and 16x16 thumbnails); the chain may decode larger
SIGN_SIDE = 256
DUPLICATE_KEY = "__iqa_duplicate_of"  # the id of the kept copy, on a rejected duplicate
DISTANCE_KEY = "__iqa_duplicate_distance"


def file_digest(path: str, limit: int = 1 << 30) -> str | None:
    """SHA-256 of a file's bytes (read right after its decode, so from the page cache); None past ``limit``."""
    try:
        if os.path.getsize(path) > limit:
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


class Dedup:
    """Near-duplicate removal that keeps the best copy: the settings of a ``dedup`` step.

    ``keep``: the order images of a group are ranked by: quality metrics scored in the same run
    (their normalised quality, higher first, in steps of ``tolerance``), then ``resolution``
    (pixels) and ``filesize`` (bytes) unless listed earlier, then first seen. ``radius``: pHash Hamming distance of a candidate pair
    (8: measured in docs/dedup.md). ``mirror`` / ``crop``: also compare each image's mirrored /
    92% centre-cropped hash. ``min_correlation``: the verification every candidate must pass
    (correlation of 16x16 grey thumbnails). ``exact``: merge identical files and pixels first.
    ``embeddings``: off by default; ``{model: DIR, threshold: 0.95}`` also pairs images whose
    vectors from the user's exported Paddle model have cosine >= threshold
    (:class:`paddlemix_iqa.dedup.embeddings.Embedder`: a missing model raises ``WeightsNotFound``).
    """

    #: where image references are resolved when embeddings re-read images (a pipeline's image_root)
    root: str | None = None
    allow_outside_root: bool = False

    def __init__(
        self,
        keep: list[str] | None = None,
        radius: Annotated[int, Bounds(0, 16)] = 8,
        mirror: bool = True,
        crop: bool = True,
        min_correlation: Annotated[float, Bounds(-1.0, 1.0)] = 0.7,
        tolerance: Annotated[float, Bounds(0.0, 1.0)] = 0.05,
        exact: bool = True,
        embeddings: dict[str, Any] | None = None,
        key: str = "image",
        name: str = "dedup",
    ):
        check_params(Dedup.__init__, locals())
        # measured (docs/dedup.md): BRISQUE first kept the original in 31 of 64 groups, resolution then
        # file size in 64 of 64; metrics given here come first, resolution and file size always follow
        keep = [RESOLUTION, FILESIZE] if keep is None else list(keep)
        for k in keep:
            if not isinstance(k, str) or not k:
                raise ValueError(f"keep: each entry is a metric name, 'resolution' or 'filesize', not {k!r}")
        if len(set(keep)) != len(keep):
            raise ValueError(f"keep: {keep} names an entry twice")
        keep += [k for k in (RESOLUTION, FILESIZE) if k not in keep]
        for flag, value in (("mirror", mirror), ("crop", crop), ("exact", exact)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be true or false, not {value!r}")
        self.keep, self.radius, self.mirror, self.crop = keep, radius, mirror, crop
        self.min_correlation, self.tolerance, self.exact = float(min_correlation), float(tolerance), exact
        self.key, self.name = key, name
        from .embeddings import embedder_from

        self.embedder = embedder_from(embeddings)

    def params(self) -> dict[str, Any]:
        return {
            "keep": self.keep,
            "radius": self.radius,
            "mirror": self.mirror,
            "crop": self.crop,
            "min_correlation": self.min_correlation,
            "tolerance": self.tolerance,
            "exact": self.exact,
            **({"embeddings": self.embedder.params()} if self.embedder is not None else {}),
            "key": self.key,
        }

    @property
    def metrics(self) -> list[str]:
        """The keep keys that are quality metrics (not resolution / filesize)."""
        return [k for k in self.keep if k not in (RESOLUTION, FILESIZE)]

    # --- signing (the per-image pass) -------------------------------------------------------
    def sign(self, image: DecodedImage) -> dict[str, Any]:
        """The stored signature of one decoded image (hashes, thumbnails, digests, size)."""
        phash = get_scorer("phash")
        small = scorer_input(image, phash)  # the run's shared grey copies (made here if no op made them)
        sig: Signature = phash.signature(image.views.get(("gray", None), small), small)
        return {
            "phash": sig.phash,
            "mirror": sig.mirror,
            "crop": sig.crop,
            "thumb": sig.thumb,
            "thumb_crop": sig.thumb_crop,
            "pixel_hash": sig.pixels,
            "file_hash": file_digest(image.path) if self.exact else None,
            "width": image.width,
            "height": image.height,
            "file_size": image.file_size,
        }

    # --- deciding ---------------------------------------------------------------------------
    def rank(self, metrics: dict[str, np.ndarray], width, height, file_size) -> np.ndarray:
        keys = []
        for k in self.keep:
            if k == RESOLUTION:
                keys.append(np.asarray(width, np.float64) * np.asarray(height, np.float64))
            elif k == FILESIZE:
                keys.append(np.asarray(file_size, np.float64))
            else:
                keys.append(metrics[k])
        if not keys:
            return np.arange(len(width))
        return rank_order(keys, self.tolerance)

    def decide(
        self,
        cands: Candidates,
        rank: np.ndarray,
        thumbs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        refs: Callable[[np.ndarray], Sequence[Any]] | None = None,
        root: str | os.PathLike | None = None,
        allow_outside_root: bool | None = None,
    ) -> Decisions:
        """``thumbs(indices) -> (thumb, thumb_crop)`` uint8 (k, 256) arrays for those images.

        With ``embeddings``, ``refs(indices)`` gives those images' references (paths under
        ``root``, default :attr:`root`): the images left after the exact merge are decoded again
        here, in batches, and embedded (the signing pass decodes small and one image at a time;
        see docs/dedup.md).
        """
        root = self.root if root is None else root
        allow_outside_root = self.allow_outside_root if allow_outside_root is None else allow_outside_root
        threshold = self.min_correlation
        embedding = None
        if self.embedder is not None:
            if refs is None:
                raise ValueError("dedup: embeddings need the images' references (refs=...) to embed them")
            embedder = self.embedder

            def embedding(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return embedder.pairs(embedder.embed_refs(refs(images), root, allow_outside_root))

        def verify(pairs: np.ndarray, how: str) -> np.ndarray:
            if not len(pairs):
                return np.zeros(0, bool)
            wanted = np.unique(pairs)
            full, cropped = thumbs(wanted)
            at = np.searchsorted(wanted, pairs)
            left = (cropped if how == CROP else full)[at[:, 0]]
            if how == MIRROR:
                left = mirrored_thumbs(left)
            return thumbnail_correlation(left, full[at[:, 1]]) >= threshold

        return find_duplicates(
            cands,
            rank,
            verify,
            radius=self.radius,
            mirror=self.mirror,
            crop=self.crop,
            exact=self.exact,
            embedding=embedding,
        )


def metric_quality(item: dict, metric: str) -> float:
    """The normalised quality an op of the same run stored in the item (NaN when absent)."""
    value = item.get(TAG_PREFIX + metric)
    if isinstance(value, list):
        value = value[0] if value else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def decide_signed(
    dedup: Dedup,
    items: Sequence[dict],
    sigs: Sequence[dict],
    root: str | os.PathLike | None = None,
    allow_outside_root: bool = False,
):
    """The step's decision over items whose signatures are already made (``sigs[i]`` is ``items[i]``'s,
    from :meth:`Dedup.sign`); the ``keep`` scores are read from the items' ``__tag_<metric>`` keys.
    With embeddings, each image is read again from its reference (``image_refs(items[i])[0]``)."""
    cands = Candidates(
        phash=np.array([s["phash"] for s in sigs], np.uint64),
        mirror=np.array([s["mirror"] for s in sigs], np.uint64),
        crop=np.array([s["crop"] for s in sigs], np.uint64),
        file_hash=[s["file_hash"] for s in sigs],
        pixel_hash=[s["pixel_hash"] for s in sigs],
    )
    thumb = np.frombuffer(b"".join(s["thumb"] for s in sigs), np.uint8).reshape(-1, THUMB_BYTES)
    thumb_crop = np.frombuffer(b"".join(s["thumb_crop"] for s in sigs), np.uint8).reshape(-1, THUMB_BYTES)
    metrics = {m: np.array([metric_quality(item, m) for item in items]) for m in dedup.metrics}
    rank = dedup.rank(
        metrics, [s["width"] for s in sigs], [s["height"] for s in sigs], [s["file_size"] for s in sigs]
    )
    return dedup.decide(
        cands,
        rank,
        lambda idx: (thumb[idx], thumb_crop[idx]),
        refs=lambda idx: [image_refs(items[int(i)], dedup.key)[0] for i in idx],
        root=root,
        allow_outside_root=allow_outside_root,
    )


def dedup_items(
    items: Sequence[dict],
    dedup: Dedup | None = None,
    root: str | os.PathLike | None = None,
    allow_outside_root: bool = False,
) -> tuple[list[dict], list[dict]]:
    """(kept, rejected) items: each duplicate gets ``__iqa_reject = "dedup: duplicate_of: <id> (...)"``.

    Images are decoded one at a time and only their signatures are kept. Items without exactly
    one image, or whose image cannot be read, are kept and take no part (an earlier op rejects
    unreadable images). Scores for ``keep`` are read from the items' ``__tag_<metric>`` keys.
    """
    dedup = dedup or Dedup()
    signed: list[int] = []
    sigs: list[dict] = []
    for pos, item in enumerate(items):
        refs = image_refs(item, dedup.key) if isinstance(item, dict) else []
        if len(refs) != 1:
            continue
        image = decode_or_error(refs[0], root, max_side=SIGN_SIDE, allow_outside_root=allow_outside_root)
        if isinstance(image, DecodedImage):
            signed.append(pos)
            sigs.append(dedup.sign(image))
    if not sigs:
        return list(items), []
    decisions = decide_signed(dedup, [items[p] for p in signed], sigs, root, allow_outside_root)
    rejected_at: dict[int, dict] = {}
    for i in np.flatnonzero(decisions.duplicate_of >= 0).tolist():
        kept = items[signed[int(decisions.duplicate_of[i])]]
        kept_id = kept.get("id", signed[int(decisions.duplicate_of[i])])
        item = items[signed[i]]
        item[REJECT_KEY] = f"{dedup.name}: {decisions.reason(i, kept_id)}"
        item[DUPLICATE_KEY] = kept_id
        item[DISTANCE_KEY] = int(decisions.distance[i])
        rejected_at[signed[i]] = item
    kept_items = [it for p, it in enumerate(items) if p not in rejected_at]
    return kept_items, [rejected_at[p] for p in sorted(rejected_at)]
