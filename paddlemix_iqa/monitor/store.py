"""The monitor's state in one SQLite file: every scored (or unreadable) image, and every alert sent.

A rerun skips images already in ``frames`` and alerts already in ``alerts``, so the
same command can run from cron, be interrupted, or follow a folder, without rescoring
or re-alerting. Series are kept per (metric, source); the settings of the last run per
metric are kept too, so ``monitor report`` draws what ``monitor run`` decided.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    metric TEXT NOT NULL, source TEXT NOT NULL, path TEXT NOT NULL, time TEXT NOT NULL, epoch REAL NOT NULL,
    quality REAL, native REAL, error TEXT, scored_at REAL NOT NULL,
    PRIMARY KEY (metric, source, path, time)
);
CREATE INDEX IF NOT EXISTS frames_series ON frames (metric, source, epoch);
CREATE TABLE IF NOT EXISTS alerts (
    metric TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL, time TEXT NOT NULL, epoch REAL NOT NULL,
    value REAL, path TEXT, detail TEXT, sent_at REAL NOT NULL,
    PRIMARY KEY (metric, source, kind, time)
);
CREATE TABLE IF NOT EXISTS problems (
    source_file TEXT NOT NULL, location TEXT NOT NULL, reason TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (source_file, location, reason)
);
CREATE TABLE IF NOT EXISTS settings (metric TEXT PRIMARY KEY, json TEXT NOT NULL);
"""


class Store:
    """A thin wrapper over the SQLite file (one writer: the running monitor)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- frames ---------------------------------------------------------------------------
    def known(self, metric: str) -> set[tuple[str, str, str]]:
        """(source, path, time) of every image already done for ``metric``."""
        rows = self.db.execute("SELECT source, path, time FROM frames WHERE metric = ?", (metric,))
        return set(rows)

    def known_paths(self, metric: str) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT path FROM frames WHERE metric = ?", (metric,))}

    def add_frames(self, metric: str, rows: list[dict[str, Any]]) -> None:
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        metric,
                        r["source"],
                        r["path"],
                        r["time"],
                        r["epoch"],
                        r.get("quality"),
                        r.get("native"),
                        r.get("error"),
                        now,
                    )
                    for r in rows
                ],
            )

    def series(
        self, metric: str, source: str
    ) -> list[tuple[str, float, float | None, float | None, str, str | None]]:
        """(time, epoch, quality, native, path, error) of a source's images, in time order."""
        return list(
            self.db.execute(
                "SELECT time, epoch, quality, native, path, error FROM frames WHERE metric = ? AND source = ? "
                "ORDER BY epoch, path",
                (metric, source),
            )
        )

    def sources(self, metric: str | None = None) -> list[tuple[str, str]]:
        """(metric, source) pairs with at least one image."""
        if metric is None:
            return list(self.db.execute("SELECT DISTINCT metric, source FROM frames ORDER BY metric, source"))
        return list(
            self.db.execute(
                "SELECT DISTINCT metric, source FROM frames WHERE metric = ? ORDER BY source", (metric,)
            )
        )

    def counts(self, metric: str) -> dict[str, int]:
        row = self.db.execute(
            "SELECT COUNT(*), SUM(error IS NOT NULL) FROM frames WHERE metric = ?", (metric,)
        ).fetchone()
        return {"images": row[0] or 0, "unreadable": row[1] or 0}

    # --- alerts ---------------------------------------------------------------------------
    def add_alert(self, metric: str, alert: dict[str, Any], path: str | None, detail: str) -> bool:
        """Record an alert; False when it was already sent (a rerun), True when it is new."""
        with self.db:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    metric,
                    alert["source"],
                    alert["kind"],
                    alert["timestamp"],
                    alert["epoch"],
                    alert["value"],
                    path,
                    detail,
                    time.time(),
                ),
            )
        return cursor.rowcount == 1

    def alerts(self, metric: str, source: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT source, kind, time, epoch, value, path, detail FROM alerts WHERE metric = ?"
        params: tuple = (metric,)
        if source is not None:
            query += " AND source = ?"
            params += (source,)
        keys = ("source", "kind", "timestamp", "epoch", "value", "path", "detail")
        return [
            dict(zip(keys, row, strict=True)) for row in self.db.execute(query + " ORDER BY epoch", params)
        ]

    # --- problems and settings --------------------------------------------------------------
    def add_problem(self, source_file: str, where: str, reason: str) -> bool:
        with self.db:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO problems VALUES (?, ?, ?, ?)",
                (source_file, where, reason, time.time()),
            )
        return cursor.rowcount == 1

    def problems(self) -> list[tuple[str, str, str]]:
        return list(self.db.execute("SELECT source_file, location, reason FROM problems ORDER BY seen_at"))

    def save_settings(self, metric: str, settings: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO settings VALUES (?, ?)",
                (metric, json.dumps(settings, sort_keys=True)),
            )

    def settings(self, metric: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT json FROM settings WHERE metric = ?", (metric,)).fetchone()
        return json.loads(row[0]) if row else None

    def metrics(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT metric FROM settings ORDER BY metric")]
