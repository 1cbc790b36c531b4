"""The registered teacher: luminance and geometry only, neutral faces stay neutral, targets interpolate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceage_video.face.landmarks import FACE_OVAL
from faceage_video.face.mesh import N_LANDMARKS, CanonicalMesh, MeshOptions
from training.canonical import CanonicalSet
from training.teacher import (
    BAND_EDGES,
    BEARD,
    BRIDGE,
    EYES,
    LIPS,
    RIMS,
    Prototypes,
    RegisteredTeacher,
    TeacherOptions,
    band_split,
    band_weights,
    beard_scores,
    glasses_scores,
    landmark_region,
    lid_band,
    luma,
    mouth_corners,
    oval_fade,
    pick_exemplars,
    skin_mask,
    warp_shape,
)

NOSE_TIP = 1


def _canonical_set(
    faces: list[np.ndarray], ages: list[int], genders: list[int], shapes: list[np.ndarray]
) -> CanonicalSet:
    """A training-split canonical set of synthetic faces (race 0, none in validation)."""
    n = len(ages)
    return CanonicalSet(
        np.stack(faces),
        np.array(ages, np.int32),
        np.array(genders, np.int32),
        np.zeros(n, np.int32),
        np.zeros(n, bool),
        np.stack(shapes).astype(np.float32),
        np.array([f"face{i}.jpg" for i in range(n)]),
    )


def _aging_set(mesh: CanonicalMesh, size: int = 64) -> CanonicalSet:
    """Two synthetic (size, size) faces per gender and age band: older ones have more fine texture and lower
    lips."""
    rng = np.random.default_rng(0)
    ages, genders, faces, shapes = [], [], [], []
    for g in (0, 1):
        for lo, hi in BAND_EDGES:
            for _ in range(2):
                age = min(lo + 5, hi)
                ages.append(age)
                genders.append(g)
                amp = 4.0 + 0.4 * (age - 18)
                face = 140 + rng.normal(0, amp, (size, size, 1)) * np.ones((1, 1, 3))
                faces.append(np.clip(face * [1.0, 0.85, 0.7], 0, 255).astype(np.uint8))
                shape = mesh.landmark_vertices.copy()
                shape[:, 1] += 0.02 * (age - 18) * (shape[:, 1] > 0.625 * size)
                shapes.append(shape)
    return _canonical_set(faces, ages, genders, shapes)


@pytest.fixture(scope="module")
def aging_set() -> tuple[CanonicalMesh, CanonicalSet, Prototypes]:
    mesh = CanonicalMesh(MeshOptions(size=64))
    data = _aging_set(mesh)
    return mesh, data, Prototypes.build(data, mesh)


@pytest.fixture(scope="module")
def teacher(aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes]) -> RegisteredTeacher:
    mesh, _, protos = aging_set
    return RegisteredTeacher(protos, mesh)


def colour_face(seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    base = np.stack([0.7 - 0.1 * yy, 0.55 - 0.05 * xx, 0.45 + 0.0 * xx], -1)
    return np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1).astype(np.float32)


def test_a_black_and_white_face_gets_no_chroma(teacher: RegisteredTeacher) -> None:
    grey = np.repeat(luma(colour_face())[..., None], 3, axis=2)
    for target in (70.0, 22.0):
        out = teacher(grey, 45.0, target, gender=0, key="bw")
        assert np.abs(out[..., 0] - out[..., 1]).max() < 1e-5
        assert np.abs(out[..., 1] - out[..., 2]).max() < 1e-5


def test_aging_changes_luminance_and_leaves_the_mean_colour(teacher: RegisteredTeacher) -> None:
    face = colour_face()
    out = teacher(face, 25.0, 75.0, gender=1, key="a")
    assert np.abs(out - face).mean() > 0.002  # it does something
    # Any global cast would move the mean chroma; only a slight desaturation is allowed.
    chroma_in = (face - luma(face)[..., None]).mean(axis=(0, 1))
    chroma_out = (out - luma(out)[..., None]).mean(axis=(0, 1))
    assert np.abs(chroma_out - chroma_in).max() < 0.02


def test_the_same_age_changes_almost_nothing(teacher: RegisteredTeacher) -> None:
    face = colour_face()
    out = teacher(face, 40.0, 40.0, gender=0, key="a")
    assert np.abs(out - face).max() < 1e-4


def test_de_aging_scales_each_band_by_the_prototypes_amplitude_ratio(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    # Texture alone: the skin's wrinkle bands shrink by the ratio of the two ages' prototype amplitudes, not
    # by a power of it (a squared ratio is what airbrushed the de-aged faces).
    mesh, data, protos = aging_set
    t = RegisteredTeacher(protos, mesh, TeacherOptions(shape=0.0, shading=0.0, detail=0.0))
    i = int(np.flatnonzero((data.age == 65) & (data.gender == 0))[0])
    face = data.faces[i].astype(np.float32) / 255.0
    out = t(face, 65.0, 40.0, gender=0, key="old")
    skin = t.skin > 0.99
    bands_in, _ = band_split(luma(face), t.sigmas)
    bands_out, _ = band_split(luma(out), t.sigmas)
    _, env_old, _ = protos.at(0, 65.0)
    _, env_young, _ = protos.at(0, 40.0)
    for k in (1, 2):
        kept = np.sqrt(np.mean(bands_out[k][skin] ** 2) / np.mean(bands_in[k][skin] ** 2))
        ratio = float(np.median((env_young[k][skin] + 2e-3) / (env_old[k][skin] + 2e-3)))
        assert ratio < 0.8  # the synthetic old faces do have more texture
        assert kept == pytest.approx(ratio, rel=0.1)


def test_without_amplify_aging_keeps_the_own_bands_and_makes_the_extra_detail_from_exemplars(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    mesh, data, protos = aging_set
    i = int(np.flatnonzero((data.age == 23) & (data.gender == 1))[0])
    face = data.faces[i].astype(np.float32) / 255.0

    def band_rms(options: TeacherOptions, k: int) -> float:
        t = RegisteredTeacher(protos, mesh, options)
        bands, _ = band_split(luma(t(face, 23.0, 65.0, gender=1, key="young")), t.sigmas)
        return float(np.sqrt(np.mean(bands[k][t.skin > 0.99] ** 2)))

    plain = dict(shape=0.0, shading=0.0)
    t = RegisteredTeacher(protos, mesh)
    own, _ = band_split(luma(face), t.sigmas)
    for k in (1, 2):
        before = float(np.sqrt(np.mean(own[k][t.skin > 0.99] ** 2)))
        # No exemplar: the face's own detail is left exactly as it is, where Tiddeman's ratio scales it up.
        kept = band_rms(TeacherOptions(**plain, detail=0.0, amplify=False), k)
        assert kept == pytest.approx(before, rel=1e-3)
        assert band_rms(TeacherOptions(**plain, detail=0.0, amplify=True), k) > 1.5 * before
        # With the exemplar, the extra energy is made, not amplified.
        assert band_rms(TeacherOptions(**plain, detail=1.0, amplify=False), k) > 1.5 * before


def test_the_shape_warp_keeps_the_fine_detail_it_moves() -> None:
    # A sub-pixel move of every landmark: bilinear resampling kept 14 % of a noise texture's finest band
    # (a blur of the eyes and brows that the warp moves), bicubic keeps 39 %.
    mesh = CanonicalMesh(MeshOptions(size=64))
    rng = np.random.default_rng(0)
    img = np.clip(0.5 + rng.normal(0, 0.15, (64, 64, 1)) * np.ones((1, 1, 3)), 0, 1).astype(np.float32)
    out = warp_shape(img, mesh, np.full((N_LANDMARKS, 2), 0.5, np.float32))
    inner = cv2.erode((mesh.mask("face") > 0.99).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)

    def fine(x: np.ndarray) -> float:
        y = luma(x)
        return float(np.mean((y - cv2.GaussianBlur(y, (0, 0), 1.0))[inner] ** 2))

    assert inner.sum() > 500
    assert fine(out) / fine(img) > 0.3
    assert np.abs(warp_shape(img, mesh, np.zeros((N_LANDMARKS, 2), np.float32)) - img)[inner].max() < 1e-3


def _old_bands_shifted(protos: Prototypes, axis: int, px: float = 2.0) -> Prototypes:
    """Every band the young band's layout, the old ones (50+) moved `px` along `axis` (0: x, 1: y)."""
    moved = replace(protos, shape=protos.shape.copy())
    moved.shape[:] = protos.shape[:, :1]
    moved.shape[:, 3:, :, axis] += px
    return moved


def test_without_warp_fine_the_shape_moves_and_the_pores_stay(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    # Dragged along the displacement, the skin's own fine detail ran the way the flesh moved (diagonal lines
    # on aged cheeks). With `warp_fine` off the low-pass shape still moves, the pores stay where they were.
    mesh, _, protos = aging_set
    moved = _old_bands_shifted(protos, axis=0)
    rng = np.random.default_rng(7)
    xx = np.mgrid[0:64, 0:64][1] / 64.0
    y = 0.5 + 0.15 * np.sin(2 * np.pi * xx * 3) + rng.normal(0, 0.05, (64, 64))
    face = np.repeat(np.clip(y, 0, 1)[..., None], 3, axis=2).astype(np.float32)
    plain = dict(shape=1.0, shading=0.0, texture=0.0, detail=0.0, saturation=0.0, amplify=False)
    inner = cv2.erode((skin_mask(mesh) > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.sum() > 150

    def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bands, _ = band_split(luma(x), RegisteredTeacher(protos, mesh).sigmas)
        fine = np.sum(bands[:-1], axis=0)
        return fine[inner], (luma(x) - fine)[inner]

    fine_in, low_in = split(face)
    out = {}
    for warp_fine in (True, False):
        out[warp_fine] = RegisteredTeacher(moved, mesh, TeacherOptions(**plain, warp_fine=warp_fine))(
            face, 24.0, 76.0, gender=0, key="k"
        )
        assert np.abs(out[warp_fine][..., 0] - out[warp_fine][..., 2]).max() < 1e-5  # grey stays grey
    fine_kept, low_kept = split(out[False])
    fine_moved, low_moved = split(out[True])
    assert np.corrcoef(fine_in, fine_kept)[0, 1] > 0.95
    assert np.corrcoef(fine_in, fine_moved)[0, 1] < 0.5
    # The low-pass shape moved the same in both, and away from the input's.
    assert np.abs(low_kept - low_moved).mean() < 0.2 * np.abs(low_moved - low_in).mean()


def test_eyes_still_keeps_the_eye_contours_where_they_are(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    # A warp of 4 x the mean displacement drooped the upper lids into a squint; `eyes_still` keeps the lids.
    from training.teacher import EYES

    mesh, _, protos = aging_set
    moved = _old_bands_shifted(protos, axis=1)
    contour = list(EYES[0] + EYES[1])
    still = RegisteredTeacher(moved, mesh, TeacherOptions(eyes_still=0.05)).shape_weight
    free = RegisteredTeacher(moved, mesh, TeacherOptions()).shape_weight
    assert np.all(still[contour] == 0.0) and np.all(free[contour] > 0.5)
    assert still[NOSE_TIP] == free[NOSE_TIP] == 1.0
    face = colour_face()
    plain = dict(shading=0.0, texture=0.0, detail=0.0, saturation=0.0, amplify=False, shape=1.0)
    hull = np.zeros((64, 64), bool)
    for eye in EYES:
        hull |= landmark_region(mesh, eye)
    assert hull.sum() > 5
    out = RegisteredTeacher(moved, mesh, TeacherOptions(**plain, eyes_still=0.05))(face, 24.0, 76.0, 0, "k")
    moved_out = RegisteredTeacher(moved, mesh, TeacherOptions(**plain))(face, 24.0, 76.0, 0, "k")
    assert np.abs(out - face)[hull].mean() < 0.3 * np.abs(moved_out - face)[hull].mean()
    with pytest.raises(ValueError, match="eyes_still"):
        TeacherOptions(eyes_still=0.9)


def test_oval_fade_spreads_the_shape_fade_further_inside(teacher: RegisteredTeacher) -> None:
    # The warp moves the lower face towards the fixed outline; a longer fade spreads that over more skin.
    from training.run import teacher_pairs_name
    from training.teacher import OVAL_FADE, shape_weights

    mesh = teacher.mesh
    short, long = shape_weights(mesh), shape_weights(mesh, oval=2 * OVAL_FADE)
    assert np.all(long[list(FACE_OVAL)] == 0.0) and long[NOSE_TIP] == short[NOSE_TIP] == 1.0
    assert np.all(long <= short + 1e-6) and np.any(long < short - 0.2)
    spread = RegisteredTeacher(teacher.protos, mesh, TeacherOptions(oval_fade=2 * OVAL_FADE))
    np.testing.assert_array_equal(spread.shape_weight, long)
    assert teacher_pairs_name(3, TeacherOptions()).endswith("-t1-d1.npz")
    assert "-of0.16" in teacher_pairs_name(3, TeacherOptions(oval_fade=0.16))
    with pytest.raises(ValueError, match="oval_fade"):
        TeacherOptions(oval_fade=0.0)


def test_the_face_outline_does_not_move(teacher: RegisteredTeacher) -> None:
    # The runtime pastes inside the input's oval only: a moved outline would show as half an edge.
    fade = oval_fade(teacher.mesh)
    assert fade.shape == (N_LANDMARKS,)
    assert np.all(fade[list(FACE_OVAL)] == 0.0)
    assert fade[NOSE_TIP] == 1.0


def test_skin_the_camera_did_not_see_is_left_alone(teacher: RegisteredTeacher) -> None:
    mesh = teacher.mesh
    shape = mesh.landmark_vertices.copy()
    # A face turned away on its right: that half squeezed towards the midline, as a profile view does.
    mid = float(shape[NOSE_TIP, 0])
    right = shape[:, 0] > mid
    shape[right, 0] = mid + 0.05 * (shape[right, 0] - mid)
    vis = teacher.visible(shape.astype(np.float32))
    hidden, seen = (vis == 0.0) & (mesh.mask("face") > 0.5), vis >= 1.0
    assert hidden.sum() > 50 and seen.sum() > 50
    face = colour_face()
    out = teacher(face, 25.0, 75.0, gender=0, key="turned", shape=shape.astype(np.float32))
    plain = teacher(face, 25.0, 75.0, gender=0, key="turned")
    assert np.abs(out - face)[hidden].max() < 1e-6
    assert np.abs(out - plain)[seen].max() < 1e-6


def test_band_weights_interpolate_between_band_centres() -> None:
    w = band_weights(40.0)
    assert w.sum() == pytest.approx(1.0) and np.count_nonzero(w) == 2
    assert band_weights(10.0)[0] == 1.0 and band_weights(99.0)[-1] == 1.0
    assert N_LANDMARKS == 468


def test_male_prototypes_leave_out_the_bearded_half_so_aging_adds_no_beard() -> None:
    mesh = CanonicalMesh(MeshOptions(size=64))
    rng = np.random.default_rng(1)
    beard = landmark_region(mesh, BEARD) & ~landmark_region(mesh, LIPS[0])
    ages, faces, bearded = [], [], []
    for lo, hi in BAND_EDGES:
        for k in range(4):
            face = 150 + rng.normal(0, 3.0, (64, 64, 1)) * np.ones((1, 1, 3))
            # Every other face has a dark, rough beard; it is as common in the young bands as in the old.
            if k % 2:
                face[beard] = 70 + rng.normal(0, 25.0, (int(beard.sum()), 3))
            faces.append(np.clip(face, 0, 255).astype(np.uint8))
            ages.append(min(lo + 5, hi))
            bearded.append(bool(k % 2))
    n = len(ages)
    data = _canonical_set(faces, ages, [0] * n, [mesh.landmark_vertices] * n)
    idx = np.arange(n)
    scores = beard_scores(data, idx, mesh)
    assert scores[np.array(bearded)].min() > scores[~np.array(bearded)].max()
    protos = Prototypes.build(data, mesh)
    assert (protos.counts[0] == 1).all()  # the least bearded half, then the least glassed half of that
    # The male means in the beard region are bare skin (about 150/255), not the beards' 70/255.
    assert protos.mean[0][:, beard].mean() > 0.5


def test_the_teacher_weight_map_leans_on_eyes_brows_and_lips() -> None:
    from training.config import TrainConfig
    from training.train import teacher_weight_map

    plain = TrainConfig(space="mesh", landmarks="l.npz", size=64, conditioned=True)
    assert teacher_weight_map(plain) is None
    w = teacher_weight_map(replace(plain, teacher_regions=4.0))
    assert w is not None and w.shape == (64, 64, 1)
    assert float(w.mean()) == pytest.approx(1.0, abs=1e-5)
    mesh = CanonicalMesh(MeshOptions(size=64))
    eye = landmark_region(mesh, EYES[0])
    cheek = skin_mask(mesh) > 0.99
    assert float(w[eye, 0].mean()) > 2.5 * float(w[cheek, 0].mean())


def test_skin_lids_moves_the_lids_from_the_features_l1_to_the_skins() -> None:
    """`skin_lids`: the band between brow and upper lid leaves the features' extra L1 weight and joins the
    low-passed skin L1; the eyes themselves keep the weight."""
    from training.config import TrainConfig
    from training.train import lowpass_teacher, teacher_weight_map

    cfg = TrainConfig(
        space="mesh", landmarks="l.npz", size=128, conditioned=True, teacher_regions=4.0, teacher_lowpass=3.0
    )
    mesh = CanonicalMesh(MeshOptions(size=128))
    band = lid_band(mesh)
    eye = landmark_region(mesh, EYES[0])
    plain, lids = teacher_weight_map(cfg), teacher_weight_map(replace(cfg, skin_lids=True))
    assert plain is not None and lids is not None
    assert float(lids[band, 0].mean()) < 0.6 * float(plain[band, 0].mean())
    assert float(lids[eye, 0].mean()) > 2.5 * float(lids[skin_mask(mesh) > 0.99, 0].mean())
    low_plain, low_lids = lowpass_teacher(cfg), lowpass_teacher(replace(cfg, skin_lids=True))
    assert low_plain is not None and low_lids is not None
    free_plain, free_lids = low_plain.free.numpy()[0, ..., 0], low_lids.free.numpy()[0, ..., 0]
    assert float(free_lids[band].mean()) > 2.0 * float(free_plain[band].mean())


def _frame_region(mesh: CanonicalMesh) -> np.ndarray:
    face = mesh.mask("face") > 0.5
    return (
        landmark_region(mesh, BRIDGE) | landmark_region(mesh, RIMS[0]) | landmark_region(mesh, RIMS[1])
    ) & face


def test_prototypes_and_exemplars_leave_out_glasses_so_aging_adds_no_frame() -> None:
    # Old faces wear glasses more often: their mean band energy on the bridge and under the eyes was the
    # frames', and an exemplar put a frame on a face that had none.
    mesh = CanonicalMesh(MeshOptions(size=64))
    rng = np.random.default_rng(2)
    frame = _frame_region(mesh)
    ages, faces, framed = [], [], []
    for lo, hi in BAND_EDGES:
        for k in range(4):
            face = 150 + rng.normal(0, 3.0, (64, 64, 1)) * np.ones((1, 1, 3))
            if k % 2:  # a thin dark frame: every other row of the frame region
                rows = frame & (np.arange(64)[:, None] % 3 == 0)
                face[rows] = 40
            faces.append(np.clip(face, 0, 255).astype(np.uint8))
            ages.append(min(lo + 5, hi))
            framed.append(bool(k % 2))
    n = len(ages)
    data = _canonical_set(faces, ages, [1] * n, [mesh.landmark_vertices] * n)
    scores = glasses_scores(data, np.arange(n), mesh)
    assert scores[np.array(framed)].min() > scores[~np.array(framed)].max()
    protos = Prototypes.build(data, mesh)
    assert (protos.counts[1] == 2).all()
    assert protos.mean[1][:, frame].mean() > 0.55  # bare skin (150/255), not the frames' 40/255
    filled = protos.exemplar_bands[1][:, :2]
    assert np.abs(filled[..., frame]).max() < 0.1


def test_exemplars_are_the_most_frontal_faces() -> None:
    mesh = CanonicalMesh(MeshOptions(size=64))
    n = 12
    shapes = []
    for i in range(n):
        shape = mesh.landmark_vertices.copy()
        if i % 2:  # turned away: one half squeezed towards the midline
            mid = float(shape[NOSE_TIP, 0])
            right = shape[:, 0] > mid
            shape[right, 0] = mid + 0.1 * (shape[right, 0] - mid)
        shapes.append(shape)
    faces = [np.full((64, 64, 3), 150, np.uint8)] * n
    data = _canonical_set(faces, [60] * n, [1] * n, shapes)
    picked = pick_exemplars(data, np.arange(n), mesh, n=3)
    assert len(picked) == 3 and all(i % 2 == 0 for i in picked)


def test_no_exemplar_detail_at_the_mouth_corners(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    mesh, data, protos = aging_set
    corners = mouth_corners(mesh)
    lips = landmark_region(mesh, LIPS[0])
    assert corners[lips].min() > 0.9 and corners.max() <= 1.0
    # Beside the lips, not on them: where a broader smile of the exemplar has its teeth.
    ring = (corners > 0.95) & ~lips
    assert ring.sum() >= 4
    i = int(np.flatnonzero((data.age == 23) & (data.gender == 1))[0])
    face = data.faces[i].astype(np.float32) / 255.0
    plain = dict(shape=0.0, shading=0.0, amplify=False)
    with_detail = RegisteredTeacher(protos, mesh, TeacherOptions(**plain, detail=1.0))
    without = RegisteredTeacher(protos, mesh, TeacherOptions(**plain, detail=0.0))
    a = with_detail(face, 23.0, 65.0, gender=1, key="young")
    b = without(face, 23.0, 65.0, gender=1, key="young")
    assert np.abs(a - b)[ring].max() < 0.02
    assert np.abs(a - b)[with_detail.skin > 0.99].max() > 0.05


def test_lids_give_the_exemplar_detail_the_skin_between_brow_and_eye_and_nothing_else(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    """`lids`: the grown eye and brow masks leave no skin in the band between them; with `lids` the exemplar
    detail reaches it, and the warp, shading and band gains are the same as without."""
    mesh, data, protos = aging_set
    band = lid_band(mesh)
    assert band.sum() >= 6
    assert skin_mask(mesh)[band].max() < 0.3
    assert skin_mask(mesh, lids=True)[band].mean() > 2.0 * skin_mask(mesh)[band].mean()
    far = skin_mask(mesh) > 0.999
    np.testing.assert_allclose(skin_mask(mesh, lids=True)[far], skin_mask(mesh)[far], atol=1e-3)
    i = int(np.flatnonzero((data.age == 23) & (data.gender == 1))[0])
    face = data.faces[i].astype(np.float32) / 255.0
    opts = TeacherOptions(shape=2.0, shading=1.0, amplify=False, detail=1.0)
    plain = RegisteredTeacher(protos, mesh, opts)(face, 23.0, 65.0, gender=1, key="k")
    lids = RegisteredTeacher(protos, mesh, replace(opts, lids=True))(face, 23.0, 65.0, gender=1, key="k")
    assert np.abs(lids - plain)[band].mean() > 2.0 * np.abs(lids - plain)[far].mean()
    no_detail = replace(opts, detail=0.0)
    np.testing.assert_array_equal(
        RegisteredTeacher(protos, mesh, no_detail)(face, 23.0, 65.0, gender=1, key="k"),
        RegisteredTeacher(protos, mesh, replace(no_detail, lids=True))(face, 23.0, 65.0, gender=1, key="k"),
    )


def test_the_mouth_opening_does_not_move() -> None:
    # The opening between the lips holds an open mouth's teeth in a strip a few texels high: moving it turned
    # them into dark blocks on paste back.
    from training.teacher import INNER_LIPS, shape_weights

    mesh = CanonicalMesh(MeshOptions(size=128))
    w = shape_weights(mesh)
    assert np.all(w[list(INNER_LIPS)] == 0.0)
    assert np.all(w[list(FACE_OVAL)] == 0.0)
    assert w[NOSE_TIP] == 1.0
    rng = np.random.default_rng(3)
    img = np.clip(0.5 + rng.normal(0, 0.15, (128, 128, 1)) * np.ones((1, 1, 3)), 0, 1).astype(np.float32)
    move = (np.full((N_LANDMARKS, 2), 1.5, np.float32) * w[:, None]).astype(np.float32)
    out = warp_shape(img, mesh, move)
    hull = landmark_region(mesh, INNER_LIPS).astype(np.uint8)
    opening = cv2.erode(hull, np.ones((3, 3), np.uint8)).astype(bool)  # off the lips' own triangles
    assert opening.sum() > 10
    # With the oval fade only, a 1.5 px move changed every texel of the opening (mean 0.15 of full scale).
    assert np.abs(out - img)[opening].mean() < 0.01


def test_brows_take_the_shading_difference_only_when_asked(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes],
) -> None:
    from training.teacher import BROWS, brow_mask

    mesh, _, protos = aging_set
    brows = (brow_mask(mesh) > 0.9) & (skin_mask(mesh) < 0.05)
    assert brows.sum() > 5
    # Old brows lighter than young ones in the prototypes: a made difference on the brows only.
    bright = replace(protos, mean=protos.mean.copy())
    region = np.zeros((mesh.size, mesh.size), bool)
    for group in BROWS:
        region |= landmark_region(mesh, group)
    bright.mean[:, 4:][:, :, region] += 0.2
    face = colour_face()
    plain = dict(shape=0.0, texture=0.0, detail=0.0, amplify=False)
    off = RegisteredTeacher(bright, mesh, TeacherOptions(**plain, brows=0.0))(face, 25.0, 70.0, 0, "b")
    on = RegisteredTeacher(bright, mesh, TeacherOptions(**plain, brows=1.0))(face, 25.0, 70.0, 0, "b")
    assert np.abs(luma(off) - luma(face))[brows].max() < 0.02  # skin only: the brows keep their luminance
    assert luma(on)[brows].mean() > luma(off)[brows].mean() + 0.03
    # Luminance only: a neutral change on R, G and B alike.
    d = (on - off)[brows]
    assert np.abs(d[:, 0] - d[:, 1]).max() < 1e-4


def test_shading_younger_sets_the_de_aging_shading_alone(teacher: RegisteredTeacher) -> None:
    protos, mesh = teacher.protos, teacher.mesh
    face = colour_face()
    plain = dict(shape=0.0, texture=0.0, detail=0.0, saturation=0.0)

    def run(target: float, **options: float | None) -> np.ndarray:
        t = RegisteredTeacher(protos, mesh, TeacherOptions(**plain, **options))  # type: ignore[arg-type]
        return t(face, 50.0, target, gender=1, key="k")

    # De-aging: shading_younger replaces shading; 0 leaves the face's luminance as it is.
    assert np.abs(run(25.0, shading=2.0, shading_younger=0.0) - face).max() < 1e-5
    assert np.abs(run(25.0, shading=2.0) - face).max() > 1e-3
    # Aging is untouched by it (to float rounding: threaded blurs may sum in another order, 1e-7 here).
    np.testing.assert_allclose(run(75.0, shading=2.0, shading_younger=0.0), run(75.0, shading=2.0), atol=1e-6)


def test_transplant_takes_the_skins_fine_bands_from_a_young_exemplar_and_keeps_objects(
    teacher: RegisteredTeacher,
) -> None:
    protos, mesh = teacher.protos, teacher.mesh
    rng = np.random.default_rng(3)
    s = mesh.size
    # An old face: skin detail as strong as its age group's, and a dark frame line across one cheek.
    grain = rng.normal(0, 0.075, (s, s, 1)) * np.ones((1, 1, 3))
    face = np.clip(0.55 + grain, 0, 1).astype(np.float32)
    line = np.zeros((s, s), bool)
    line[int(s * 0.62) : int(s * 0.62) + 2, int(s * 0.22) : int(s * 0.40)] = True
    face[line] = 0.1
    plain = dict(shape=0.0, shading=0.0, texture=0.0, detail=0.0, saturation=0.0)
    off = RegisteredTeacher(protos, mesh, TeacherOptions(**plain))(face, 55.0, 24.0, 0, "t")
    on = RegisteredTeacher(protos, mesh, TeacherOptions(**plain, transplant=1.0))(face, 55.0, 24.0, 0, "t")
    np.testing.assert_allclose(off, face, atol=1e-5)  # without it nothing here changes the face

    def fine(img: np.ndarray) -> np.ndarray:
        y = luma(img)
        return y - cv2.GaussianBlur(y, (0, 0), 3.0)

    far = (skin_mask(mesh) > 0.99) & (cv2.dilate(line.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0)
    assert far.sum() > 100
    # Away from the line the skin's fine detail is the young exemplar's: much weaker than the old face's.
    assert fine(on)[far].std() < 0.6 * fine(face)[far].std()
    # The line is an object, far above any age's skin detail: it keeps its own darkness.
    assert np.abs(luma(on)[line] - luma(face)[line]).mean() < 0.05


def test_transplant_is_a_share() -> None:
    with pytest.raises(ValueError, match="transplant"):
        TeacherOptions(transplant=1.5)
    with pytest.raises(ValueError, match="transplant_coarse"):
        TeacherOptions(transplant_coarse=-0.1)


def test_the_coarse_transplant_takes_a_fold_away_and_keeps_the_light(teacher: RegisteredTeacher) -> None:
    protos, mesh = teacher.protos, teacher.mesh
    s = mesh.size
    skin = skin_mask(mesh) > 0.99
    # An old face: even light, and one soft dark fold (σ 4 px: coarser than the fine bands) down the skin.
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    cx = float(xx[skin].mean())
    fold = 0.12 * np.exp(-0.5 * ((xx - cx) / 2.5) ** 2) * (np.abs(yy - yy[skin].mean()) < s * 0.15)
    face = np.repeat((0.6 - fold)[..., None], 3, axis=2).astype(np.float32)
    plain = dict(shape=0.0, shading=0.0, texture=0.0, detail=0.0, saturation=0.0)

    def run(**options: float) -> np.ndarray:
        return RegisteredTeacher(protos, mesh, TeacherOptions(**plain, **options))(face, 60.0, 24.0, 0, "f")  # type: ignore[arg-type]

    np.testing.assert_allclose(run(), face, atol=1e-5)
    line = (fold > 0.1) & skin
    assert line.sum() > 10

    def depth(img: np.ndarray) -> float:
        return float(0.6 - luma(img)[line].mean())

    fine, coarse, on = (
        run(transplant=1.0),
        run(transplant_coarse=1.0),
        run(transplant=1.0, transplant_coarse=1.0),
    )
    # The fold spans the fine bands and the coarse one: each transplant takes its part, both take most of it
    # (the young exemplar has no such fold); what is left lies above the coarse band, with the light.
    assert depth(coarse) < 0.85 * depth(face) and depth(fine) < 0.85 * depth(face)
    assert depth(on) < min(depth(fine), depth(coarse)) - 0.01
    assert depth(on) < 0.5 * depth(face)
    half = run(transplant=0.5, transplant_coarse=0.5)
    assert depth(on) + 0.01 < depth(half) < depth(face) - 0.01
    # The light and tone above the coarse band stay: the skin's mean luminance barely moves, and grey stays grey.
    assert abs(float(luma(on)[skin].mean() - luma(face)[skin].mean())) < 0.01
    assert np.abs(on[..., 0] - on[..., 2]).max() < 1e-5


def test_prototypes_saved_before_the_coarse_band_are_rebuilt_once(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes], tmp_path: Path
) -> None:
    from training.teacher import cached_prototypes

    mesh, data, protos = aging_set
    assert protos.exemplar_coarse is not None and protos.exemplar_coarse.shape[-2:] == (mesh.size, mesh.size)
    old = tmp_path / "old.npz"
    replace(protos, exemplar_coarse=None).save(old)
    assert Prototypes.load(old).exemplar_coarse is None
    builds: list[int] = []

    def build() -> Prototypes:
        builds.append(1)
        return Prototypes.build(data, mesh)

    again = cached_prototypes(old, build)
    assert builds == [1] and again.exemplar_coarse is not None
    np.testing.assert_array_equal(again.exemplar_bands, protos.exemplar_bands)  # the old fields unchanged
    cached_prototypes(old, build)  # now complete on disk: loaded, not built
    assert builds == [1]
    assert not list(tmp_path.glob("*.tmp*"))


def test_the_config_sets_the_transplant_and_its_pairs_get_their_own_file() -> None:
    from training.config import TrainConfig
    from training.run import teacher_pairs_name
    from training.teacher import teacher_options

    base = TrainConfig(name="t")
    tp = base.replace(teacher_transplant=0.5)
    assert teacher_options(base).transplant == 0.0 and teacher_options(tp).transplant == 0.5
    # Pairs of another teacher are never reused; a config without it keeps its old file name.
    assert teacher_pairs_name(3, teacher_options(tp)) != teacher_pairs_name(3, teacher_options(base))
    assert "tp" not in teacher_pairs_name(3, teacher_options(base))
    tc = base.replace(teacher_transplant_coarse=0.5)
    assert teacher_options(tc).transplant_coarse == 0.5
    assert "-tc0.5" in teacher_pairs_name(3, teacher_options(tc)) and "tc" not in teacher_pairs_name(
        3, teacher_options(base)
    )


def test_masked_shading_keeps_the_hairs_difference_off_the_skin(teacher: RegisteredTeacher) -> None:
    """`shading_masked`: a difference of the prototypes outside the skin (darker hair at one age) does not
    spill onto the skin beside it, as the plain band-pass blur lets it; a difference on the skin still
    applies."""
    protos, mesh = teacher.protos, teacher.mesh
    skin = np.maximum(teacher.skin, 0.0)
    off_skin = (mesh.mask("face") > 0.5) & (skin < 0.01)
    assert off_skin.sum() > 50
    mean = protos.mean.copy()
    young, old = int(np.argmax(band_weights(24.0))), int(np.argmax(band_weights(65.0)))
    mean[:, old] = mean[:, young]
    mean[:, old][:, off_skin] -= 0.3  # the old prototype's hair region only is darker
    hair = replace(protos, mean=mean)
    plain = dict(shape=0.0, shading=1.0, texture=0.0, detail=0.0, saturation=0.0)
    face = np.full((mesh.size, mesh.size, 3), 0.5, np.float32)

    def change(masked: bool, p: Prototypes = hair) -> np.ndarray:
        t = RegisteredTeacher(p, mesh, TeacherOptions(**plain, shading_masked=masked))  # type: ignore[arg-type]
        return np.abs(luma(t(face, 24.0, 65.0, 0, "h")) - 0.5)

    inner = skin > 0.99
    assert change(False)[inner].max() > 0.01  # the plain blur carries the hair's darkness onto the skin
    assert change(True)[inner].max() < 0.1 * change(False)[inner].max()
    # On the skin itself a difference still shades it.
    mean2 = protos.mean.copy()
    mean2[:, old] = mean2[:, young]
    stripes = inner & (np.arange(mesh.size)[None, :] % 8 < 4)  # lines a few pixels apart: within the band
    mean2[:, old][:, stripes] -= 0.05
    assert change(True, replace(protos, mean=mean2))[inner].max() > 0.01


def test_shading_rim_keeps_the_outlines_difference_off_the_face(teacher: RegisteredTeacher) -> None:
    """`shading_rim`: a difference of the prototypes along the face oval (a young group's hair over the
    temples) no longer lights the outline, where it showed as a light band on paste-back; the inner face is
    still shaded."""
    protos, mesh = teacher.protos, teacher.mesh
    fade = mesh.inside_oval(0.1)
    assert fade.shape == (mesh.size, mesh.size)
    assert np.all(fade[mesh.mask("face") < 0.99] == 0.0)  # nothing outside the oval
    assert fade[tuple(np.round(mesh.vertices[NOSE_TIP][::-1]).astype(int))] == 1.0
    mean = protos.mean.copy()
    young, old = int(np.argmax(band_weights(24.0))), int(np.argmax(band_weights(65.0)))
    mean[:, old] = mean[:, young]
    outline = (mesh.mask("face") > 0.3) & (fade < 0.5)
    inner = fade > 0.99
    mean[:, old][:, outline] += 0.2  # the old group's outline is lighter
    stripes = inner & (np.arange(mesh.size)[None, :] % 8 < 4)
    mean[:, old][:, stripes] -= 0.05  # and its inner face has lines
    lit = replace(protos, mean=mean)
    plain = dict(shape=0.0, shading=1.0, texture=0.0, detail=0.0, saturation=0.0, shading_masked=True)
    face = np.full((mesh.size, mesh.size, 3), 0.5, np.float32)

    def change(rim: float) -> np.ndarray:
        t = RegisteredTeacher(lit, mesh, TeacherOptions(**plain, shading_rim=rim))  # type: ignore[arg-type]
        return luma(t(face, 24.0, 65.0, 0, "r")) - 0.5

    edge = outline & (fade < 0.05) & (mesh.mask("face") > 0.5)
    assert edge.sum() > 20
    assert change(0.0)[edge].mean() > 0.02  # without it the outline lights up
    assert np.abs(change(0.1)[edge]).max() < 0.005
    assert np.abs(change(0.1)[inner]).max() > 0.01  # the lines inside still shade
    with pytest.raises(ValueError, match="shading_rim"):
        TeacherOptions(shading_rim=-0.1)


def test_outline_rim_fades_the_whole_change_out_at_the_face_oval(teacher: RegisteredTeacher) -> None:
    """`outline_rim`: the whole change (shading, warp, detail, colour) is the input's own on and outside the
    oval, unchanged where the fade is 1, and only scaled down between: the warp pushed the lower face's
    lighter skin into the jaw's darker band, a light line along the whole jaw."""
    mesh = teacher.mesh
    rows = np.linspace(0.75, 0.35, mesh.size, dtype=np.float32)[:, None, None]  # darker towards the jaw
    face = np.clip(rows + np.random.default_rng(3).normal(0, 0.03, (mesh.size, mesh.size, 3)), 0, 1)
    face = face.astype(np.float32)
    opts = replace(teacher.options, shape=3.0, shading=1.0)
    plain = RegisteredTeacher(teacher.protos, mesh, opts)(face, 24.0, 65.0, 0, "o")
    faded = RegisteredTeacher(teacher.protos, mesh, replace(opts, outline_rim=0.1))(face, 24.0, 65.0, 0, "o")
    keep = mesh.inside_oval(0.1)
    off, full, between = keep == 0.0, keep == 1.0, (keep > 0.0) & (keep < 1.0)
    assert off.sum() > 100 and full.sum() > 100 and between.sum() > 100
    assert np.abs(plain - face)[between].mean() > 0.01  # without it the band changes
    np.testing.assert_allclose(faded[off], face[off], atol=1e-6)
    np.testing.assert_allclose(faded[full], plain[full], atol=1e-6)
    np.testing.assert_allclose(
        (faded - face)[between], (keep[..., None] * (plain - face))[between], atol=1e-5
    )
    with pytest.raises(ValueError, match="outline_rim"):
        TeacherOptions(outline_rim=0.6)


def test_exemplar_mean_gives_every_face_its_groups_mean_exemplar(teacher: RegisteredTeacher) -> None:
    """`exemplar_mean`: the output no longer depends on the key that picks an exemplar, and equals the
    teacher on prototypes whose exemplars were each replaced by their group's mean."""
    protos, mesh = teacher.protos, teacher.mesh
    rng = np.random.default_rng(4)
    assert protos.exemplar_coarse is not None
    # Three different exemplars in every group.
    bands, env, coarse = (
        protos.exemplar_bands.copy(),
        protos.exemplar_env.copy(),
        protos.exemplar_coarse.copy(),
    )
    bands[:, :, :3] = rng.normal(0, 0.03, bands[:, :, :3].shape)
    coarse[:, :, :3] = rng.normal(0, 0.03, coarse[:, :, :3].shape)
    rich = replace(
        protos, exemplar_bands=bands, exemplar_coarse=coarse, counts=np.full_like(protos.counts, 3)
    )
    face = np.clip(0.55 + rng.normal(0, 0.06, (mesh.size, mesh.size, 1)) * np.ones((1, 1, 3)), 0, 1)
    face = face.astype(np.float32)
    opts = TeacherOptions(transplant=0.5, transplant_coarse=0.5, exemplar_mean=True)
    mean_t = RegisteredTeacher(rich, mesh, opts)
    a = mean_t(face, 60.0, 24.0, 0, "one")
    keys = [f"k{i}" for i in range(12)]
    assert all(np.array_equal(a, mean_t(face, 60.0, 24.0, 0, k)) for k in keys)
    picked = RegisteredTeacher(rich, mesh, replace(opts, exemplar_mean=False))
    assert (
        max(np.abs(picked(face, 60.0, 24.0, 0, "one") - picked(face, 60.0, 24.0, 0, k)).max() for k in keys)
        > 1e-3
    )
    for arr in (bands, env, coarse):
        arr[:, :, :3] = arr[:, :, :3].mean(axis=2, keepdims=True)
    averaged = replace(rich, exemplar_bands=bands, exemplar_env=env, exemplar_coarse=coarse)
    scratch = RegisteredTeacher(averaged, mesh, replace(opts, exemplar_mean=False))
    np.testing.assert_allclose(a, scratch(face, 60.0, 24.0, 0, "one"), atol=1e-5)


def test_the_envelopes_teacher_has_its_own_pairs_on_the_same_faces_and_targets(
    aging_set: tuple[CanonicalMesh, CanonicalSet, Prototypes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`texture_transplant` (and `texture_single_exemplar`): a second teacher's pairs, one exemplar a face at
    that share, become the band envelopes' targets; faces and target ages are the L1 teacher's, each pairs
    file is cached under its own name, and a plain config has no second target."""
    import training.canonical
    from training.config import TrainConfig
    from training.run import prepare_mesh_data
    from training.teacher import teacher_options

    mesh, data, _ = aging_set
    monkeypatch.setattr(training.canonical, "load_canonical", lambda _path: data)
    base = TrainConfig(
        space="mesh",
        landmarks="x.npz",
        cache=str(tmp_path / "cache"),
        run_dir=str(tmp_path / "run"),
        size=64,
        conditioned=True,
        targets_per_face=1,
        teacher_amplify=False,
        teacher_transplant=0.5,
        teacher_exemplar_mean=True,
        lambda_texture=1.0,
    )
    plain = prepare_mesh_data(base)
    assert plain.e_x is None and plain.e_y is None
    both = prepare_mesh_data(base.replace(texture_transplant=1.0))
    assert both.e_x is not None and both.e_y is not None
    assert len(list((tmp_path / "run").glob("teacher-*.npz"))) == 2
    for k in ("x", "y", "x_age", "y_target", "t_x", "t_y"):
        np.testing.assert_array_equal(getattr(both, k), getattr(plain, k))
    assert both.y_target is not None and both.y_age is not None
    protos = Prototypes.load(tmp_path / "run" / "registered-prototypes.npz")
    single = RegisteredTeacher(
        protos, mesh, replace(teacher_options(base), exemplar_mean=False, transplant=1.0)
    )
    # One target a face, in the cache's order: the first old pair is the first old face.
    idx, n = int(np.flatnonzero(data.age >= 50)[0]), 0
    np.testing.assert_array_equal(both.y[n], data.faces[idx])
    want = single(
        data.faces[idx].astype(np.float32) / 255.0,
        float(both.y_age[n]),
        float(both.y_target[n]),
        int(data.gender[idx]),
        str(data.paths[idx]),
        data.shape[idx],
    )
    np.testing.assert_allclose(both.e_x[n] / 255.0, want, atol=1.0 / 255.0 + 1e-6)
    assert np.abs(both.e_x.astype(float) - both.t_x.astype(float)).mean() > 0.5
