"""Pipeline configs are validated, not trusted: every bad config exits 2 naming its key, never a traceback."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import paddlemix_iqa.io
from paddlemix_iqa.cli import main
from paddlemix_iqa.pipeline.config import ConfigError, load_config

OP = "input: data.jsonl\nprocess:\n  - {op}\n"
LAP = "input: data.jsonl\nprocess:\n  - laplacian_filter: {params}\n"
BOMB = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "input: data.jsonl\nprocess:\n  - laplacian_filter:\n"
)

#: (config text or bytes, overrides, text the message must contain: the key, or what is wrong)
BAD: dict[str, tuple[str | bytes, list[str], str]] = {
    "alias bomb": (BOMB, [], "YAML aliases (*a) are not allowed"),
    "duplicate setting": (
        "input: data.jsonl\nworkers: 1\nworkers: 2\nprocess: [decodable_filter]\n",
        [],
        "'workers'",
    ),
    "duplicate param": (
        LAP.format(params="{min_score: 0.1, min_score: 0.2}"),
        [],
        "duplicate key 'min_score'",
    ),
    "nan threshold": (LAP.format(params="{min_score: .nan}"), [], "min_score"),
    "infinite threshold": (LAP.format(params="{min_value: .inf}"), [], "min_value"),
    "nan override": (LAP.format(params="{}"), ["laplacian_filter.min_score=.nan"], "min_score"),
    "bool threshold": (LAP.format(params="{min_score: true}"), [], "min_score"),
    "string threshold": (LAP.format(params='{min_score: "abc"}'), [], "min_score"),
    "bool workers": ("input: data.jsonl\nworkers: true\nprocess: [decodable_filter]\n", [], "workers"),
    "yes batch_size": ("input: data.jsonl\nbatch_size: yes\nprocess: [decodable_filter]\n", [], "batch_size"),
    "nan commit_seconds": (
        "input: data.jsonl\ncommit_seconds: .nan\nprocess: [decodable_filter]\n",
        [],
        "commit_seconds",
    ),
    "list working_size": (LAP.format(params="{working_size: [1]}"), [], "working_size"),
    "huge working_size": (LAP.format(params="{working_size: 100000}"), [], "working_size"),
    "huge tiles": (LAP.format(params="{tiles: 100000}"), [], "tiles"),
    "nan tile_quantile": (LAP.format(params="{tile_quantile: .nan}"), [], "tile_quantile"),
    "int mode": (LAP.format(params="{mode: 3}"), [], "mode"),
    "int keep_all": (LAP.format(params="{keep_all: 3}"), [], "keep_all"),
    "code sizes": (OP.format(op='code_filter: {working_size: "x"}'), [], "working_size"),
    "code kinds": (OP.format(op="code_filter: {kinds: 3}"), [], "kinds"),
    "pulc threads": (OP.format(op="pulc_blur_filter: {threads: 0}"), [], "threads"),
    "file size list": (OP.format(op="filesize_filter: {min_size: [1]}"), [], "min_size"),
    "brisque model_path": (OP.format(op="brisque_filter: {model_path: 3}"), [], "model_path"),
    "iqa metric": (OP.format(op="iqa_filter: {metric: nope}"), [], "metric"),
    "process not a list": ("input: data.jsonl\nprocess: {a: 1}\n", [], "process"),
    "step not a mapping": (OP.format(op="3"), [], "process step"),
    "op name not a string": (OP.format(op="{3: {}}"), [], "op name"),
    "top-level list": ("- input\n- process\n", [], "'input' and 'process'"),
    "empty file": ("", [], "'input' and 'process'"),
    "not UTF-8": (b"input: data.jsonl\n# caf\xe9\nprocess: [decodable_filter]\n", [], "UTF-8"),
    "deep nesting": ("input: data.jsonl\nprocess: " + "[" * 3000 + "]" * 3000 + "\n", [], "nested"),
    "input_format": (
        "input: data.jsonl\ninput_format: csv\nprocess: [decodable_filter]\n",
        [],
        "input_format",
    ),
    "allow_outside_root": (
        'input: data.jsonl\nallow_outside_root: "yes"\nprocess: [decodable_filter]\n',
        [],
        "allow_outside_root",
    ),
    "same step name": (
        "input: data.jsonl\nprocess:\n  - laplacian_filter:\n  - laplacian_filter: {tiles: 4}\n",
        [],
        "name",
    ),
    "bad name": (LAP.format(params='{name: "a b: c"}'), [], "name"),
    "bad override YAML": (LAP.format(params="{}"), ["laplacian_filter.min_score=[1"], "override"),
    "per-op allow_outside_root": (LAP.format(params="{allow_outside_root: true}"), [], "allow_outside_root"),
}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_config_exits_2_naming_the_key(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, overrides, expected = BAD[case]
    path = tmp_path / "pipe.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, err = _run(["run", str(path), *overrides, "--no-progress", "--no-report"], capsys)
    assert code == 2, err
    assert expected in err
    assert "Traceback" not in err and "failed:" not in err


def test_a_directory_is_not_a_config(tmp_path, capsys):
    code, err = _run(["run", str(tmp_path), "--no-progress", "--no-report"], capsys)
    assert code == 2 and "cannot read config" in err and "Traceback" not in err


def test_the_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match=r"bomb.yaml line 2: YAML aliases \(\*a\)"):
        load_config(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing expanded


def test_duplicate_keys_name_both_lines(tmp_path):
    path = tmp_path / "pipe.yaml"
    path.write_text(
        "input: data.jsonl\nprocess:\n  - laplacian_filter:\n      min_score: 0.1\n      min_score: 0.5\n"
    )
    with pytest.raises(ConfigError, match=r"line 5: duplicate key 'min_score' \(first on line 4\)"):
        load_config(path)


def test_every_error_is_reported_at_once(tmp_path):
    path = tmp_path / "pipe.yaml"
    path.write_text(
        OP.format(op="laplacian_filter: {min_score: .nan}") + "  - tenengrad_filter: {tiles: 0}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "min_score" in str(err.value) and "tiles" in str(err.value)


# --- name: and overrides -------------------------------------------------------------------------
@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "data.jsonl").write_text(json.dumps({"id": "a", "image": "a.png"}) + "\n")
    return tmp_path


def test_an_op_name_starts_its_reasons(dataset, capsys):
    path = dataset / "pipe.yaml"
    path.write_text(
        f"input: {dataset / 'data.jsonl'}\noutput_dir: {dataset / 'out'}\n"
        "process:\n  - resolution_filter: {name: res, min_width: 64}\n"
    )
    code, err = _run(["run", str(path), "--no-progress", "--no-report"], capsys)
    assert code == 0, err
    rejected = [json.loads(line) for line in (dataset / "out" / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["__iqa_reject"].startswith("res: width 50 < 64")


def test_overrides_address_a_step_by_name_or_by_its_only_op(dataset):
    path = dataset / "pipe.yaml"
    path.write_text(
        "input: data.jsonl\nprocess:\n  - resolution_filter: {name: res, min_width: 64}\n"
        "  - laplacian_filter:\n  - laplacian_filter: {name: lap_tiles, tiles: 4}\n"
    )
    config = load_config(
        path, ["res.min_width=10", "lap_tiles.min_score=0.3", "laplacian_filter.min_score=0.1"]
    )
    assert [s.params for s in config.steps] == [
        {"name": "res", "min_width": 10},
        {"min_score": 0.1},
        {"name": "lap_tiles", "tiles": 4, "min_score": 0.3},
    ]
    assert [s.label for s in config.steps] == ["res", "laplacian_filter", "lap_tiles"]
    assert load_config(path, ["resolution_filter.min_width=5"]).steps[0].params["min_width"] == 5
    assert [op.name for op in config.build_ops()] == ["res", "laplacian_filter", "lap_tiles"]

    path.write_text(
        "input: data.jsonl\nprocess:\n  - laplacian_filter: {name: a}\n  - laplacian_filter: {name: b}\n"
    )
    with pytest.raises(ConfigError, match="2 steps match 'laplacian_filter'"):
        load_config(path, ["laplacian_filter.min_score=0.1"])
    with pytest.raises(ConfigError, match="no op 'c'"):
        load_config(path, ["c.min_score=0.1"])


# --- settings --------------------------------------------------------------------------------------
def test_new_settings_are_in_the_record_and_the_fingerprint(dataset):
    path = dataset / "pipe.yaml"
    path.write_text("input: data.jsonl\nprocess: [decodable_filter]\n")
    default = load_config(path)
    assert default.allow_outside_root is False and default.input_format is None
    changed = load_config(path, ["allow_outside_root=true", "input_format=json"])
    assert changed.to_dict()["allow_outside_root"] is True and changed.to_dict()["input_format"] == "json"
    assert changed.fingerprint() != default.fingerprint()
    assert load_config(path, ["input_format=jsonl"]).fingerprint() != default.fingerprint()


def test_a_bad_max_pixels_variable_is_a_config_error(dataset, monkeypatch):
    def limit():
        raise ValueError("'lots' is not a number of pixels")

    monkeypatch.setattr(paddlemix_iqa.io, "max_pixels_limit", limit, raising=False)
    path = dataset / "pipe.yaml"
    path.write_text("input: data.jsonl\nprocess: [decodable_filter]\n")
    with pytest.raises(ConfigError, match="PADDLEMIX_IQA_MAX_PIXELS: 'lots'"):
        load_config(path)
    monkeypatch.undo()
    monkeypatch.setenv("PADDLEMIX_IQA_MAX_PIXELS", "lots")
    if hasattr(paddlemix_iqa.io, "max_pixels_limit"):  # the real check, once io has it
        with pytest.raises(ConfigError, match="PADDLEMIX_IQA_MAX_PIXELS"):
            load_config(path)
