"""Group near-duplicate images and keep the best copy of each group, from signatures and scores only.

Order of work: exact copies first (same file bytes, then same decoded pixels: no threshold),
then one representative per exact group goes to the perceptual search: every pair of pHashes
within ``radius`` (:func:`near_pairs`), each image's mirror hash and centre-crop hash against
every image's hash (:func:`near_pairs_between`). A candidate pair merges only when its 16x16 grey
thumbnails also correlate (``min_correlation``; for a mirror or crop candidate, the mirrored or
cropped thumbnail): a second, independent check, so the rare false hash pair at a million images
does not merge distinct photos. Groups are the connected components of the verified pairs
(scipy's union-find-like ``connected_components``).

Keeping: within a group, images are ranked by the ``keep`` keys (quality metrics of the same
run, higher quality first, compared in steps of ``tolerance``; ``resolution``; ``filesize``),
then by first seen. The best image is kept and every image with a verified pair to it becomes
its duplicate; the best image left is kept next, and so on. So a chain a~b~c whose ends are far
apart keeps a and c, and no kept image has a near copy left among the kept ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .search import near_pairs, near_pairs_between

#: keep keys that are not metrics: pixels of the original image, bytes of the file
RESOLUTION, FILESIZE = "resolution", "filesize"
#: how a pair was found (the reason text says it)
FILE, PIXELS, PHASH, MIRROR, CROP = "identical file", "identical pixels", "phash", "mirror", "crop"
EMBEDDING = "embedding"  # cosine of a user-supplied model's vectors (``embeddings:``, dedup/embeddings.py)


@dataclass
class Candidates:
    """The signatures of the images taking part, in first-seen order (index = position)."""

    phash: np.ndarray  # uint64
    mirror: np.ndarray  # uint64
    crop: np.ndarray  # uint64
    file_hash: Sequence[Any]  # digest of the file bytes (None: unknown)
    pixel_hash: Sequence[Any]  # digest of the decoded pixels (None: unknown)

    def __len__(self) -> int:
        return len(self.phash)


@dataclass
class Decisions:
    """``duplicate_of[i]`` is the index of the image kept in place of ``i`` (-1: ``i`` is kept)."""

    duplicate_of: np.ndarray
    distance: np.ndarray  # Hamming distance of the pair (0 for exact copies); -1 for kept
    how: list[str | None]
    group: np.ndarray  # group number of every image (its own for a lone image)
    stats: dict[str, Any] = field(default_factory=dict)
    similarity: np.ndarray | None = None  # cosine of an embedding pair (NaN for other kinds)

    def groups(self) -> dict[int, list[int]]:
        """Kept index -> [kept, its duplicates...] for every kept image that has duplicates."""
        out: dict[int, list[int]] = {}
        for i in np.flatnonzero(self.duplicate_of >= 0).tolist():
            out.setdefault(int(self.duplicate_of[i]), []).append(i)
        return {k: [k, *v] for k, v in sorted(out.items())}

    def reason(self, i: int, kept_id: Any) -> str:
        how = self.how[i]
        if how in (FILE, PIXELS):
            return f"duplicate_of: {kept_id} ({how})"
        if how == EMBEDDING and self.similarity is not None:
            return f"duplicate_of: {kept_id} (embedding cosine {self.similarity[i]:.2f})"
        kind = "" if how == PHASH else f"{how}, "
        return f"duplicate_of: {kept_id} ({kind}phash distance {int(self.distance[i])})"


def rank_order(keys: Sequence[np.ndarray], tolerance: float = 0.0) -> np.ndarray:
    """Best-first order of images by ``keys`` (each higher-is-better, NaN worst), then first seen.

    Keys in [0, 1] (qualities) are compared in steps of ``tolerance``, so a difference a metric
    cannot vouch for falls through to the next key.
    """
    n = len(keys[0]) if len(keys) else 0
    cols = []
    for key in keys:
        values = np.asarray(key, dtype=np.float64)
        if tolerance > 0 and np.nanmax(np.abs(values), initial=0.0) <= 1.0:
            values = np.floor(values / tolerance)
        cols.append(np.where(np.isnan(values), np.inf, -values))  # ascending sort: best first
    # np.lexsort sorts by the last key first
    return np.lexsort([np.arange(n), *reversed(cols)]) if cols else np.arange(n)


def find_duplicates(
    cands: Candidates,
    rank: np.ndarray,
    verify: Callable[[np.ndarray, str], np.ndarray] | None,
    radius: int = 8,
    mirror: bool = True,
    crop: bool = True,
    exact: bool = True,
    embedding: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Decisions:
    """Decide which images are duplicates of which (module docstring).

    ``rank`` is the best-first order of all images (:func:`rank_order`); ``verify(pairs, how)``
    returns the (k,) bool mask of candidate pairs (i, j) that pass the second check, where
    ``how`` is ``"phash"`` (image i vs j), ``"mirror"`` (mirror of i vs j) or ``"crop"``
    (centre crop of i vs j). None merges on the hash alone. ``embedding(images)``, when given, is
    called once with the indices of the images taking part in the perceptual search and returns
    ``(pairs, cosines)``, pairs of positions in that array: they join the hash candidates as they
    are (the cosine threshold is their check), with their pHash distance as ``distance``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(cands)
    position = np.empty(n, np.int64)
    position[np.asarray(rank, np.int64)] = np.arange(n)
    # exact copies: every image points to the best-ranked image with the same bytes / pixels
    rep = np.arange(n)
    how_exact: dict[int, str] = {}
    if exact:
        for digests, how in ((cands.file_hash, FILE), (cands.pixel_hash, PIXELS)):
            alive = rep == np.arange(n)
            # group by digest among the still-representative images, best rank first
            order = np.argsort(position, kind="stable")
            first: dict[Any, int] = {}
            for i in order.tolist():
                if not alive[i] or digests[i] is None:
                    continue
                r = first.setdefault(digests[i], i)
                if r != i:
                    rep[i] = r
                    how_exact[i] = how
    reps = np.flatnonzero(rep == np.arange(n))
    stats: dict[str, Any] = {"images": n, "exact_copies": int(n - len(reps))}

    # perceptual candidates among representatives
    edges: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    ph = np.asarray(cands.phash, np.uint64)[reps]
    searches = [(PHASH, None)]
    if mirror:
        searches.append((MIRROR, np.asarray(cands.mirror, np.uint64)[reps]))
    if crop:
        searches.append((CROP, np.asarray(cands.crop, np.uint64)[reps]))
    codes = {PHASH: 0, MIRROR: 1, CROP: 2, EMBEDDING: 3}
    sims: list[np.ndarray] = []
    for how, queries in searches:
        pairs = near_pairs(ph, radius) if queries is None else near_pairs_between(queries, ph, radius)
        if queries is not None:
            pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        q = ph if queries is None else queries
        d = np.bitwise_count(q[pairs[:, 0]] ^ ph[pairs[:, 1]]).astype(np.int64)
        stats[f"candidates_{how}"] = len(pairs)
        if verify is not None and len(pairs):
            ok = np.asarray(verify(reps[pairs], how), bool)
            pairs, d = pairs[ok], d[ok]
        stats[f"verified_{how}"] = len(pairs)
        edges.append(reps[pairs])
        dists.append(d)
        kinds.append(np.full(len(pairs), codes[how], np.int8))
        sims.append(np.full(len(pairs), np.nan))
    if embedding is not None:
        pairs, cos = embedding(reps)
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        stats[f"candidates_{EMBEDDING}"] = len(pairs)
        edges.append(reps[pairs])
        dists.append(np.bitwise_count(ph[pairs[:, 0]] ^ ph[pairs[:, 1]]).astype(np.int64))
        kinds.append(np.full(len(pairs), codes[EMBEDDING], np.int8))
        sims.append(np.asarray(cos, np.float64))
    e = np.concatenate(edges) if edges else np.empty((0, 2), np.int64)
    dist = np.concatenate(dists) if dists else np.empty(0, np.int64)
    kind = np.concatenate(kinds) if kinds else np.empty(0, np.int8)
    sim = np.concatenate(sims) if sims else np.empty(0)
    # one edge per unordered pair: a hash pair before an embedding pair, then the smallest distance
    if len(e):
        a, b = np.minimum(e[:, 0], e[:, 1]), np.maximum(e[:, 0], e[:, 1])
        order = np.lexsort((dist, kind == codes[EMBEDDING], b, a))
        a, b, dist, kind, sim = a[order], b[order], dist[order], kind[order], sim[order]
        first = np.ones(len(a), bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        a, b, dist, kind, sim = a[first], b[first], dist[first], kind[first], sim[first]
    else:
        a = b = np.empty(0, np.int64)

    duplicate_of = np.full(n, -1, np.int64)
    distance = np.full(n, -1, np.int64)
    how_of: list[str | None] = [None] * n
    similarity = np.full(n, np.nan)
    names = {v: k for k, v in codes.items()}
    if len(a):
        graph = coo_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
        dmat = coo_matrix((np.r_[dist, dist] + 1, (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
        kmat = coo_matrix((np.r_[kind, kind].astype(np.int64) + 1, (np.r_[a, b], np.r_[b, a])), shape=(n, n))
        kmat = kmat.tocsr()
        smat = coo_matrix((np.r_[sim, sim] + 2.0, (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
        # greedy, best first, over images that have a verified pair
        involved = np.unique(np.r_[a, b])
        done = np.zeros(n, bool)
        for i in involved[np.argsort(position[involved], kind="stable")].tolist():
            if done[i]:
                continue
            done[i] = True  # kept
            lo, hi = graph.indptr[i], graph.indptr[i + 1]
            for j, dj, kj, sj in zip(
                graph.indices[lo:hi].tolist(),
                (dmat.data[dmat.indptr[i] : dmat.indptr[i + 1]] - 1).tolist(),
                (kmat.data[kmat.indptr[i] : kmat.indptr[i + 1]] - 1).tolist(),
                (smat.data[smat.indptr[i] : smat.indptr[i + 1]] - 2.0).tolist(),
                strict=True,
            ):
                if not done[j]:
                    done[j] = True
                    duplicate_of[j], distance[j], how_of[j] = i, int(dj), names[int(kj)]
                    similarity[j] = sj
        _, group = connected_components(graph, directed=False)
    else:
        group = np.arange(n)
    # exact copies follow their representative
    for i, how in how_exact.items():
        r = i
        while rep[r] != r:
            r = rep[r]
        if duplicate_of[r] >= 0:
            duplicate_of[i], distance[i], how_of[i] = duplicate_of[r], distance[r], how_of[r]
            similarity[i] = similarity[r]
        else:
            duplicate_of[i], distance[i], how_of[i] = r, 0, how
        group[i] = group[r]
    stats["duplicates"] = int((duplicate_of >= 0).sum())
    stats["groups"] = int(len(np.unique(duplicate_of[duplicate_of >= 0])))
    if embedding is not None:
        stats[f"duplicates_{EMBEDDING}"] = int(sum(h == EMBEDDING for h in how_of))
    return Decisions(duplicate_of, distance, how_of, np.asarray(group), stats, similarity)
