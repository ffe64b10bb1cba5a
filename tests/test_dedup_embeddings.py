"""Optional embeddings in the ``dedup`` step: a user's exported Paddle model, cosine pairs by faiss
(or numpy), merged with the hash pairs. The model is built and exported here with paddle.jit.save,
as a user would; images are generated (no ../shared/data needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from paddlemix_iqa.dedup import Dedup, dedup_items
from paddlemix_iqa.dedup.embeddings import Embedder, cosine_pairs
from paddlemix_iqa.models.weights import WeightsNotFound
from paddlemix_iqa.pipeline.config import ConfigError, MissingWeights, validate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 1x1 conv + tanh + global average pool: its vector depends only on the multiset of pixels,
    so any rearrangement of an image's pixels has the same embedding (by construction)."""
    import paddle

    paddle.seed(7)
    net = paddle.nn.Sequential(
        paddle.nn.Conv2D(3, 32, 1),
        paddle.nn.Tanh(),
        paddle.nn.AdaptiveAvgPool2D(1),
        paddle.nn.Flatten(),
    )
    net.eval()
    out = tmp_path_factory.mktemp("embed_model")
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", name="x")]
    paddle.jit.save(net, str(out / "inference"), input_spec=spec)
    return out


def _picture(seed: int, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """A 224x224 picture with structure (gradient background, shapes) in the given colours."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 224, dtype=np.float32)[None, :, None]
    base = np.array(palette[0], np.float32) * (0.4 + 0.6 * ramp) + np.zeros((224, 1, 3), np.float32)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k in range(8):
        x, y = rng.integers(0, 180, 2)
        r = int(rng.integers(12, 40))
        draw.ellipse([x, y, x + r, y + r], fill=palette[1 + k % (len(palette) - 1)])
    draw.rectangle([20, 150, 110, 210], fill=palette[-1])
    return np.asarray(img)


def _shuffled(img: np.ndarray) -> np.ndarray:
    """The quadrants rotated (a pixel permutation: another-looking picture, the same pixel multiset)."""
    h, w = img.shape[0] // 2, img.shape[1] // 2
    tl, tr, bl, br = img[:h, :w], img[:h, w:], img[h:, :w], img[h:, w:]
    return np.vstack([np.hstack([br, bl]), np.hstack([tr, tl])])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_images")
    warm = ((200, 120, 40), (250, 230, 40), (180, 30, 30), (90, 40, 10))
    cold = ((30, 80, 200), (40, 200, 220), (20, 20, 90), (200, 220, 250))
    green = ((40, 160, 60), (10, 60, 20), (200, 240, 120), (120, 90, 60))
    a = _picture(1, warm)
    pictures = {"a": a, "a_shuffled": _shuffled(a), "cold": _picture(2, cold), "green": _picture(3, green)}
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(root / f"{name}.png")
    items = [{"id": name, "image": f"{name}.png"} for name in pictures]
    return root, items


def _embeddings(model_dir, **extra):
    # the images are 224x224: resize_short 224 keeps every pixel, so the permutation is exact
    return {"model": str(model_dir), "threshold": 0.95, "resize_short": 224, "crop": 224, **extra}


def _best_of(root, *names):
    """The copy the step keeps among same-resolution images: the biggest file (keep: resolution, filesize)."""
    return max(names, key=lambda n: ((root / f"{n}.png").stat().st_size, -names.index(n)))


def test_edit_the_hashes_miss_merges_by_embedding(model_dir, images):
    root, items = images
    # without embeddings the hashes do not see the shuffled copy
    kept, rejected = dedup_items([dict(i) for i in items], Dedup(), root=root)
    assert rejected == []
    kept, rejected = dedup_items(
        [dict(i) for i in items], Dedup(embeddings=_embeddings(model_dir)), root=root
    )
    best = _best_of(root, "a", "a_shuffled")
    other = "a_shuffled" if best == "a" else "a"
    assert [r["id"] for r in rejected] == [other]
    reason = rejected[0]["__iqa_reject"]
    assert reason.startswith(f"dedup: duplicate_of: {best} (embedding cosine ")
    assert float(reason.rsplit(" ", 1)[1].rstrip(")")) >= 0.95
    assert rejected[0]["__iqa_duplicate_of"] == best
    assert rejected[0]["__iqa_duplicate_distance"] > 8  # its pHash is far: no hash pair found it
    assert {k["id"] for k in kept} == {best, "cold", "green"}  # distinct pictures stay


def test_groups_mix_hash_embedding_and_exact_pairs(model_dir, images):
    root, items = images
    Image.open(root / "a.png").resize((112, 112), Image.BILINEAR).save(root / "a_small.png")
    (root / "a_shuffled_copy.png").write_bytes((root / "a_shuffled.png").read_bytes())
    more = [*items, {"id": "a_small", "image": "a_small.png"}, {"id": "dup", "image": "a_shuffled_copy.png"}]
    # copies first (the order must not decide); the byte copy after its original (equal files: first seen)
    order = [more[4], more[2], more[1], more[5], more[3], more[0]]
    kept, rejected = dedup_items(
        [dict(i) for i in order], Dedup(embeddings=_embeddings(model_dir)), root=root
    )
    best = _best_of(root, "a", "a_shuffled")
    assert {k["id"] for k in kept} == {best, "cold", "green"}
    by_id = {r["id"]: r for r in rejected}
    assert set(by_id) == {"a", "a_shuffled", "a_small", "dup"} - {best}
    assert all(r["__iqa_duplicate_of"] == best for r in rejected)
    if best == "a":  # the 0.5x resize is a pHash pair of the original, not an embedding one
        assert "phash distance" in by_id["a_small"]["__iqa_reject"]


def test_faiss_and_numpy_give_the_same_pairs(model_dir, images):
    pytest.importorskip("faiss")
    root, items = images
    embedder = Embedder(**_embeddings(model_dir))
    vectors = embedder.embed_refs([i["image"] for i in items], root)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for threshold in (0.95, 0.5, 0.0, -1.0):
        fp, fc = cosine_pairs(vectors, threshold, use_faiss=True)
        npp, nc = cosine_pairs(vectors, threshold, use_faiss=False)
        assert np.array_equal(fp, npp) and np.array_equal(fc, nc)
    # many vectors, planted near pairs, several query blocks: the same exact pairs
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 64)).astype(np.float32)
    noise = rng.uniform(0.1, 0.4, (200, 1)) * rng.normal(size=(200, 64))  # cosines around 0.97
    x[1500:1700] = x[:200] + noise.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fp, fc = cosine_pairs(x, 0.97, use_faiss=True)
    npp, nc = cosine_pairs(x, 0.97, use_faiss=False)
    assert 50 < len(fp) < 200 and np.array_equal(fp, npp) and np.array_equal(fc, nc)
    brute = x.astype(np.float64) @ x.astype(np.float64).T
    i, j = np.nonzero(np.triu(brute >= 0.97, 1))
    assert np.array_equal(fp, np.stack([i, j], axis=1))


def test_default_preprocessing_is_paddleclas(model_dir):
    from paddlemix_iqa.scorers.pulc import preprocess

    img = np.random.default_rng(1).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    assert np.array_equal(Embedder(model_dir).preprocess(img), preprocess(img))


def test_model_errors_at_config_time(model_dir, tmp_path):
    def config(embeddings):
        return {
            "input": "x.jsonl",
            "process": [{"decodable_filter": None}, {"dedup": {"embeddings": embeddings}}],
        }

    validate(config({"model": str(model_dir), "threshold": 0.9}))  # a real model: fine
    with pytest.raises(MissingWeights, match="no exported Paddle model in .*no such folder"):
        validate(config({"model": str(tmp_path / "nowhere")}))
    with pytest.raises(WeightsNotFound):
        Dedup(embeddings={"model": str(tmp_path)})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "inference.json").write_text("{not a program")
    (broken / "inference.pdiparams").write_bytes(b"\0" * 64)
    with pytest.raises(ConfigError, match="cannot be loaded or run") as err:
        validate(config({"model": str(broken)}))
    assert not isinstance(err.value, MissingWeights)
    for bad, match in (
        ({"model": str(model_dir), "threshold": 1.5}, "threshold"),
        ({"model": str(model_dir), "treshold": 0.9}, "unknown key 'treshold'"),
        ({"threshold": 0.9}, "model"),
        ({"model": str(model_dir), "crop": 300}, "crop"),
    ):
        with pytest.raises(ConfigError, match=match):
            validate(config(bad))


def test_pipeline_step_merges_by_embedding(model_dir, images, tmp_path):
    import json

    from paddlemix_iqa.pipeline.runner import run_pipeline

    root, items = images
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    config = validate(
        {
            "input": str(tmp_path / "records.jsonl"),
            "image_root": str(root),
            "output_dir": str(tmp_path / "run"),
            "progress": False,
            "process": [{"decodable_filter": None}, {"dedup": {"embeddings": _embeddings(model_dir)}}],
        }
    )
    summary = run_pipeline(config)
    best = _best_of(root, "a", "a_shuffled")
    kept = [json.loads(line)["id"] for line in (tmp_path / "run" / "kept.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    assert set(kept) == {best, "cold", "green"}
    assert len(rejected) == 1 and rejected[0]["__iqa_duplicate_of"] == best
    assert rejected[0]["__iqa_reject"].startswith(f"dedup: duplicate_of: {best} (embedding cosine ")
    assert summary["dedup"]["duplicates_embedding"] == 1
    assert (tmp_path / "run" / "report.html").is_file()
