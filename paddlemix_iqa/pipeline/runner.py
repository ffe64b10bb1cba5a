"""Run a validated pipeline over a stream of records: decode once, chain ops, commit per batch, resume.

Each batch of records is decoded once, at the largest size any op of the chain
needs (header only when no op needs pixels), and the same ``loaded`` mapping is
passed to every op, so five metrics cost one decode. An op that drops a record
ends its chain.

Parallelism: with ``workers > 1`` batches go to a process pool that runs the
chain up to its first neural op (decode plus the CPU ops); the neural ops
(``arniqa``, ``pulc_*``) and everything after them run batched in the main
process on the images the workers decoded, so a model is loaded once and never
competes with itself for the 2 cores. Results are committed in input order.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..io import DecodedImage, ImageLoadError, decode_or_error, resolve_path
from ..ops.base import ERROR_KEY, REJECT_KEY, TAG_PREFIX, ImageOp, image_refs
from ..ops.host import HostOp
from .config import ConfigError, PipelineConfig
from .outputs import (
    OWNED,
    OutputLock,
    RecordResult,
    RunRefused,
    RunStore,
    atomic_write,
    dumps,
    input_digest,
    refuse_overwriting,
)
from .records import BadRecord, RecordFormatError, count_records, input_format, iter_records

log = logging.getLogger(__name__)

Entry = tuple[int, Any]  # (input index, record)


def op_thresholds(op: Any) -> dict[str, Any]:
    """The report's histogram lines for an op, from its own ``thresholds()`` (a tagger, which
    rejects nothing, and a host op, which says nothing, draw none)."""
    says = getattr(op, "thresholds", None)
    bounds = {} if getattr(op, "keep_all", False) or not callable(says) else says()
    quality = getattr(op, "quality_thresholds", frozenset())
    bounds = {k: v for k, v in bounds.items() if k not in getattr(op, "unplotted_thresholds", ())}
    lines = [
        {"label": f"{k}={v:g}", "x": float(v), "scale": "quality" if k in quality else "value"}
        for k, v in bounds.items()
        if v is not None
    ]
    return {"op": op.name, "metric": op.metric, "lines": lines}


# --- the chain ---------------------------------------------------------------------------
#: Decoded pixels one worker holds at once for a batch (bytes). A batch of 24-MP photos decoded
#: whole is 2 GB; past this budget the batch is run through the ops in parts.
PIXEL_BUDGET = 256 * 2**20


class Chain:
    """The ops of a pipeline, split at the first neural op; picklable (sent once to each worker)."""

    def __init__(
        self,
        ops: Sequence[ImageOp],
        root: str | os.PathLike,
        allow_outside_root: bool = False,
        pixel_budget: int = PIXEL_BUDGET,
    ):
        self.ops = list(ops)
        self.root = os.fspath(root)
        self.allow_outside_root = allow_outside_root
        self.pixel_budget = pixel_budget
        split = next((i for i, op in enumerate(self.ops) if op.neural), len(self.ops))
        self.head, self.tail = self.ops[:split], self.ops[split:]
        pixel_ops = [op for op in self.ops if op.needs_pixels]
        self.needs_pixels = bool(pixel_ops)
        sides = [op.decode_side for op in pixel_ops]
        self.decode_side = None if not sides or any(s is None for s in sides) else max(sides)
        self.keys = sorted({op.image_key for op in self.ops if not isinstance(op, HostOp)})
        #: the tags this run writes: only these become score rows, and an input cannot preset them
        self.metrics = {op.metric for op in self.ops}

    def resolve(self, ref: Any) -> str:
        return resolve_path(ref, self.root, allow_outside_root=self.allow_outside_root)

    def decode(self, item: dict, loaded: dict[str, DecodedImage | ImageLoadError]) -> int:
        """Decode each image of ``item`` not in ``loaded`` yet, once, at the chain's size (or only
        probe it), into ``loaded``; returns the bytes of pixels added."""
        added = 0
        for key in self.keys:
            for ref in image_refs(item, key):
                try:
                    path = self.resolve(ref)
                except ImageLoadError:
                    continue  # the op reports it
                if path not in loaded:
                    image = decode_or_error(path, max_side=self.decode_side, pixels=self.needs_pixels)
                    loaded[path] = image
                    added += image.pixels.nbytes if isinstance(image, DecodedImage) else 0
        return added

    def admit(self, idx: int, record: Any) -> RecordResult | None:
        """Reject what must not reach an op (a broken input line, an image outside image_root);
        strip keys only the run may write, so a record cannot forge a decision or a score."""
        if isinstance(record, BadRecord):
            raw = {"__iqa_record": record.raw, "__iqa_line": record.line, REJECT_KEY: record.reason}
            return RecordResult(idx, raw, False, BadRecord.OP, record.why)
        for key in [k for k in record if self._reserved(k)]:
            del record[key]
        if not self.allow_outside_root:
            for ref in _all_refs(record, {"image", "images", *self.keys}):
                try:
                    self.resolve(ref)
                except ImageLoadError as exc:
                    if exc.code == "outside_image_root":
                        record[REJECT_KEY] = f"input: {exc.reason}"
                        rows = self.score_rows(idx, record)
                        return RecordResult(idx, record, False, "input", exc.reason, rows)
        return None

    def _reserved(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        if key.startswith("__iqa_"):
            return True
        tag = key[len(TAG_PREFIX) :].removesuffix("_raw") if key.startswith(TAG_PREFIX) else None
        return tag in self.metrics

    def run_head(self, batch: Sequence[Entry]) -> tuple[list[RecordResult], list[Entry], dict]:
        """Decode and apply the CPU part; returns finished results, survivors and (if needed) their images.

        Records are decoded and judged in parts of at most ``pixel_budget`` decoded bytes."""
        finished, alive = [], []
        for idx, record in batch:
            result = self.admit(idx, record)
            if result is None:
                alive.append((idx, record))
            else:
                finished.append(result)
        survivors, images = [], {}
        for part, loaded in self._parts(alive):
            done, kept = self.apply(self.head, part, loaded)
            finished += done
            survivors += kept
            if self.tail:
                wanted = {path for _, item in kept for path in self._paths(item)}
                images.update({p: v for p, v in loaded.items() if p in wanted})
        if not self.tail:
            return finished + [self.keep(idx, item) for idx, item in survivors], [], {}
        return finished, survivors, images

    def _parts(self, alive: list[Entry]) -> Iterator[tuple[list[Entry], dict]]:
        part: list[Entry] = []
        loaded: dict[str, DecodedImage | ImageLoadError] = {}
        held = 0
        for entry in alive:
            held += self.decode(entry[1], loaded)
            part.append(entry)
            if held >= self.pixel_budget:
                yield part, loaded
                part, loaded, held = [], {}, 0
        if part:
            yield part, loaded

    def _paths(self, item: dict) -> Iterator[str]:
        for ref in _all_refs(item, self.keys):
            try:
                yield self.resolve(ref)
            except ImageLoadError:
                continue

    def run_tail(self, alive: list[Entry], loaded: dict) -> list[RecordResult]:
        done, alive = self.apply(self.tail, alive, loaded)
        return done + [self.keep(idx, item) for idx, item in alive]

    def apply(
        self, ops: Sequence[Any], alive: list[Entry], loaded: dict
    ) -> tuple[list[RecordResult], list[Entry]]:
        """Run ops in order over the surviving records; the first op that drops a record ends its chain."""
        finished = []
        for op in ops:
            if not alive:
                break
            outs = op.process([item for _, item in alive], loaded=loaded)
            survivors = []
            for (idx, item), out in zip(alive, outs, strict=True):
                if out is None:
                    reason = str(item.get(REJECT_KEY) or f"{op.name}: dropped")
                    name, _, why = reason.partition(": ")
                    finished.append(RecordResult(idx, item, False, name, why, self.score_rows(idx, item)))
                else:
                    survivors.append((idx, out))
            alive = survivors
        return finished, alive

    def keep(self, idx: int, item: dict) -> RecordResult:
        return RecordResult(idx, item, True, rows=self.score_rows(idx, item))

    def score_rows(self, idx: int, item: dict) -> list[dict[str, Any]]:
        """One row per image: native value of each metric this chain tagged (and its quality when it has one)."""
        refs = image_refs(item, "image")
        tags = [TAG_PREFIX + m for m in sorted(self.metrics) if TAG_PREFIX + m in item]
        rows = []
        for pos, ref in enumerate(refs):
            row: dict[str, Any] = {
                "index": idx,
                "id": item.get("id"),
                "image": ref if isinstance(ref, str) else str(ref),
            }
            for key in tags:
                metric = key[len(TAG_PREFIX) :]
                value, raw = _nth(item[key], pos), _nth(item.get(key + "_raw"), pos)
                if key + "_raw" in item:
                    row[metric], row[f"{metric}_quality"] = raw, value
                else:
                    row[metric] = value
            if item.get(ERROR_KEY) and all(row.get(k[len(TAG_PREFIX) :]) is None for k in tags):
                row["error"] = item[ERROR_KEY]
            rows.append(row)
        return rows


def _all_refs(item: dict, keys: Iterable[str]) -> Iterator[Any]:
    """The path-like image references under ``keys`` (what resolve_path can judge)."""
    for key in keys:
        for ref in image_refs(item, key):
            if isinstance(ref, (str, os.PathLike, dict)):
                yield ref


def _nth(value: Any, pos: int) -> Any:
    return value[pos] if isinstance(value, list) and pos < len(value) else value


# --- worker processes --------------------------------------------------------------------
_CHAIN: Chain | None = None


def _init_worker(chain: Chain, run_pid: int) -> None:
    global _CHAIN
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    _exit_with(run_pid)
    _CHAIN = chain


def _exit_with(run_pid: int) -> None:
    """End this worker when the run's process dies, even by SIGKILL (no cleanup runs there).

    A forkserver worker's parent is the fork server, not the run, so PR_SET_PDEATHSIG
    alone is not enough: a daemon thread also waits on the run's pid (a pidfd, or polling).
    """
    import threading

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        try:
            fd = os.pidfd_open(run_pid)
            select.select([fd], [], [])
        except (AttributeError, OSError):  # not Linux >= 5.3: poll
            while True:
                try:
                    os.kill(run_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-run", daemon=True).start()


def _work(batch: list[Entry]):
    assert _CHAIN is not None
    return _CHAIN.run_head(batch)


def _pool_context():
    """Forkserver where available: forking a parent whose OpenCV/BLAS thread pools are running can deadlock."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _Inline:
    """The executor interface, run in this process (workers = 1)."""

    def __init__(self, chain: Chain):
        self.chain = chain

    def submit(self, fn, batch) -> Future:
        future: Future = Future()
        future.set_result(self.chain.run_head(batch))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


# --- running -----------------------------------------------------------------------------
def _batches(config: PipelineConfig, store: RunStore) -> Iterator[list[Entry]]:
    """Input records in batches, leaving out those already committed by an earlier (killed) run."""
    batch: list[Entry] = []

    def todo(batch: list[Entry]) -> list[Entry]:
        done = store.done_in(batch[0][0], batch[-1][0])
        return [e for e in batch if e[0] not in done]

    try:
        for idx, record in enumerate(iter_records(config.input, config.input_format)):
            batch.append((idx, record))
            if len(batch) == config.batch_size:
                if rest := todo(batch):
                    yield rest
                batch = []
    except RecordFormatError:  # reading stops here: hand over the records read before it first
        if batch and (rest := todo(batch)):
            yield rest
        raise
    if batch and (rest := todo(batch)):
        yield rest


def clear_run(out_dir: Path) -> None:
    """Remove a previous run's state and outputs (``--fresh``)."""
    for name in OWNED:
        (out_dir / name).unlink(missing_ok=True)


def run_pipeline(config: PipelineConfig, fresh: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run (or resume) ``config``; returns the run summary also written to ``<output_dir>/run.json``.

    The output directory is locked for the whole run; the input is never one of its outputs.
    """
    if not config.input.is_file():
        raise ConfigError(f"input {config.input} does not exist or is not a regular file")
    try:
        input_format(config.input, config.input_format)
    except RecordFormatError as exc:
        raise ConfigError(str(exc)) from None
    out_dir = config.output_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output_dir {out_dir}: {exc.strerror or exc}") from None
    with OutputLock(out_dir):
        refuse_overwriting(config.input, out_dir, fresh)
        if fresh:
            clear_run(out_dir)
        try:
            summary = _run_locked(config, out_dir, progress)
        except RecordFormatError as exc:  # what was read before the bad part stays committed
            raise ConfigError(f"{exc}; the records before it were processed") from None
    return summary


def _run_locked(config: PipelineConfig, out_dir: Path, progress: bool | None) -> dict[str, Any]:
    ops = config.build_ops()
    chain = Chain(ops, config.image_root, allow_outside_root=config.allow_outside_root)
    digest = input_digest(config.input)
    store = RunStore(out_dir)
    try:
        _check_same_work(store, config, digest)
        store.open_outputs()
        resumed = store.count()
        if resumed:
            log.info("resuming %s: %d records already done", out_dir, resumed)
        stats = _drive(config, chain, store, resumed, config.progress if progress is None else progress)
        summary = {
            "config": config.to_dict(),
            "ops": [op_thresholds(op) for op in ops],
            "decode_side": chain.decode_side,
            "counts": store.counts(),
            "resumed_from": resumed,
            **stats,
        }
    finally:
        store.close()
    atomic_write(out_dir / "run.json", dumps(summary) + "\n")
    if config.report:
        from .report import write_report

        summary["report"] = str(write_report(out_dir))
    return summary


def _check_same_work(store: RunStore, config: PipelineConfig, digest: str) -> None:
    """A resumed run continues only the same config over the same input bytes."""
    fresh_hint = "pass --fresh to start over (discarding its outputs) or choose another output_dir"
    previous = store.get("fingerprint")
    if previous not in (None, config.fingerprint()):
        raise RunRefused(f"{store.dir} holds a run of a different config; {fresh_hint}")
    before = store.get("input_digest")
    if before not in (None, digest):
        size, _, sha = before.partition(":")
        now_size, _, now_sha = digest.partition(":")
        raise RunRefused(
            f"input {config.input} changed since the run in {store.dir} began "
            f"({size} bytes, sha256 {sha[:12]}... then; {now_size} bytes, sha256 {now_sha[:12]}... now), "
            f"so resuming would mix two inputs; {fresh_hint}"
        )
    store.set("fingerprint", config.fingerprint())
    store.set("input_digest", digest)


def _drive(config: PipelineConfig, chain: Chain, store: RunStore, resumed: int, progress: bool) -> dict:
    from tqdm import tqdm

    total = count_records(config.input, config.input_format) if progress else None  # a pass over the input
    bar = tqdm(
        total=total, initial=resumed, unit="rec", disable=not progress, mininterval=0.5, dynamic_ncols=True
    )
    executor: Any = (
        ProcessPoolExecutor(config.workers, _pool_context(), initializer=_init_worker, initargs=(chain, os.getpid()))
        if config.workers > 1
        else _Inline(chain)
    )
    pending: deque[Future] = deque()
    window = 2 * config.workers
    start, records, images = time.perf_counter(), 0, 0
    unsaved: list[RecordResult] = []  # results waiting for the next commit (fsync is costly: group them)
    last_commit = start

    def save() -> None:
        nonlocal last_commit
        store.commit(unsaved)
        unsaved.clear()
        last_commit = time.perf_counter()

    unread = _Unread()

    def finish(future: Future) -> None:
        nonlocal records, images
        finished, alive, loaded = future.result()
        if alive:
            finished += chain.run_tail(alive, loaded)
        finished.sort(key=lambda r: r.idx)
        unsaved.extend(finished)
        if time.perf_counter() - last_commit >= config.commit_seconds or len(unsaved) >= 4096:
            save()
        records += len(finished)
        images += sum(len(r.rows) for r in finished)
        unread.count(finished, images)
        bar.update(len(finished))
        bar.set_postfix_str(f"{images / max(time.perf_counter() - start, 1e-9):.1f} img/s", refresh=False)

    try:
        try:
            for batch in _batches(config, store):
                pending.append(executor.submit(_work, batch))
                while len(pending) >= window:
                    finish(pending.popleft())
        except RecordFormatError:  # what was read before the bad part is processed and committed
            while pending:
                finish(pending.popleft())
            save()
            raise
        while pending:
            finish(pending.popleft())
        save()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
    elapsed = time.perf_counter() - start
    return {
        "processed": records,
        "images": images,
        "images_unreadable": unread.n,
        "unreadable_example": unread.example,
        "seconds": round(elapsed, 3),
        "images_per_second": round(images / elapsed, 2) if elapsed > 0 else None,
    }


class _Unread:
    """Images no op could read; warns once when most of the first ones are missing (a wrong image_root)."""

    FIRST = 32  # images looked at before judging

    def __init__(self):
        self.n, self.missing, self.example, self.warned = 0, 0, None, False

    def count(self, results: Sequence[RecordResult], seen: int) -> None:
        for row in (row for r in results for row in r.rows):
            if not any(v is not None for k, v in row.items() if k not in ("index", "id", "image", "error")):
                self.n += 1
                error = str(row.get("error") or "")
                self.example = self.example or error or row.get("image")
                self.missing += "missing" in error
        if not self.warned and seen >= self.FIRST:
            self.warned = True
            if self.missing > seen // 2:
                log.warning(
                    "%d of the first %d images are missing (%s): is image_root right?",
                    self.missing, seen, self.example,
                )  # fmt: skip


def resolve_output(path: str | os.PathLike) -> Path:
    """A run directory, or the config (a file or a bundled name) whose default run directory it is."""
    path = Path(path)
    if path.is_dir():
        return path
    from .config import load_config

    return load_config(path).output_dir
