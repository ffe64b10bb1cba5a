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

import json
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

import numpy as np

from ..dedup.step import DISTANCE_KEY, DUPLICATE_KEY, SIGN_SIDE, Dedup
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
        signer: Dedup | None = None,
    ):
        self.ops = list(ops)
        self.signer = signer  # the dedup step: kept images are signed from the pixels decoded here
        self.root = os.fspath(root)
        self.allow_outside_root = allow_outside_root
        self.pixel_budget = pixel_budget
        split = next((i for i, op in enumerate(self.ops) if op.neural), len(self.ops))
        self.head, self.tail = self.ops[:split], self.ops[split:]
        pixel_ops = [op for op in self.ops if op.needs_pixels]
        self.needs_pixels = bool(pixel_ops) or signer is not None
        sides = [op.decode_side for op in pixel_ops] + ([SIGN_SIDE] if signer else [])
        self.decode_side = None if not sides or any(s is None for s in sides) else max(sides)
        keys = {op.image_key for op in self.ops if not isinstance(op, HostOp)}
        self.keys = sorted(keys | ({signer.key} if signer else set()))
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
            if not self.tail:  # kept now: signed while their pixels are at hand
                finished += [self.keep(idx, item, loaded) for idx, item in kept]
                continue
            survivors += kept
            wanted = {path for _, item in kept for path in self._paths(item)}
            images.update({p: v for p, v in loaded.items() if p in wanted})
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
        return done + [self.keep(idx, item, loaded) for idx, item in alive]

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

    def keep(self, idx: int, item: dict, loaded: dict | None = None) -> RecordResult:
        rows = self.score_rows(idx, item)
        return RecordResult(idx, item, True, rows=rows, signature=self.sign(item, loaded or {}, rows))

    def sign(self, item: dict, loaded: dict, rows: list[dict]) -> dict | None:
        """The dedup signature of a kept single-image record (its pHash also goes in its score row)."""
        if self.signer is None:
            return None
        refs = image_refs(item, self.signer.key)
        image = loaded.get(next(self._paths({self.signer.key: refs}), None)) if len(refs) == 1 else None
        if not isinstance(image, DecodedImage) or not image.pixels.size:
            return None
        signature = {
            **self.signer.sign(image),
            "image": refs[0] if isinstance(refs[0], str) else str(refs[0]),
        }
        if rows:
            rows[0]["phash"] = f"{signature['phash']:016x}"
        return signature

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


def init_worker(chain: Chain, run_pid: int) -> None:
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


def work_batch(batch: list[Entry]):
    assert _CHAIN is not None
    return _CHAIN.run_head(batch)


def pool_context():
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


def build_chain(config: PipelineConfig) -> Chain:
    """The chain of ``config``'s ops (fresh; no model loads until an image needs it), with the dedup
    step's signer when the config has one: kept images are signed where they were decoded."""
    return Chain(
        config.build_ops(),
        config.image_root,
        allow_outside_root=config.allow_outside_root,
        signer=config.build_dedup(),
    )


class LocalEngine:
    """How a run's records are processed: here, by this machine's process pool (the default).

    Another engine (``integrations.ray.RayEngine``) replaces ``check_input`` and ``drive``; the
    lock, the input checks, the resumable state, dedup, ``run.json`` and the report stay here."""

    def check_input(self, config: PipelineConfig) -> None:
        """Raise ConfigError when this engine cannot read ``config.input``."""
        try:
            input_format(config.input, config.input_format)
        except RecordFormatError as exc:
            raise ConfigError(str(exc)) from None

    def drive(self, config: PipelineConfig, chain: Chain, store: RunStore, resumed: int, progress: bool) -> dict:
        """Process every record the store does not hold yet; returns the run's stats."""
        return _drive(config, chain, store, resumed, progress)


def run_pipeline(
    config: PipelineConfig, fresh: bool = False, progress: bool | None = None, engine: Any = None
) -> dict[str, Any]:
    """Run (or resume) ``config``; returns the run summary also written to ``<output_dir>/run.json``.

    The output directory is locked for the whole run; the input is never one of its outputs.
    ``engine`` processes the records (default: :class:`LocalEngine`).
    """
    engine = engine or LocalEngine()
    if not config.input.is_file():
        raise ConfigError(f"input {config.input} does not exist or is not a regular file")
    engine.check_input(config)
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
            summary = _run_locked(config, out_dir, progress, engine)
        except RecordFormatError as exc:  # what was read before the bad part stays committed
            raise ConfigError(f"{exc}; the records before it were processed") from None
    return summary


def _run_locked(config: PipelineConfig, out_dir: Path, progress: bool | None, engine: Any) -> dict[str, Any]:
    chain = build_chain(config)
    ops, dedup = chain.ops, chain.signer
    digest = input_digest(config.input)
    store = RunStore(out_dir)
    try:
        _check_same_work(store, config, digest)
        store.open_outputs()
        resumed = store.count()
        if resumed:
            log.info("resuming %s: %d records already done", out_dir, resumed)
        stats = engine.drive(config, chain, store, resumed, config.progress if progress is None else progress)
        if dedup is not None:
            stats["dedup"] = run_dedup(dedup, store)
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
        ProcessPoolExecutor(config.workers, pool_context(), initializer=init_worker, initargs=(chain, os.getpid()))
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

    unread = Unread()

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
                pending.append(executor.submit(work_batch, batch))
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
    return run_stats(records, images, unread, start)


def run_stats(records: int, images: int, unread: Unread, start: float) -> dict[str, Any]:
    """What an engine's drive reports for run.json: counts, unreadable images, time and rate."""
    elapsed = time.perf_counter() - start
    return {
        "processed": records,
        "images": images,
        "images_unreadable": unread.n,
        "unreadable_example": unread.example,
        "seconds": round(elapsed, 3),
        "images_per_second": round(images / elapsed, 2) if elapsed > 0 else None,
    }


def run_dedup(dedup: Dedup, store: RunStore) -> dict[str, Any]:
    """The dataset-level ``dedup`` step, once every record is done: decide from the stored hashes and
    scores (thumbnails read only for candidate pairs), then move duplicates to rejected.jsonl."""
    if store.get("dedup") == "done":  # a resumed run whose dedup already finished
        return json.loads(store.get("dedup_stats") or "{}")
    from ..dedup.core import Candidates

    start = time.perf_counter()
    data = store.dedup_inputs(dedup.metrics)
    idx = data["idx"]
    cands = Candidates(data["phash"], data["mirror"], data["crop"], data["file_hash"], data["pixel_hash"])
    rank = dedup.rank(data["metrics"], data["width"], data["height"], data["file_size"])
    decisions = dedup.decide(
        cands, rank, lambda at: store.thumbs(idx[at]), refs=lambda at: _stored_images(store, idx[at])
    )
    dup = np.flatnonzero(decisions.duplicate_of >= 0)
    ids = store.record_ids(idx[decisions.duplicate_of[dup]])
    moves = {}
    for i in dup.tolist():
        kept = int(idx[decisions.duplicate_of[i]])
        reason = decisions.reason(i, ids.get(kept, kept))
        moves[int(idx[i])] = (kept, int(decisions.distance[i]), str(decisions.how[i]), reason)

    def mark(record: dict, kept: int, distance: int, reason: str) -> None:
        record[REJECT_KEY] = f"{dedup.name}: {reason}"
        record[DUPLICATE_KEY], record[DISTANCE_KEY] = ids.get(kept, kept), distance

    stats = {**decisions.stats, "seconds": round(time.perf_counter() - start, 3)}
    store.set("dedup_stats", json.dumps(stats))
    store.move_duplicates(moves, dedup.name, mark)
    log.info(
        "dedup: %d duplicates in %d groups among %d images", stats["duplicates"], stats["groups"], len(idx)
    )
    return stats


def _stored_images(store: RunStore, idx: np.ndarray) -> list:
    """The image references the signatures were made from (the dedup step's embeddings re-read them)."""
    cells = store.dedup_cells(idx)
    return [cells.get(int(i), {}).get("image") for i in idx]


class Unread:
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
