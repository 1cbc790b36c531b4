"""ResidualSmoother and SceneCutDetector on synthetic data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceage_video.engine.temporal import ResidualSmoother, SceneCutDetector, TemporalOptions
from faceage_video.errors import OptionsError

S = 64


def noisy_residuals(n: int, sigma: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.linspace(-20, 20, S * S * 3, dtype=np.float32).reshape(S, S, 3)
    return [base + rng.normal(0, sigma, base.shape).astype(np.float32) for _ in range(n)]


def frame_var(frames: list[np.ndarray]) -> float:
    return float(np.var(np.diff(np.stack(frames[5:]), axis=0)))


def test_smoothing_reduces_frame_to_frame_variance() -> None:
    res = noisy_residuals(30)
    sm = ResidualSmoother(TemporalOptions(strength=0.6))
    out = [sm.smooth(1, r) for r in res]
    np.testing.assert_array_equal(out[0], res[0])  # a track's first frame passes through
    # A plain EMA with w = 0.6 keeps (1 − w) / (1 + w) = 25 % of the white-noise variance.
    assert frame_var(out) < 0.35 * frame_var(res)


def test_strength_zero_is_identity() -> None:
    sm = ResidualSmoother(TemporalOptions(strength=0.0))
    for r in noisy_residuals(5):
        assert sm.smooth(7, r) is r


def test_large_change_is_followed_quickly() -> None:
    """Motion awareness: a new expression (a big regional change) is not smeared over frames."""
    sm = ResidualSmoother(TemporalOptions(strength=0.6))
    calm = np.zeros((S, S, 3), np.float32)
    for _ in range(5):
        sm.smooth(0, calm)
    jump = calm.copy()
    jump[16:48, 16:48] = 80.0
    out = sm.smooth(0, jump)
    assert out[32, 32, 0] > 75.0  # a plain EMA would give 0.4 · 80 = 32
    plain = ResidualSmoother(TemporalOptions(strength=0.6, motion_scale=float("inf")))
    for _ in range(5):
        plain.smooth(0, calm)
    assert abs(plain.smooth(0, jump)[32, 32, 0] - 32.0) < 1e-3


def test_tracks_are_independent_and_reset_clears_state() -> None:
    sm = ResidualSmoother(TemporalOptions(strength=0.6))
    a, b = noisy_residuals(2, seed=1)
    sm.smooth(1, a)
    sm.smooth(2, b)
    assert 1 in sm and 2 in sm
    sm.reset(1)
    assert 1 not in sm and 2 in sm
    np.testing.assert_array_equal(sm.smooth(1, b), b)  # first frame again
    sm.reset()
    assert 1 not in sm and 2 not in sm
    np.testing.assert_array_equal(sm.smooth(2, a), a)
    with pytest.raises(ValueError, match="shape"):
        sm.smooth(2, a[:32])


def test_temporal_options_validation() -> None:
    with pytest.raises(OptionsError, match="strength"):
        TemporalOptions(strength=1.0)
    with pytest.raises(OptionsError, match="strength"):
        TemporalOptions(strength=-0.1)
    with pytest.raises(OptionsError, match="scene_cut_threshold"):
        TemporalOptions(scene_cut_threshold=0.0)
    with pytest.raises(OptionsError, match="threshold"):
        SceneCutDetector(1.5)


def scene(seed: int, tint: tuple[int, int, int], h: int = 240, w: int = 320) -> np.ndarray:
    """A smooth synthetic shot: low-frequency texture around a dominant colour, as a real shot has."""
    rng = np.random.default_rng(seed)
    small = np.asarray(tint, np.float32) + rng.normal(0, 30, size=(6, 8, 3))
    return cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def test_scene_cut_on_hard_cut_not_on_small_shift() -> None:
    det = SceneCutDetector(0.5)
    a, b = scene(1, (190, 120, 90)), scene(2, (60, 110, 170))  # warm indoor, cool outdoor
    assert det(a) is False  # first frame
    shifted = np.roll(a, (4, 6), axis=(0, 1))
    assert det(shifted) is False
    assert det.last_distance < 0.2
    brighter = np.clip(shifted.astype(np.int16) + 6, 0, 255).astype(np.uint8)
    assert det(brighter) is False
    assert det(b) is True
    assert det(b) is False  # the shot continues
    det.reset()
    assert det(a) is False
