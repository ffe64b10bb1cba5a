"""The service's scoring engine: the pipeline's own :class:`~paddlemix_iqa.pipeline.runner.Chain`.

A request's images become one record each (``{"id", "image": path}``) and go through
the chain exactly as ``paddlemix-iqa run`` sends them, so verdicts, reasons and scores
are the run's. The chain's CPU part (decode plus the weight-free ops) runs in a
process pool, one image per task, so one slow image holds one worker while the
others go on; the neural part (``pulc_*``, ``arniqa``) runs in this process on one
thread, batched across requests (up to ``batch_images`` images or ``batch_wait``
seconds, whichever comes first). Every model loads once, before ``ready`` is set. A
``dedup`` step is applied over the images of each request (:func:`dedup_request`).

The engine reads only the paths it is given: the server confines them to its root
before they get here (the chain is built with ``allow_outside_root`` because paths
arrive resolved, symlinks included, and spooled uploads live outside the root).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dedup.step import Dedup
from ..ops.base import REJECT_KEY
from ..pipeline.config import PipelineConfig
from ..pipeline.outputs import RecordResult
from ..pipeline.runner import Chain, init_worker, pool_context, work_batch

log = logging.getLogger(__name__)

Entry = tuple[int, Any]
#: score-row keys that describe the record, not a measurement
_ROW_KEYS = ("index", "id", "image")
#: how long a worker may take to start and score the warm-up image
WARMUP_SECONDS = 300.0


class EngineUnavailable(RuntimeError):
    """The engine cannot score now (still loading, failed to load, or its workers died)."""


@dataclass
class Outcome:
    """One image's answer: ``kept`` or ``rejected``, the rejecting step's reason, the scores it got."""

    verdict: str
    reason: str | None
    scores: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "scores": self.scores}


def outcome(result: RecordResult) -> Outcome:
    """The answer for one record, from the same fields ``kept.jsonl``/``rejected.jsonl``/``scores.jsonl`` hold."""
    row = result.rows[0] if result.rows else {}
    scores = {k: v for k, v in row.items() if k not in _ROW_KEYS}
    if result.kept:
        return Outcome("kept", None, scores)
    reason = result.record.get(REJECT_KEY) if isinstance(result.record, dict) else None
    if not reason:
        reason = f"{result.op}: {result.reason}" if result.reason else str(result.op)
    return Outcome("rejected", str(reason), scores)


def dedup_request(dedup: Dedup, results: Sequence[RecordResult]) -> None:
    """The config's ``dedup`` step over one request's kept images, as ``run`` applies it to a dataset
    holding just these images: from the signatures the chain made (the run's), a duplicate becomes
    rejected with the step's reason, naming the kept image by its index in the request.

    The decision is :func:`paddlemix_iqa.dedup.step.decide_signed` on the signatures the chain
    already made, the run's."""
    import numpy as np

    from ..dedup.step import decide_signed

    signed = [r for r in results if r.kept and r.signature]
    if len(signed) < 2:
        return
    decisions = decide_signed(dedup, [r.record for r in signed], [r.signature for r in signed])
    for i in np.flatnonzero(decisions.duplicate_of >= 0).tolist():
        result, kept = signed[i], signed[int(decisions.duplicate_of[i])]
        result.kept = False
        result.record[REJECT_KEY] = f"{dedup.name}: {decisions.reason(i, kept.record.get('id'))}"


# --- worker side -------------------------------------------------------------------------
_BARRIER: Any = None


def _init(blob: bytes, server_pid: int, barrier: Any, warm: str | None) -> None:
    """Worker start: the runner's initializer (one cv2 thread, die with the server), then score the
    warm-up image so every lazily loaded model of the CPU part is in memory before ``ready``."""
    global _BARRIER
    chain: Chain = pickle.loads(blob)
    init_worker(chain, server_pid)
    _BARRIER = barrier
    if warm:
        chain.run_head([(0, {"id": "warm-up", "image": warm})])


def _rendezvous(timeout: float) -> int:
    """Block until every worker has started (and warmed up): each waits here, so each task has its own."""
    _BARRIER.wait(timeout)
    return os.getpid()


# --- dynamic batching of the neural part ---------------------------------------------------
class Batcher:
    """Collects survivors of the CPU part from concurrent requests into one call of ``run``.

    A batch closes at ``max_images`` images or ``max_wait`` seconds after its first request,
    whichever comes first; ``run`` (the chain's neural tail) runs on one thread, so a model
    never competes with itself.
    """

    def __init__(
        self,
        run: Callable[[list[Entry], dict], list[RecordResult]],
        max_images: int,
        max_wait: float,
        thread: ThreadPoolExecutor,
        observe: Callable[[int], None] | None = None,
    ):
        self.run, self.max_images, self.max_wait = run, max_images, max_wait
        self.thread, self.observe = thread, observe
        self.queue: asyncio.Queue = asyncio.Queue()
        self.more = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, alive: list[Entry], loaded: dict) -> list[RecordResult]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((alive, loaded, future))
        self.more.set()
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self.queue.get()]
            n = len(group[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_images:
                if self.queue.empty():
                    self.more.clear()
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        await asyncio.wait_for(self.more.wait(), left)
                    except asyncio.TimeoutError:
                        break
                    continue
                group.append(self.queue.get_nowait())
                n += len(group[-1][0])
            await self._run(loop, group)

    async def _run(self, loop: asyncio.AbstractEventLoop, group: list) -> None:
        group = [g for g in group if not g[2].done()]  # a request that timed out meanwhile
        entries: list[Entry] = []
        owners: list[tuple[int, int]] = []
        loaded: dict = {}
        for g, (alive, images, _) in enumerate(group):
            for idx, item in alive:
                owners.append((g, idx))
                entries.append((len(entries), item))
            loaded.update(images)
        if not entries:
            return
        if self.observe:
            self.observe(len(entries))
        try:
            results = await loop.run_in_executor(self.thread, self.run, entries, loaded)
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, the loop goes on
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        mine: list[list[RecordResult]] = [[] for _ in group]
        for r in results:
            g, r.idx = owners[r.idx]
            mine[g].append(r)
        for (_, _, future), done in zip(group, mine, strict=True):
            if not future.done():
                future.set_result(done)

    def close(self) -> None:
        if self.task:
            self.task.cancel()


# --- the engine --------------------------------------------------------------------------
class Engine:
    """Scores lists of confined paths with a config's chain; ``start()`` loads everything once."""

    def __init__(
        self,
        config: PipelineConfig,
        root: str | os.PathLike,
        workers: int | None = None,
        batch_images: int = 16,
        batch_wait: float = 0.01,
        observe_batch: Callable[[int], None] | None = None,
    ):
        config = config.model_copy()
        config.allow_outside_root = True  # paths arrive confined and resolved (see the module docstring)
        self.ops = config.build_ops()  # locates weights: a missing model fails here, before listening
        self.dedup = config.build_dedup()  # the dataset-level step, applied over each request's images
        self.chain = Chain(self.ops, root, allow_outside_root=True, signer=self.dedup)
        self.root = Path(root)
        self.workers = workers or config.workers
        self.batch_images, self.batch_wait = batch_images, batch_wait
        self.observe_batch = observe_batch
        self.state, self.error = "loading", None
        self.pool: ProcessPoolExecutor | None = None
        self.worker_pids: list[int] = []
        self.batcher: Batcher | None = None
        self._blob = pickle.dumps(self.chain)  # before any model loads here: workers load their own
        self._lock = threading.Lock()
        #: the one thread that loads and runs the neural part (a predictor is never shared between threads)
        self.neural_thread = ThreadPoolExecutor(1, thread_name_prefix="iqa-neural")
        self._warm_dir = tempfile.TemporaryDirectory(prefix="paddlemix-iqa-warm-")
        self._warm = _warm_image(Path(self._warm_dir.name))

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def describe(self) -> dict[str, Any]:
        return {
            "ops": [op.name for op in self.ops],
            "dedup": None if self.dedup is None else f"{self.dedup.name}: within each request",
            "neural_ops": [op.name for op in self.chain.tail],
            "workers": self.workers,
            "worker_pids": self.worker_pids,
            "decode_side": self.chain.decode_side,
        }

    def start(self) -> None:
        """Start the workers (each loads and warms the CPU part) and load the neural part here; blocking."""
        try:
            self.pool = self._new_pool()
            if self.chain.tail:  # load every model of the neural part once, on the thread that runs it
                self.neural_thread.submit(self._warm_tail).result()
            self.state = "ready"
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log, the server stays up
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("loading the models failed: %s", self.error)

    def _warm_tail(self) -> None:
        loaded: dict = {}
        item = {"id": "warm-up", "image": str(self._warm)}
        self.chain.decode(item, loaded)
        self.chain.run_tail([(0, item)], loaded)

    def _new_pool(self) -> ProcessPoolExecutor:
        ctx = pool_context()
        barrier = ctx.Barrier(self.workers)
        pool = ProcessPoolExecutor(
            self.workers,
            ctx,
            initializer=_init,
            initargs=(self._blob, os.getpid(), barrier, str(self._warm)),
        )
        try:
            started = [pool.submit(_rendezvous, WARMUP_SECONDS) for _ in range(self.workers)]
            pids = {f.result(timeout=WARMUP_SECONDS + 10) for f in started}
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        log.info("%d scoring workers ready (pids %s)", len(pids), sorted(pids))
        self.worker_pids = sorted(pids)
        return pool

    def start_batcher(self) -> None:
        """On the server's event loop: the neural part's batcher (none when the chain has no neural op)."""
        if self.chain.tail and self.batcher is None:
            self.batcher = Batcher(
                self._run_tail, self.batch_images, self.batch_wait, self.neural_thread, self.observe_batch
            )
            self.batcher.start()

    def _run_tail(self, alive: list[Entry], loaded: dict) -> list[RecordResult]:
        return self.chain.run_tail(alive, loaded)

    async def score(self, paths: Sequence[str]) -> list[Outcome]:
        """Verdicts for confined, resolved paths, in order (cancellable: pending images are dropped)."""
        if not self.ready or self.pool is None:
            raise EngineUnavailable(self.error or "the models are still loading")
        pool = self.pool
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Future] = []
        try:
            for i, p in enumerate(paths):
                tasks.append(loop.run_in_executor(pool, work_batch, [(i, {"id": str(i), "image": p})]))
            heads = await asyncio.gather(*tasks)
        except BrokenProcessPool:
            for t in tasks:
                t.cancel()
            # replaced in the background: starting workers takes longer than a request may wait
            threading.Thread(target=self._replace_pool, args=(pool,), name="iqa-restart", daemon=True).start()
            raise EngineUnavailable("a scoring worker died; the workers are restarting, retry") from None
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        finished: list[RecordResult] = []
        alive: list[Entry] = []
        loaded: dict = {}
        for done, survivors, images in heads:
            finished += done
            alive += survivors
            loaded.update(images)
        if alive:
            assert self.batcher is not None, "start_batcher() was not called"
            finished += await self.batcher.submit(alive, loaded)
        finished.sort(key=lambda r: r.idx)
        if self.dedup is not None:
            dedup_request(self.dedup, finished)
        return [outcome(r) for r in finished]

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self.pool is not broken or self.state != "ready":
                return  # another request already replaced it (or is replacing it)
            log.error("a scoring worker died; restarting the pool")
            self.state = "loading"
            broken.shutdown(wait=False, cancel_futures=True)
            try:
                self.pool = self._new_pool()
                self.state = "ready"
            except Exception as exc:  # noqa: BLE001
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.batcher:
            self.batcher.close()
        self.neural_thread.shutdown(wait=False, cancel_futures=True)
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self._warm_dir.cleanup()


def _warm_image(folder: Path) -> Path:
    """A textured 640x480 JPEG (not flat, so every scorer computes) for the warm-up."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = (127 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0))[..., None] + rng.normal(0, 8, (480, 640, 3))
    path = folder / "warm-up.jpg"
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path
