"""Host-compatible item functions with the exact signatures of PaddleMIX DataCopilot's IQA ops.

``dataset.filter(functools.partial(iqa_brisque, min_score=0.6))`` works as with the
host, but batched scorers, lazy weights and bad-image handling come from this package.
:class:`HostOp` runs one of the host's own dataset-level ops inside a pipeline chain; it
lives here (ops layer) because both the config (which builds it) and the runner use it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..io import ImageLoadError, resolve_path
from .base import REJECT_KEY, TAG_PREFIX
from .metric import MetricFilter


@functools.lru_cache(maxsize=64)
def _op(metric: str, min_score: float, max_score: float, key: str) -> MetricFilter:
    return MetricFilter(metric, min_score=min_score, max_score=max_score, key=key, name=f"iqa_{metric}")


def _keep(metric: str, item: dict[str, Any], min_score: float, max_score: float, key: str) -> bool:
    return _op(metric, float(min_score), float(max_score), key)(item) is not None


def iqa_brisque(
    item: dict[str, Any], min_score: float = 0.0, max_score: float = 1.0, key: str = "image"
) -> bool:
    """Keep when BRISQUE quality ``(100 - clip(s, 0, 100)) / 100`` is in [min_score, max_score]."""
    return _keep("brisque", item, min_score, max_score, key)


def iqa_arniqa(
    item: dict[str, Any], min_score: float = 0.0, max_score: float = 1.0, key: str = "image"
) -> bool:
    """Keep when the ARNIQA quality (scaled to [0, 1] by the regressor's dataset range) is in range."""
    return _keep("arniqa", item, min_score, max_score, key)


# --- PaddleMIX DataCopilot dataset-level ops in a pipeline chain ------------------------------
class HostOp:
    """A PaddleMIX DataCopilot dataset-level op (``dataset.<name>(**params)``) run on each batch.

    The host opens ``item["image"]`` relative to the current directory, so it gets
    shallow copies whose image paths are resolved against the dataset root; what
    it returns is mapped back to the original records (a filter keeps a subset of
    the same objects; a map returns one result per record, falsy = dropped).
    """

    needs_pixels = False
    neural = False
    decode_side = None
    image_key = "image"

    def __init__(self, name: str, params: dict[str, Any], root: str | None = None):
        self.name = self.metric = name
        self.params = dict(params)
        self.root = root

    def key(self) -> str:
        return TAG_PREFIX + self.metric

    def _resolved(self, item: dict) -> dict:
        """A copy with image paths joined to the root. Only joined: the runner has already rejected
        records outside image_root unless the pipeline allows them, and an allowed path left
        unjoined would be read relative to the current directory."""
        copy = dict(item)
        for field in ("image", "images"):
            value = item.get(field)
            try:
                if isinstance(value, str):
                    copy[field] = resolve_path(value, self.root, allow_outside_root=True)
                elif isinstance(value, list):
                    copy[field] = [
                        resolve_path(v, self.root, allow_outside_root=True) if isinstance(v, str) else v
                        for v in value
                    ]
            except ImageLoadError:
                pass
        return copy

    def _run(self, items: Sequence[dict]) -> list[dict | None]:
        from paddlemix.datacopilot.core import MMDataset

        copies = [self._resolved(item) for item in items]
        out = getattr(MMDataset(copies), self.name)(**self.params)
        returned = list(getattr(out, "items", out))
        reason = (
            f"{self.name}: dropped by PaddleMIX op ({', '.join(f'{k}={v}' for k, v in self.params.items())})"
        )
        if len(returned) == len(copies):  # a map (or a filter that kept everything)
            results = []
            for item, copy, new in zip(items, copies, returned, strict=True):
                if not new:
                    item[REJECT_KEY] = reason
                    results.append(None)
                elif new is copy:
                    results.append(item)
                else:
                    for field in ("image", "images"):
                        if field in item and new.get(field) == copy.get(field):
                            new[field] = item[field]
                    results.append(new)
            return results
        kept = {id(x) for x in returned}
        if not kept <= {id(c) for c in copies}:
            raise RuntimeError(
                f"PaddleMIX op {self.name!r} returned records that cannot be traced to its input"
            )
        for item, copy in zip(items, copies, strict=True):
            if id(copy) not in kept:
                item[REJECT_KEY] = reason
        return [item if id(copy) in kept else None for item, copy in zip(items, copies, strict=True)]

    def process(self, items: Sequence[dict], loaded=None, workers: int = 1) -> list[dict | None]:
        """Never raises: a batch that fails is retried record by record; a failing record is dropped."""
        try:
            return self._run(items)
        except Exception:  # noqa: BLE001 - the host raises on bad data; one record must not end the run
            if len(items) > 1:
                return [r for item in items for r in self.process([item])]
        item = items[0]
        try:
            return self._run([item])
        except Exception as exc:  # noqa: BLE001
            item[REJECT_KEY] = f"{self.name}: host_error: {type(exc).__name__}: {exc}"
            return [None]

    def __repr__(self) -> str:
        return f"HostOp({self.name!r}, {self.params!r})"
