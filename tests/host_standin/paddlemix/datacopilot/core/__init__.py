"""Stand-in for paddlemix.datacopilot.core, written from the contract page: MMDataset, register."""

from __future__ import annotations

import functools
import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from enum import Enum


class ParallelMode(Enum):
    THREAD = "thread"
    PROCESS = "process"


class SCHEMA(Enum):
    MM = "mm"
    MIX = "mix"


class MMDataset:
    def __init__(self, items=None, schema=SCHEMA.MM):
        self.items = list(items) if items is not None else []
        self.schema = schema

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return MMDataset(self.items[index], self.schema)
        return self.items[index]

    def __add__(self, other):
        return MMDataset(self.items + other.items, self.schema)

    @classmethod
    def from_json(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    @classmethod
    def from_jsonl(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls([json.loads(line) for line in f if line.strip()])

    def export_json(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.items, f)

    def export_jsonl(self, path):
        with open(path, "w", encoding="utf-8") as f:
            for item in self.items:
                f.write(json.dumps(item) + "\n")

    def _run(self, func, max_workers, mode, order):
        pool_cls = ThreadPoolExecutor if mode is ParallelMode.THREAD else ProcessPoolExecutor
        with pool_cls(max_workers=max_workers) as pool:
            return list(pool.map(func, self.items))  # exceptions propagate, as in the host

    def map(self, func, *, max_workers=8, mode=ParallelMode.THREAD, progress=True, order=True):
        return MMDataset(self._run(func, max_workers, mode, order), self.schema)

    def filter(self, func, *, max_workers=8, mode=ParallelMode.THREAD, progress=True, order=True):
        keep = self._run(func, max_workers, mode, order)
        return MMDataset([item for item, k in zip(self.items, keep, strict=True) if k], self.schema)

    def nonempty(self):
        return MMDataset([item for item in self.items if item], self.schema)


def register(cls=MMDataset, force=False):
    def decorator(func):
        @functools.wraps(func)  # the host stores a wrapper, not func itself
        def wraps(*args, **kwargs):
            return func(*args, **kwargs)

        assert force or func.__name__ not in cls.__dict__, f"{func.__name__} already in ({cls.__name__})"
        setattr(cls, func.__name__, wraps)
        return wraps

    return decorator


@register(MMDataset)
def image_ration_filter(dataset, min_ratio=0.333, max_ratio=3.0):
    """The host's aspect-ratio filter (reads the size from the file header)."""
    from PIL import Image

    def ok(item):
        if "image" not in item:
            return True
        with Image.open(item["image"]) as img:
            return min_ratio <= img.width / img.height <= max_ratio

    return dataset.filter(ok)
