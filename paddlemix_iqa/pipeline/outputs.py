"""Crash-safe outputs: JSONL files appended per batch, with an SQLite store as the source of truth.

Per batch: the lines are appended to ``kept.jsonl``, ``rejected.jsonl`` and
``scores.jsonl`` and fsync'ed, then one SQLite transaction records the batch's
results *and* the files' new lengths. On restart every file is truncated back to
the length of the last committed batch, so a SIGKILL or power loss at any point
leaves neither lost nor duplicated lines, and the rerun ends byte-identical to an
uninterrupted run. Batches are committed in input order.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError

STATE = "state.sqlite"
FILES = ("kept.jsonl", "rejected.jsonl", "scores.jsonl")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY, id TEXT, kept INTEGER NOT NULL, op TEXT, reason TEXT, n_images INTEGER);
CREATE TABLE IF NOT EXISTS scores (
    idx INTEGER NOT NULL, pos INTEGER NOT NULL, image TEXT, metric TEXT NOT NULL,
    value REAL, quality REAL, PRIMARY KEY (idx, pos, metric));
CREATE TABLE IF NOT EXISTS signatures (
    idx INTEGER PRIMARY KEY, phash INTEGER, mirror INTEGER, crop INTEGER, thumb BLOB, thumb_crop BLOB,
    pixel_hash TEXT, file_hash TEXT, width INTEGER, height INTEGER, file_size INTEGER, image TEXT);
CREATE TABLE IF NOT EXISTS duplicates (
    idx INTEGER PRIMARY KEY, kept_idx INTEGER NOT NULL, distance INTEGER, how TEXT);
"""


@dataclass
class RecordResult:
    """What happened to one input record."""

    idx: int
    record: Any  # the output record (with tags), or the raw input of a bad record
    kept: bool
    op: str | None = None
    reason: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # one score row per image
    signature: dict[str, Any] | None = None  # the dedup step's signature of its image (kept records)


def dumps(obj: Any) -> str:
    """One line of strict JSON that always encodes as UTF-8, whatever a record holds (a line that cannot be
    written would end the run): NaN and infinities become null, lone surrogates U+FFFD, numpy scalars and
    arrays plain numbers and lists, anything else its str(). Clean objects take the C encoder once."""
    try:
        text = _ENCODER.encode(obj)
        text.encode("utf-8")  # a lone surrogate ("\ud800" in the input) only fails here
    except (ValueError, TypeError):  # NaN/inf (allow_nan=False), surrogates, a non-str dict key
        text = _ENCODER.encode(_sanitised(obj))
    if not text.isascii():
        for char, escape in _LINE_BREAKS:
            if char in text:  # only ever inside a string literal, where the escape means the same
                text = text.replace(char, escape)
    return text


# Written raw by ensure_ascii=False, but line breaks to str.splitlines() and some JSONL readers.
_LINE_BREAKS = [(c, f"\\u{ord(c):04x}") for c in "\x85\u2028\u2029"]
_INFINITIES = (float("inf"), float("-inf"))


def _plain(obj: Any) -> Any:
    """A JSON-able stand-in for a value json does not know (the encoder's ``default``)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", errors="backslashreplace")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return str(obj)


def _valid_str(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # via UTF-16: a split pair joins up, a lone surrogate becomes U+FFFD
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _sanitised(obj: Any) -> Any:
    """A copy of ``obj`` that the strict encoder accepts (the slow path of :func:`dumps`)."""
    if isinstance(obj, str):
        return _valid_str(obj)
    if isinstance(obj, float):
        return None if obj != obj or obj in _INFINITIES else obj
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, dict):
        return {_sanitised_key(k): _sanitised(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitised(v) for v in obj]
    return _sanitised(_plain(obj))


def _sanitised_key(key: Any) -> str | int | float | None:
    if isinstance(key, str):
        return _valid_str(key)
    if isinstance(key, float):
        return str(key) if key != key or key in _INFINITIES else key
    if key is None or isinstance(key, int):
        return key
    return _sanitised_key(_plain(key))


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_plain)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file, fsync, and rename over ``path`` (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def committed_count(out_dir: str | os.PathLike) -> int:
    """Records a run in ``out_dir`` has committed so far, read without touching the run (0 before
    it starts): for watching a run from outside, e.g. a progress probe or a test killing it mid-way."""
    try:
        with sqlite3.connect(f"file:{Path(out_dir) / STATE}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


class RunStore:
    """The output directory of one run: state database plus the three JSONL files."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / STATE, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self.files: dict[str, Any] = {}

    # --- meta ----------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def open_outputs(self) -> None:
        """Open the JSONL files for appending, first cutting off anything past the last commit."""
        self._finish_kept_swap()
        for name in FILES:
            path = self.dir / name
            committed = int(self.get(f"bytes:{name}", "0"))
            size = path.stat().st_size if path.exists() else 0
            if size < committed:
                raise RuntimeError(
                    f"{path} is shorter than the run's state says ({size} < {committed} bytes): "
                    "it was changed outside the run; start again with --fresh"
                )
            f = open(path, "ab")  # noqa: SIM115 - kept open for the run
            if size > committed:
                f.truncate(committed)
            self.files[name] = f

    # --- progress ------------------------------------------------------------------------
    def done_in(self, first: int, last: int) -> set[int]:
        rows = self.db.execute("SELECT idx FROM records WHERE idx BETWEEN ? AND ?", (first, last))
        return {r[0] for r in rows}

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def commit(self, results: Sequence[RecordResult]) -> None:
        """Append a batch's lines durably, then record it (and the new file lengths) in one transaction."""
        if not results:
            return
        lines: dict[str, list[str]] = {name: [] for name in FILES}
        for r in results:
            lines["kept.jsonl" if r.kept else "rejected.jsonl"].append(dumps(r.record))
            lines["scores.jsonl"].extend(dumps(row) for row in r.rows)
        for name, f in self.files.items():
            if lines[name]:
                f.write(("\n".join(lines[name]) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                [(r.idx, _record_id(r), int(r.kept), r.op, r.reason, len(r.rows)) for r in results],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                list(_score_rows(results)),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO signatures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_signature_row(r.idx, r.signature) for r in results if r.signature],
            )
            for name, f in self.files.items():
                self.set(f"bytes:{name}", str(f.tell()))

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}
        self.db.close()

    # --- the dedup step: hashes and scores in, duplicates moved from kept to rejected -------
    def dedup_inputs(self, metrics: Sequence[str]) -> dict[str, Any]:
        """Signatures (hashes, digests, sizes; no thumbnails) of the kept single-image records, in
        input order, and the first image's quality on each of ``metrics`` (NaN when not scored)."""
        cur = self.db.execute(
            "SELECT s.idx, s.phash, s.mirror, s.crop, s.file_hash, s.pixel_hash, s.width, s.height, s.file_size "
            "FROM signatures s JOIN records r USING (idx) WHERE r.kept = 1 AND r.n_images = 1 ORDER BY s.idx"
        )
        cols: list[list] = [[] for _ in range(9)]
        while rows := cur.fetchmany(1 << 16):
            for col, values in zip(cols, zip(*rows, strict=True), strict=True):
                col.extend(values)
        idx = np.array(cols[0], np.int64)
        out: dict[str, Any] = {"idx": idx}
        for k, name in ((1, "phash"), (2, "mirror"), (3, "crop")):
            out[name] = np.array(cols[k], np.int64).view(np.uint64)
        for k, name in (
            (4, "file_hash"),
            (5, "pixel_hash"),
        ):  # 64 bits of each digest (collisions ~1e-8 at 1M)
            out[name] = [None if d is None else int(d[:16], 16) for d in cols[k]]
        for k, name in ((6, "width"), (7, "height"), (8, "file_size")):
            out[name] = np.array(cols[k], np.float64)
        out["metrics"] = {}
        for metric in metrics:
            values = np.full(len(idx), np.nan)
            cur = self.db.execute(
                "SELECT idx, COALESCE(quality, value) FROM scores WHERE metric = ? AND pos = 0 ORDER BY idx",
                (metric,),
            )
            while rows := cur.fetchmany(1 << 16):
                got = np.array(rows, np.float64).reshape(-1, 2)
                at = np.searchsorted(idx, got[:, 0].astype(np.int64))
                ok = (at < len(idx)) & (idx[np.minimum(at, len(idx) - 1)] == got[:, 0])
                values[at[ok]] = got[ok, 1]
            out["metrics"][metric] = values
        return out

    def thumbs(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The verification thumbnails (k, 256) uint8 of the records ``idx`` (sorted, unique), read on demand."""
        got: dict[int, tuple[bytes, bytes]] = {}
        values = [int(i) for i in idx]
        for first in range(0, len(values), 900):
            part = values[first : first + 900]
            for i, thumb, crop in self.db.execute(
                f"SELECT idx, thumb, thumb_crop FROM signatures WHERE idx IN ({','.join('?' * len(part))})",
                part,
            ):
                got[i] = (thumb, crop)
        full = np.frombuffer(b"".join(got[i][0] for i in values), np.uint8).reshape(len(values), -1)
        cropped = np.frombuffer(b"".join(got[i][1] for i in values), np.uint8).reshape(len(values), -1)
        return full, cropped

    def record_ids(self, idx: Sequence[int]) -> dict[int, str]:
        values = sorted({int(i) for i in idx})
        out: dict[int, str] = {}
        for first in range(0, len(values), 900):
            part = values[first : first + 900]
            out.update(
                self.db.execute(
                    f"SELECT idx, id FROM records WHERE idx IN ({','.join('?' * len(part))})", part
                )
            )
        return out

    def move_duplicates(
        self, duplicates: dict[int, tuple[int, int, str, str]], step: str, extra: Any
    ) -> None:
        """Move the records ``idx -> (kept idx, distance, how, reason)`` from kept.jsonl to rejected.jsonl.

        Crash-safe: the new kept.jsonl is written beside the old one and the rejected lines are
        appended; one transaction then records the decisions, the files' new lengths and a pending
        swap, which :meth:`open_outputs` completes if the process dies before the rename below.
        ``extra(record, kept_idx, distance, reason)`` marks a moved record."""
        kept_path, tmp = self.dir / "kept.jsonl", self.dir / KEPT_SWAP
        kept_idx = [r[0] for r in self.db.execute("SELECT idx FROM records WHERE kept = 1 ORDER BY idx")]
        committed = int(self.get("bytes:kept.jsonl", "0"))
        moved: list[str] = []
        with open(kept_path, "rb") as src, open(tmp, "wb") as dst:
            data = src.read(committed).splitlines(keepends=True)
            if len(data) != len(kept_idx):
                raise RuntimeError(f"{kept_path} holds {len(data)} records, the run state {len(kept_idx)}")
            for idx, line in zip(kept_idx, data, strict=True):
                if idx in duplicates:
                    record = json.loads(line)
                    extra(record, *duplicates[idx][:2], duplicates[idx][3])
                    moved.append(dumps(record))
                else:
                    dst.write(line)
            dst.flush()
            os.fsync(dst.fileno())
            new_kept = dst.tell()
        rejected = self.files["rejected.jsonl"]
        if moved:
            rejected.write(("\n".join(moved) + "\n").encode("utf-8"))
        rejected.flush()
        os.fsync(rejected.fileno())
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE records SET kept = 0, op = ?, reason = ? WHERE idx = ?",
                [(step, d[3], i) for i, d in duplicates.items()],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO duplicates VALUES (?, ?, ?, ?)",
                [(i, d[0], d[1], d[2]) for i, d in duplicates.items()],
            )
            self.set("bytes:rejected.jsonl", str(rejected.tell()))
            self.set("bytes:kept.jsonl", str(new_kept))
            self.set("dedup", "swap")
        self._finish_kept_swap()

    def _finish_kept_swap(self) -> None:
        """Complete a committed dedup: the new kept.jsonl replaces the old one (idempotent)."""
        if self.get("dedup") != "swap":
            return
        f = self.files.pop("kept.jsonl", None)
        if f is not None:
            f.close()
        tmp = self.dir / KEPT_SWAP
        if tmp.exists():
            os.replace(tmp, self.dir / "kept.jsonl")
        self.set("dedup", "done")

    def dedup_cells(self, idx: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per record: id, image, width, height, file size and its first image's qualities (the report)."""
        out: dict[int, dict[str, Any]] = {}
        values = [int(i) for i in idx]
        for first in range(0, len(values), 900):
            part = values[first : first + 900]
            marks = ",".join("?" * len(part))
            for i, rid, image, w, h, size in self.db.execute(
                "SELECT s.idx, r.id, s.image, s.width, s.height, s.file_size FROM signatures s "
                f"JOIN records r USING (idx) WHERE s.idx IN ({marks})",
                part,
            ):
                out[i] = {"id": rid, "image": image, "width": w, "height": h, "file_size": size, "scores": {}}
            for i, metric, value, quality in self.db.execute(
                f"SELECT idx, metric, value, quality FROM scores WHERE pos = 0 AND idx IN ({marks})", part
            ):
                if i in out:
                    out[i]["scores"][metric] = quality if quality is not None else value
        return out

    def dedup_groups(self, limit: int | None = None) -> list[tuple[int, list[tuple[int, int, str]]]]:
        """(kept idx, [(duplicate idx, distance, how), ...]) of the largest duplicate groups first."""
        rows = self.db.execute("SELECT kept_idx, idx, distance, how FROM duplicates ORDER BY kept_idx, idx")
        groups: dict[int, list[tuple[int, int, str]]] = {}
        for kept, idx, dist, how in rows:
            groups.setdefault(kept, []).append((idx, dist, how))
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return ordered if limit is None else ordered[:limit]

    # --- reading back (report, summary) --------------------------------------------------
    def counts(self) -> dict[str, Any]:
        kept, total = self.db.execute("SELECT COALESCE(SUM(kept), 0), COUNT(*) FROM records").fetchone()
        by_op = self.db.execute(
            "SELECT op, COUNT(*) FROM records WHERE kept = 0 GROUP BY op ORDER BY COUNT(*) DESC"
        ).fetchall()
        return {"records": total, "kept": kept, "rejected": total - kept, "rejected_by_op": dict(by_op)}

    def reasons(self) -> Iterable[tuple[str, str]]:
        return self.db.execute("SELECT op, reason FROM records WHERE kept = 0")

    def metrics(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT metric FROM scores ORDER BY metric")]

    def metric_values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(rowid, value, quality) of every image scored on ``metric`` as an N x 3 float array
        (quality NaN when absent), read in chunks so a million rows cost 24 MB, not Python tuples."""
        cursor = self.db.execute(
            "SELECT rowid, value, quality FROM scores WHERE metric = ? AND value IS NOT NULL", (metric,)
        )
        chunks = []
        while rows := cursor.fetchmany(1 << 16):
            chunks.append(np.array(rows, dtype=np.float64))
        table = np.concatenate(chunks) if chunks else np.zeros((0, 3))
        return table[:, 0].astype(np.int64), table[:, 1:]

    def score_rows(self, rowids: Sequence[int]) -> list[tuple]:
        """(value, quality, image, kept, idx) of the given score rows, in the order asked."""
        found = {
            row[0]: row[1:]
            for row in self.db.execute(
                "SELECT s.rowid, s.value, s.quality, s.image, r.kept, s.idx FROM scores s "
                f"JOIN records r USING (idx) WHERE s.rowid IN ({','.join('?' * len(rowids))})",
                [int(i) for i in rowids],
            )
        }
        return [found[int(i)] for i in rowids if int(i) in found]


def _signed(h: int) -> int:
    """A uint64 as SQLite's signed 64-bit integer (the same bits)."""
    return h - (1 << 64) if h >= 1 << 63 else h


def _signature_row(idx: int, sig: dict[str, Any]) -> tuple:
    return (
        idx, _signed(sig["phash"]), _signed(sig["mirror"]), _signed(sig["crop"]), sig["thumb"], sig["thumb_crop"],
        sig["pixel_hash"], sig["file_hash"], sig["width"], sig["height"], sig["file_size"], sig.get("image"),
    )  # fmt: skip


def _record_id(r: RecordResult) -> str:
    rid = r.record.get("id") if isinstance(r.record, dict) else None
    return str(r.idx if rid is None else rid)


def _score_rows(results: Sequence[RecordResult]):
    for r in results:
        for pos, row in enumerate(r.rows):
            for key, value in row.items():
                if key in ("index", "id", "image", "error") or key.endswith("_quality"):
                    continue
                quality = row.get(f"{key}_quality")
                if isinstance(value, (int, float)) or value is None:
                    yield (r.idx, pos, row.get("image"), key, value, quality)


# --- guarding the output directory ------------------------------------------------------
LOCK = "run.lock"
KEPT_SWAP = ".kept.jsonl.dedup"  # the new kept.jsonl the dedup step writes before it replaces the old one
OWNED = (
    *FILES,
    STATE,
    f"{STATE}-wal",
    f"{STATE}-shm",
    "run.json",
    "report.html",
    KEPT_SWAP,
)  # what a run writes


class RunRefused(ConfigError):
    """The run cannot start in this output directory as asked (exit code 2, nothing was written)."""


class OutputLock:
    """An exclusive ``flock`` on ``<output_dir>/run.lock`` for a whole run: one run per directory.

    ``fcntl`` by hand rather than the ``filelock`` package because the second run must
    read the holder's pid from the file, which filelock truncates when it opens it.
    The kernel drops the lock when the holder dies, even by SIGKILL.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunRefused(
                f"{self.path.parent} is in use by another run (pid {holder}); wait for it to finish "
                "or choose another output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def refuse_overwriting(input_path: Path, out_dir: Path, fresh: bool) -> None:
    """Never destroy an input: refuse when the input is one of this directory's output files, or
    (without ``--fresh``) when the directory holds output files that no run state accounts for."""
    for name in OWNED:
        path = out_dir / name
        if path.exists() and os.path.samefile(path, input_path):
            raise RunRefused(
                f"input {input_path} is the run's own output file {path}; writing the run would destroy "
                "it: choose another output_dir"
            )
    if fresh or (out_dir / STATE).exists():
        return
    foreign = [name for name in OWNED if (out_dir / name).exists()]
    if foreign:
        raise RunRefused(
            f"{out_dir} holds {', '.join(foreign)} but no run state ({STATE}): this run did not create "
            "them and would overwrite them; choose another output_dir, or pass --fresh to discard them"
        )


def input_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Size and SHA-256 of the whole input, streamed: a resumed run must read the same records."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            size += len(block)
    return f"{size}:{digest.hexdigest()}"
