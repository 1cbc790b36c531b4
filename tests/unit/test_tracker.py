"""FaceTracker and OneEuroFilter on synthetic landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from faceage_video.errors import OptionsError
from faceage_video.face.tracker import FaceTracker, OneEuroFilter, OneEuroOptions, TrackerOptions

FPS = 30.0


def face(cx: float, cy: float, size: float = 100.0, seed: int = 0) -> np.ndarray:
    """A (478, 2) synthetic landmark cloud: fixed points inside an ellipse of the given size."""
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, 2 * np.pi, 478)
    rad = np.sqrt(rng.uniform(0, 1, 478))
    pts = np.stack([np.cos(ang) * rad * 0.4, np.sin(ang) * rad * 0.5], axis=1) * size
    pts[:4] = [[-0.4 * size, 0], [0.4 * size, 0], [0, -0.5 * size], [0, 0.5 * size]]  # pin the extent
    return (pts + np.array([cx, cy])).astype(np.float32)


# --- One Euro ---------------------------------------------------------------------------------------------


def test_one_euro_first_call_passes_through_and_reset_forgets() -> None:
    f = OneEuroFilter(OneEuroOptions())
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(f(x, 0.0), x)
    f(x + 10, 1 / FPS)
    f.reset()
    np.testing.assert_array_equal(f(x + 50, 2 / FPS), x + 50)


def test_one_euro_reduces_jitter_on_a_noisy_constant() -> None:
    rng = np.random.default_rng(1)
    f = OneEuroFilter(OneEuroOptions(min_cutoff=1.0, beta=0.05))
    noisy = 100.0 + rng.normal(0.0, 1.0, size=(200, 16))
    out = np.stack([f(v, i / FPS) for i, v in enumerate(noisy)])
    # Frame-to-frame variance after settling, filtered vs raw.
    assert np.var(np.diff(out[20:], axis=0)) < 0.1 * np.var(np.diff(noisy[20:], axis=0))
    assert abs(out[20:].mean() - 100.0) < 0.2


def test_one_euro_lags_little_on_a_ramp_with_beta() -> None:
    t = np.arange(120) / FPS
    ramp = 300.0 * t  # 300 px/s
    lag = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(OneEuroOptions(min_cutoff=1.0, beta=beta))
        out = np.array([f(np.array([v]), tt)[0] for v, tt in zip(ramp, t, strict=True)])
        lag[beta] = float(np.mean(ramp[30:] - out[30:]))
    assert lag[0.05] < 0.25 * lag[0.0]
    assert lag[0.05] < 5.0  # px, at 10 px/frame


def test_one_euro_scale_makes_it_resolution_independent() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(90) / FPS
    signal = 50.0 * t + rng.normal(0.0, 0.5, 90)
    small, large = OneEuroFilter(OneEuroOptions()), OneEuroFilter(OneEuroOptions())
    out_s = np.array([small(np.array([v]), tt, scale=1.0)[0] for v, tt in zip(signal, t, strict=True)])
    out_l = np.array([large(np.array([4 * v]), tt, scale=4.0)[0] for v, tt in zip(signal, t, strict=True)])
    np.testing.assert_allclose(out_l, 4 * out_s, rtol=1e-9, atol=1e-9)


def test_one_euro_rejects_shape_change_and_bad_options() -> None:
    f = OneEuroFilter(OneEuroOptions())
    f(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="shape changed"):
        f(np.zeros(4), 0.1)
    with pytest.raises(OptionsError, match="min_cutoff"):
        OneEuroOptions(min_cutoff=0.0)
    with pytest.raises(OptionsError, match="beta"):
        OneEuroOptions(beta=-1.0)


# --- Tracker ----------------------------------------------------------------------------------------------


def test_ids_stable_when_detection_order_swaps() -> None:
    tr = FaceTracker(TrackerOptions())
    a0, b0 = face(100, 100, seed=1), face(400, 120, seed=2)
    first = tr.update([a0, b0], 0.0)
    id_a, id_b = first[0].track_id, first[1].track_id
    assert id_a != id_b
    for i in range(1, 6):
        shift = np.array([2.0 * i, 0.0], np.float32)
        a, b = a0 + shift, b0 - shift
        dets = [b, a] if i % 2 else [a, b]
        out = {f.track_id: f for f in tr.update(dets, i / FPS)}
        assert set(out) == {id_a, id_b}
        assert abs(out[id_a].raw[:, 0].mean() - a[:, 0].mean()) < 1e-3
        assert abs(out[id_b].raw[:, 0].mean() - b[:, 0].mean()) < 1e-3
        assert out[id_a].age == i and out[id_a].missed == 0


def test_reacquired_after_short_miss_new_id_after_long_miss() -> None:
    tr = FaceTracker(TrackerOptions(max_missed=3))
    f0 = face(200, 200)
    (first,) = tr.update([f0], 0.0)
    for i in range(1, 4):  # 3 misses: still alive
        assert tr.update([], i / FPS) == []
        assert tr.ended == []
        assert tr.tracks[0].missed == i
    (again,) = tr.update([f0 + np.float32(3.0)], 4 / FPS)
    assert again.track_id == first.track_id
    for i in range(5, 9):  # 4 misses: ends on the 4th
        tr.update([], i / FPS)
    assert tr.ended == [first.track_id]
    assert tr.tracks == []
    (new,) = tr.update([f0], 9 / FPS)
    assert new.track_id != first.track_id
    assert tr.ended == []


def test_far_detection_is_a_new_face_and_ids_are_never_reused() -> None:
    tr = FaceTracker(TrackerOptions(max_missed=0))
    seen = set()
    for i, x in enumerate((100, 400, 100, 400)):
        (f,) = tr.update([face(x, 200)], i / FPS)
        assert f.track_id not in seen
        seen.add(f.track_id)
    assert tr.ended  # the previous face ended when the far one appeared


def test_smoothing_reduces_jitter_and_is_scale_invariant() -> None:
    rng = np.random.default_rng(3)
    jitter_ratio = []
    for size in (60.0, 480.0):
        tr = FaceTracker(TrackerOptions())
        base = face(1000, 800, size=size)
        raw, smooth = [], []
        for i in range(60):
            det = base + rng.normal(0.0, 0.005 * size, base.shape).astype(np.float32)
            (f,) = tr.update([det], i / FPS)
            raw.append(f.raw)
            smooth.append(f.landmarks)
        r, s = np.diff(np.stack(raw[10:]), axis=0), np.diff(np.stack(smooth[10:]), axis=0)
        jitter_ratio.append(float(s.std() / r.std()))
    assert max(jitter_ratio) < 0.4
    assert abs(jitter_ratio[0] - jitter_ratio[1]) < 0.05


def test_max_faces_keeps_the_largest_and_reset_reports_ended() -> None:
    tr = FaceTracker(TrackerOptions(max_faces=2))
    dets = [face(100, 100, size=50), face(400, 100, size=150), face(700, 100, size=100)]
    out = tr.update(dets, 0.0)
    assert len(out) == 2
    assert sorted(round(float(f.raw[:, 0].min() + f.raw[:, 0].max()) / 2) for f in out) == [400, 700]
    ids = [f.track_id for f in out]
    tr.reset()
    assert sorted(tr.ended) == sorted(ids)
    assert all(f.track_id not in ids for f in tr.update(dets, 1 / FPS))


def test_tracker_validates_options_and_detections() -> None:
    with pytest.raises(OptionsError, match="max_faces"):
        TrackerOptions(max_faces=0)
    with pytest.raises(OptionsError, match="match_threshold"):
        TrackerOptions(match_threshold=0.0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        FaceTracker(TrackerOptions()).update([np.zeros((478, 3), np.float32)], 0.0)
