"""All pairs of 64-bit hashes within a Hamming radius, exact, by multi-index hashing.

Pigeonhole: split the 64 bits into ``m`` blocks; two hashes within radius ``r`` differ in at
most ``s = ceil((r + 1) / m) - 1`` bits of at least one block. So every pair within ``r`` is a
pair whose block values, in some block, differ by a mask of weight <= ``s``: for each block the
hashes are bucketed by block value (a counting sort), each hash probes the buckets of its block
value XOR every such mask, and a candidate is kept when its full distance is <= ``r`` and this is
the first block where it qualifies (so no pair is reported twice). The number of blocks is the
one with the fewest expected candidate checks for ``n`` and ``r`` (3 blocks of ~21 bits at
radius 8 and 1M hashes). Written with numpy (no index library is exact and fast here: faiss's
multi-hash index took ~11 min at 1M, its hashing index is approximate); :func:`brute_force_pairs`
is the reference the tests compare against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

__all__ = ["brute_force_pairs", "near_pairs", "near_pairs_between"]

#: bits of the widest block the search buckets through a dense table (2^24 int64 offsets = 128 MB max)
_DENSE_BITS = 24
#: candidate pairs checked per step (bounds the temporary arrays: ~16 bytes each)
_CHUNK = 1 << 22


def _as_hashes(hashes) -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.dtype != np.uint64:
        if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
            arr = arr.astype(np.int64).view(np.uint64)  # signed storage of the same 64 bits (SQLite)
        elif arr.dtype.kind in "iu" or arr.size == 0:
            arr = arr.astype(np.uint64)
        else:
            raise TypeError(f"hashes must be an array of 64-bit unsigned integers, not {arr.dtype}")
    return np.ascontiguousarray(arr.reshape(-1))


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or not 0 <= radius <= 64:
        raise ValueError(f"radius must be an integer in [0, 64], not {radius!r}")
    return int(radius)


def _blocks(m: int) -> list[tuple[int, int]]:
    """(shift, width) of ``m`` contiguous blocks covering the 64 bits, widths differing by at most 1."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def _probes(width: int, s: int) -> int:
    return sum(math.comb(width, k) for k in range(s + 1))


def _plan(n_base: int, n_query: int, radius: int) -> int:
    """The number of blocks with the fewest expected candidate checks (uniform bits assumed)."""
    best, best_m = math.inf, 1
    for m in range(1, min(radius + 1, 64) + 1):
        s = math.ceil((radius + 1) / m) - 1
        widths = {w for _, w in _blocks(m)}
        cost = 0.0
        for w in widths:
            if w > 32:
                cost = math.inf
                break
            probes = _probes(w, s)
            cost += m / len(widths) * n_query * probes * (1.0 + n_base / 2.0**w)
        if cost < best:
            best, best_m = cost, m
    return best_m


def _masks(width: int, s: int) -> Iterator[int]:
    for k in range(1, s + 1):
        for bits in itertools.combinations(range(width), k):
            yield sum(1 << b for b in bits)


class _Buckets:
    """The base hashes of one block bucketed by block value: ``order[start[v]:start[v] + count[v]]``."""

    def __init__(self, values: np.ndarray, width: int):
        self.order = np.argsort(values, kind="stable")
        self.sorted = values[self.order]
        self.dense = width <= _DENSE_BITS
        if self.dense:
            self.count = np.bincount(values, minlength=1 << width).astype(np.int64)
            self.start = np.concatenate(([0], np.cumsum(self.count)[:-1]))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, count) of the bucket of each key."""
        if self.dense:
            return self.start[keys], self.count[keys]
        lo = np.searchsorted(self.sorted, keys, "left")
        return lo, np.searchsorted(self.sorted, keys, "right") - lo


def _expand(src: np.ndarray, lo: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each ``src[i]`` paired with sorted positions ``lo[i] .. lo[i] + cnt[i] - 1``."""
    total = int(cnt.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.cumsum(cnt) - cnt
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts - lo, cnt)
    return np.repeat(src, cnt), pos


def _chunks(n: int, cnt: np.ndarray) -> Iterator[slice]:
    """Slices of ``range(n)`` whose expanded candidate counts stay near ``_CHUNK``."""
    if n == 0:
        return
    csum = np.cumsum(cnt)
    first = 0
    while first < n:
        base = csum[first - 1] if first else 0
        last = int(np.searchsorted(csum, base + _CHUNK, "right"))
        last = max(last, first + 1)
        yield slice(first, min(last, n))
        first = last


def _search(base: np.ndarray, query: np.ndarray | None, radius: int) -> np.ndarray:
    self_join = query is None
    q = base if self_join else query
    n_base, n_query = len(base), len(q)
    if n_base == 0 or n_query == 0 or (self_join and n_base < 2):
        return np.empty((0, 2), np.int64)
    m = _plan(n_base, n_query, radius)
    s = math.ceil((radius + 1) / m) - 1
    blocks = _blocks(m)
    found: list[np.ndarray] = []
    for b, (shift, width) in enumerate(blocks):
        full = np.uint64((1 << width) - 1)
        bv = ((base >> np.uint64(shift)) & full).astype(np.int64)
        qv = bv if self_join else ((q >> np.uint64(shift)) & full).astype(np.int64)
        buckets = _Buckets(bv, width)
        earlier = [np.uint64(((1 << w) - 1) << sh) for sh, w in blocks[:b]]

        def keep(i: np.ndarray, j: np.ndarray, earlier=earlier) -> None:
            x = q[i] ^ base[j]
            ok = np.bitwise_count(x) <= radius
            for mask in earlier:  # found in an earlier block already
                ok &= np.bitwise_count(x & mask) > s
            if ok.any():
                i, j = i[ok], j[ok]
                if self_join:
                    i, j = np.minimum(i, j), np.maximum(i, j)
                found.append(np.stack([i, j], axis=1))

        if self_join:  # same block value: pairs inside each bucket, each once
            order, start, count = buckets.order, *buckets.lookup(bv[buckets.order])
            pos = np.arange(n_base, dtype=np.int64)
            after = start + count - pos - 1  # partners later in the same bucket
            for sl in _chunks(n_base, after):
                src, where = _expand(order[sl], pos[sl] + 1, after[sl])
                keep(src, order[where])
        for mask in ([0] if not self_join else []) + list(_masks(width, s)):
            keys = qv ^ mask
            if self_join:  # each unordered pair once: from the side whose value lacks the mask's top bit
                top = 1 << (mask.bit_length() - 1)
                src_all = np.flatnonzero((qv & top) == 0)
                keys = keys[src_all]
            else:
                src_all = np.arange(n_query, dtype=np.int64)
            lo, cnt = buckets.lookup(keys)
            hit = cnt > 0
            src_all, lo, cnt = src_all[hit], lo[hit], cnt[hit]
            for sl in _chunks(len(src_all), cnt):
                src, where = _expand(src_all[sl], lo[sl], cnt[sl])
                keep(src, buckets.order[where])
    if not found:
        return np.empty((0, 2), np.int64)
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def near_pairs(hashes, radius: int) -> np.ndarray:
    """Every pair ``(i, j)``, ``i < j``, of ``hashes`` (uint64) within Hamming distance ``radius``.

    Exact (the same pairs as :func:`brute_force_pairs`), as a ``(k, 2)`` int64 array sorted by
    ``i`` then ``j``. 1M hashes at radius 8: ~1 min and ~0.5 GB on 2 cores (benchmarks/bench_dedup.py).
    """
    return _search(_as_hashes(hashes), None, _check_radius(radius))


def near_pairs_between(queries, hashes, radius: int) -> np.ndarray:
    """Every ``(q, i)`` with ``queries[q]`` within ``radius`` of ``hashes[i]`` (the mirror and crop
    variants of each image against every image's hash), ``(k, 2)`` int64 sorted by ``q`` then ``i``."""
    return _search(_as_hashes(hashes), _as_hashes(queries), _check_radius(radius))


def brute_force_pairs(hashes, radius: int, queries=None, chunk: int = 2048) -> np.ndarray:
    """The reference: every pair compared (``n^2 / 2`` popcounts), in chunks of rows."""
    base = _as_hashes(hashes)
    radius = _check_radius(radius)
    q = base if queries is None else _as_hashes(queries)
    out = []
    for first in range(0, len(q), chunk):
        rows = q[first : first + chunk]
        dist = np.bitwise_count(rows[:, None] ^ base[None, :])
        i, j = np.nonzero(dist <= radius)
        i = i + first
        if queries is None:
            keep = i < j
            i, j = i[keep], j[keep]
        out.append(np.stack([i, j], axis=1).astype(np.int64))
    pairs = np.concatenate(out) if out else np.empty((0, 2), np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
