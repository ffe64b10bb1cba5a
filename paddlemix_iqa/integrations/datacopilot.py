"""Register batched dataset-level IQA ops on PaddleMIX DataCopilot's ``MMDataset``.

Importing this module registers them when ``paddlemix.datacopilot`` is importable
(and does nothing otherwise); ``register()`` does it explicitly and is idempotent.
Only dataset-level functions (``dataset.iqa_tag(...)``) become methods: item-level
functions stay functions, for ``dataset.map``/``dataset.filter``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..ops.base import ImageOp
from ..ops.metric import MetricFilter

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


def run_batched(
    op: ImageOp,
    items: Sequence[dict],
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 4,
    progress: bool = False,
) -> list[dict | None]:
    """Apply ``op`` to items in batches (decode in threads, one scorer call per batch)."""
    results: list[dict | None] = []
    starts = range(0, len(items), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=op.name, unit="batch")
    for start in starts:
        results.extend(op.process(items[start : start + batch_size], workers=workers))
    return results


def iqa_tag(
    dataset,
    metrics: str | Sequence[str],
    key: str = "image",
    root=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 4,
    progress: bool = True,
    **params: Any,
):
    """Store ``item["__tag_<metric>"]`` for each metric on every item; returns a new dataset of all items.

    Items whose image cannot be read keep ``None`` tags and an ``__iqa_error`` reason.
    """
    items = list(dataset.items)
    for metric in [metrics] if isinstance(metrics, str) else list(metrics):
        op = MetricFilter(metric, key=key, root=root, keep_all=True, name=f"{metric}_tagger", **params)
        run_batched(op, items, batch_size, workers, progress)
    return type(dataset)(items)


def iqa_filter(
    dataset,
    metric: str,
    min_score: float | None = None,
    max_score: float | None = None,
    key: str = "image",
    root=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 4,
    progress: bool = True,
    **params: Any,
):
    """Keep items whose ``metric`` quality is in [min_score, max_score]; returns a new dataset.

    Extra ``params`` go to the op (``min_value``/``max_value`` on the native score,
    ``mode="all"`` for multi-image items) and to the scorer.
    """
    op = MetricFilter(metric, min_score=min_score, max_score=max_score, key=key, root=root, **params)
    kept = [
        item
        for item in run_batched(op, list(dataset.items), batch_size, workers, progress)
        if item is not None
    ]
    return type(dataset)(kept)


def iqa_dedup(dataset, root=None, **params: Any):
    """Drop near-duplicates, keeping the best copy of each group; returns a new dataset.

    ``params`` are the pipeline step's (``keep``, ``radius``, ``mirror``, ``crop``,
    ``min_correlation``, ``tolerance``, ``exact``, ``key``): :class:`paddlemix_iqa.dedup.Dedup`.
    Quality metrics named in ``keep`` are read from the items' ``__tag_<metric>`` (run
    ``iqa_tag`` first); removed items carry ``__iqa_reject = "dedup: duplicate_of: <id> (...)"``.
    """
    from ..dedup import Dedup, dedup_items

    kept, _ = dedup_items(list(dataset.items), Dedup(**params), root=root)
    return type(dataset)(kept)


DATASET_OPS = {"iqa_tag": iqa_tag, "iqa_filter": iqa_filter, "iqa_dedup": iqa_dedup}


def register(force: bool = False) -> list[str]:
    """Add the dataset-level ops to ``MMDataset``; returns the names added. Safe to call twice.

    A name the host (or another plugin) already uses is never overridden unless
    ``force=True``; it is skipped with a warning.
    """
    try:
        from paddlemix.datacopilot.core import MMDataset
        from paddlemix.datacopilot.core import register as host_register
    except ImportError as exc:
        raise ImportError(
            "paddlemix.datacopilot is not importable: install PaddleMIX "
            "(pip install git+https://github.com/PaddlePaddle/PaddleMIX) to register the ops"
        ) from exc
    added = []
    for name, func in DATASET_OPS.items():
        current = getattr(MMDataset, name, None)
        if getattr(current, "__wrapped__", current) is func:  # the host wraps with functools.wraps
            continue
        if current is not None and not force:
            log.warning("MMDataset.%s already exists and is not ours; not overriding it", name)
            continue
        host_register(MMDataset, force=force or current is not None)(func)
        added.append(name)
    return added


def _register_if_available() -> None:
    try:
        register()
    except ImportError:
        log.debug("paddlemix.datacopilot not importable; MMDataset ops not registered")


_register_if_available()
