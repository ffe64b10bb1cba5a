"""ARNIQA: conversion of official-format checkpoints, parity with an independent torch pipeline, the scorer.

The official weights cannot be downloaded here, so the tests write checkpoints in
exactly the official format (a randomly initialised ResNet-50 state dict with the
authors' key names, TorchScript regressors with ``weights``/``biases``), run the
converter, and compare the Paddle scorer against a torch implementation of the
authors' pipeline (PIL half-size copy, PIL crops, torch network) written here.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa import iqa_filter, scorers
from paddlemix_iqa.models.weights import WeightsNotFound
from paddlemix_iqa.ops import host as host_ops
from paddlemix_iqa.ops import iqa_arniqa
from paddlemix_iqa.scorers import get_scorer
from paddlemix_iqa.scorers.arniqa import ArniqaScorer

ROOT = Path(__file__).resolve().parents[1]
RANGES = {"kadid10k": (1.0, 5.0, False), "live": (1.0, 100.0, True)}  # (low, high, inverted): hubconf's table


# --- an independent torch implementation of the official model and protocol -------------------------


def official_encoder(seed: int = 0):
    """torchvision's ResNet-50 children without fc, as ``model.<i>`` + the unused projector; random weights."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
            self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
            self.relu = nn.ReLU()
            if stride > 1 or cin != 4 * width:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width)
                )
            else:
                self.downsample = None

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    layers, cin = [], 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        stage = []
        for i in range(blocks):
            stage.append(Block(cin, width, stride if i == 0 else 1))
            cin = 4 * width
        layers.append(nn.Sequential(*stage))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
            self.model = nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d((1, 1)))
            self.projector = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))

        def forward(self, x):
            return nn.functional.normalize(self.model(x).view(-1, 2048), dim=1)

    encoder = Encoder()
    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.momentum = None  # cumulative average over the calibration batch
        # Trained-looking batch-norm statistics (so the _mean/_variance mapping matters and features
        # differ between photos): one train-mode pass over real photos that are not probe photos.
        encoder.train()
        encoder(calibration_batch())
    return encoder.eval()


def calibration_batch():
    import torch
    from skimage import data

    photos = [data.rocket(), data.hubble_deep_field(), data.immunohistochemistry(), data.retina()[::4, ::4]]
    photos.append(np.repeat(data.camera()[:, :, None], 3, axis=2))
    x = torch.stack([torch.from_numpy(p[:224, :224].copy()).permute(2, 0, 1).float() / 255 for p in photos])
    return (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )


def official_regressor(encoder, seed: int, low: float, high: float):
    """A TorchScript linear regressor in the official layout, centred on the range for real photos."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(1, 4096, generator=g)
    with torch.no_grad():
        f = encoder(calibration_batch())
        raw = torch.hstack((f, f)) @ direction.T
    scale = 0.08 * (high - low) / float(raw.std())  # a spread like a trained regressor's, inside the range
    bias = (low + high) / 2 - scale * float(raw.mean())

    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = nn.Parameter(direction * scale)
            self.biases = nn.Parameter(torch.tensor(bias))

        def forward(self, x):
            return x @ self.weights.T + self.biases

    return torch.jit.script(Regressor().eval())


def official_features(encoder, image: np.ndarray, protocol: str):
    """The authors' views and features: PIL half-size copy, centre + corner PIL crops (zero padded)."""
    import torch

    img = Image.fromarray(image)
    img_ds = img.resize((img.size[0] // 2, img.size[1] // 2))  # PIL's default filter, as their evaluation

    def crops(pil):
        w, h = pil.size
        boxes = [(w // 2 - 112, h // 2 - 112), (0, 0), (0, h - 224), (w - 224, 0), (w - 224, h - 224)]
        return [pil.crop((x, y, x + 224, y + 224)) for x, y in boxes]  # PIL fills outside with zeros

    def tensor(pils):
        x = torch.stack([torch.from_numpy(np.asarray(p).copy()).permute(2, 0, 1).float() / 255 for p in pils])
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x - mean) / std

    views = (crops(img), crops(img_ds)) if protocol == "crops" else ([img], [img_ds])
    with torch.no_grad():
        return torch.hstack((encoder(tensor(views[0])), encoder(tensor(views[1]))))


def official_score(features, regressor, dataset: str) -> float:
    """hubconf's forward + _scale_score, averaged over the crops as in their single-image script."""
    import torch

    with torch.no_grad():
        score = regressor(features)
    low, high, inverted = RANGES[dataset]
    scaled = (score - low) / (high - low)
    return float((1 - scaled if inverted else scaled).mean())


# --- fixtures ---------------------------------------------------------------------------------------


def load_converter():
    spec = importlib.util.spec_from_file_location("convert_arniqa", ROOT / "tools" / "convert_arniqa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Official-format files (ARNIQA.pth, two TorchScript regressors) and the torch models behind them."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("x2paddle")
    folder = tmp_path_factory.mktemp("arniqa_torch")
    encoder = official_encoder()
    torch.save(encoder.state_dict(), folder / "ARNIQA.pth")
    regressors = {
        dataset: official_regressor(encoder, seed, low, high)
        for seed, (dataset, (low, high, _)) in enumerate(RANGES.items())
    }
    for dataset, module in regressors.items():
        module.save(str(folder / f"regressor_{dataset}.pth"))
    return folder, encoder, regressors


@pytest.fixture(scope="module")
def converted(official, tmp_path_factory):
    folder, _, _ = official
    out = tmp_path_factory.mktemp("weights") / "arniqa"
    meta = load_converter().convert(
        folder / "ARNIQA.pth",
        [folder / "regressor_kadid10k.pth", folder / "regressor_live.pth"],
        out,
    )
    return out, meta


@pytest.fixture(scope="module")
def photos():
    """Real photos: a square portrait, a landscape, and one smaller than a crop (zero padding at both scales)."""
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea()[40:190, 60:260].copy()]


# --- conversion -------------------------------------------------------------------------------------


def test_converter_writes_verified_artifact(official, converted):
    folder, _, _ = official
    out, meta = converted
    on_disk = json.loads((out / "arniqa.json").read_text())
    assert on_disk == meta
    assert set(meta["regressors"]) == {"kadid10k", "live"}
    assert meta["regressors"]["kadid10k"]["score_range"] == [1.0, 5.0]
    assert meta["regressors"]["live"]["score_type"] == "dmos"
    import hashlib

    assert meta["encoder"]["sha256"] == hashlib.sha256((folder / "ARNIQA.pth").read_bytes()).hexdigest()
    assert meta["converter_version"] and meta["tools"]["x2paddle"]
    assert meta["verification"]["max_diff"] <= 1e-4
    assert (out / "inference" / "inference.pdiparams").is_file()


@pytest.mark.slow
def test_converter_refuses_a_mismatching_model(official, tmp_path, monkeypatch):
    """The parity check is real: a wrong parameter mapping fails loudly and writes nothing."""
    folder, _, _ = official
    converter = load_converter()
    real = converter.map_onto_readable

    def swapped(generated, backbone):
        mapped = real(generated, backbone)
        mapped["bn1._mean"], mapped["bn1._variance"] = mapped["bn1._variance"], mapped["bn1._mean"]
        return mapped

    monkeypatch.setattr(converter, "map_onto_readable", swapped)
    with pytest.raises(converter.ConversionError, match="differs from torch"):
        converter.convert(folder / "ARNIQA.pth", [folder / "regressor_kadid10k.pth"], tmp_path / "arniqa", export=False)
    assert not (tmp_path / "arniqa").exists()


def test_converter_rejects_files_not_in_the_official_format(official, tmp_path):
    import torch

    folder, _, _ = official
    converter = load_converter()
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "ARNIQA.pth")
    assert converter.main(["--encoder", str(tmp_path / "ARNIQA.pth"), "--regressor",
                           str(folder / "regressor_kadid10k.pth"), "--out", str(tmp_path / "o")]) == 1
    bad = tmp_path / "regressor_mystery.pth"
    bad.write_bytes((folder / "regressor_kadid10k.pth").read_bytes())
    with pytest.raises(converter.ConversionError, match="regressor_<dataset>"):
        converter.dataset_of(bad)


# --- parity with the torch pipeline ----------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_features(official, photos):
    """Features of the torch pipeline per protocol, computed once for all regressors."""
    _, encoder, _ = official
    return {protocol: [official_features(encoder, p, protocol) for p in photos] for protocol in ("crops", "whole")}


@pytest.mark.parametrize("protocol", ["crops", "whole"])
@pytest.mark.parametrize("dataset", ["kadid10k", pytest.param("live", marks=pytest.mark.slow)])
def test_scaled_scores_match_the_official_pipeline(official, converted, photos, torch_features, dataset, protocol):
    """A MOS and an inverted DMOS regressor, both protocols: at most 1e-4 apart in the scaled score."""
    _, _, regressors = official
    scorer = ArniqaScorer(weights=converted[0], dataset=dataset, protocol=protocol, batch_size=2)
    native = scorer.score_batch(photos)
    theirs = np.array([official_score(f, regressors[dataset], dataset) for f in torch_features[protocol]])
    np.testing.assert_allclose(scorer.scale(native), theirs, rtol=0, atol=1e-4)
    assert np.ptp(theirs) > 0.05, "probe photos must score differently, or the comparison proves nothing"
    assert np.all((0 < theirs) & (theirs < 1)), "inside the range, so clipping hides nothing"
    np.testing.assert_allclose(scorer.normalize(native), theirs, rtol=0, atol=1e-4)


def test_inference_backend_matches_dygraph(converted, photos):
    dygraph = ArniqaScorer(weights=converted[0], batch_size=2)
    inference = ArniqaScorer(weights=converted[0], batch_size=2, backend="inference")
    np.testing.assert_allclose(
        inference.score_batch(photos[1:]), dygraph.score_batch(photos[1:]), rtol=0, atol=1e-4
    )


def test_inference_backend_exports_when_the_program_is_missing(converted, photos, tmp_path):
    import shutil

    copy = tmp_path / "arniqa"
    shutil.copytree(converted[0], copy, ignore=shutil.ignore_patterns("inference"))
    scorer = ArniqaScorer(weights=copy, backend="inference", protocol="whole")
    reference = ArniqaScorer(weights=converted[0], protocol="whole")
    np.testing.assert_allclose(scorer.score_batch(photos[2:]), reference.score_batch(photos[2:]), atol=1e-4)
    assert (copy / "inference" / "inference.pdiparams").is_file()


# --- the scorer in ops and threads ------------------------------------------------------------------


def test_ops_host_function_and_threads(converted, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(converted[0].parent))
    monkeypatch.setattr(scorers, "_CACHE", {})  # a fresh registry: scorers resolve weights on first use
    for i, p in enumerate(photos):
        Image.fromarray(p).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    scorer = get_scorer("arniqa", protocol="whole")
    expected = scorer.normalize(scorer.score_batch(photos))

    tagger = iqa_filter("arniqa", root=tmp_path, keep_all=True, protocol="whole")
    items = [{"image": f"{i}.png"} for i in range(3)] + [{"image": "broken.jpg"}]
    results = tagger.process(items)
    np.testing.assert_allclose([r["__tag_arniqa"] for r in results[:3]], expected, atol=1e-6)
    assert results[3]["__iqa_error"].startswith("decode_error")

    # the host's signature (default scorer: the official crops protocol), on the small photo
    small = str(tmp_path / "2.png")
    quality = float(ArniqaScorer(weights=converted[0]).normalize(ArniqaScorer(weights=converted[0]).score(photos[2])))
    assert iqa_arniqa({"image": small}, min_score=quality - 1e-3, max_score=quality + 1e-3)
    assert not iqa_arniqa({"image": small}, min_score=quality + 1e-3)
    assert iqa_arniqa({"text": "no image"})

    # one shared scorer across threads (as MMDataset.map(max_workers=N) uses it): same numbers
    fresh = ArniqaScorer(weights=converted[0], protocol="whole")
    out: dict[int, float] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, fresh.score(photos[i]))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose([out[i] for i in range(3)], scorer.score_batch(photos), atol=1e-6)


def test_pickles_without_the_model(converted, photos):
    scorer = ArniqaScorer(weights=converted[0], protocol="whole")
    first = scorer.score(photos[2])
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._runtime is None and len(pickle.dumps(scorer)) < 10_000
    assert clone.score(photos[2]) == pytest.approx(first, abs=1e-6)


# --- missing weights: an actionable error, and nothing else breaks -------------------------------------


def test_missing_weights_message_and_pipeline_unaffected(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(scorers, "_CACHE", {})  # as in a fresh process: no scorer or host op built yet
    host_ops._op.cache_clear()
    scorer = ArniqaScorer(dataset="live")
    with pytest.raises(WeightsNotFound) as info:
        scorer.score(photo)
    message = str(info.value)
    for needed in (
        str(tmp_path / "home" / "arniqa"),
        "arniqa.pdparams",
        "regressor_live.pdparams",
        "https://github.com/miccunifi/ARNIQA/releases/tag/weights",
        "ARNIQA.pth",
        "regressor_live.pth",
        'pip install -e ".[convert]"',
        "python tools/convert_arniqa.py",
    ):
        assert needed in message

    Image.fromarray(photo).save(tmp_path / "a.png")
    with pytest.raises(WeightsNotFound, match="convert_arniqa"):  # building the op stops the run, before any image
        iqa_filter("arniqa", root=tmp_path)
    with pytest.raises(WeightsNotFound):  # the host-signature function too: no silent "reject everything"
        iqa_arniqa({"image": str(tmp_path / "a.png")})
    sharp = iqa_filter("laplacian", min_score=0.1, root=tmp_path)
    other = {"image": "a.png"}
    assert sharp(other) is other and other["__tag_laplacian"] > 0.1


def test_import_builds_nothing_and_bad_params_fail_early():
    code = (
        "import sys; import paddlemix_iqa.scorers.arniqa as m; s = m.ArniqaScorer();"
        "assert 'paddle' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for bad in ({"dataset": "imagenet"}, {"protocol": "tiles"}, {"backend": "onnx"}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            ArniqaScorer(**bad)
    assert ArniqaScorer(dataset="csiq").normalize(0.0) == 1.0  # DMOS: lower is better
