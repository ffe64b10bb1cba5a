"""Helpers shared by the benchmarks: where the shared photos are, and a best-of-N timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_photos(folder: str = "coco", pattern: str = "*.jpg") -> list[Path]:
    paths = sorted((SHARED_DATA / "photos" / folder).glob(pattern))
    if not paths:
        raise SystemExit(
            f"no photos under {SHARED_DATA / 'photos' / folder}; this benchmark needs ../shared/data"
        )
    return paths


def best_of(fn: Callable[[], object], repeats: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """Fastest time of ``repeats`` runs (the least disturbed by a shared, noisy machine).

    ``clock=time.process_time`` counts this process's CPU time only.
    """
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)
