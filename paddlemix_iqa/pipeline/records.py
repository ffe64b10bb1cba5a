"""Stream records from JSONL or a JSON array without holding the file in memory.

A record that is not a JSON object (a broken line, a bare string) is yielded as
:class:`BadRecord`, so the runner can reject it with a reason and go on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

CHUNK = 1 << 20


@dataclass
class BadRecord:
    """An input entry that is not a usable record; ``raw`` is what was read."""

    raw: Any
    reason: str


def _first_char(f: TextIO) -> str:
    while True:
        c = f.read(1)
        if not c or not c.isspace():
            return c


def input_format(path: str | os.PathLike) -> str:
    """``"json"`` when the file holds a JSON array, else ``"jsonl"`` (one record per line)."""
    with open(path, encoding="utf-8-sig") as f:
        return "json" if _first_char(f) == "[" else "jsonl"


def iter_records(path: str | os.PathLike) -> Iterator[dict | BadRecord]:
    """Every record of a JSONL file or a JSON array, in order, one at a time."""
    if input_format(path) == "json":
        yield from _iter_array(path)
        return
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRecord(line.rstrip("\n"), f"invalid JSON on line {n}: {exc.msg}")
                continue
            yield record if isinstance(record, dict) else BadRecord(record, "not a JSON object")


def _iter_array(path: str | os.PathLike, chunk: int = CHUNK) -> Iterator[dict | BadRecord]:
    """Incremental ``[obj, obj, ...]`` reader: raw_decode one element at a time from a rolling buffer."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig") as f:
        buf, pos, eof = "", 0, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            more = f.read(chunk)
            eof = not more
            buf, pos = buf[pos:] + more, 0
            return bool(more)

        def skip_space() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos].isspace():
                    pos += 1
                if pos < len(buf) or not fill():
                    return buf[pos] if pos < len(buf) else ""

        if skip_space() != "[":
            raise ValueError(f"{path}: expected a JSON array")
        pos += 1
        if skip_space() == "]":
            return
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if eof or not fill():
                    raise ValueError(f"{path}: invalid JSON array: {exc}") from None
                continue
            if end == len(buf) and not eof and not isinstance(value, (dict, list, str)):
                fill()  # a number at the very end of the buffer may continue in the next chunk
                continue
            pos = end
            yield value if isinstance(value, dict) else BadRecord(value, "not a JSON object")
            sep = skip_space()
            if sep == "]":
                return
            if sep != ",":
                raise ValueError(f"{path}: invalid JSON array: expected ',' or ']', got {sep!r}")
            pos += 1
            skip_space()


def count_records(path: str | os.PathLike) -> int | None:
    """Non-empty lines of a JSONL file (cheap, for the progress bar's ETA); None for a JSON array."""
    if input_format(path) == "json":
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            count += block.count(b"\n") - block.count(b"\n\n")
            last = block[-1:]
    return count + (last != b"\n")
