"""Labelled images for eval and calibrate: a folder per class, or a JSONL / CSV file with a label column.

Every item becomes binary: label 1 is *positive*, the degraded images a filter should
catch (blurred, coded, ...), label 0 the clean ones it should keep. Which classes are
which: ``positive`` / ``negative`` name them; by default a class named ``clean``,
``good``, ``sharp``, ``negative``, ``0`` or ``false`` is negative and every other class
positive. Items of classes named in neither list (when one is given) are left out, so
one synthetic set (``make-eval-set``) serves a blur and a code evaluation alike.

A record file's other columns (``subset``, ``degradation``, ...) stay in ``extra``:
``eval --by subset`` reports each subset's TPR. Image paths in a file are relative to
the file's folder.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import EvalError

#: class names read as negative (clean) when ``negative`` is not given
NEGATIVE_NAMES = frozenset({"clean", "good", "sharp", "clear", "negative", "neg", "0", "false", "no"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class LabelledItem:
    """One image: its path, binary label (1 = positive, degraded), class name and the record's other columns."""

    path: str
    label: int
    cls: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _names(value: str | Sequence[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return frozenset(v.strip().lower() for v in value if v.strip())


def _cls(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _binary(cls: str, positive: frozenset[str] | None, negative: frozenset[str] | None) -> int | None:
    """1, 0, or None (left out) for class ``cls``."""
    key = cls.lower()
    if positive is not None and key in positive:
        return 1
    if negative is not None and key in negative:
        return 0
    if positive is None and negative is None:
        return 0 if key in NEGATIVE_NAMES else 1
    if positive is None:  # only negatives named: everything else is positive
        return 1
    if negative is None:  # only positives named: the usual negative names, nothing else
        return 0 if key in NEGATIVE_NAMES else None
    return None


def load_labelled(
    source: str | Path,
    *,
    positive: str | Sequence[str] | None = None,
    negative: str | Sequence[str] | None = None,
    label_column: str = "label",
    image_column: str = "image",
) -> list[LabelledItem]:
    """The labelled items of a class-per-folder directory, a ``.jsonl`` or a ``.csv`` file, in a stable order.

    Raises :class:`EvalError` (with what is wrong) for a missing source, a record without
    the label or image column, or a set that ends up with no positive or no negative item.
    """
    src = Path(source)
    pos, neg = _names(positive), _names(negative)
    if src.is_dir():
        rows = _folder_rows(src)
    elif src.is_file():
        rows = _file_rows(src, label_column, image_column)
    else:
        raise EvalError(f"labelled data {src} does not exist (a folder per class, or .jsonl / .csv)")
    items = []
    for path, cls, extra in rows:
        label = _binary(cls, pos, neg)
        if label is not None:
            items.append(LabelledItem(path=path, label=label, cls=cls, extra=extra))
    counts = {lab: sum(1 for i in items if i.label == lab) for lab in (0, 1)}
    if not counts[0] or not counts[1]:
        classes = sorted({cls for _, cls, _ in rows})
        raise EvalError(
            f"{src}: {counts[1]} positive and {counts[0]} negative items; both are needed "
            f"(classes found: {classes}; choose them with --positive / --negative)"
        )
    return items


def _folder_rows(root: Path) -> list[tuple[str, str, dict]]:
    rows = []
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    if not classes:
        raise EvalError(f"{root} has no class folders (expected e.g. {root}/clean/ and {root}/blurred/)")
    for folder in classes:
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((str(f.resolve()), folder.name, {}))
    return rows


def _file_rows(path: Path, label_column: str, image_column: str) -> list[tuple[str, str, dict]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EvalError(f"{path}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise EvalError(f"{path}:{n}: a record must be a JSON object")
                records.append((n, record))
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            records = [(n, dict(r)) for n, r in enumerate(csv.DictReader(fh), 2)]
    else:
        raise EvalError(f"{path}: labelled data is a folder, a .jsonl or a .csv file, not {suffix or 'no extension'}")
    rows = []
    base = path.resolve().parent
    for n, record in records:
        if label_column not in record or record[label_column] in (None, ""):
            raise EvalError(f"{path}:{n}: no {label_column!r} column (set it with --label-column)")
        image = record.get(image_column)
        if not isinstance(image, str) or not image:
            raise EvalError(f"{path}:{n}: no {image_column!r} path (set it with --image-column)")
        extra = {k: v for k, v in record.items() if k not in (label_column, image_column)}
        rows.append((str((base / image).resolve()), _cls(record[label_column]), extra))
    return rows
