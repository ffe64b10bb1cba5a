"""Convert the official ARNIQA PyTorch weights into the Paddle artifact the ``arniqa`` scorer loads.

    pip install -e ".[convert]"
    python tools/convert_arniqa.py --encoder ARNIQA.pth --regressor regressor_kadid10k.pth \
        [--regressor regressor_live.pth ...] [--out ~/.cache/paddlemix_iqa/arniqa]

Inputs are the files of https://github.com/miccunifi/ARNIQA/releases/tag/weights:
``ARNIQA.pth`` (state dict of the ResNet-50 encoder, ``model.<i>.*`` and
``projector.*`` keys) and ``regressor_<dataset>.pth`` (TorchScript, ``weights``
(1, 4096) and 0-d ``biases``). The encoder is translated by X2Paddle (trace mode);
its generated parameters are mapped onto the readable ``paddle.vision`` ResNet-50 of
``paddlemix_iqa.models.arniqa`` in execution order (shapes checked). The tool then
runs the torch model and the written Paddle artifact on the same probe batch (real
photos, the official crops protocol) and fails when any scaled score or feature
differs by more than ``--tolerance`` (1e-4). Nothing is written to ``--out`` unless
the check passes. torch and x2paddle are needed here only, never for scoring.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CONVERTER_VERSION = "1.0"
log = logging.getLogger("convert_arniqa")


class ConversionError(RuntimeError):
    """The inputs are not the official format, or the converted model does not match torch."""


# --- the torch side: the authors' encoder (torchvision ResNet-50 children, no fc), without torchvision ----


def torch_encoder(state_dict: dict):
    """A torch module with the official key layout, loaded strictly from ``state_dict``; forward -> L2-normed f."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes: int, planes: int, stride: int):
            super().__init__()
            out = planes * 4
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(y + identity)

    def stage(inplanes: int, planes: int, blocks: int, stride: int):
        return nn.Sequential(
            Bottleneck(inplanes, planes, stride), *[Bottleneck(planes * 4, planes, 1) for _ in range(blocks - 1)]
        )

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
                stage(64, 64, 3, 1),
                stage(256, 128, 4, 2),
                stage(512, 256, 6, 2),
                stage(1024, 512, 3, 2),
                nn.AdaptiveAvgPool2d(1),
            )
            self.projector = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))

        def forward(self, x):
            return nn.functional.normalize(torch.flatten(self.model(x), 1), dim=1)

    encoder = Encoder()
    missing, unexpected = encoder.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.startswith("projector.")]  # the projector is unused at inference
    if missing or unexpected:
        raise ConversionError(
            f"not the official ARNIQA.pth layout: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return encoder.eval()


def load_encoder_state(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "model.0.weight" not in state:
        raise ConversionError(f"{path} is not the official ARNIQA.pth (no 'model.0.weight' key)")
    return state


def load_regressor(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(weights (1, 4096), biases ()) of an official TorchScript regressor, checked against its own forward."""
    import torch

    module = torch.jit.load(str(path), map_location="cpu").eval()
    try:
        weights = module.weights.detach().float()
        biases = module.biases.detach().float()
    except AttributeError:
        raise ConversionError(f"{path} has no 'weights'/'biases': not an official ARNIQA regressor") from None
    if tuple(weights.shape) != (1, 4096) or biases.numel() != 1:
        raise ConversionError(f"{path}: weights {tuple(weights.shape)}, biases {tuple(biases.shape)}; expected (1, 4096), ()")
    probe = torch.randn(3, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = module(probe).reshape(-1)
    ours = (probe @ weights.T + biases).reshape(-1)
    if not torch.allclose(theirs, ours, atol=1e-5):
        raise ConversionError(f"{path}: forward is not x @ weights.T + biases")
    return weights.numpy(), biases.reshape(()).numpy()


def dataset_of(path: Path) -> str:
    from paddlemix_iqa.models.arniqa import DATASETS

    match = re.fullmatch(r"regressor_(\w+)\.pth", path.name)
    if not match or match.group(1) not in DATASETS:
        raise ConversionError(
            f"{path.name}: expected regressor_<dataset>.pth with dataset in {', '.join(DATASETS)}"
        )
    return match.group(1)


# --- X2Paddle translation and the mapping onto the readable model ------------------------------


def x2paddle_params(encoder, example, workdir: Path) -> dict[str, np.ndarray]:
    """Translate the torch encoder with X2Paddle (trace mode); returns the generated model's parameters."""
    import paddle
    from x2paddle.convert import pytorch2paddle

    save_dir = workdir / "x2paddle"
    pytorch2paddle(encoder, str(save_dir), jit_type="trace", input_examples=[example], disable_feedback=True)
    return {k: np.asarray(v) for k, v in paddle.load(str(save_dir / "model.pdparams")).items()}


def _layer_order(generated: dict[str, np.ndarray], kind: str) -> list[str]:
    """Names of X2Paddle's generated layers of ``kind`` ("conv2d" / "batchnorm") in creation (= execution) order."""
    names = {m.group(1) for k in generated if (m := re.match(rf"^({kind}\d+)\.", k))}
    return sorted(names, key=lambda n: int(n[len(kind) :]))


def map_onto_readable(generated: dict[str, np.ndarray], backbone) -> dict[str, np.ndarray]:
    """Assign X2Paddle's parameters to the readable ResNet-50, layer by layer in execution order."""
    import paddle
    from paddle import nn

    executed: list[tuple[str, nn.Layer]] = []
    names = {id(layer): name for name, layer in backbone.named_sublayers()}
    hooks = [
        layer.register_forward_post_hook(lambda lyr, _i, _o: executed.append((names[id(lyr)], lyr)))
        for layer in backbone.sublayers()
        if isinstance(layer, (nn.Conv2D, nn.BatchNorm2D))
    ]
    backbone.eval()
    with paddle.no_grad():
        backbone(paddle.zeros([1, 3, 64, 64]))
    for hook in hooks:
        hook.remove()

    convs, bns = _layer_order(generated, "conv2d"), _layer_order(generated, "batchnorm")
    ours_conv = [n for n, lyr in executed if isinstance(lyr, nn.Conv2D)]
    ours_bn = [n for n, lyr in executed if isinstance(lyr, nn.BatchNorm2D)]
    if len(convs) != len(ours_conv) or len(bns) != len(ours_bn):
        raise ConversionError(
            f"X2Paddle produced {len(convs)} conv / {len(bns)} batch-norm layers, the ResNet-50 has "
            f"{len(ours_conv)} / {len(ours_bn)}"
        )
    target = backbone.state_dict()
    mapped: dict[str, np.ndarray] = {}
    pairs = [(g, o, ["weight"]) for g, o in zip(convs, ours_conv, strict=True)]
    pairs += [(g, o, ["weight", "bias", "_mean", "_variance"]) for g, o in zip(bns, ours_bn, strict=True)]
    for gen, ours, fields in pairs:
        for field in fields:
            value, key = generated[f"{gen}.{field}"], f"{ours}.{field}"
            if tuple(value.shape) != tuple(target[key].shape):
                raise ConversionError(f"{gen}.{field} {value.shape} does not fit {key} {tuple(target[key].shape)}")
            mapped[key] = value.astype(np.float32)
    left = set(target) - set(mapped)
    if left:
        raise ConversionError(f"parameters left unmapped: {sorted(left)[:5]}")
    return mapped


# --- verification ----------------------------------------------------------------------


def probe_images() -> list[np.ndarray]:
    """Real photos that ship with scikit-image: one large enough for every crop, one that needs zero padding."""
    from skimage import data

    return [data.astronaut(), data.chelsea()[:200, :300]]


def probe_batch(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The official crops protocol: (5N full-scale crops, 5N half-scale crops), normalised NCHW."""
    from paddlemix_iqa.models.arniqa import center_corner_crops, half_scale, to_input

    full = to_input(np.concatenate([center_corner_crops(img) for img in images]))
    half = to_input(np.concatenate([center_corner_crops(half_scale(img)) for img in images]))
    return full, half


def verify(encoder, regressors: dict, artifact: Path, tolerance: float) -> dict:
    """Torch vs the written Paddle artifact on the probe batch; raises ConversionError beyond ``tolerance``."""
    import paddle
    import torch

    from paddlemix_iqa.models.arniqa import load_arniqa, scale_score

    full, half = probe_batch(probe_images())
    with torch.no_grad():
        t_f = encoder(torch.from_numpy(full)).numpy()
        t_fd = encoder(torch.from_numpy(half)).numpy()
    report = {"probe": "skimage astronaut and a chelsea crop; 5 crops x 2 scales", "tolerance": tolerance}
    worst = 0.0
    p_f = p_fd = None
    for dataset, (weights, biases) in regressors.items():
        model = load_arniqa(artifact, dataset)
        with paddle.no_grad():
            if p_f is None:  # the encoder is shared by all regressors: run it once
                p_f = model.encoder(paddle.to_tensor(full)).numpy()
                p_fd = model.encoder(paddle.to_tensor(half)).numpy()
            p_score = model.regress(paddle.to_tensor(p_f), paddle.to_tensor(p_fd)).numpy()
        t_score = (np.concatenate([t_f, t_fd], axis=1) @ weights.T + biases).reshape(-1)
        feature_diff = float(max(np.abs(p_f - t_f).max(), np.abs(p_fd - t_fd).max()))
        score_diff = float(np.abs(scale_score(p_score, dataset) - scale_score(t_score, dataset)).max())
        report[dataset] = {"max_feature_diff": feature_diff, "max_scaled_score_diff": score_diff}
        worst = max(worst, feature_diff, score_diff)
        log.info("%s: max |feature diff| %.2e, max |scaled score diff| %.2e", dataset, feature_diff, score_diff)
    if not worst <= tolerance:
        raise ConversionError(f"converted model differs from torch by {worst:.3g} > {tolerance}: {report}")
    report["max_diff"] = worst
    return report


def verify_inference(artifact: Path, tolerance: float) -> float:
    """The exported Paddle Inference program against the dynamic graph on the probe batch."""
    import paddle

    from paddlemix_iqa.models.arniqa import ENCODER_FILE, INFERENCE_DIR, ArniqaEncoder
    from paddlemix_iqa.models.inference import InferenceRunner

    full, _ = probe_batch(probe_images())
    encoder = ArniqaEncoder()
    encoder.backbone.set_state_dict(paddle.load(str(artifact / ENCODER_FILE)))
    encoder.eval()
    with paddle.no_grad():
        expected = encoder(paddle.to_tensor(full)).numpy()
    diff = float(np.abs(InferenceRunner(artifact / INFERENCE_DIR).run(full) - expected).max())
    if not diff <= tolerance:
        raise ConversionError(f"exported inference program differs from the dynamic graph by {diff:.3g}")
    return diff


# --- the tool --------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(
    encoder_path: Path,
    regressor_paths: list[Path],
    out: Path,
    tolerance: float = 1e-4,
    export: bool = True,
) -> dict:
    """Convert, verify, and only then move the artifact into ``out``; returns the metadata written."""
    import paddle
    import torch
    import x2paddle

    from paddlemix_iqa import __version__
    from paddlemix_iqa.models.arniqa import (
        DATASETS,
        ENCODER_FILE,
        FORMAT,
        INFERENCE_DIR,
        META_FILE,
        ArniqaEncoder,
        export_encoder,
        regressor_file,
    )

    if not regressor_paths:
        raise ConversionError("give at least one --regressor regressor_<dataset>.pth")
    torch.manual_seed(0)
    encoder = torch_encoder(load_encoder_state(encoder_path))
    regressors = {dataset_of(p): load_regressor(p) for p in regressor_paths}

    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".arniqa-", dir=out.parent) as tmp:
        tmp = Path(tmp)
        example = torch.from_numpy(probe_batch(probe_images()[:1])[0][:2])
        generated = x2paddle_params(encoder, example, tmp)
        readable = ArniqaEncoder()
        readable.backbone.set_state_dict(map_onto_readable(generated, readable.backbone))
        staged = tmp / "arniqa"
        staged.mkdir()
        paddle.save(readable.backbone.state_dict(), str(staged / ENCODER_FILE))
        meta = {
            "format": FORMAT,
            "model": "ARNIQA (Agnolucci et al., WACV 2024), ResNet-50 encoder + linear regressor",
            "converter_version": CONVERTER_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tools": {
                "paddlemix_iqa": __version__,
                "paddle": paddle.__version__,
                "torch": torch.__version__,
                "x2paddle": x2paddle.__version__,
            },
            "encoder": {"file": ENCODER_FILE, "source": encoder_path.name, "sha256": sha256(encoder_path)},
            "regressors": {},
        }
        for path, (dataset, (weights, biases)) in zip(regressor_paths, regressors.items(), strict=True):
            paddle.save({"weights": weights, "biases": biases}, str(staged / regressor_file(dataset)))
            low, high, kind = DATASETS[dataset]
            meta["regressors"][dataset] = {
                "file": regressor_file(dataset),
                "source": path.name,
                "sha256": sha256(path),
                "score_range": [low, high],
                "score_type": kind,
            }
        (staged / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        meta["verification"] = verify(encoder, regressors, staged, tolerance)
        if export:
            export_encoder(readable, staged / INFERENCE_DIR)
            meta["verification"]["inference_max_diff"] = verify_inference(staged, tolerance)
        (staged / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), str(out))
    log.info("wrote %s (regressors: %s)", out, ", ".join(regressors))
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, type=Path, help="the official ARNIQA.pth")
    parser.add_argument(
        "--regressor", required=True, type=Path, action="append", help="regressor_<dataset>.pth (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=None, help="artifact directory (default: <weights home>/arniqa)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max allowed torch/Paddle difference")
    parser.add_argument("--no-export", action="store_true", help="skip the Paddle Inference export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from paddlemix_iqa.models.weights import weights_home

    out = args.out or weights_home() / "arniqa"
    try:
        meta = convert(args.encoder, args.regressor, out, args.tolerance, export=not args.no_export)
    except (ConversionError, FileNotFoundError) as exc:
        print(f"conversion FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"ARNIQA converted to {out}; max torch/Paddle difference {meta['verification']['max_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
