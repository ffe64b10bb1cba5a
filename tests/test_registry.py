"""The registry: decorators at the class, lazy built-ins, derived filter/tagger ops, and a plugin
from another installed package that shows up everywhere without an edit to this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import unittest
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa import registry, testing
from paddlemix_iqa.ops import MetricFilter, ScorerOp, build_op, list_ops, op_class
from paddlemix_iqa.pipeline import load_config, run_pipeline
from paddlemix_iqa.pipeline.config import op_parameters
from paddlemix_iqa.registry import OPS, SCORERS, op_spec, register_op, register_scorer, split_op_name
from paddlemix_iqa.scorers import Scorer, get_scorer, list_scorers, scorer_class

BUILTIN_OPS = {
    "decodable_filter",
    "resolution_filter",
    "aspect_ratio_filter",
    "filesize_filter",
    "iqa_filter",
    "code_filter",
    "pulc_blur_filter",
    "pulc_code_filter",
    "laplacian_filter",
    "tenengrad_filter",
    "gradient_mean_filter",
    "brisque_filter",
    "arniqa_filter",
}


# --- built-ins ---------------------------------------------------------------------------------------
def test_builtins_are_registered_by_their_decorators():
    assert set(list_scorers()) >= {
        "laplacian",
        "tenengrad",
        "gradient_mean",
        "brisque",
        "arniqa",
        "pulc_clarity",
        "pulc_code",
        "codes",
    }
    for name in list_scorers():
        assert scorer_class(name).name == name  # the decorator names the class
    assert BUILTIN_OPS <= set(list_ops())
    assert {f"{m}_tagger" for m in list_scorers()} <= set(list_ops())


def test_importing_and_listing_imports_no_scorer_module():
    """Built-ins are read from source, so listing stays light; building one imports only its module."""
    code = textwrap.dedent(
        """
        import sys
        import paddlemix_iqa
        from paddlemix_iqa.ops import list_ops, op_class, build_op
        from paddlemix_iqa.scorers import list_scorers
        heavy = {"paddle", "torch", "paddlemix", "scipy", "zxingcpp"}
        def loaded():
            return sorted(
                m for m in sys.modules
                if m.split(".")[0] in heavy
                or m.startswith("paddlemix_iqa.scorers.") and m != "paddlemix_iqa.scorers.base"
            )
        list_ops(), list_scorers(), op_class("laplacian_filter")
        print(loaded())
        build_op("laplacian_filter")
        print(loaded())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    listed, built = out.splitlines()
    assert listed == "[]"
    assert built == "['paddlemix_iqa.scorers.sharpness']"


def test_the_name_rule_and_dedicated_ops():
    assert split_op_name("gradient_mean_tagger") == ("gradient_mean", "tagger")
    assert split_op_name("_filter") is None and split_op_name("laplacian") is None
    assert op_class("laplacian_filter") is MetricFilter
    spec = op_spec("laplacian_tagger")
    assert (spec.op, spec.metric, spec.bound) == (
        "iqa_filter",
        "laplacian",
        {"metric": "laplacian", "keep_all": True},
    )
    # a scorer with a dedicated op: that op is its filter, the tagger is that op keeping all
    assert op_spec("code_filter").metric == "codes" and op_spec("pulc_blur_filter").metric == "pulc_clarity"
    assert "codes_filter" not in list_ops() and "pulc_clarity_filter" not in list_ops()
    with pytest.raises(KeyError, match="'codes' is filtered by 'code_filter'"):
        op_spec("codes_filter")
    tagger = build_op("codes_tagger")
    assert type(tagger) is op_class("code_filter") and tagger.keep_all and tagger.name == "codes_tagger"
    with pytest.raises(ValueError, match="fixes keep_all"):
        build_op("laplacian_tagger", keep_all=False)
    with pytest.raises(ValueError, match="fixes metric"):
        build_op("laplacian_filter", metric="brisque")
    assert "keep_all" not in op_parameters("laplacian_tagger") and "metric" not in op_parameters(
        "code_filter"
    )


# --- registering at run time ------------------------------------------------------------------------------
@pytest.fixture()
def forget():
    """Names registered by a test, unregistered after it."""
    names: list[tuple[registry.Registry, str]] = []
    yield lambda reg, name: names.append((reg, name))
    for reg, name in names:
        reg.unregister(name)


def test_a_decorated_scorer_gets_its_ops_and_passes_the_contract(forget, tmp_path):
    @register_scorer("planted_red")
    class Redness(Scorer):
        native_range = (0.0, 255.0)

        def score_batch(self, images):
            return np.array([float(np.asarray(im)[..., 0].mean()) for im in images])

    forget(SCORERS, "planted_red")
    assert Redness.name == "planted_red" and scorer_class("planted_red") is Redness
    assert {"planted_red_filter", "planted_red_tagger"} <= set(list_ops())
    op = build_op("planted_red_filter", min_value=100)
    Image.fromarray(np.full((8, 8, 3), (200, 0, 0), np.uint8)).save(tmp_path / "red.png")
    Image.fromarray(np.full((8, 8, 3), (20, 0, 0), np.uint8)).save(tmp_path / "dark.png")
    assert op({"image": str(tmp_path / "red.png")}) is not None
    dark = {"image": str(tmp_path / "dark.png")}
    assert op(dark) is None and dark["__iqa_reject"].startswith("planted_red_filter: planted_red 20 < 100")
    for check in testing.SCORER_CHECKS[:-1]:
        check(Redness())


def test_names_are_not_taken_twice(forget):
    class Other(Scorer):
        def score_batch(self, images):
            return np.zeros(len(images))

    with pytest.raises(ValueError, match="already registered"):
        register_scorer("laplacian", Other)
    assert scorer_class("laplacian") is not Other
    with pytest.raises(ValueError, match="letters, digits"):
        register_scorer("no spaces", Other)
    register_scorer("planted_twice", Other)
    forget(SCORERS, "planted_twice")
    register_scorer("planted_twice", Other)  # the same class again is fine (a module imported twice)
    register_scorer("planted_twice", "elsewhere:Other", force=True)
    assert SCORERS.targets["planted_twice"] == "elsewhere:Other"


def test_a_lazy_string_entry_is_imported_on_first_use(forget, tmp_path, monkeypatch):
    (tmp_path / "planted_lazy_mod.py").write_text(
        "import numpy as np\nfrom paddlemix_iqa.scorers import Scorer\n"
        "class Lazy(Scorer):\n    native_range = (0.0, 1.0)\n"
        "    def score_batch(self, images):\n        return np.full(len(images), 0.5)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_scorer("planted_lazy", "planted_lazy_mod:Lazy")
    forget(SCORERS, "planted_lazy")
    assert "planted_lazy" in list_scorers() and "planted_lazy_mod" not in sys.modules
    assert get_scorer("planted_lazy").score(np.zeros((4, 4, 3), np.uint8)) == 0.5
    assert scorer_class("planted_lazy").name == "planted_lazy"
    sys.modules.pop("planted_lazy_mod", None)


def test_a_dedicated_op_replaces_the_derived_filter(forget):
    @register_scorer("planted_grey")
    class Grey(Scorer):
        native_range = (0.0, 255.0)

        def score_batch(self, images):
            return np.array([float(np.asarray(im).mean()) for im in images])

    forget(SCORERS, "planted_grey")
    assert "planted_grey_filter" in list_ops()

    @register_op("planted_grey_gate", metric="planted_grey")
    class GreyGate(MetricFilter):
        def __init__(self, **kwargs):
            super().__init__(self.metric, **kwargs)

    forget(OPS, "planted_grey_gate")
    assert GreyGate.metric == "planted_grey" and GreyGate.op_name == "planted_grey_gate"
    assert "planted_grey_filter" not in list_ops() and "planted_grey_gate" in list_ops()
    tagger = build_op("planted_grey_tagger")
    assert type(tagger) is GreyGate and tagger.keep_all and tagger.key() == "__tag_planted_grey"
    assert issubclass(op_class("planted_grey_gate"), ScorerOp)


# --- a plugin from another distribution ---------------------------------------------------------------------
PLUGIN = '''
"""A scorer that lives outside paddlemix_iqa: mean brightness."""
import numpy as np

from paddlemix_iqa.scorers import Scorer


class MeanBrightness(Scorer):
    native_range = (0.0, 255.0)

    def __init__(self, channel: int | None = None):
        self.channel = channel

    def score_batch(self, images):
        self.require_scorable(images)
        pick = (lambda im: im) if self.channel is None else (lambda im: im[..., self.channel])
        return np.array([float(pick(np.asarray(im, np.float64)).mean()) for im in images])
'''


@pytest.fixture()
def plugin_site(tmp_path) -> Path:
    """A folder holding an installed-looking distribution ``iqa-brightness``: its module and a
    ``.dist-info`` with the entry point, as ``pip install`` leaves them in site-packages."""
    site = tmp_path / "site"
    (site / "iqa_brightness").mkdir(parents=True)
    (site / "iqa_brightness" / "__init__.py").write_text(PLUGIN)
    info = site / "iqa_brightness-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: iqa-brightness\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[paddlemix_iqa.scorers]\nmean_brightness = iqa_brightness:MeanBrightness\n"
    )
    return site


@pytest.fixture()
def plugin(plugin_site):
    """The plugin on sys.path of this process (the registry re-reads entry points); gone afterwards."""
    sys.path.insert(0, str(plugin_site))
    registry.refresh()
    yield plugin_site
    sys.path.remove(str(plugin_site))
    sys.modules.pop("iqa_brightness", None)
    registry.refresh()
    assert "mean_brightness" not in list_scorers()


def test_a_plugin_scorer_is_listed_by_the_cli(plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "paddlemix_iqa.cli", "ops"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "min_value" in lines["mean_brightness_filter"] and "channel" in lines["mean_brightness_filter"]
    assert "[plugin: iqa-brightness]" in lines["mean_brightness_filter"]
    assert "mean_brightness_tagger" in lines
    assert (
        "higher is better" in lines["mean_brightness"]
        and "[plugin: iqa-brightness]" in lines["mean_brightness"]
    )


def test_a_plugin_scorer_filters_in_a_yaml_pipeline(plugin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    records = []
    for name, level in (("bright", 200), ("dark", 30), ("mid", 120)):
        pixels = (
            np.random.default_rng(level)
            .integers(max(0, level - 20), level + 20, (40, 50, 3))
            .astype(np.uint8)
        )
        Image.fromarray(pixels).save(data / f"{name}.png")
        records.append({"id": name, "image": f"{name}.png"})
    (data / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "plugin.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            input: {data / "records.jsonl"}
            output_dir: {tmp_path / "run"}
            progress: false
            report: false
            process:
              - mean_brightness_filter: {{min_value: 100, channel: 0}}
              - laplacian_tagger:
            """
        )
    )
    summary = run_pipeline(load_config(config))
    kept = [json.loads(line) for line in (tmp_path / "run" / "kept.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in kept) == ["bright", "mid"]
    assert [r["id"] for r in rejected] == ["dark"]
    assert rejected[0]["__iqa_reject"].startswith("mean_brightness_filter: mean_brightness 29.")
    assert rejected[0]["__iqa_reject"].endswith(" < 100") and "__tag_laplacian" not in rejected[0]
    assert all("__tag_laplacian" in r for r in kept)
    lines = {o["op"]: o["lines"] for o in summary["ops"]}
    assert lines["mean_brightness_filter"] == [{"label": "min_value=100", "x": 100.0, "scale": "value"}]


def test_a_plugin_scorer_passes_the_contract(plugin, host):
    scorer = testing.scorer_or_skip("mean_brightness")
    assert type(scorer).__module__ == "iqa_brightness" and scorer.name == "mean_brightness"
    for check in testing.SCORER_CHECKS:
        try:
            check(scorer)
        except unittest.SkipTest:
            assert check is testing.check_sharpness_ranks_sharp_above_blurred
    for name in ("mean_brightness_filter", "mean_brightness_tagger"):
        for check in testing.OP_CHECKS:
            check(build_op(name, min_score=0.1) if name.endswith("filter") else build_op(name))
