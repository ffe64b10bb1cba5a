"""Reading input records: poison lines become bad records, formats by extension, streaming, strict output."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from paddlemix_iqa.pipeline import records as records_module
from paddlemix_iqa.pipeline.outputs import dumps
from paddlemix_iqa.pipeline.records import (
    MAX_DEPTH,
    BadRecord,
    RecordFormatError,
    count_records,
    iter_records,
)

GOOD_BEFORE = {"id": "before", "image": "a.jpg"}
GOOD_AFTER = {"id": "after", "image": "b.jpg", "text": "中文 ok"}


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity, as a strict JSON reader would."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def jsonl(path: Path, lines: list[bytes], end: bytes = b"\n") -> Path:
    path.write_bytes(b"\n".join(lines) + end)
    return path


# --- JSONL: one bad line never costs the others -----------------------------------------------
POISON = {
    "invalid UTF-8": (b'{"id": "x", "text": "caf\xe9"}', "bad_record: invalid UTF-8 at byte 25"),
    "5000-digit integer": (b'{"n": ' + b"7" * 5000 + b"}", "bad_record: integer too long"),
    "100000-deep nesting": (b"[" * 100_000 + b"]" * 100_000, "bad_record: nested too deeply"),
    "deep but parseable nesting": (
        b'{"a": ' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}",
        "bad_record: nested too deeply",
    ),
    "a line that is an array": (b'[{"id": 1}, {"id": 2}]', "bad_record: not a JSON object (array)"),
    "a bare string": (b'"just text"', "bad_record: not a JSON object (string)"),
    "a number": (b"42", "bad_record: not a JSON object (number)"),
    "null": (b"null", "bad_record: not a JSON object (null)"),
    "broken JSON": (b'{"id": 1,, }', "bad_record: invalid JSON: Expecting property name"),
    "NUL byte": (b"\x00", "bad_record: invalid JSON: Expecting value at column 1"),
}


@pytest.mark.parametrize("name", POISON)
def test_a_poison_line_is_a_bad_record_with_its_line_and_the_rest_still_comes(tmp_path, name):
    poison, reason = POISON[name]
    path = jsonl(tmp_path / "data.jsonl", [json.dumps(GOOD_BEFORE).encode(), b"", poison, b"  \t", b"{}"])
    path.write_bytes(path.read_bytes() + json.dumps(GOOD_AFTER, ensure_ascii=False).encode())
    got = list(iter_records(path))
    assert len(got) == 4 and count_records(path) == 4
    assert got[0] == GOOD_BEFORE and got[2] == {} and got[3] == GOOD_AFTER
    bad = got[1]
    assert isinstance(bad, BadRecord)
    assert bad.reason.startswith(reason) and bad.line == 3  # blank line 2 still counts
    assert bad.why == bad.reason.removeprefix("bad_record: ")
    assert "\n" not in bad.reason and len(bad.reason) < 200
    # the raw text goes to rejected.jsonl: valid strict JSON, valid UTF-8, the original bytes recognisable
    line = dumps({"__iqa_record": bad.raw, "__iqa_line": bad.line, "__iqa_reject": bad.reason})
    assert strict_loads(line)["__iqa_record"] == bad.raw and "\n" not in line
    line.encode("utf-8")
    assert bad.raw.encode("utf-8", "backslashreplace")[:20] in poison.replace(b"\xe9", b"\\xe9")


def test_invalid_json_says_where_on_the_line(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [b'{"a": tru}'])
    [bad] = iter_records(path)
    assert bad.reason == "bad_record: invalid JSON: Expecting value at column 7" and bad.line == 1


def test_a_lone_surrogate_goes_through_as_a_replacement_character(tmp_path):
    line = b'{"id": "s\\ud800", "text": "a\\udc00b", "pair": "\\ud83d\\ude00", "\\ud801": "\\\\ud800"}'
    path = jsonl(tmp_path / "d.jsonl", [line])
    [record] = iter_records(path)
    assert record == {"id": "s\ufffd", "text": "a\ufffdb", "pair": "😀", "\ufffd": "\\ud800"}
    assert strict_loads(dumps(record)) == record


def test_carriage_returns_and_unicode_line_separators_do_not_split_a_record(tmp_path):
    lines = [
        b'{"id": 1, "text": "first\rsecond"}',  # a raw CR inside a string
        b'{"id": 2,\r "text": "x"}',  # a CR as whitespace between tokens
        '{"id": 3, "text": "a\u2028b\u2029c\x85d"}'.encode(),
        b'{"id": 4}\r',  # a CRLF file
    ]
    path = jsonl(tmp_path / "d.jsonl", lines)
    got = list(iter_records(path))
    assert [r["id"] for r in got] == [1, 2, 3, 4] and count_records(path) == 4
    assert got[0]["text"] == "first\rsecond" and got[2]["text"] == "a\u2028b\u2029c\x85d"
    for record in got:  # and written back, each is still exactly one line, whatever splits lines
        assert len(dumps(record).splitlines()) == 1 and strict_loads(dumps(record)) == record


def test_a_jsonl_whose_first_line_is_an_array_still_yields_every_later_record(tmp_path):
    rest = [{"id": i, "image": f"{i}.jpg"} for i in range(50)]
    path = jsonl(
        tmp_path / "d.jsonl", [b'[{"id": "x"}, {"id": "y"}]'] + [json.dumps(r).encode() for r in rest]
    )
    got = list(iter_records(path))
    assert got[0].reason == "bad_record: not a JSON object (array)" and got[0].line == 1
    assert got[1:] == rest and count_records(path) == 51


def test_every_poison_line_in_one_file_costs_only_itself(tmp_path):
    good = [{"id": i} for i in range(len(POISON) + 1)]
    lines = []
    for record, (poison, _) in zip(good, POISON.values(), strict=False):
        lines += [json.dumps(record).encode(), poison]
    path = jsonl(tmp_path / "d.jsonl", lines + [json.dumps(good[-1]).encode()], end=b"")
    got = list(iter_records(path))
    assert [r for r in got if not isinstance(r, BadRecord)] == good
    bad = [r for r in got if isinstance(r, BadRecord)]
    assert [b.line for b in bad] == list(range(2, 2 * len(POISON) + 1, 2))
    assert [b.reason[: len(reason)] for b, (_, reason) in zip(bad, POISON.values(), strict=True)] == [
        reason for _, reason in POISON.values()
    ]


def test_a_byte_order_mark_is_skipped_and_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1}\n\n \t\r\n{"id": 2}\nnot json\n\n')
    got = list(iter_records(path))
    assert got[:2] == [{"id": 1}, {"id": 2}] and got[2].line == 5
    assert count_records(path) == 3


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_count_records_matches_what_iter_records_yields_across_block_boundaries(tmp_path, monkeypatch, chunk):
    rng = random.Random(chunk)
    for trial in range(20):
        pieces = [b'{"id": 1}', b"", b" ", b"\t\r", b"\r", b"x", b'{"t": "a\\nb"}', b"[1]", b"   {}  "]
        lines = [rng.choice(pieces) for _ in range(rng.randrange(0, 30))]
        data = (b"\xef\xbb\xbf" if trial % 3 == 0 else b"") + b"\n".join(lines) + rng.choice([b"", b"\n"])
        path = tmp_path / f"t{trial}.jsonl"
        path.write_bytes(data)
        with monkeypatch.context() as patch:
            patch.setattr(records_module, "CHUNK", chunk)  # the counter reads blocks of this size
            counted = count_records(path)
        assert counted == sum(1 for _ in iter_records(path)), data


# --- formats: by extension, or as told; a mismatch is an error, never a partial read --------------
def test_a_json_array_is_streamed_in_order_with_bad_elements_marked(tmp_path):
    records = [
        {"id": i, "image": f"img/{i}.jpg", "score": i / 7, "tags": ["a", {"b": None}]} for i in range(10_000)
    ]
    items = records[:3] + ["a string", [1, 2], None] + records[3:]
    path = tmp_path / "data.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(items, indent=1).encode())
    got = list(iter_records(path))
    assert [r for r in got if not isinstance(r, BadRecord)] == records
    assert [(r.reason, r.raw, r.line) for r in got[3:6]] == [
        ("bad_record: not a JSON object (string) at index 3", '"a string"', None),
        ("bad_record: not a JSON object (array) at index 4", "[1, 2]", None),
        ("bad_record: not a JSON object (null) at index 5", "null", None),
    ]
    assert count_records(path) == len(items)
    assert all(type(r["score"]) is float and type(r["id"]) is int for r in records)  # never Decimal


def test_a_deeply_nested_array_element_is_a_bad_record_and_reading_goes_on(tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "data.json"
    path.write_bytes(b'[{"id": 1}, {"x": ' + deep + b'}, {"id": 2}, ' + deep + b', {"id": 3}]')
    got = list(iter_records(path))
    assert [r["id"] for r in got if isinstance(r, dict)] == [1, 2, 3]
    assert [r.reason for r in got if isinstance(r, BadRecord)] == [
        f"bad_record: nested too deeply (more than {MAX_DEPTH} levels) at index {i}" for i in (1, 3)
    ]
    assert count_records(path) == 5


def test_a_json_file_with_a_single_object_is_one_record(tmp_path):
    path = tmp_path / "one.json"
    path.write_text('\n  {"id": "only", "image": "x.jpg", "n": [1, 2.5]}\n')
    assert list(iter_records(path)) == [{"id": "only", "image": "x.jpg", "n": [1, 2.5]}]
    assert count_records(path) == 1


def test_jsonl_named_json_fails_before_yielding_anything_and_says_where(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('{"id": 1}\n{"id": 2}\n')
    records = iter_records(path)
    with pytest.raises(RecordFormatError, match=r"data\.json.*trailing garbage.*line 2.*input_format: jsonl"):
        next(records)
    assert count_records(path) is None
    assert list(iter_records(path, input_format="jsonl")) == [{"id": 1}, {"id": 2}]
    assert count_records(path, input_format="jsonl") == 2


def test_invalid_json_inside_an_array_stops_after_the_records_before_it(tmp_path):
    path = tmp_path / "data.json"
    head = ",\n".join(json.dumps({"id": i}) for i in range(5))
    path.write_text(f'[{head},\n{{"id": 5, "text": oops}},\n{{"id": 6}}]')
    got = []
    with pytest.raises(RecordFormatError) as err:
        for record in iter_records(path):
            got.append(record)
    assert got == [{"id": i} for i in range(5)]
    message = str(err.value)
    assert "data.json" in message and "line 6" in message and "5 records read before it" in message
    assert "\n" not in message and count_records(path) is None


@pytest.mark.parametrize(
    "text, match",
    [
        ('[{"id": 1}, {"n": 123456789012345678901234567890}]', "integer overflow.*64-bit"),
        ('[{"id": 1}, {"t": "\\udc00"}]', "lone surrogate"),
        ('[{"id": 1}, {"t": "bad \xff byte"}]', "invalid bytes in UTF8"),
        ('"just a string"', "expected a JSON array of records or one object"),
        ("", "premature EOF"),
        ('[{"id": 1}] [{"id": 2}]', "trailing garbage"),
    ],
)
def test_what_the_array_reader_cannot_take_is_a_typed_error(tmp_path, text, match):
    path = tmp_path / "data.json"
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    with pytest.raises(RecordFormatError, match=match):
        list(iter_records(path))


def test_the_format_comes_from_the_extension_or_the_override(tmp_path):
    array = tmp_path / "data.txt"
    array.write_text('[{"id": 1}, {"id": 2}]')
    with pytest.raises(
        RecordFormatError, match="cannot tell the format of .*data.txt.*input_format: jsonl or json"
    ):
        list(iter_records(array))
    assert count_records(array) is None
    assert list(iter_records(array, input_format="json")) == [{"id": 1}, {"id": 2}]
    assert count_records(array, input_format="json") == 2
    [bad] = iter_records(array, input_format="jsonl")
    assert bad.reason == "bad_record: not a JSON object (array)"
    with pytest.raises(RecordFormatError, match="input_format must be"):
        list(iter_records(array, input_format="csv"))
    ndjson = tmp_path / "DATA.NDJSON"
    ndjson.write_text('{"id": 1}\n')
    assert list(iter_records(ndjson)) == [{"id": 1}]
    assert issubclass(RecordFormatError, ValueError)


# --- streaming: a big input is never held whole -----------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_50_mb_input_is_read_with_a_small_fraction_of_its_size_in_memory(tmp_path, suffix):
    path = tmp_path / f"big{suffix}"
    record = {"image": "images/000000.jpg", "conversations": [{"from": "human", "value": "describe " * 60}]}
    n = 0
    with open(path, "w") as f:
        f.write("[\n" if suffix == ".json" else "")
        while f.tell() < 50 << 20:
            sep = ",\n" if suffix == ".json" and n else ""
            f.write(sep + json.dumps({"id": n, **record}) + ("" if suffix == ".json" else "\n"))
            n += 1
        f.write("\n]" if suffix == ".json" else "")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        last = -1
        for got in iter_records(path):
            assert got["id"] == last + 1
            last = got["id"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last == n - 1
    assert peak < size / 20, f"peak {peak / 2**20:.1f} MB for a {size / 2**20:.0f} MB file"
    assert count_records(path) == n


# --- dumps: strict JSON on one line, whatever the record holds -------------------------------------
def test_dumps_writes_strict_utf8_json_for_nan_infinity_numpy_and_surrogates():
    record = {
        "nan": float("nan"),
        "inf": [float("inf"), -float("inf"), {"deep": [np.float32("nan"), np.float64("-inf")]}],
        "np": [np.float32(0.5), np.float64(0.25), np.int64(3), np.uint8(7), np.bool_(True)],
        "array": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "text": "lone \ud800 and \udcff here",
        "\udc80key": "value",
        np.int64(5): "numpy key",
        "path": Path("/data/x.jpg"),
        "bytes": b"\xffab",
        "tuple": (1, "two"),
    }
    line = dumps(record)
    line.encode("utf-8")
    assert "\n" not in line
    assert strict_loads(line) == {
        "nan": None,
        "inf": [None, None, {"deep": [None, None]}],
        "np": [0.5, 0.25, 3, 7, True],
        "array": [[1.0, None], [2.0, 3.0]],
        "text": "lone \ufffd and \ufffd here",
        "\ufffdkey": "value",
        "5": "numpy key",
        "path": "/data/x.jpg",
        "bytes": "\\xffab",
        "tuple": [1, "two"],
    }
    assert strict_loads(dumps(np.float32("inf"))) is None
    assert strict_loads(dumps({"score": np.float32(0.5)})) == {"score": 0.5}  # a number, not "0.5"


def test_dumps_of_a_clean_record_is_plain_json():
    record = {"id": "a", "text": '猫 "quoted"\n', "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert dumps(record) == json.dumps(record, ensure_ascii=False)


def test_rejected_lines_of_a_run_over_poison_input_are_strict_json(tmp_path):
    from paddlemix_iqa.pipeline import load_config, run_pipeline

    lines = [json.dumps({"id": "ok"}).encode(), b'{"id": "bad \xff"}', b'{"id": "s\\ud800"}', b"[1]"]
    data = jsonl(tmp_path / "data.jsonl", lines)
    config = tmp_path / "p.yaml"
    config.write_text(
        f"input: {data}\noutput_dir: {tmp_path / 'out'}\nprogress: false\nreport: false\n"
        "process:\n  - decodable_filter:\n"
    )
    run_pipeline(load_config(config))
    out = [
        strict_loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_bytes().decode().split("\n") if x
    ]
    bad = [r for r in out if "__iqa_line" in r]
    assert [(r["__iqa_line"], r["__iqa_reject"]) for r in bad] == [
        (2, "bad_record: invalid UTF-8 at byte 13"),
        (4, "bad_record: not a JSON object (array)"),
    ]
    assert bad[0]["__iqa_record"] == '{"id": "bad \\xff"}'
    kept = [strict_loads(x) for x in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    assert {r["id"] for r in kept} == {"ok", "s\ufffd"}
