"""Run a pipeline config on Ray Data: the runner's own op chain in an actor pool, outputs as the runner writes them.

``paddlemix-iqa run CONFIG --engine ray [--address ADDR] [--num-cpus N]`` (or :func:`run_ray`):

- **Read**: one streaming read task parses the input with the runner's record reader
  (:func:`paddlemix_iqa.pipeline.records.iter_records`; Parquet through pyarrow), on the driver's
  node and with no CPU reserved (a read that waits for a CPU the actors hold never runs). A broken
  line is a ``BadRecord`` exactly as in the local runner, and every record keeps its input index.
  Records travel pickled, so the ops see the very objects the local runner would.
- **Score**: ``map_batches`` over an actor pool (one actor per CPU, ``batch_size`` records a batch);
  each actor builds the chain once (:class:`paddlemix_iqa.pipeline.runner.Chain`: decode once, CPU ops,
  then the neural ops with their model loaded once per actor, batched). Killed actors restart and their
  batch is retried (Ray Data's actor-pool defaults, unbounded ``max_restarts``/``max_task_retries``).
  Blocks are sized to about ``batch_size`` records (:func:`block_bytes`) so the one read feeds every actor.
- **Write**: the driver consumes the results in input order and commits them through the runner's
  :class:`~paddlemix_iqa.pipeline.outputs.RunStore` (JSONL appended, fsync'ed, recorded in SQLite
  with the files' lengths). A record already committed is never committed again, so a retried block
  cannot duplicate a line; a killed run, rerun, skips the committed records (the read task is told
  which) and ends byte-identical to an uninterrupted run, with either engine: both write the same
  state, so a run begun locally can be finished on Ray and back.

The dataset-level ``dedup`` step runs as in the local runner: each actor signs the kept images it
decoded (pHash and friends travel in the results, into the store), and once every record is committed
the driver runs the reduce (:func:`~paddlemix_iqa.pipeline.runner.run_dedup`) on the store's hashes.
Any other dataset-level step is refused with a :class:`~paddlemix_iqa.pipeline.config.ConfigError`
naming it, before anything runs.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..pipeline.config import DEDUP_STEP, ConfigError, PipelineConfig
from ..pipeline.outputs import (
    RecordResult,
    RunStore,
)
from ..pipeline.records import RecordFormatError, count_records, input_format, iter_records
from ..pipeline.runner import Chain, Unread, build_chain, run_pipeline, run_stats

log = logging.getLogger(__name__)

#: input formats by extension: the runner's two, plus Parquet (read with pyarrow)
PARQUET = (".parquet", ".pq")


# --- dataset-level steps ----------------------------------------------------------------------
def dataset_level_steps(config: PipelineConfig, ops: Sequence[Any]) -> list[str]:
    """Names of the steps that need the whole dataset at once and that this engine has no stage for: a
    dataset-level config step other than ``dedup``, or an op that says ``dataset_level = True`` or has no
    batch ``process`` (the actor pool sees one batch at a time)."""
    steps = [s.label or s.name for s in config.steps if s.dataset and s.name != DEDUP_STEP]
    return steps + [
        getattr(op, "name", type(op).__name__)
        for op in ops
        if getattr(op, "dataset_level", False) or not callable(getattr(op, "process", None))
    ]


def refuse_dataset_level(config: PipelineConfig, ops: Sequence[Any]) -> None:
    """Raise a ConfigError naming the dataset-level steps of ``config`` this engine cannot run."""
    names = dataset_level_steps(config, ops)
    if names:
        raise ConfigError(
            f"--engine ray cannot run dataset-level step(s) {', '.join(repr(n) for n in names)} yet (they must "
            "see every record, not one batch); run this config with --engine local, or drop those steps for "
            "the Ray run and apply them to its kept.jsonl afterwards"
        )


# --- reading ----------------------------------------------------------------------------------
def _format(path: Path, fmt: str | None) -> str:
    if fmt is None and path.suffix.lower() in PARQUET:
        return "parquet"
    try:
        return input_format(path, fmt)
    except RecordFormatError as exc:
        raise ConfigError(f"{exc} (or .parquet with --engine ray)") from None


def _entries(path: str, fmt: str) -> Iterator[Any]:
    """Every record of the input, in order, as the local runner reads it (Parquet: one row, one record)."""
    if fmt != "parquet":
        yield from iter_records(path, fmt)
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def _skipping(done: Sequence[tuple[int, int]]):
    """A test ``idx -> already committed`` over sorted, disjoint [first, last] ranges, walked once in order."""
    ranges = iter(done)
    current = next(ranges, None)

    def skip(idx: int) -> bool:
        nonlocal current
        while current is not None and current[1] < idx:
            current = next(ranges, None)
        return current is not None and current[0] <= idx

    return skip


ROW_OVERHEAD = 16  # bytes an Arrow row of (int64, binary) adds to its pickled record: the offset and the idx


def _pickled(record: Any) -> bytes:
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def block_bytes(path: Path, fmt: str, batch_size: int, sample: int = 256) -> int:
    """The size of a block of ``batch_size`` records, from the first ``sample`` records of the input.

    Ray Data merges what one read task yields into blocks of ``DataContext.target_max_block_size``
    (128 MiB by default), and one block goes to one actor: a single streaming read would feed a single
    actor. So the run sets that target to this size, and the read yields a block each time it holds
    more than it (see :func:`_read_blocks`): about ``batch_size`` records a block, one batch per actor task."""
    sizes = []
    for record in _entries(str(path), fmt):
        sizes.append(len(_pickled(record)) + ROW_OVERHEAD)
        if len(sizes) >= sample:
            break
    mean = sum(sizes) / len(sizes) if sizes else 256
    return max(1024, int(mean * batch_size))


def _read_blocks(path: str, fmt: str, target: int, done: Sequence[tuple[int, int]]):
    """The read task: Arrow blocks (idx, pickled record) of just over ``target`` bytes, committed records
    left out. Just over, and under 1.5 times it unless one record is huge: Ray then passes each on as one
    block, neither merged with the next (under the target) nor sliced (over 1.5 times it).

    A file that stops being the format it claims (a JSON array cut short) ends the stream after
    the records read before it, like the local runner; the error is passed on as the last row."""
    import pyarrow as pa

    skip = _skipping(done)
    idxs: list[int] = []
    blobs: list[bytes] = []
    held = 0

    def block():
        nonlocal held
        table = pa.table({"idx": pa.array(idxs, pa.int64()), "record": pa.array(blobs, pa.binary())})
        idxs.clear()
        blobs.clear()
        held = 0
        return table

    try:
        for idx, record in enumerate(_entries(path, fmt)):
            if skip(idx):
                continue
            idxs.append(idx)
            blobs.append(_pickled(record))
            held += len(blobs[-1]) + ROW_OVERHEAD
            if held > target:
                yield block()
    except RecordFormatError as exc:
        idxs.append(-1)  # the stream's end marker: the driver raises it after committing the rest
        blobs.append(pickle.dumps(exc))
    if idxs:
        yield block()


def _records_datasource(path: str, fmt: str, target: int, done: Sequence[tuple[int, int]]):
    """A Ray Datasource of one streaming read task, scheduled on the driver's node (the input need not
    be on the workers' file system; the images must)."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class Records(Datasource):
        @property
        def supports_distributed_reads(self) -> bool:
            return False

        def estimate_inmemory_data_size(self) -> int | None:
            return os.path.getsize(path)

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
            meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=(path,))
            return [ReadTask(lambda: _read_blocks(path, fmt, target, done), meta)]

    return Records()


# --- the actor ----------------------------------------------------------------------------------
class ChainActor:
    """One per worker: the chain built once from the config (models load on first use, once), run on each
    batch. It gets the small config, not the built chain, so its constructor argument is sent inline."""

    def __init__(self, config: PipelineConfig):
        import cv2

        cv2.setNumThreads(1)  # one actor per CPU already
        self.chain = build_chain(config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        entries, tail = [], []
        for idx, blob in zip(batch["idx"].tolist(), batch["record"], strict=True):
            if idx < 0:  # the reader's end-of-input error: passed through untouched
                tail.append((idx, bytes(blob)))
            else:
                entries.append((idx, pickle.loads(blob)))
        finished, alive, loaded = self.chain.run_head(entries) if entries else ([], [], {})
        if alive:
            finished += self.chain.run_tail(alive, loaded)
        finished.sort(key=lambda r: r.idx)
        idxs = [r.idx for r in finished] + [i for i, _ in tail]
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in finished] + [b for _, b in tail]
        out = np.empty(len(blobs), dtype=object)
        out[:] = blobs
        return {"idx": np.array(idxs, dtype=np.int64), "result": out}


def scored_dataset(config: PipelineConfig, actors: int, done: Sequence[tuple[int, int]] = ()):
    """The Ray dataset of one pickled :class:`RecordResult` per input record (columns ``idx``, ``result``),
    in input order when the DataContext preserves order; records in the ``done`` ranges are left out.

    Killed actors are restarted and their batch retried: Ray Data's actor pools default to
    ``max_restarts=-1`` and ``max_task_retries=-1`` (tests/test_ray.py kills one to keep it so)."""
    import ray.data
    from ray.data import ActorPoolStrategy

    fmt = _format(config.input, config.input_format)
    target = block_bytes(config.input, fmt, config.batch_size)
    ray.data.DataContext.get_current().target_max_block_size = target  # the dataset keeps a copy
    source = _records_datasource(str(config.input), fmt, target, done)
    ds = ray.data.read_datasource(source, num_cpus=0, override_num_blocks=1)
    return ds.map_batches(
        ChainActor,
        fn_constructor_args=(config,),
        batch_size=config.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors),
        num_cpus=1,
    )


# --- running ----------------------------------------------------------------------------------
class _Session:
    """``ray.init`` unless Ray is already running in this process; shuts down only what it started."""

    def __init__(self, address: str | None, num_cpus: int | None):
        self.address, self.num_cpus, self.started, self.seconds = address, num_cpus, False, 0.0

    def __enter__(self) -> _Session:
        import ray

        start = time.perf_counter()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.num_cpus
            ray.init(**kwargs)
            self.started = True
        self.seconds = time.perf_counter() - start
        return self

    def cpus(self) -> int:
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import ray

            ray.shutdown()


def run_ray(
    config: PipelineConfig,
    fresh: bool = False,
    progress: bool | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``config`` on Ray; writes and returns what :func:`~paddlemix_iqa.pipeline.run_pipeline`
    does (``<output_dir>/{kept,rejected,scores}.jsonl``, ``run.json``, ``report.html``), plus an ``engine``
    entry. Without ``address`` (and without Ray already running here) a local Ray starts with ``num_cpus``
    (default: the config's ``workers``); the actor pool has one actor per CPU of the cluster, at most
    ``num_cpus`` when given."""
    refuse_dataset_level(config, config.build_ops())
    return run_pipeline(config, fresh=fresh, progress=progress, engine=RayEngine(address, num_cpus))


class RayEngine:
    """The records through a Ray Data actor pool (the runner keeps the state, dedup, run.json, report)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus

    def check_input(self, config: PipelineConfig) -> None:
        _format(config.input, config.input_format)

    def drive(self, config: PipelineConfig, chain: Chain, store: RunStore, resumed: int, progress: bool) -> dict:
        num_cpus = self.num_cpus
        with _Session(self.address, num_cpus if self.address else num_cpus or config.workers) as session:
            actors = min(session.cpus(), num_cpus) if num_cpus else session.cpus()
            stats = _drive(config, store, resumed, actors, progress)
        stats["engine"] = {
            "name": "ray",
            "address": self.address,
            "actors": actors,
            "startup_seconds": session.seconds,
        }
        return stats


def committed_ranges(store: RunStore) -> list[tuple[int, int]]:
    """The committed input indices as sorted [first, last] ranges (one range for a run killed in order)."""
    ranges: list[tuple[int, int]] = []
    for (idx,) in store.db.execute("SELECT idx FROM records ORDER BY idx"):
        if ranges and ranges[-1][1] == idx - 1:
            ranges[-1] = (ranges[-1][0], idx)
        else:
            ranges.append((idx, idx))
    return ranges


def _drive(config, store: RunStore, resumed: int, actors: int, progress: bool) -> dict:
    import warnings

    import ray.data
    from tqdm import tqdm

    # one streaming read feeds the pool: Ray's guess that it is one block is wrong, and so is its warning
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
    context = ray.data.DataContext.get_current()
    before = context.copy()  # put back when the run ends: the caller's own datasets are not ours to tune
    context.execution_options.preserve_order = True  # outputs in input order, as the local runner writes them
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    total = (
        count_records(config.input, config.input_format)
        if progress and config.input.suffix != ".parquet"
        else None
    )
    bar = tqdm(
        total=total, initial=resumed, unit="rec", disable=not progress, mininterval=0.5, dynamic_ncols=True
    )
    start, records, images = time.perf_counter(), 0, 0
    unread = Unread()
    unsaved: list[RecordResult] = []
    last_commit = start
    ended: RecordFormatError | None = None
    try:
        ds = scored_dataset(config, actors, committed_ranges(store) if resumed else ())
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            results, ended = _results(batch, ended)
            fresh = _not_committed(store, results, {r.idx for r in unsaved})
            unsaved.extend(fresh)
            records += len(fresh)
            images += sum(len(r.rows) for r in fresh)
            unread.count(fresh, images)
            bar.update(len(fresh))
            if time.perf_counter() - last_commit >= config.commit_seconds or len(unsaved) >= 4096:
                store.commit(unsaved)
                unsaved.clear()
                last_commit = time.perf_counter()
        store.commit(unsaved)
    finally:
        bar.close()
        ray.data.DataContext._set_current(before)
    if ended is not None:
        raise ended
    return run_stats(records, images, unread, start)


def _results(batch: dict[str, Any], ended: RecordFormatError | None):
    results = []
    for idx, blob in zip(batch["idx"].tolist(), batch["result"], strict=True):
        if idx < 0:
            ended = pickle.loads(blob)
        else:
            results.append(pickle.loads(blob))
    return results, ended


def _not_committed(store: RunStore, results: Iterable[RecordResult], unsaved: set[int]) -> list[RecordResult]:
    """The results whose records are neither in the store nor waiting for the next commit (a block
    delivered twice adds nothing)."""
    results = list(results)
    if not results:
        return []
    done = store.done_in(min(r.idx for r in results), max(r.idx for r in results))
    seen = set(unsaved)
    out = []
    for r in results:
        if r.idx not in done and r.idx not in seen:
            seen.add(r.idx)
            out.append(r)
    return out
