"""The hair stage: how much grey an age asks for, grey strands with no colour added, and the hair matte on
real faces (skipped with a reason where ../shared/data is absent)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceage_video.engine.generator import EngineOptions
from faceage_video.errors import ModelError, OptionsError
from faceage_video.face.blend import apply_change_roi
from faceage_video.face.hair import (
    HairMatte,
    HairOptions,
    HairSmoother,
    age_hair,
    colour_amount,
    colour_change,
    grey_amount,
    grey_change,
    grey_share,
    hair_matte,
    hair_share,
)
from faceage_video.face.landmarks import oval_polygon
from faceage_video.face.segment import (
    MODEL_NAME,
    PACKAGED_MODEL,
    PersonSegmenter,
    SegmenterOptions,
    resolve_segmenter_model,
)
from faceage_video.stages import hair_amounts


def test_grey_share_rises_with_age_and_the_amount_only_when_aging() -> None:
    shares = [grey_share(a) for a in range(15, 101, 5)]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] < 1.0
    assert grey_amount(25, 70) > grey_amount(25, 50) > grey_amount(40, 50) > 0.0
    assert grey_amount(60, 30) == 0.0 and grey_amount(40, 40) == 0.0
    assert grey_amount(25, 70, strength=0.5) == pytest.approx(grey_amount(25, 70) / 2)


def test_hair_options_refuse_out_of_range_values() -> None:
    for bad in (
        {"amount": 1.5},
        {"amount": -0.1},
        {"white": 20.0},
        {"reach": 9.0},
        {"amount": float("nan")},
        {"every": 0},
    ):
        with pytest.raises(OptionsError):
            HairOptions(enabled=True, **bad)  # type: ignore[arg-type]


def test_de_aging_colours_the_share_of_grey_strands_the_younger_age_lacks() -> None:
    assert colour_amount(70, 30) > colour_amount(70, 50) > colour_amount(60, 50) > 0.0
    assert colour_amount(30, 60) == 0.0 and colour_amount(19, 15) == 0.0  # no grey to colour at 19
    assert colour_amount(30, 20) < 0.2  # at 30 what looks grey is mostly highlights
    assert colour_amount(80, 20) == pytest.approx(1.0)
    assert hair_share(25, 60) == grey_amount(25, 60) > 0.0
    assert hair_share(70, 30) == -colour_amount(70, 30) < 0.0


def test_hair_amounts_follow_the_ages_both_ways() -> None:
    on = HairOptions(enabled=True)
    older = hair_amounts(EngineOptions(direction="older"), on, 2)
    start, target = EngineOptions(direction="older").ages
    np.testing.assert_allclose(older, grey_amount(start, target))
    start, target = EngineOptions(direction="younger").ages
    np.testing.assert_allclose(
        hair_amounts(EngineOptions(direction="younger"), on, 3), -colour_amount(start, target)
    )
    own = np.array([30.0, 80.0], np.float32)  # one face younger than the target, one older
    both = hair_amounts(EngineOptions(target_age=60), on, 2, own)
    assert both[0] == pytest.approx(grey_amount(30, 60)) and both[1] == pytest.approx(-colour_amount(80, 60))
    fixed = hair_amounts(EngineOptions(target_age=60), HairOptions(enabled=True, amount=0.3), 2, own)
    np.testing.assert_allclose(fixed, [0.3, 0.0])  # a fixed share greys the aged faces only


def _matte(shape: tuple[int, int]) -> HairMatte:
    alpha = np.zeros(shape, np.float32)
    alpha[4:-4, 4:-4] = 1.0
    return HairMatte((0, 0, shape[1], shape[0]), alpha, 40.0, np.eye(2, 3))


def test_grey_strands_add_no_colour_to_a_grey_picture() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 90, (60, 80), dtype=np.uint8)
    roi = np.repeat(grey[..., None], 3, axis=2)
    change = grey_change(roi, _matte((60, 80)), 0.7, 175.0)
    assert np.abs(change).max() > 20.0  # it does grey the hair
    assert np.abs(change[..., 0] - change[..., 1]).max() < 1e-3
    assert np.abs(change[..., 1] - change[..., 2]).max() < 1e-3


def test_grey_strands_lighten_dark_hair_and_take_its_colour_away() -> None:
    rng = np.random.default_rng(1)
    base = np.array([70.0, 40.0, 20.0])  # dark brown
    roi = np.clip(base + rng.normal(0, 6, (60, 80, 1)), 0, 255).astype(np.uint8)
    m = _matte((60, 80))
    out = roi.astype(np.float32) + grey_change(roi, m, 0.6, 175.0)
    inner = m.alpha > 0
    luma = lambda x: x @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    assert luma(out[inner]).mean() > luma(roi[inner].astype(np.float32)).mean() + 40
    chroma_in = np.ptp(roi[inner].astype(np.float32), axis=1).mean()
    assert np.ptp(out[inner], axis=1).mean() < 0.6 * chroma_in
    assert not grey_change(roi, m, 0.0, 175.0).any()  # no share, no change


def test_colouring_darkens_grey_strands_towards_the_hairs_own_pigment() -> None:
    rng = np.random.default_rng(2)
    grey = np.array([170.0, 170.0, 168.0])
    brown = np.array([70.0, 45.0, 30.0])
    dark = rng.random((60, 80)) < 0.2  # a fifth of the strands still pigmented
    hair = np.where(dark[..., None], brown, grey) + rng.normal(0, 3, (60, 80, 3))
    roi = np.clip(hair, 0, 255).astype(np.uint8)
    m = _matte((60, 80))
    out = roi.astype(np.float32) + colour_change(roi, m, 0.9)
    inner = m.alpha > 0
    light = inner & ~dark
    assert out[light].mean() < roi[light].astype(float).mean() - 50  # the grey strands darken
    warm = out[light][:, 0] - out[light][:, 2]  # and take the brown's warmth (R above B)
    assert warm.mean() > 20.0
    np.testing.assert_allclose(out[inner & dark], roi[inner & dark], atol=12)  # pigmented ones stay
    # A brown head's highlights are not grey strands: they keep their light and colour.
    shine = np.where(dark[..., None], brown, 2.2 * brown) + rng.normal(0, 3, (60, 80, 3))
    shiny = np.clip(shine, 0, 255).astype(np.uint8)
    assert np.abs(colour_change(shiny, m, 0.9)).mean() < 3.0
    # A black-and-white picture is coloured neutral: no chroma appears.
    bw = np.repeat(roi.astype(np.float32).mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    change = colour_change(bw, m, 0.9)
    assert np.abs(change).max() > 20.0
    assert np.abs(change[..., 0] - change[..., 2]).max() < 1e-3


def test_packaged_segmenter_matches_its_sha256_and_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = (PACKAGED_MODEL.parent / f"{MODEL_NAME}.sha256").read_text().split()[0]
    assert hashlib.sha256(PACKAGED_MODEL.read_bytes()).hexdigest() == expected
    monkeypatch.delenv("FACEAGE_SEGMENTER", raising=False)
    monkeypatch.setattr("faceage_video.face.segment.Path.home", staticmethod(lambda: tmp_path))
    assert resolve_segmenter_model() == PACKAGED_MODEL
    with pytest.raises(ModelError, match=r"missing\.tflite"):
        resolve_segmenter_model(tmp_path / "missing.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"corrupt\.tflite.*Fix"):
        PersonSegmenter(SegmenterOptions(model_path=str(corrupt)))


def _first_frame(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A clip's first frame and its one face's landmarks."""
    import av

    from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions

    with av.open(str(path)) as c:
        frame = np.asarray(next(c.decode(video=0)).to_ndarray(format="rgb24"), np.uint8)
    with FaceLandmarker(LandmarkerOptions(mode="image", max_faces=1)) as lm:
        faces = lm.detect(frame)
    assert len(faces) == 1
    return frame, faces[0]


def _full_matte(frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The hair matte of a frame's face over the whole frame, (H, W) float32."""
    seg = PersonSegmenter()
    matte = hair_matte(frame, lm, seg(frame), HairOptions(enabled=True))
    seg.close()
    assert matte is not None
    full = np.zeros(frame.shape[:2], np.float32)
    x0, y0, x1, y1 = matte.box
    full[y0:y1, x0:x1] = matte.alpha
    return full


@pytest.fixture(scope="module")
def d0_frame(videos_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first frame of liveportrait_d0 (a man with dark hair on a green screen) and its landmarks."""
    return _first_frame(videos_dir / "liveportrait_d0.mp4")


def _eye_distance(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[[33, 133]].mean(axis=0) - lm[[362, 263]].mean(axis=0)))


def test_long_hair_is_matted_where_it_hangs_below_the_chin_and_the_neck_is_not(videos_dir: Path) -> None:
    # liveportrait_d10: a woman whose straight black hair hangs past her shoulders on both sides.
    frame, lm = _first_frame(videos_dir / "liveportrait_d10.mp4")
    full = _full_matte(frame, lm)
    d, chin, cx = _eye_distance(lm), int(lm[152, 1]), float(lm[1, 0])
    below = full[chin + int(0.3 * d) :]
    off = np.abs(np.arange(frame.shape[1]) - cx)
    assert below.shape[0] > 40
    # Hair beside the neck down to the frame's bottom edge (the stage once stopped an inter-ocular
    # distance below the chin, leaving a grey cap over dark ends)...
    assert (below[:, off > 0.8 * d] > 0.5).sum() > 2000
    assert (below[-10:, off > 0.8 * d] > 0.5).sum() > 100
    # ...and not the neck and chest under the chin.
    assert below[:, off < 0.4 * d].max() == 0.0
    # The hair fans out as it falls, and beside the jaw it hangs between the head's ellipse and the band
    # below the mouth: its dark strands there are matted (0.69 and 0.95 of them once, which left a dark
    # strip along the hair's outer edge and a dark wedge under the earring).
    luma = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    low = (luma < 60) & (off > 1.5 * d)
    assert (full[-60:][low[-60:]] > 0.5).mean() > 0.8
    eyes, mouth = int(lm[[33, 133, 362, 263], 1].mean()), int(lm[[13, 14], 1].mean())
    jaw = (luma < 60) & (off > 1.2 * d)
    assert (full[eyes:mouth][jaw[eyes:mouth]] > 0.5).mean() > 0.98


def test_lit_copper_hair_of_the_skins_colour_is_matted_on_both_sides(videos_dir: Path) -> None:
    # liveportrait_s18: copper hair whose lit side has the colour of her cheeks, which the colour test
    # alone took for skin: only the shaded side was matted.
    frame, lm = _first_frame(videos_dir / "liveportrait_s18.mp4")
    full = _full_matte(frame, lm)
    d, eyes = _eye_distance(lm), int(lm[[33, 263], 1].mean())
    row = full[eyes - int(0.2 * d) : eyes + int(0.2 * d)]
    left, right = int(lm[234, 0]), int(lm[454, 0])  # the face oval's sides at the eyes
    assert (row[:, :left] > 0.5).sum() > 600 and (row[:, right:] > 0.5).sum() > 600
    oval = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(oval, [np.round(oval_polygon(lm)).astype(np.int32)], 1)
    face = cv2.erode(oval, np.ones((9, 9), np.uint8)) > 0
    face[: int(lm[159, 1])] = False
    assert full[face].mean() < 0.005  # the face itself stays out


def test_the_matte_holds_the_hair_and_not_the_face_background_or_clothes(
    d0_frame: tuple[np.ndarray, np.ndarray],
) -> None:
    frame, lm = d0_frame
    seg = PersonSegmenter()
    person = seg(frame)
    seg.close()
    assert (
        person.shape[1] <= 512 and person[-1, frame.shape[1] // 2 * person.shape[1] // frame.shape[1]] > 0.5
    )
    matte = hair_matte(frame, lm, person, HairOptions(enabled=True))
    assert matte is not None
    full = np.zeros(frame.shape[:2], np.float32)
    x0, y0, x1, y1 = matte.box
    full[y0:y1, x0:x1] = matte.alpha
    top = int(lm[10, 1])  # the top of the face oval, on the upper forehead
    cx = int(lm[1, 0])
    crown = full[max(top - 90, 0) : top - 50, cx - 30 : cx + 30]
    assert crown.mean() > 0.9  # the hair above the forehead (the oval stops about 40 px below the hairline)
    oval = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(oval, [np.round(oval_polygon(lm)).astype(np.int32)], 1)
    face = cv2.erode(oval, np.ones((9, 9), np.uint8)) > 0
    face[: int(lm[159, 1])] = False  # the face oval below the eyes
    assert face.sum() > 5000 and full[face].mean() < 0.005 and full[face].max() < 0.2  # not the face
    assert full[int(lm[152, 1]) :].max() == 0.0  # nothing below the chin: collar, shoulders
    assert full[:, :20].max() == 0.0 and full[:, -20:].max() == 0.0  # not the green screen at the sides
    greyed = apply_change_roi(frame, age_hair(frame, matte, 0.6, HairOptions(enabled=True)))
    assert np.array_equal(greyed[full == 0], frame[full == 0])  # pixels off the matte untouched
    hair = full > 0.9
    assert greyed[hair].astype(float).mean() > frame[hair].astype(float).mean() + 20  # lighter


def _box_matte(x0: int, y0: int, size: int, value: float, to_face: np.ndarray) -> HairMatte:
    return HairMatte((x0, y0, x0 + size, y0 + size), np.full((size, size), value, np.float32), 40.0, to_face)


def test_the_smoother_carries_the_previous_matte_with_the_head() -> None:
    smoother = HairSmoother(0.8)
    # The head moves 10 px right: the face axes of the second frame are the first's, shifted.
    first = _box_matte(0, 0, 40, 1.0, np.array([[1.0, 0.0, -20.0], [0.0, 1.0, -20.0]]))
    second = _box_matte(10, 0, 40, 0.0, np.array([[1.0, 0.0, -30.0], [0.0, 1.0, -20.0]]))
    smoother(3, first)
    out = smoother(3, second)
    assert out.box == second.box
    # Where the first frame's matte reaches, 0.8 of it is carried; its part off the first box is not.
    np.testing.assert_allclose(out.alpha[5:35, 2:35], 0.8, atol=1e-5)
    # Another track, and a reset track, start afresh.
    assert smoother(4, second).alpha.max() == 0.0
    smoother.reset(3)
    assert smoother(3, second).alpha.max() == 0.0
    assert HairSmoother(0.0)(3, second).alpha.max() == 0.0


def test_a_matte_carried_between_the_frames_it_is_found_on_moves_with_the_head() -> None:
    """`HairSmoother.carried`: the last matte found for a track, moved to where the face's axes now are
    (here 7 px right and 3 px down), clipped to the frame; nothing for a track never found."""
    smoother = HairSmoother(0.8)
    alpha = np.zeros((30, 40), np.float32)
    alpha[10:20, 5:15] = 1.0
    streaks = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    at = np.array([[1.0, 0.0, -50.0], [0.0, 1.0, -60.0]])  # face axes: origin at (50, 60)
    smoother(2, HairMatte((20, 40, 60, 70), alpha, 40.0, at, streaks))
    moved = at - np.array([[0.0, 0.0, 7.0], [0.0, 0.0, 3.0]])  # the head at (57, 63)
    out = smoother.carried(2, moved, (100, 100, 3))
    assert out is not None
    assert out.box == (27, 43, 67, 73)
    np.testing.assert_allclose(out.alpha, alpha, atol=1e-6)
    assert out.streaks is not None
    np.testing.assert_allclose(out.streaks, streaks, atol=1e-3)
    np.testing.assert_allclose(out.to_face, moved)
    # Near the frame's edge the box is clipped, and the matte keeps its place in the frame.
    edge = smoother.carried(2, at - np.array([[0.0, 0.0, 50.0], [0.0, 0.0, 0.0]]), (100, 100, 3))
    assert edge is not None and edge.box == (70, 40, 100, 70)
    np.testing.assert_allclose(edge.alpha, alpha[:, :30], atol=1e-6)
    assert smoother.carried(5, moved, (100, 100, 3)) is None


def _synthetic_head() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(480, 480, 3) frame, (478, 2) landmarks and (480, 480) person mask: a face (the canonical layout at
    twice its size, eyes 73 px apart, chin at y 296), dark hair over the crown that hangs to the frame's
    bottom on the left and stops at the ear on the right, a neck, and a jacket of the hair's own colour from
    y 400 down, which the hanging hair touches."""
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions

    rng = np.random.default_rng(3)
    pts = CanonicalMesh(MeshOptions(size=128)).landmark_vertices * 2.0 + np.array([100.0, 60.0])
    eyes = (pts[[33, 133]].mean(0), pts[[362, 263]].mean(0))
    lm = np.concatenate([pts, np.repeat(eyes[0][None], 5, 0), np.repeat(eyes[1][None], 5, 0)])
    yy, xx = np.mgrid[0:480, 0:480]
    oval = np.zeros((480, 480), np.uint8)
    cv2.fillPoly(oval, [np.round(oval_polygon(lm)).astype(np.int32)], 1)
    crown = (((xx - 228) / 125.0) ** 2 + ((yy - 150) / 120.0) ** 2 < 1.0) & (oval == 0)
    crown &= (yy < 200) | (xx < 228)
    hanging = (xx >= 95) & (xx < 150) & (yy >= 130)
    hair = crown | hanging
    neck = (xx >= 195) & (xx < 262) & (yy >= 280) & (yy < 400)
    jacket = yy >= 400
    frame = np.full((480, 480, 3), 200.0)
    frame[(oval > 0) | neck] = (205.0, 150.0, 120.0)
    stripes = 10.0 * np.sin(xx * 1.7)[..., None]  # strands running down
    frame[hair | jacket] = (50.0, 35.0, 25.0)
    frame[hair] += stripes[hair]
    frame += rng.normal(0.0, 3.0, frame.shape)
    person = ((oval > 0) | hair | neck | jacket).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8), lm.astype(np.float32), person


def test_a_jacket_of_the_hairs_colour_that_hanging_hair_touches_stays_out() -> None:
    frame, lm, person = _synthetic_head()
    matte = hair_matte(frame, lm, person, HairOptions(enabled=True))
    assert matte is not None
    full = np.zeros(frame.shape[:2], np.float32)
    x0, y0, x1, y1 = matte.box
    full[y0:y1, x0:x1] = matte.alpha
    assert full[45:95, 180:280].mean() > 0.9  # the crown
    assert full[320:390, 105:140].mean() > 0.9  # the hair hanging on the left, below the chin
    assert full[440:480, 105:140].mean() > 0.5  # ...down to the frame's edge, over the jacket it lies on
    # The jacket it touches, under the neck and on the right (inside the region where hair may hang), and
    # the neck: no run of hair comes down to them from the mouth's level.
    assert full[410:480, 190:400].max() == 0.0
    assert full[300:400, 200:258].max() == 0.0
