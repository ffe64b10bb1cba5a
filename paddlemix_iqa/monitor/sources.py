"""Where the monitor's images come from: a CSV ``path,timestamp[,source]`` or a folder.

Each image becomes a :class:`Frame` (path, timestamp, source id). A CSV row that cannot be
read (no path, a timestamp that is not a date) becomes a :class:`Problem` with its reason,
never an exception. In a folder, the timestamp is the EXIF ``DateTimeOriginal`` (or
``DateTime``), else the file's mtime; the source (camera id) is the first group of
``--source-pattern`` matched against the path relative to the folder, by default the
image's parent folder name.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: EXIF tags: DateTimeOriginal (in the Exif IFD), DateTime (IFD0), and the Exif IFD pointer
_DATETIME_ORIGINAL, _DATETIME, _EXIF_IFD = 36867, 306, 0x8769
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class Frame:
    path: str
    time: dt.datetime  # the image's timestamp; naive means local time of the camera, kept as is
    source: str

    @property
    def epoch(self) -> float:
        """Seconds for ordering; a naive timestamp is read as UTC (only order and spacing matter)."""
        t = self.time if self.time.tzinfo else self.time.replace(tzinfo=dt.timezone.utc)
        return t.timestamp()

    @property
    def iso(self) -> str:
        return self.time.isoformat()


@dataclass(frozen=True)
class Problem:
    where: str  # "frames.csv line 7" or a path
    reason: str


class SourceError(ValueError):
    """The SOURCE itself is unusable (missing, not a CSV or folder, a CSV without a path column)."""


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (``2026-03-01T12:00:00+01:00``, ``Z`` too), EXIF (``2026:03:01 12:00:00``) or Unix seconds."""
    text = text.strip()
    if not text:
        raise ValueError("empty timestamp")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or not 0 <= number < 1e11:
            raise ValueError(f"timestamp {text!r} is not a date")
        return dt.datetime.fromtimestamp(number, dt.timezone.utc)
    exif = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if exif:
        return dt.datetime(*map(int, exif.groups()))
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {text[:60]!r} is neither ISO 8601, EXIF nor Unix seconds") from None


def source_of(relative: str, pattern: re.Pattern[str] | None) -> str:
    """The camera id of an image path: the pattern's first group (or whole match), else its folder name."""
    if pattern is not None:
        found = pattern.search(relative)
        if found:
            return (
                found.group("source")
                if "source" in pattern.groupindex
                else found.group(1)
                if pattern.groups
                else found.group(0)
            )
        return DEFAULT_SOURCE
    parent = Path(relative).parent.name
    return parent or DEFAULT_SOURCE


def exif_time(path: str) -> dt.datetime | None:
    """The EXIF capture time of an image file, or None (no EXIF, no date, unreadable file).

    Opened through the package's one safe opener (regular files only, EPS refused, Pillow's
    warnings silenced); only the header is read.
    """
    from ..io import image_exif  # the one safe way to open a file

    exif = image_exif(path)
    if exif is None:
        return None
    value = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value.strip("\x00 "))
    except ValueError:
        return None


def frame_time(path: str) -> dt.datetime:
    """EXIF capture time, else the file's modification time (UTC); the epoch for a file that vanished."""
    found = exif_time(path)
    if found is not None:
        return found
    try:
        return dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.timezone.utc)
    except (OSError, ValueError):
        return dt.datetime.fromtimestamp(0, dt.timezone.utc)


def folder_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), symlinks not followed out of it."""
    from ..evaluation.labelled import IMAGE_SUFFIXES

    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                out.append(Path(dirpath) / name)
    return out


def read_folder(
    folder: Path, pattern: re.Pattern[str] | None, skip: set[str] | None = None
) -> Iterator[Frame]:
    """Frames for the images of ``folder`` not in ``skip`` (paths already known)."""
    for path in folder_files(folder):
        text = str(path)
        if skip and text in skip:
            continue
        relative = str(path.relative_to(folder))
        yield Frame(text, frame_time(text), source_of(relative, pattern))


def read_csv(
    path: Path, pattern: re.Pattern[str] | None, root: Path | None = None
) -> Iterator[Frame | Problem]:
    """Frames of a CSV with a header ``path,timestamp[,source]`` (or those columns in that order without one).

    Relative image paths are joined to ``root`` (default: the CSV's folder).
    """
    base = root if root is not None else path.parent
    try:
        handle = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            first = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SourceError(f"{path} is not a CSV file: {exc}") from None
        if first is None:
            return
        header = [c.strip().lower() for c in first]
        if "path" in header:
            columns = {name: header.index(name) for name in ("path", "timestamp", "source") if name in header}
            if "timestamp" not in columns:
                raise SourceError(f"{path}: the header has no timestamp column (path,timestamp[,source])")
            rows = reader
            start = 2
        else:
            columns = {"path": 0, "timestamp": 1, "source": 2}

            def chain():
                yield first
                yield from reader

            rows = chain()
            start = 1
        line = start - 1
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                line += 1
                yield Problem(f"{path.name} line {line}", f"unreadable row: {exc}")
                continue
            line += 1
            where = f"{path.name} line {line}"
            if not any(cell.strip() for cell in row):
                continue

            def cell(name: str, row=row) -> str:
                index = columns.get(name)
                return row[index].strip() if index is not None and index < len(row) else ""

            ref = cell("path")
            if not ref:
                yield Problem(where, "no image path")
                continue
            if "\x00" in ref:
                yield Problem(where, "invalid path: contains a NUL byte")
                continue
            if any("\udc80" <= c <= "\udcff" for c in "".join(row)):
                yield Problem(where, "not UTF-8 text")
                continue
            try:
                when = parse_time(cell("timestamp"))
            except ValueError as exc:
                yield Problem(where, f"bad timestamp: {exc}")
                continue
            image = Path(ref) if Path(ref).is_absolute() else base / ref
            source = cell("source") or source_of(ref, pattern)
            yield Frame(str(image), when, source)
