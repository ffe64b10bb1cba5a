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
