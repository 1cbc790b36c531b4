"""Five-point similarity alignment: exact recovery, sub-pixel round trips, point picking, validation."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from faceage_video.face.align import (
    FIVE_POINT_INDICES,
    UNIT_TEMPLATE,
    AlignTemplate,
    align_face,
    alignment_transform,
    apply_affine,
    estimate_similarity,
    five_points,
    invert_affine,
    warp_to_crop,
)
from tests.helpers import similarity


def blob(h: int, w: int, cx: float, cy: float, sigma: float = 2.5) -> np.ndarray:
    """(H, W, 3) uint8 Gaussian spot centred at pixel coordinates (cx, cy) (pixel centres are integers)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.repeat((g * 250.0).round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(img: np.ndarray) -> np.ndarray:
    g = img[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    return np.array([(g * xs).sum() / g.sum(), (g * ys).sum() / g.sum()])


def landmarks_with(points5: np.ndarray, seed: int = 0) -> np.ndarray:
    """478 random landmarks with the five alignment points set at their MediaPipe indices."""
    lm = np.random.default_rng(seed).uniform(0, 400, (478, 2)).astype(np.float32)
    lm[list(FIVE_POINT_INDICES)] = points5
    return lm


# ---------------------------------------------------------------------------------------------------------
# estimate_similarity


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"),
    [(1.0, 0.0, 0.0, 0.0), (0.37, 23.0, -40.5, 12.25), (2.8, -170.0, 300.0, -7.0), (0.05, 90.0, 1.0, 2.0)],
)
def test_estimate_similarity_recovers_a_known_transform_exactly(
    scale: float, angle: float, tx: float, ty: float
) -> None:
    m = similarity(scale, angle, tx, ty)
    src = np.random.default_rng(3).uniform(-200, 600, (5, 2))
    dst = apply_affine(m, src)
    est = estimate_similarity(src, dst)
    np.testing.assert_allclose(est, m, atol=1e-9, rtol=1e-9)


def test_estimate_similarity_is_least_squares_under_noise() -> None:
    m = similarity(0.5, 10.0, 20.0, 30.0)
    rng = np.random.default_rng(5)
    src = rng.uniform(0, 500, (200, 2))
    dst = apply_affine(m, src) + rng.normal(0, 0.5, (200, 2))
    est = estimate_similarity(src, dst)
    np.testing.assert_allclose(est[:, :2], m[:, :2], atol=2e-3)
    np.testing.assert_allclose(est[:, 2], m[:, 2], atol=0.5)


def test_reflections_are_excluded() -> None:
    src = np.array([[0, 0], [10, 0], [5, 5], [2, 9], [8, 9]], dtype=np.float64)
    mirrored = src * np.array([-1.0, 1.0])  # a mirror image: the best fit with a reflection would be exact
    est = estimate_similarity(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0, "the estimated transform mirrors the face"
    # A proper rotation: its two columns are orthogonal and equally long.
    a = est[:, :2]
    assert abs(a[:, 0] @ a[:, 1]) < 1e-9
    assert np.linalg.norm(a[:, 0]) == pytest.approx(np.linalg.norm(a[:, 1]))


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (np.full((5, 2), 7.0), np.random.default_rng(0).uniform(0, 9, (5, 2))),  # all at one place
        (np.random.default_rng(0).uniform(0, 9, (5, 2)), np.full((5, 2), 3.0)),  # target collapsed
        (np.zeros((1, 2)), np.zeros((1, 2))),  # one point
        (np.zeros((5, 2)), np.zeros((4, 2))),  # mismatched counts
        (np.random.default_rng(1).uniform(0, 9, (5, 3)),) * 2,  # 3-D points
        (np.zeros(10), np.zeros(10)),  # flat arrays
    ],
)
def test_degenerate_input_raises(src: np.ndarray, dst: np.ndarray) -> None:
    with pytest.raises(ValueError):
        estimate_similarity(src, dst)


def test_nan_points_raise_value_error() -> None:
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    bad = src.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        estimate_similarity(bad, src)
    with pytest.raises(ValueError, match="finite"):
        estimate_similarity(src, bad)


# ---------------------------------------------------------------------------------------------------------
# Round trips


def test_points_round_trip_through_the_crop() -> None:
    t = AlignTemplate(128)
    face = apply_affine(similarity(2.3, -17.0, 210.0, 160.0), t.points)  # a face somewhere in a frame
    m = alignment_transform(face, t)
    np.testing.assert_allclose(apply_affine(m, face), t.points, atol=1e-9)  # lands on the template
    pts = np.random.default_rng(1).uniform(0, 480, (50, 2))
    back = apply_affine(invert_affine(m), apply_affine(m, pts))
    assert np.abs(back - pts).max() < 0.5
    np.testing.assert_allclose(back, pts, atol=1e-6)


@pytest.mark.parametrize(("scale", "angle"), [(0.5, 0.0), (0.27, 12.0), (1.3, -25.0)])
def test_warp_to_crop_agrees_with_apply_affine_to_a_sub_pixel(scale: float, angle: float) -> None:
    """A spot at frame point p appears in the crop at apply_affine(m, p): the pixel-centre conventions of the
    warp and of the point maths agree."""
    h, w, size = 480, 640, 128
    m = similarity(scale, angle, 0.0, 0.0)
    p = np.array([301.3, 207.8])
    m[:, 2] = np.array([size / 2 - 0.3, size / 2 + 0.4]) - m[:, :2] @ p  # p lands near the crop centre
    crop = warp_to_crop(blob(h, w, p[0], p[1], sigma=6.0), m, size)
    expected = apply_affine(m, p[None])[0]
    assert np.linalg.norm(centroid(crop) - expected) < 0.5


def test_image_round_trip_matches_inside_the_face_region() -> None:
    """A smooth frame warped to the crop and back equals the original inside the face (< 0.5 px shift)."""
    h, w = 360, 480
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    smooth = (
        np.stack(
            [
                128 + 90 * np.sin(xs / 23.0) * np.cos(ys / 31.0),
                128 + 80 * np.cos((xs + ys) / 41.0),
                xs / w * 200 + 20,
            ],
            axis=-1,
        )
        .round()
        .astype(np.uint8)
    )
    t = AlignTemplate(128)
    face = apply_affine(similarity(1.6, 8.0, 170.0, 90.0), t.points)
    crop, m = align_face(smooth, landmarks_with(face), t)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    back = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    # The face region: the five points' hull grown a little, well inside the crop.
    region = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(apply_affine(invert_affine(m), t.points * 0.8 + 0.2 * 64).astype(np.float32))
    cv2.fillConvexPoly(region, hull.astype(np.int32), 1)
    inside = region.astype(bool)
    assert inside.sum() > 1000
    diff = np.abs(back.astype(np.float64) - smooth.astype(np.float64))[inside]
    # Two bilinear resamplings of a smooth picture: a half-pixel misalignment would cost ~4 levels here.
    assert diff.mean() < 1.5
    # And a spot survives the round trip in place.
    spot = np.array([240.4, 170.7])
    img = blob(h, w, spot[0], spot[1], sigma=3.0)
    c2 = warp_to_crop(img, m, 128)
    b2 = cv2.warpAffine(c2, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.linalg.norm(centroid(b2) - spot) < 0.5


def test_align_face_puts_the_five_points_on_the_template() -> None:
    t = AlignTemplate(256)
    face = apply_affine(similarity(0.9, 30.0, 100.0, 50.0), t.points)
    crop, m = align_face(np.zeros((400, 400, 3), np.uint8), landmarks_with(face), t)
    assert crop.shape == (256, 256, 3)
    np.testing.assert_allclose(apply_affine(m, face), t.points, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# five_points


def test_five_points_picks_iris_centres_nose_tip_and_mouth_corners() -> None:
    lm = np.stack([np.arange(478), 1000 + np.arange(478)], axis=1).astype(np.float32)
    p = five_points(lm)
    assert p.shape == (5, 2) and p.dtype == np.float64
    assert p[:, 0].tolist() == [468, 473, 1, 61, 291]
    assert p[:, 1].tolist() == [1468, 1473, 1001, 1061, 1291]


@pytest.mark.parametrize("shape", [(468, 2), (478,), (478, 1), (0, 2)])
def test_five_points_rejects_landmarks_without_irises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="478"):
        five_points(np.zeros(shape, np.float32))


# ---------------------------------------------------------------------------------------------------------
# AlignTemplate


def test_template_points_are_pixel_centred() -> None:
    t = AlignTemplate(128)
    np.testing.assert_allclose(t.points, UNIT_TEMPLATE * 128 - 0.5)
    assert t.points[0, 0] < t.points[1, 0]  # image-left eye first


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 8},
        {"size": 0},
        {"size": 128, "unit_points": ((0.3, 0.4), (0.6, 0.4), (0.5, 0.6), (0.4, 0.7))},
        {"size": 128, "unit_points": ((0.3, 0.4, 1.0), (0.6, 0.4), (0.5, 0.6), (0.4, 0.7), (0.6, 0.7))},
        {"size": 128, "unit_points": ((0.3, float("nan")), (0.6, 0.4), (0.5, 0.6), (0.4, 0.7), (0.6, 0.7))},
    ],
)
def test_template_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        AlignTemplate(**kwargs)


def test_template_dict_round_trip_through_json() -> None:
    t = AlignTemplate(96, ((0.3, 0.45), (0.7, 0.45), (0.5, 0.6), (0.35, 0.75), (0.65, 0.75)))
    d = json.loads(json.dumps(t.to_dict()))
    back = AlignTemplate.from_dict(d)
    assert back == t
    np.testing.assert_array_equal(back.points, t.points)
    assert AlignTemplate.from_dict(AlignTemplate().to_dict()) == AlignTemplate()
