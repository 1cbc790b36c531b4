"""The inner-face ceiling: a partner's detail on the source's own light and skin tone."""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks.ceiling import keep_tone


def _low(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101)


def test_keep_tone_takes_the_detail_from_the_partner_and_the_tone_from_the_source() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    # The source: a smooth, lit, reddish face and no detail; the partner: darker, bluish, with fine lines.
    source = np.stack([150 + 60 * xx, 110 + 40 * xx, 90 + 0 * yy], -1).astype(np.float32)
    lines = 12.0 * np.sin(yy * 128 / 3.0)[..., None] * np.ones((1, 1, 3))
    partner = (np.array([80.0, 90.0, 120.0]) + lines + rng.normal(0, 2, source.shape)).astype(np.float32)
    out = keep_tone(source, partner, 16.0)
    inner = (slice(32, 96), slice(32, 96))
    # Far from the borders the coarse tone is the source's (within a level) ...
    assert np.abs(_low(out, 16.0) - _low(source, 16.0))[inner].max() < 1.0
    # ... and the fine lines are the partner's, sample for sample.
    np.testing.assert_allclose(
        (out - _low(out, 16.0))[inner], (partner - _low(partner, 16.0))[inner], atol=1.0
    )
    # The partner's own tone is gone: the mean colour is the source's.
    assert np.abs(out[inner].mean(axis=(0, 1)) - source[inner].mean(axis=(0, 1))).max() < 1.0
