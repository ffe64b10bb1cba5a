"""Sharpness scorers: separate sharp from blurred, and hold one threshold across resolutions."""

from __future__ import annotations

import cv2
import pytest

from conftest import shared
from paddlemix_iqa import get_scorer, list_scorers, load_image
from paddlemix_iqa.scorers.base import resize_long_side

METRICS = ["laplacian", "tenengrad", "gradient_mean"]


def test_sharpness_scorers_are_registered():
    assert set(METRICS) <= set(list_scorers())


@pytest.mark.parametrize("metric", METRICS)
def test_blur_lowers_the_score_and_normalised_quality(metric, photo):
    scorer = get_scorer(metric)
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)
    native = scorer.score_batch([photo, blurred])
    assert native.shape == (2,) and native[0] > 1.5 * native[1]
    quality = scorer.normalize(native)
    assert 0 <= quality[1] < quality[0] <= 1
    assert isinstance(scorer.normalize(float(native[0])), float)
    assert scorer.normalize(scorer.midpoint) == pytest.approx(0.5)


@pytest.mark.parametrize("metric", METRICS)
def test_score_does_not_drift_with_resolution(metric, photo):
    scorer = get_scorer(metric)
    big = cv2.resize(photo, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    small, large = scorer.score_batch([resize_long_side(big, 512), big])
    assert large == pytest.approx(small, rel=0.05)


def test_tiles_keep_a_sharp_subject_on_a_blurred_background(photo):
    shallow = cv2.GaussianBlur(photo, (0, 0), 4)
    shallow[:128, :128] = photo[:128, :128]  # one sharp corner, like a subject in focus
    whole = get_scorer("laplacian").score(shallow)
    tiled = get_scorer("laplacian", tiles=4, tile_quantile=1.0).score(shallow)
    assert tiled > 3 * whole


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        get_scorer("laplacian", tiles=0)
    with pytest.raises(KeyError, match="unknown scorer"):
        get_scorer("sharpnes")


@pytest.mark.parametrize("metric", METRICS)
def test_blur_triplets_separate_at_every_size_with_one_threshold(metric):
    """Real phone/camera photos: each sharp photo beats its defocused and motion-blurred twins,
    at 512, 1024 and 2048 px, and the default threshold (quality 0.5) splits them all."""
    folder = shared("photos", "blur_triplets")
    scorer = get_scorer(metric)
    scenes = sorted({p.name.rsplit("_", 1)[0] for p in folder.iterdir()})
    assert len(scenes) == 3
    for scene in scenes:
        variants = {kind: load_image(next(folder.glob(f"{scene}_{kind}.*"))) for kind in "SFM"}
        for side in (512, 1024, 2048):
            quality = {
                k: scorer.normalize(scorer.score(resize_long_side(v, side))) for k, v in variants.items()
            }
            assert quality["S"] > 0.5 > max(quality["F"], quality["M"]), (scene, side, quality)


# --- edge sharpness: the blur step's feature ------------------------------------------------------
def _paddleclas_motion(image, k, angle):
    from paddlemix_iqa.evaluation.synth import motion_blur

    return motion_blur(image, k, angle)


@pytest.mark.parametrize("blur", ["gaussian_k5", "motion_k5_0", "motion_k5_40", "motion_k5_-45"])
def test_edge_sharpness_reads_even_the_mildest_paddleclas_blur_as_blurred(blur, photo):
    """Kernel 5 is PaddleClas's mildest; motion leaves edges along it sharp, the softest direction sees it."""
    scorer = get_scorer("edge_sharpness")
    if blur == "gaussian_k5":
        blurred = cv2.GaussianBlur(photo, (5, 5), 0)
    else:
        blurred = _paddleclas_motion(photo, 5, int(blur.rsplit("_", 1)[1]))
    sharp, soft = scorer.score_batch([photo, blurred])
    assert scorer.normalize(sharp) > 0.5 > scorer.normalize(soft), (sharp, soft)


def test_edge_sharpness_does_not_depend_on_contrast_or_brightness(photo):
    """A ratio of difference energies: halving the contrast and lifting the brightness leaves it."""
    scorer = get_scorer("edge_sharpness")
    dull = cv2.convertScaleAbs(photo, alpha=0.5, beta=60)
    assert scorer.score(dull) == pytest.approx(scorer.score(photo), abs=0.05)


def test_edge_sharpness_never_enlarges_and_scores_a_uniform_image_as_blurriest(photo):
    scorer = get_scorer("edge_sharpness", working_size=1024)
    small = resize_long_side(photo, 200)
    assert scorer.decode_side == 1024
    direct = get_scorer("edge_sharpness", working_size=200).score(small)
    assert scorer.score(small) == direct  # a 200 px image is read at 200 px, not enlarged to 1024
    flat = photo * 0 + 128
    assert scorer.score(flat) == scorer.native_range[0] and scorer.normalize(scorer.native_range[0]) < 0.01
    with pytest.raises(ValueError, match="direction"):
        get_scorer("edge_sharpness", direction="diagonal")


def test_edge_sharpness_separates_coco_photos_from_their_kernel5_blurs_better_than_laplacian():
    from paddlemix_iqa.evaluation.metrics import roc_auc

    photos = [load_image(p) for p in sorted(shared("photos/coco").glob("*.jpg"))[:24]]
    blurred = [cv2.GaussianBlur(p, (5, 5), 0) for p in photos]
    labels = [0] * len(photos) + [1] * len(blurred)
    auc = {}
    for metric in ("edge_sharpness", "laplacian"):
        scorer = get_scorer(metric)
        auc[metric] = roc_auc(scorer.normalize(scorer.score_batch(photos + blurred)), labels)
    assert auc["edge_sharpness"] >= 0.99 and auc["edge_sharpness"] >= auc["laplacian"], auc


@pytest.mark.parametrize(
    ("metric", "params"),
    [("laplacian", {}), ("tenengrad", {"tiles": 3}), ("edge_sharpness", {}), ("fused", {"model": "blur"})],
)
def test_ops_share_one_grey_working_copy_and_the_scores_do_not_change(metric, params, photo):
    """An op hands these scorers the image's grey copy at their working size, made once per image."""
    from paddlemix_iqa.io import DecodedImage
    from paddlemix_iqa.ops import build_op

    scorer = get_scorer(metric, **params)
    assert scorer.accepts_gray_copy
    big = cv2.resize(photo, (2400, 1600), interpolation=cv2.INTER_CUBIC)
    for pixels in (big, photo[:300, :200]):  # shrunk to the working size; smaller than it
        image = DecodedImage(pixels, pixels.shape[1], pixels.shape[0], "x.png", 0, "PNG")
        verdict = build_op(f"{metric}_tagger", **params).judge([image])[0]
        assert verdict.value == scorer.score(pixels)  # exactly the score of the colour image
        copies = dict(image.views)
        assert any(v.ndim == 2 for v in copies.values())
        build_op(f"{metric}_tagger", **params).judge([image])
        assert all(image.views[k] is v for k, v in copies.items())  # reused, not made again


def test_a_fused_model_reading_the_image_size_gets_the_colour_pixels():
    from paddlemix_iqa.scorers.fused import FeatureSet

    sharp = {"name": "sharp", "metric": "edge_sharpness"}
    features = FeatureSet.from_dicts([sharp, {"name": "size", "image": "log_long_side"}])
    assert not features.accepts_gray_copy(1024)
    assert FeatureSet.from_dicts([sharp]).accepts_gray_copy(1024)
    assert not FeatureSet.from_dicts([sharp, {"name": "lap", "metric": "laplacian"}]).accepts_gray_copy(1024)


def _edge_ratios_reference(gray, step: int, quantile: float = 0.9) -> list[float]:
    """Edge sharpness's definition in plain float64 numpy: sorted magnitudes, no histogram."""
    import math

    import numpy as np

    g = gray.astype(np.float64)
    h, w = g.shape
    m = 2 * step
    out = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):

        def at(k, dy=dy * step, dx=dx * step):
            return g[m + k * dy : h - m + k * dy, m + k * dx : w - m + k * dx]

        first = at(1) - at(0)
        second = first - (at(0) - at(-1))
        magnitude = np.abs(first).ravel()
        cut = np.sort(magnitude)[int(quantile * (magnitude.size - 1))]
        edges = magnitude > cut
        out.append(math.log(float((second.ravel()[edges] ** 2).sum()) / float((magnitude[edges] ** 2).sum())))
    return out


@pytest.mark.parametrize("step", [1, 2])
def test_edge_sharpness_matches_its_definition_on_large_high_contrast_images(step):
    """Sums of squared second differences reach 1e10 on a 1024-px noisy image: they must not overflow
    (an int32 dot product once wrapped around here) and the fast path must equal the definition."""
    import numpy as np

    rng = np.random.default_rng(step)
    noisy = rng.integers(0, 256, (1024, 900), dtype=np.uint8)
    photo = cv2.GaussianBlur(noisy, (0, 0), 0.7)
    scorer = get_scorer("edge_sharpness", step=step)
    for image in (noisy, photo):
        assert scorer.direction_ratios(image) == pytest.approx(_edge_ratios_reference(image, step), abs=1e-12)
