"""Near-duplicate removal that keeps the best copy (the ``dedup`` pipeline step, ``iqa_dedup``).

``near_pairs(hashes, radius)`` is the exact all-pairs search over 64-bit hashes; ``core`` groups
and chooses the kept copies from signatures and scores; ``step`` holds the step's settings and
the deduplication of items in memory. Heavy pieces (scipy, imagehash) load on first use.
"""

from .core import Candidates, Decisions, find_duplicates, rank_order
from .search import brute_force_pairs, near_pairs, near_pairs_between
from .step import Dedup, dedup_items

__all__ = [
    "Candidates",
    "Decisions",
    "Dedup",
    "brute_force_pairs",
    "dedup_items",
    "find_duplicates",
    "near_pairs",
    "near_pairs_between",
    "rank_order",
]
