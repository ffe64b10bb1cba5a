"""Crash-safe outputs: JSONL files appended per batch, with an SQLite store as the source of truth.

Per batch: the lines are appended to ``kept.jsonl``, ``rejected.jsonl`` and
``scores.jsonl`` and fsync'ed, then one SQLite transaction records the batch's
results *and* the files' new lengths. On restart every file is truncated back to
the length of the last committed batch, so a SIGKILL or power loss at any point
leaves neither lost nor duplicated lines, and the rerun ends byte-identical to an
uninterrupted run. Batches are committed in input order.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STATE = "state.sqlite"
FILES = ("kept.jsonl", "rejected.jsonl", "scores.jsonl")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY, id TEXT, kept INTEGER NOT NULL, op TEXT, reason TEXT, n_images INTEGER);
CREATE TABLE IF NOT EXISTS scores (
    idx INTEGER NOT NULL, pos INTEGER NOT NULL, image TEXT, metric TEXT NOT NULL,
    value REAL, quality REAL, PRIMARY KEY (idx, pos, metric));
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


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file, fsync, and rename over ``path`` (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
            for name, f in self.files.items():
                self.set(f"bytes:{name}", str(f.tell()))

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}
        self.db.close()

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
