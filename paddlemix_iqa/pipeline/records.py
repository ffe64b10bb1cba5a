"""Stream records from JSONL or a JSON array without holding the file in memory.

An entry that cannot be a record (undecodable line, a bare string, a huge
integer, absurd nesting) is yielded as :class:`BadRecord`, so the runner rejects
it with a reason and goes on. Only a file that cannot be read as the format it
claims to be raises :class:`RecordFormatError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson

CHUNK = 1 << 20
ARRAY_CHUNK = 64 << 10  # ijson turns a whole block into events before yielding one: ~5x its size in memory
MAX_DEPTH = 500  # deeper records are rejected: json's C code would hit the recursion limit (~1000) on output
TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels)"
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
BOM = b"\xef\xbb\xbf"
WHITESPACE = b" \t\r\n"  # JSON's; a line of only these is blank
_BLANK_LINE = re.compile(rb"\n[ \t\r]*(?=\n)")  # a "\n" that starts a blank line
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # json.loads makes "\ud800" a lone surrogate
_DECODER = json.JSONDecoder(strict=False)  # lenient: raw control characters (a "\r") inside strings are kept
_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


class RecordFormatError(ValueError):
    """The input cannot be read as the format it claims (or was told) to be; reading stops."""


@dataclass
class BadRecord:
    """An input entry that is not a usable record.

    ``raw`` is the entry's text (undecodable bytes backslash-escaped, so it is
    always valid in JSON output; None for an array element too deep to rebuild); ``line`` its
    1-based line in a JSONL file (None in a JSON array: the index is in the
    reason); ``reason`` reads ``"bad_record: <why>"``.
    """

    raw: str | None
    reason: str
    line: int | None = None

    OP = "bad_record"

    @property
    def why(self) -> str:
        return self.reason.partition(": ")[2]


def _bad(raw: str | None, why: str, line: int | None = None) -> BadRecord:
    return BadRecord(raw, f"{BadRecord.OP}: {why}", line)


def input_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``"jsonl"`` or ``"json"``: ``fmt`` when given, else from the extension (never guessed from content)."""
    if fmt is not None:
        if fmt not in ("jsonl", "json"):
            raise RecordFormatError(f"input_format must be 'jsonl' or 'json', not {fmt!r}")
        return fmt
    found = FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise RecordFormatError(
            f"cannot tell the format of {path} from its extension; set input_format: jsonl or json"
        )
    return found


def iter_records(path: str | os.PathLike, input_format: str | None = None) -> Iterator[dict | BadRecord]:
    """Every record of a JSONL file or a JSON array (or single object), in order, one at a time."""
    if _format(path, input_format) == "json":
        yield from _iter_array(path)
        return
    with open(path, "rb", buffering=CHUNK) as f:
        for n, line in enumerate(f, 1):  # binary lines end at b"\n" only: a "\r" in a string is no break
            if n == 1:
                line = line.removeprefix(BOM)
            if line.strip(WHITESPACE):
                yield _parse_line(line, n)


_format = input_format  # iter_records' argument shadows the function


def _parse_line(line: bytes, n: int) -> dict | BadRecord:
    try:
        value = _DECODER.decode(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        why = f"invalid UTF-8 at byte {exc.start + 1}"
    except json.JSONDecodeError as exc:
        why = f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"
    except RecursionError:
        why = TOO_DEEP
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        why = "integer too long" if "digits" in str(exc) else f"invalid JSON: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a line holds, it must not end the run
        why = f"invalid JSON: {type(exc).__name__}"
    else:
        if not isinstance(value, dict):
            why = f"not a JSON object ({_KINDS.get(type(value), type(value).__name__)})"
        elif (line.count(b"{") + line.count(b"[") <= MAX_DEPTH) or _depth(value) <= MAX_DEPTH:
            return _without_surrogates(value) if _SURROGATE_ESCAPE.search(line) else value
        else:
            why = TOO_DEEP
    raw = line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="backslashreplace")
    return _bad(raw, why, n)


def _without_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates made U+FFFD: they cannot be encoded, so no output, SQLite included,
    could take them (run on the rare line with a surrogate escape; depth is already bounded)."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _depth(value: Any) -> int:
    """Nesting depth of containers, without recursion (only run on lines with many brackets)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


# --- JSON arrays ---------------------------------------------------------------------------------
class _Counted:
    """A binary file that keeps the block it handed out last and where it began, to place a parse error."""

    def __init__(self, f):
        self.f, self.block, self.newlines = f, b"", 0
        self.start = f.tell()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if data:
            self.newlines += self.block.count(b"\n")
            self.start += len(self.block)
            self.block = data
        return data


def _events(f, chunk: int) -> Iterator[tuple[str, Any]]:
    """ijson's flat event stream (not ``items``: its path prefixes cost depth^2 on deep nesting)."""
    return ijson.basic_parse(f, buf_size=chunk, use_float=True)


def _skip_bom(f) -> None:
    if f.read(len(BOM)) != BOM:
        f.seek(0)


_TOO_DEEP = object()


def _build(first: str, events: Iterator[tuple[str, Any]]) -> Any:
    """The container that ``first`` opens, built from the events; ``_TOO_DEEP`` (events skipped) past MAX_DEPTH."""
    root: Any = {} if first == "start_map" else []
    stack, top, key = [root], root, None
    for event, value in events:
        if event == "map_key":
            key = value
            continue
        if event == "end_map" or event == "end_array":
            stack.pop()
            if not stack:
                return root
            top = stack[-1]
            continue
        if event == "start_map":
            value = {}
        elif event == "start_array":
            value = []
        if type(top) is dict:
            top[key] = value
        else:
            top.append(value)
        if event == "start_map" or event == "start_array":
            stack.append(value)
            top = value
            if len(stack) > MAX_DEPTH:
                _skip(events, len(stack))
                return _TOO_DEEP
    raise ijson.IncompleteJSONError("premature EOF")


def _skip(events: Iterator[tuple[str, Any]], depth: int) -> None:
    for event, _ in events:
        if event == "start_map" or event == "start_array":
            depth += 1
        elif event == "end_map" or event == "end_array":
            depth -= 1
            if not depth:
                return


def _element(event: str, value: Any, events, where: str) -> dict | BadRecord:
    if event == "start_map" or event == "start_array":
        value = _build(event, events)
    if isinstance(value, dict):
        return value
    if value is _TOO_DEEP:
        return _bad(None, TOO_DEEP + where)
    raw = json.dumps(value, ensure_ascii=False)
    return _bad(raw, f"not a JSON object ({_KINDS.get(type(value), type(value).__name__)}){where}")


def _iter_array(path: str | os.PathLike, chunk: int = ARRAY_CHUNK) -> Iterator[dict | BadRecord]:
    """The elements of a top-level JSON array (or the one top-level object), streamed with ijson."""
    index = 0
    with open(path, "rb") as raw:
        _skip_bom(raw)
        f = _Counted(raw)
        try:
            events = _events(f, chunk)
            event, value = next(events, ("", None))
            if event == "start_map":  # one record: read to the end first, so JSONL named .json fails whole
                record = _element(event, value, events, "")
                _expect_end(events)
                yield record
                return
            if event != "start_array":
                raise RecordFormatError(f"{path}: expected a JSON array of records or one object")
            for event, value in events:
                if event == "end_array":
                    break
                yield _element(event, value, events, f" at index {index}")
                index += 1
            _expect_end(events)
        except (ijson.JSONError, ValueError) as exc:
            if isinstance(exc, RecordFormatError):
                raise
            raise RecordFormatError(_parse_error(path, exc, f, index)) from None


def _expect_end(events: Iterator[tuple[str, Any]]) -> None:
    """ijson itself raises on a second top-level value ("trailing garbage"); this only makes it read on."""
    for _ in events:
        raise ijson.IncompleteJSONError("trailing garbage")


def _parse_error(path: str | os.PathLike, exc: Exception, f: _Counted, index: int) -> str:
    """One line: what yajl said and the text around it, where (byte and line), and how many records came before."""
    message = exc.args[0] if exc.args and isinstance(exc.args[0], (str, bytes)) else str(exc)
    message = message.encode() if isinstance(message, str) else message
    lines = message.split(b"\n")
    what = lines[0].decode("utf-8", "backslashreplace") or type(exc).__name__
    if isinstance(exc, UnicodeDecodeError):  # yajl passes a "\udc00" escape on as undecodable bytes
        what = "a string holds invalid UTF-8 or a lone surrogate escape (like \\udc00)"
    elif len(lines) > 1 and lines[1].strip():
        what += f" near {lines[1].strip().decode('utf-8', 'backslashreplace')!r}"
    at = len(f.block) if "premature EOF" in what else _error_offset(lines, f.block)
    if at is None:
        where = f"in bytes {f.start}-{f.start + len(f.block)}"
    else:
        line = f.newlines + f.block.count(b"\n", 0, at) + 1
        where = f"near byte {f.start + at} (line {line})"
    hint = ""
    if "trailing garbage" in what:
        hint = " (several top-level values: is it JSONL? set input_format: jsonl)"
    elif "overflow" in what:  # yajl's limits, not JSON's
        hint = " (the JSON array reader takes 64-bit integers and doubles only; JSONL has no such limit)"
    return f"{path}: not a valid JSON array: {what} {where}; {index} records read before it{hint}"


def _error_offset(lines: list[bytes], block: bytes) -> int | None:
    """About where in ``block`` yajl stopped (it does not say): its message shows up to 30 bytes either side
    of that point, which is at column 40; None when the text shown is not found."""
    if len(lines) < 3 or lines[2].find(b"^") != 40:
        return None
    text, flat = lines[1], block.replace(b"\n", b" ").replace(b"\r", b" ")

    def shown(at: int) -> bytes:
        return b" " * (40 - min(at, 30)) + flat[max(at - 30, 0) : at + 30]

    candidates = [at for at in range(min(30, len(flat) + 1)) if shown(at) == text]
    start = 0
    while not candidates and (found := flat.find(text[10:], start)) >= 0:
        candidates = [found + 30] if shown(found + 30) == text else []
        start = found + 1
    return candidates[0] if candidates else None


# --- counting (progress bar) ---------------------------------------------------------------------
def count_records(path: str | os.PathLike, input_format: str | None = None) -> int | None:
    """How many entries :func:`iter_records` will yield, by a cheap streaming pass; None if unknown."""
    try:
        fmt = _format(path, input_format)
        with open(path, "rb") as f:
            return _count_lines(f) if fmt == "jsonl" else _count_elements(f)
    except (OSError, ValueError, ijson.JSONError):
        return None


def _count_lines(f) -> int:
    """Non-blank lines, counted over raw blocks (the blank-line rule of :func:`iter_records`)."""
    _skip_bom(f)
    count, blank = 0, True  # blank: the line being read is only whitespace so far
    while block := f.read(CHUNK):
        head = block.find(b"\n")
        if head < 0:
            blank = blank and not block.strip(WHITESPACE)
            continue
        tail = block.rfind(b"\n") + 1
        count += not (blank and not block[:head].strip(WHITESPACE))  # the line begun in earlier blocks
        count += block.count(b"\n", head, tail) - 1 - len(_BLANK_LINE.findall(block, head, tail))
        blank = not block[tail:].strip(WHITESPACE)
    return count + (not blank)


def _count_elements(f) -> int | None:
    """Top-level elements of an array (1 for a single object), from ijson's events; None if malformed."""
    _skip_bom(f)
    events = _events(f, ARRAY_CHUNK)
    event, _ = next(events, ("", None))
    if event not in ("start_map", "start_array"):
        return None
    if event == "start_map":
        for _ in events:  # only to check that nothing follows it
            pass
        return 1
    count, depth = 0, 1
    for event, _ in events:
        if event == "start_map" or event == "start_array":
            count += depth == 1
            depth += 1
        elif event == "end_map" or event == "end_array":
            depth -= 1
        elif depth == 1 and event != "map_key":
            count += 1
    return count
