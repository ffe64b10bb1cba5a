"""Every shipped threshold, from data: choose it, write it into the config, measure it into the docs.

For each step of each bundled config (``paddlemix_iqa/configs/*.yaml``) that rejects by a
quality threshold, the threshold is not typed by hand:

- a ``fused_filter`` step takes its model's own threshold (chosen by ``calibrate
  --target-fpr`` on out-of-fold probabilities, e.g. ``tools/train_blur_model.py``);
- the ``min_confidence`` of a ``code_filter`` step is the code model's own (chosen by
  ``tools/fit_code_model.py`` on held-out photos at FPR <= 1%);
- a PULC step keeps PaddleClas's published default (0.5); its FPR/TPR are measured only when
  the weights are installed, otherwise PaddleClas's published points stand in the docs;
- any other threshold (``min_score`` of a weight-free metric) is the one with the highest TPR
  on the synthetic set at FPR <= ``--target-fpr`` (default 2%) on the clean COCO photos.

Each value is then measured by running the step's op alone, with that value, over the 64
clean COCO photos of ``../shared/data/photos/coco`` and their synthetic degradations
(``make-eval-set``, seed 0): FPR on the clean photos, TPR on the degradations the step is
for. ``--write`` puts the values (with a comment saying where they come from) into the
configs and the table between the ``thresholds`` markers of docs/accuracy.md; ``--check``
exits 1 when a config holds a value other than the one chosen here.

    python benchmarks/thresholds.py [--work DIR] [--write | --check]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED_DATA, write_generated  # noqa: E402

DOCS = ROOT / "docs" / "accuracy.md"
CONFIGS = ROOT / "paddlemix_iqa" / "configs"
#: the synthetic classes each metric is meant to catch (TPR is measured on these); subsets reported too
POSITIVES = {
    "fused": ("blur", "defocus"),
    "laplacian": ("blur", "defocus"),
    "tenengrad": ("blur", "defocus"),
    "gradient_mean": ("blur", "defocus"),
    "edge_sharpness": ("blur", "defocus"),
    "pulc_clarity": ("blur", "defocus"),
    "brisque": ("jpeg", "noise"),
    "arniqa": ("jpeg", "noise", "blur"),
    "codes": ("code",),
    "pulc_code": ("code",),
}
HARD_SUBSETS = ("gaussian_k5", "motion_k5")
#: threshold kinds that judge image quality; width, height, ratio and file size bounds are dataset
#: policy (the host's defaults), not chosen from accuracy data
QUALITY_KINDS = frozenset({"score", "value", "coverage", "probability", "confidence"})
MARK = "# from benchmarks/thresholds.py"
CHUNK = 16


@dataclass
class Shipped:
    """One threshold of one config step: where it is written and how its value is chosen."""

    config: str
    step: str  # the step's label (``name:`` or the op name)
    op: str
    params: dict[str, Any]
    param: str
    line: int  # 0-based line of the value in the YAML file
    metric: str
    policy: str = ""
    value: float | None = None
    measured: dict[str, Any] = field(default_factory=dict)


def shipped_thresholds() -> list[Shipped]:
    """Every quality threshold set in a bundled config, with the YAML line holding its value."""
    from paddlemix_iqa.ops.base import _threshold_kinds
    from paddlemix_iqa.registry import op_spec

    found = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        root = yaml.compose(path.read_text(encoding="utf-8"))
        process = next(v for k, v in root.value if k.value == "process")
        for step_node in process.value:
            (key, body), = step_node.value
            try:
                spec = op_spec(key.value)
            except KeyError:
                continue  # a host (DataCopilot) op
            values = {} if not isinstance(body, yaml.MappingNode) else {k.value: v for k, v in body.value}
            params = yaml.safe_load(yaml.serialize(body)) if isinstance(body, yaml.MappingNode) else {}
            metric = spec.metric or params.get("metric")
            for name, kind in _threshold_kinds(spec.cls).items():
                if kind not in QUALITY_KINDS or name not in values or params.get(name) is None:
                    continue
                found.append(
                    Shipped(
                        config=path.stem,
                        step=params.get("name", key.value),
                        op=key.value,
                        params=params,
                        param=name,
                        line=values[name].start_mark.line,
                        metric=metric,
                    )
                )
    return found


# --- scoring: each step's op alone over the labelled images ----------------------------------------
def _judge_chunk(op_name: str, params: dict[str, Any], paths: list[str]) -> list[tuple[float | None, float | None, str | None]]:
    """(native, quality, reason) per image from the op's own judgement (reason: why it would reject)."""
    from paddlemix_iqa.io import DecodedImage
    from paddlemix_iqa.ops import build_op

    op = build_op(op_name, **params)
    out = []
    for path in paths:
        loaded = op.load([path])[0]
        if not isinstance(loaded, DecodedImage):
            out.append((None, None, f"decode_error: {loaded.reason}"))
            continue
        verdict = op.judge([loaded])[0]
        out.append((verdict.value, verdict.quality, verdict.reason))
    return out


def judge_all(op_name: str, params: dict[str, Any], paths: list[str], workers: int = 2) -> list[tuple]:
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(_judge_chunk, [op_name] * len(chunks), [params] * len(chunks), chunks)
        return [row for part in parts for row in part]


def _open_params(shipped: Shipped) -> dict[str, Any]:
    """The step's parameters with every threshold open: scores without rejecting."""
    from paddlemix_iqa.ops.base import _threshold_kinds
    from paddlemix_iqa.registry import op_spec

    params = {k: v for k, v in shipped.params.items() if k != "name"}
    for name in _threshold_kinds(op_spec(shipped.op).cls):
        params.pop(name, None)
    return params


def choose(shipped: Shipped, items: list, target_fpr: float, workers: int) -> None:
    """Set ``shipped.value`` and ``shipped.policy`` by the rules of this module's docstring."""
    from paddlemix_iqa.evaluation.metrics import threshold_for_fpr

    if shipped.metric == "fused":
        from paddlemix_iqa.scorers.fused import load_model

        model = load_model(shipped.params["model"])
        shipped.value = model.threshold["max_value"]
        t = model.threshold
        shipped.policy = (
            f"the model's: out-of-fold FPR {t['cv_fpr']:.1%} (target {t['target_fpr']:.0%}), TPR {t['cv_tpr']:.1%}"
        )
        return
    if shipped.param == "min_confidence" and shipped.metric == "codes":
        from paddlemix_iqa.scorers.codes import load_model as load_code_model

        shipped.value = load_code_model(shipped.params.get("model")).min_confidence
        shipped.policy = "the code model's (tools/fit_code_model.py: cross-validated over photos, FPR <= 1%)"
        return
    if shipped.metric.startswith("pulc_"):
        shipped.value = 0.5
        shipped.policy = "PaddleClas's published default"
        return
    if shipped.param != "min_score":
        raise SystemExit(f"{shipped.config}/{shipped.step}: no rule chooses {shipped.param}; add one here")
    rows = judge_all(shipped.op, _open_params(shipped), [i.path for i in items], workers)
    quality = [q if q is not None else -math.inf for _, q, _ in rows]  # unscorable: always flagged
    shipped.value = threshold_for_fpr(quality, [i.label for i in items], target_fpr)
    shipped.policy = f"highest TPR at FPR <= {target_fpr:.0%} on the clean photos"


def measure(shipped: Shipped, items: list, workers: int) -> None:
    """FPR / TPR of the step run alone with its chosen value (the op's own decision); nothing when
    its model weights are not installed."""
    from paddlemix_iqa.models.weights import WeightsNotFound
    from paddlemix_iqa.registry import op_spec

    try:
        op_spec(shipped.op).build(**{k: v for k, v in shipped.params.items() if k != "name"})
    except WeightsNotFound:
        shipped.measured = {}
        return
    params = {k: v for k, v in shipped.params.items() if k != "name"} | {shipped.param: shipped.value}
    rows = judge_all(shipped.op, params, [i.path for i in items], workers)
    flagged = [reason is not None for _, _, reason in rows]
    by: dict[str, list[bool]] = {}
    for item, flag in zip(items, flagged, strict=True):
        by.setdefault(item.cls, []).append(flag)
        if item.label:
            by.setdefault(f"{item.cls}/{item.extra.get('subset')}", []).append(flag)
    shipped.measured = {k: (sum(v), len(v)) for k, v in by.items()}


# --- writing ------------------------------------------------------------------------------------
def _short(value: float) -> str:
    return repr(float(value)) if len(repr(float(value))) <= 8 else f"{value:.6g}"


def comment(shipped: Shipped) -> str:
    m = shipped.measured
    if not m:
        return f"{MARK}: {shipped.policy} (not measured: weights not installed)"
    fp, neg = m.get("clean", (0, 0))
    pos = [c for c in POSITIVES.get(shipped.metric, ()) if c in m]
    tpr = ", ".join(f"{c} {m[c][0] / m[c][1]:.0%}" for c in pos)
    return f"{MARK}: FPR {fp}/{neg} clean COCO, TPR {tpr}"


def update_config(path: Path, rows: list[Shipped], write: bool) -> list[str]:
    """Put each value (and its comment) on its line; returns the lines that differ."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = []
    for s in rows:
        old = lines[s.line]
        match = re.match(rf"^(\s*{re.escape(s.param)}:\s*)([^#\n]*?)\s*(#.*)?$", old.rstrip("\n"))
        if not match:
            raise SystemExit(f"{path}:{s.line + 1}: cannot find '{s.param}:' to rewrite")
        current = yaml.safe_load(match.group(2))
        if current != s.value:
            changed.append(f"{path.name}:{s.line + 1}: {s.step}.{s.param} is {current}, data say {s.value}")
        lines[s.line] = f"{match.group(1)}{_short(s.value)}  {comment(s)}\n"
    if write:
        path.write_text("".join(lines), encoding="utf-8")
    return changed


def table(rows: list[Shipped]) -> list[str]:
    out = [
        "| config | step | parameter | value | chosen by | FPR, clean COCO | TPR by class | TPR, hardest blur subsets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        m = s.measured
        if not m:
            out.append(f"| {s.config} | {s.step} | `{s.param}` | {_short(s.value)} | {s.policy} | "
                       "not measured: weights not installed | see PaddleClas's points below | - |")
            continue
        fp, neg = m.get("clean", (0, 0))
        pos = [c for c in POSITIVES.get(s.metric, ()) if c in m]
        tprs = "; ".join(f"{c} {m[c][0]}/{m[c][1]} ({m[c][0] / m[c][1]:.1%})" for c in pos)
        hard = "; ".join(
            f"{sub} {m[k][0] / m[k][1]:.1%}" for sub in HARD_SUBSETS if (k := f"blur/{sub}") in m
        ) or "-"
        out.append(
            f"| {s.config} | {s.step} | `{s.param}` | {_short(s.value)} | {s.policy} | "
            f"{fp}/{neg} ({fp / neg:.1%}) | {tprs} | {hard} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="the synthetic set's folder (built when missing; default: a temp folder)")
    parser.add_argument("--target-fpr", type=float, default=0.02)
    parser.add_argument("--workers", type=int, default=2)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the values into the configs and docs")
    mode.add_argument("--check", action="store_true", help="exit 1 when a config differs from the data")
    args = parser.parse_args(argv)

    from paddlemix_iqa.evaluation.labelled import load_labelled
    from paddlemix_iqa.evaluation.synth import make_eval_set

    photos = SHARED_DATA / "photos" / "coco"
    if not photos.is_dir():
        raise SystemExit(f"no photos at {photos}; this benchmark needs ../shared/data")
    work = Path(args.work or tempfile.mkdtemp(prefix="thresholds_"))
    if not (work / "labels.jsonl").is_file():
        make_eval_set(photos, work, seed=0, workers=args.workers)
    everything = load_labelled(work / "labels.jsonl")
    rows = shipped_thresholds()
    for s in rows:
        classes = {"clean", *POSITIVES.get(s.metric, ())}
        items = [i for i in everything if i.cls in classes]
        choose(s, items, args.target_fpr, args.workers)
        measure(s, items, args.workers)
        print(f"{s.config}/{s.step}.{s.param} = {_short(s.value)}: {comment(s)}", flush=True)
    changed = []
    for config in sorted({s.config for s in rows}):
        changed += update_config(CONFIGS / f"{config}.yaml", [s for s in rows if s.config == config], args.write)
    for line in changed:
        print(line)
    if args.write:
        write_generated(DOCS, "thresholds", table(rows), facts=f"synthetic set seed 0, {len(everything)} images")
        (work / "thresholds.json").write_text(
            json.dumps([s.__dict__ for s in rows], indent=1, default=str), encoding="utf-8"
        )
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
