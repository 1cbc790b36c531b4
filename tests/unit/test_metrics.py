"""Flicker and PSNR on synthetic sequences."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from faceage_video.metrics import flicker, input_flow, psnr, warped_temporal_difference


def moving_sequence(n: int = 6, h: int = 120, w: int = 160, step: int = 2) -> list[np.ndarray]:
    """A smooth textured picture panning `step` px right per frame."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    big = cv2.resize(small, (w + n * step, h), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    return [np.ascontiguousarray(big[:, (n - t) * step : (n - t) * step + w]) for t in range(n)]


BOX = (40, 30, 120, 90)


def test_flicker_ratio_one_for_identical_output() -> None:
    frames = moving_sequence()
    f_in, f_out, ratio = flicker(frames, [f.copy() for f in frames], [BOX] * len(frames))
    assert f_in == f_out
    assert ratio == 1.0


def test_flicker_ratio_above_one_when_output_is_noisy() -> None:
    frames = moving_sequence()
    rng = np.random.default_rng(1)
    noisy = [np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in frames]
    f_in, _, ratio = flicker(frames, noisy, [BOX] * len(frames))
    assert f_in < 3.0  # flow compensates the pan
    assert ratio > 2.0


def test_warped_difference_compensates_known_motion() -> None:
    prev, cur = moving_sequence(n=2)[:2]
    flow = input_flow(prev, cur)
    plain = float(np.abs(cur[30:90, 40:120].astype(float) - prev[30:90, 40:120]).mean())
    assert warped_temporal_difference(prev, cur, flow, BOX) < 0.3 * plain
    exact = np.zeros((*cur.shape[:2], 2), np.float32)
    exact[..., 0] = -2.0  # cur(x) = prev(x - 2)
    assert warped_temporal_difference(prev, cur, exact, BOX) < 1e-6
    with pytest.raises(ValueError):
        warped_temporal_difference(prev, cur[:50], flow, BOX)


def test_flicker_validates_lengths() -> None:
    frames = moving_sequence(n=3)
    with pytest.raises(ValueError, match="two frames"):
        flicker(frames[:1], frames[:1], [BOX])
    with pytest.raises(ValueError, match="boxes"):
        flicker(frames, frames, [BOX])


def test_psnr() -> None:
    a = np.full((10, 10, 3), 100, np.uint8)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[0, 0] = 110  # one pixel off by 10 in all channels: MSE = 100 / 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 1.0))
    mask = np.zeros((10, 10), bool)
    mask[5:, 5:] = True
    assert psnr(a, b, mask) == math.inf
    mask[0, 0] = True
    assert psnr(a, b, mask) == pytest.approx(10 * math.log10(255**2 / (100 / 26)))
    with pytest.raises(ValueError, match="no pixel"):
        psnr(a, b, np.zeros((10, 10), bool))
