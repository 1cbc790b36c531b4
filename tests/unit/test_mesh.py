"""Canonical face space: the layout, the forward and inverse warps, paste-back, stabilisation, the teacher."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from faceage_video.engine.generator import EngineOptions, SpaceMismatch, face_space
from faceage_video.errors import OptionsError
from faceage_video.face.align import AlignTemplate
from faceage_video.face.blend import BlendOptions, paste_back_mesh
from faceage_video.face.mesh import MESH_VERSION, N_LANDMARKS, CanonicalMesh, Layout, MeshOptions
from faceage_video.face.stabilize import MeshStabilizer, StabilizerOptions


@pytest.fixture(scope="module")
def mesh() -> CanonicalMesh:
    return CanonicalMesh(MeshOptions(size=128))


def face_landmarks(mesh: CanonicalMesh, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """(478, 2) landmarks: the canonical layout moved by a similarity into a frame, irises at the eyes."""
    m = cv2.getRotationMatrix2D((64.0, 64.0), angle, scale)
    m[:, 2] += shift
    pts = mesh.landmark_vertices @ m[:, :2].T + m[:, 2]
    eyes = (pts[[33, 133]].mean(0), pts[[362, 263]].mean(0))
    iris = np.concatenate([np.repeat(eyes[0][None], 5, 0), np.repeat(eyes[1][None], 5, 0)])
    return np.concatenate([pts, iris]).astype(np.float32)


def smooth_frame(h: int, w: int, phase: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 60 * np.sin(xx / 37.0 + phase) * np.cos(yy / 29.0)
    g = 110 + 50 * np.cos(xx / 41.0 - yy / 53.0)
    b = 90 + 40 * np.sin((xx + yy) / 47.0 + phase)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def test_packaged_layout_is_complete_and_versioned(mesh: CanonicalMesh) -> None:
    lay = mesh.layout
    assert lay.points.shape == (N_LANDMARKS, 2)
    assert ((lay.vertices > 0.0) & (lay.vertices < 1.0)).all()  # ring and face inside the texture
    assert lay.provenance["faces"] >= 1000 and "UTKFace" in lay.provenance["source"]
    # The triangulation covers the ring: the mask fades to zero on it, full on the face.
    m = mesh.mask("face")
    assert m.max() == pytest.approx(1.0) and m.min() == 0.0
    nose = mesh.landmark_vertices[1].round().astype(int)
    assert m[nose[1], nose[0]] == pytest.approx(1.0)
    assert mesh.to_dict()["version"] == MESH_VERSION


def test_forward_then_inverse_warp_returns_a_smooth_image(mesh: CanonicalMesh) -> None:
    frame = smooth_frame(420, 460)
    lm = face_landmarks(mesh, angle=12.0, scale=2.6, shift=(70.0, 40.0))
    fit = mesh.fit(lm, frame.shape)
    tex = mesh.to_canonical(frame, fit)
    back = mesh.to_frame(tex.astype(np.float32), fit)
    x0, y0, x1, y1 = fit.roi
    inner = mesh.to_frame(mesh.mask("face"), fit) > 0.5
    err = np.abs(back - frame[y0:y1, x0:x1].astype(np.float32))[inner]
    assert inner.sum() > 10_000
    assert err.mean() < 1.0 and np.percentile(err, 99) < 4.0


def test_inverse_map_inverts_the_forward_map_on_a_deformed_face(mesh: CanonicalMesh) -> None:
    lm = face_landmarks(mesh, angle=-8.0, scale=3.0, shift=(30.0, 20.0))
    rng = np.random.default_rng(0)
    lm[:N_LANDMARKS] += rng.normal(0, 1.5, (N_LANDMARKS, 2)).astype(np.float32)  # an expression-like warp
    fit = mesh.fit(lm, (480, 480, 3))
    mx, my = mesh.inverse_map(fit)
    fx, fy = mesh.forward_map(fit)
    bx = cv2.remap(fx, mx, my, cv2.INTER_LINEAR)
    by = cv2.remap(fy, mx, my, cv2.INTER_LINEAR)
    x0, y0, x1, y1 = fit.roi
    yy, xx = np.mgrid[y0:y1, x0:x1]
    on = cv2.remap(mesh.mask("face"), mx, my, cv2.INTER_LINEAR) > 0.3
    err = np.hypot(bx - xx, by - yy)[on]
    assert np.median(err) < 0.3 and np.percentile(err, 95) < 1.0


def test_zero_change_leaves_the_frame_bit_identical(mesh: CanonicalMesh) -> None:
    frame = smooth_frame(300, 320)
    fit = mesh.fit(face_landmarks(mesh, 5.0, 1.8, (40.0, 30.0)), frame.shape)
    zero = np.zeros((128, 128, 3), np.float32)
    out, _ = paste_back_mesh(frame, zero, mesh.mask("face"), fit, mesh, BlendOptions())
    assert np.array_equal(out, frame)


def test_pixels_outside_the_mask_stay_bit_identical(mesh: CanonicalMesh) -> None:
    frame = smooth_frame(300, 320)
    fit = mesh.fit(face_landmarks(mesh, 5.0, 1.8, (40.0, 30.0)), frame.shape)
    change = np.full((128, 128, 3), 20.0, np.float32)
    out, warped = paste_back_mesh(
        frame, change, mesh.mask("face"), fit, mesh, BlendOptions(color_match=False)
    )
    x0, y0, x1, y1 = warped.box
    alpha = np.zeros(frame.shape[:2], np.float32)
    alpha[y0:y1, x0:x1] = warped.alpha
    assert np.array_equal(out[alpha == 0], frame[alpha == 0])
    assert (out[alpha > 0.99].astype(int) - frame[alpha > 0.99]).mean() == pytest.approx(20.0, abs=0.6)


def test_a_change_attached_in_canonical_space_adds_no_temporal_change_on_known_motion(
    mesh: CanonicalMesh,
) -> None:
    """A fixed canonical effect on a photo moving along a known path: mapped back with the exact inverse,
    the output moves no more from frame to frame than the input does."""
    photo = smooth_frame(360, 360)
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    effect = np.repeat((12.0 * np.sin(xx / 3.0) * np.cos(yy / 4.0))[..., None], 3, axis=2).astype(np.float32)
    lm_photo = face_landmarks(mesh, 0.0, 2.2, (40.0, 40.0))
    added = []
    prev = None
    for t in range(8):
        u = 2 * math.pi * t / 8
        m = cv2.getRotationMatrix2D((180.0, 180.0), 4.0 * math.sin(u), 1.0 + 0.05 * math.sin(u))
        m[:, 2] += (15 * math.sin(u), 8 * math.cos(u))
        frame = cv2.warpAffine(photo, m, (360, 360), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        lm = (lm_photo @ m[:, :2].T + m[:, 2]).astype(np.float32)
        fit = mesh.fit(lm, frame.shape)
        out, _ = paste_back_mesh(frame, effect, mesh.mask("face"), fit, mesh, BlendOptions(color_match=False))
        inv = cv2.invertAffineTransform(m)
        back_in = cv2.warpAffine(frame, inv, (360, 360), flags=cv2.INTER_LINEAR).astype(np.float32)
        back_out = cv2.warpAffine(out, inv, (360, 360), flags=cv2.INTER_LINEAR).astype(np.float32)
        if prev is not None:
            core = slice(110, 250)
            d_in = np.abs(back_in - prev[0])[core, core].mean()
            d_out = np.abs(back_out - prev[1])[core, core].mean()
            added.append(d_out - d_in)
        prev = (back_in, back_out)
    # The effect itself is 12 levels strong; a sliding one would add several levels per frame.
    assert abs(float(np.mean(added))) < 0.25


def test_a_bundle_from_another_face_space_is_refused_with_the_fix() -> None:
    assert isinstance(face_space(AlignTemplate(128).to_dict()), AlignTemplate)
    with pytest.raises(SpaceMismatch, match="re-export"):
        face_space({"kind": "mesh", "version": "faceage-mesh/0", "size": 128})
    with pytest.raises(SpaceMismatch, match="layout"):
        face_space({"kind": "mesh", "version": MESH_VERSION, "size": 128, "layout_sha": "0000"})
    with pytest.raises(SpaceMismatch, match="unknown face space"):
        face_space({"kind": "uv-atlas", "size": 128})


def test_a_corrupt_layout_names_the_file_and_the_fix(tmp_path) -> None:
    bad = tmp_path / "layout.json"
    bad.write_text('{"version": "faceage-mesh/1", "points": []}')
    with pytest.raises(OptionsError, match=r"layout\.json.*rebuild it"):
        Layout.load(bad)


def test_profile_views_are_less_frontal(mesh: CanonicalMesh) -> None:
    lm = face_landmarks(mesh, 0.0, 2.0, (50.0, 50.0))
    assert mesh.fit(lm, (400, 400, 3)).frontal > 0.99
    # Squash one half of the face past the other, as a turned head folds its far side over.
    folded = lm.copy()
    cx = float(np.median(lm[:N_LANDMARKS, 0]))
    right = folded[:, 0] > cx
    folded[right, 0] = cx - 0.6 * (folded[right, 0] - cx)
    assert mesh.fit(folded, (400, 400, 3)).frontal < 0.8


def test_the_change_fades_in_from_a_fold_instead_of_stopping_at_a_step(mesh: CanonicalMesh) -> None:
    # A half-turned head: the far cheek folds, where the inverse map has no point of skin. The change used to
    # stop there on the map's grid cells, as hard-edged rectangles along the cheek.
    lm = face_landmarks(mesh, 0.0, 2.0, (50.0, 50.0))
    cx = float(np.median(lm[:N_LANDMARKS, 0]))
    right = lm[:, 0] > cx + 20
    lm[right, 0] = cx + 20 - 0.3 * (lm[right, 0] - cx - 20)
    frame = smooth_frame(400, 400)
    fit = mesh.fit(lm, frame.shape)
    mx, _ = mesh.inverse_map(fit)
    off = mx < -1.0
    assert off.sum() > 20
    change = np.full((128, 128, 3), 20.0, np.float32)
    _, warped = paste_back_mesh(frame, change, mesh.mask("box"), fit, mesh, BlendOptions(color_match=False))
    alpha = warped.alpha
    assert np.all(alpha[off] == 0.0)
    # Beside an off pixel the matte is small: no full-strength pixel touches the fold.
    near = cv2.dilate(off.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~off
    assert near.any() and alpha[near].max() < 0.5


def test_flow_stabiliser_cuts_jitter_on_a_rigidly_moving_texture() -> None:
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (400, 400, 3)).astype(np.uint8), (0, 0), 2.0)
    base = np.stack(np.meshgrid(np.linspace(140, 260, 22), np.linspace(140, 260, 22)), -1).reshape(-1, 2)
    # Two iris points (468, 473) 60 px apart set the face size; the rest is a grid on the texture.
    pts = np.zeros((478, 2), np.float32)
    pts[: len(base)] = base[:478] if len(base) >= 478 else np.resize(base, (478, 2))
    pts[468], pts[473] = (170, 200), (230, 200)
    stab = MeshStabilizer(StabilizerOptions())
    raw_err, stab_err = [], []
    for t in range(20):
        shift = np.array([3.0 * t, 1.5 * t], np.float32)
        m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        frame = cv2.warpAffine(tex, m, (400, 400), borderMode=cv2.BORDER_REFLECT)
        truth = pts + shift
        det = truth + rng.normal(0, 1.0, truth.shape).astype(np.float32)
        out = stab(frame, 7, det)
        if t >= 3:
            raw_err.append(np.linalg.norm(det - truth, axis=1).mean())
            stab_err.append(np.linalg.norm(out - truth, axis=1).mean())
    assert np.mean(stab_err) < 0.5 * np.mean(raw_err)
    # Off: detections pass through unchanged.
    off = MeshStabilizer(StabilizerOptions(weight=0.0))
    assert np.array_equal(off(frame, 1, det), det)


def test_stabiliser_follows_a_jump_instead_of_lagging() -> None:
    tex = cv2.GaussianBlur(
        np.random.default_rng(1).integers(0, 255, (300, 300, 3)).astype(np.uint8), (0, 0), 2
    )
    pts = np.full((478, 2), 150.0, np.float32)
    pts[:100] = np.random.default_rng(2).uniform(100, 200, (100, 2))
    pts[468], pts[473] = (130, 150), (170, 150)
    stab = MeshStabilizer(StabilizerOptions())
    stab(tex, 0, pts)
    # The detection jumps by 40 px while the picture does not move (a new face, a failed flow): trust it.
    out = stab(tex, 0, pts + 40.0)
    assert np.abs(out - (pts + 40.0)).max() < 1.0


def test_engine_options_pick_the_generator_from_the_target_age() -> None:
    assert EngineOptions(target_age=70, input_age=30).generator == "G"
    assert EngineOptions(target_age=25, input_age=60).generator == "F"
    assert EngineOptions(direction="younger").generator == "F"
    assert EngineOptions(target_age=70).ages == (25.0, 70.0)
    assert EngineOptions(direction="older", input_age=40).ages == (40.0, 75.0)
    with pytest.raises(OptionsError, match="target_age"):
        EngineOptions(target_age=300)
    with pytest.raises(OptionsError, match="nothing to change"):
        EngineOptions(target_age=40, input_age=40)


def test_a_strength_mode_bundle_reaches_the_target_age_by_scaling_its_change(tmp_path) -> None:
    """utkface-mesh-128's age maps are erased by instance norm, so the engine scales the learned change by the
    age gap asked for over the gap it learned (`target_age` "strength" in the manifest)."""
    from faceage_video.engine.generator import AgingEngine
    from tests.helpers import make_bundle

    folder = make_bundle(
        tmp_path / "b",
        "b",
        mesh=True,
        cond=2,
        zero_sum=True,
        training={"target_age": "strength", "age_gap": {"G": 40.0, "F": 30.0}},
    )
    crops = np.full((2, 128, 128, 3), 128, np.uint8)

    def mean_change(target: float, age: float) -> float:
        eng = AgingEngine(EngineOptions(model=str(folder), target_age=target, input_age=age, xla=False))
        return float(eng.residual(crops).mean())

    full = mean_change(70, 30)  # a 40-year gap: the whole learned change
    assert full > 1.0
    assert mean_change(50, 30) == pytest.approx(0.5 * full, rel=0.02)
    assert mean_change(90, 20) == pytest.approx(1.5 * full, rel=0.02)  # capped at 1.5×
    assert mean_change(30, 60) == pytest.approx(-full, rel=0.05)  # F: −bias, a 30-year gap


def fine_frame(h: int, w: int, shift: float = 0.0) -> np.ndarray:
    """Grey detail finer than a texel of a close-up: a 3-pixel grating plus 1-pixel seeded grain, moved right
    by `shift` frame pixels (a quarter-pixel render, shifted, then area-averaged)."""
    up, k = 4, round(shift * 4)
    grain = np.random.default_rng(3).normal(0.0, 25.0, (h, w + 8)).astype(np.float32)
    grain = np.repeat(np.repeat(grain, up, axis=0), up, axis=1)[:, : (w + 4) * up]
    xx = np.arange((w + 4) * up, dtype=np.float32)[None] / up
    fine = 128.0 + 50.0 * np.sin(2 * math.pi * xx / 3.0) + grain
    fine = fine[:, 8 - k : 8 - k + w * up] if k else fine[:, 8 : 8 + w * up]
    g = cv2.resize(np.clip(fine, 0, 255), (w, h), interpolation=cv2.INTER_AREA)
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


def test_prefilter_starts_at_the_training_sampling_and_grows_smoothly(mesh: CanonicalMesh) -> None:
    a = mesh.antialias
    assert a == 2.0 and CanonicalMesh(MeshOptions(size=256)).antialias == 1.0  # the training crops' sampling
    sig = []
    for scale in (1.5, a, a + 0.01, 3.0, 6.0):
        fit = mesh.fit(face_landmarks(mesh, 10.0, scale, (20.0, 20.0)), (1200, 1200))
        assert mesh.sampling(fit) == pytest.approx(scale, rel=1e-4)
        sig.append(mesh.prefilter_sigma(fit))
    assert sig[0] == sig[1] == 0.0  # faces the size the generators learned from are sampled as they were
    assert sig[2] < 0.15  # no step past the threshold
    assert sig[3] == pytest.approx(0.5 * math.sqrt((3.0 / a) ** 2 - 1.0), rel=1e-3)
    assert sig[4] > sig[3]
    off = CanonicalMesh(MeshOptions(size=128, antialias=0.0))
    assert off.prefilter_sigma(off.fit(face_landmarks(off, 0.0, 6.0, (20.0, 20.0)), (1200, 1200))) == 0.0
    with pytest.raises(OptionsError, match="antialias"):
        MeshOptions(antialias=0.3)


def test_a_close_up_is_textured_without_aliasing_and_holds_still_under_sub_pixel_motion(
    mesh: CanonicalMesh,
) -> None:
    """Detail finer than a texel aliases into a pattern that jumps with every sub-pixel step of the face;
    the low-pass keeps the texture's mean and removes both."""
    off = CanonicalMesh(MeshOptions(size=128, antialias=0.0))
    lm = face_landmarks(mesh, 0.0, 6.0, (20.0, 20.0))
    textures = {}
    for name, m in (("on", mesh), ("off", off)):
        fit = m.fit(lm, (820, 820))
        textures[name] = [m.to_canonical(fine_frame(820, 820, s), fit).astype(np.float32) for s in (0.0, 1.5)]
    face = mesh.mask("face") > 0.99
    # Sampled every 6 pixels, the 3-pixel grating aliases down to a constant: the off texture's level is off.
    assert abs(textures["on"][0][face].mean() - 128.0) < 3.0
    alias = {k: float(v[0][face].std()) for k, v in textures.items()}
    jump = {k: float(np.abs(v[1] - v[0])[face].mean()) for k, v in textures.items()}
    assert alias["on"] < 0.3 * alias["off"]
    assert jump["on"] < 0.3 * jump["off"]


def test_the_prefilter_reads_mirrored_pixels_like_the_unfiltered_frame_would(mesh: CanonicalMesh) -> None:
    """A face half out of the frame: low-passing only the box the maps read (and its mirror) equals
    low-passing the whole frame."""
    frame = fine_frame(400, 500)
    for shift in ((-200.0, 60.0), (240.0, -170.0)):
        fit = mesh.fit(face_landmarks(mesh, 5.0, 3.5, shift), frame.shape)
        sigma = mesh.prefilter_sigma(fit)
        assert sigma > 0.5
        mx, my = mesh.forward_map(fit)
        assert mx.min() < 0 or mx.max() > 499 or my.min() < 0 or my.max() > 399
        whole = cv2.GaussianBlur(frame, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101)
        want = cv2.remap(whole, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        got = mesh.to_canonical(frame, fit)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_the_pyramid_keeps_every_texel_on_its_point_of_the_frame(mesh: CanonicalMesh) -> None:
    """A 4K close-up goes through `pyrDown` levels: on waves 500-700 pixels long, which the low-pass keeps
    (to 0.3 %), the texture must read what plain bilinear sampling of the full frame reads. A texel off by
    2 frame pixels would read 1-2 levels apart."""
    h, w = 1800, 2000
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tau = 2 * math.pi
    frame = np.stack(
        [
            128 + 110 * np.sin(tau * xx / 600.0),
            128 + 110 * np.cos(tau * yy / 500.0),
            128 + 110 * np.sin(tau * (xx + yy) / 700.0 + 1.0),
        ],
        -1,
    ).astype(np.uint8)
    off = CanonicalMesh(MeshOptions(size=128, antialias=0.0))
    fit = mesh.fit(face_landmarks(mesh, 7.0, 11.0, (770.0, 770.0)), frame.shape)  # all of it in the frame
    assert mesh.prefilter_sigma(fit) > 2.5  # two pyramid levels, then the rest of the blur
    face = mesh.mask("face") > 0.5
    got = mesh.to_canonical(frame, fit).astype(np.float32)
    want = off.to_canonical(frame, fit).astype(np.float32)
    assert np.abs(got - want)[face].mean() < 0.6
    assert np.abs(got - want)[face].max() <= 2.0
