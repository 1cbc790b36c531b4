"""benchmarks.antialias: the shimmer measure sees aliasing of a close-up and not a still face."""

from __future__ import annotations

import math

import cv2
import numpy as np

from benchmarks.antialias import shimmer
from faceage_video.face.mesh import CanonicalMesh, MeshOptions


def _frame(shift: float, side: int = 900) -> np.ndarray:
    """Grey 2.5-pixel grating moved right by `shift` frame pixels (rendered at 4x, area-averaged)."""
    xx = (np.arange(side * 4, dtype=np.float32)[None] / 4.0) - shift
    row = 128.0 + 60.0 * np.sin(2 * math.pi * xx / 2.5)
    big = np.repeat(row, side * 4, axis=0)
    g = cv2.resize(big, (side, side), interpolation=cv2.INTER_AREA)
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


def _landmarks(mesh: CanonicalMesh, scale: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((64.0, 64.0), 0.0, scale)
    m[:, 2] += (450.0 - 64.0, 450.0 - 64.0)
    pts = mesh.landmark_vertices @ m[:, :2].T + m[:, 2]
    return np.concatenate([pts, np.repeat(pts[[1]], 10, 0)]).astype(np.float32)


def test_shimmer_is_lower_low_passed_on_a_moving_close_up_and_zero_on_a_still_one() -> None:
    on = CanonicalMesh(MeshOptions(size=128))
    off = CanonicalMesh(MeshOptions(size=128, antialias=0.0))
    fit = on.fit(_landmarks(on, 6.0), (900, 900))
    moving = [_frame(0.4 * t) for t in range(6)]
    still = [moving[0]] * 3

    def residual(tex: np.ndarray) -> np.ndarray:
        return 0.25 * (tex.astype(np.float32) - 128.0)

    a, b = shimmer(moving, [fit] * 6, on, residual), shimmer(moving, [fit] * 6, off, residual)
    assert a["texture_dt"] < 0.3 * b["texture_dt"] and b["texture_dt"] > 5.0
    assert a["change_dt"] < 0.3 * b["change_dt"]
    assert abs(a["change_dt"] - 0.25 * a["texture_dt"]) < 0.05  # the change follows the texture here
    assert shimmer(still, [fit] * 3, off, residual)["texture_dt"] == 0.0


def test_picture_puts_plain_above_low_passed_at_four_times_the_texture() -> None:
    from benchmarks.antialias import picture

    on = CanonicalMesh(MeshOptions(size=128))
    off = CanonicalMesh(MeshOptions(size=128, antialias=0.0))
    fit = on.fit(_landmarks(on, 6.0), (900, 900))
    frames = [_frame(0.0), _frame(0.4)]
    pic = picture(frames, [fit, fit], (off, on), lambda t: np.zeros(t.shape, np.float32))
    assert pic.shape == (2 * 512, 4 * 512, 3) and pic.dtype == np.uint8
    top, bottom = pic[:512, :512].astype(float), pic[512:, :512].astype(float)
    assert top.std() > 3 * bottom.std()  # the plain texture shows the aliased grating
    assert (pic[:, 1024:] == 128).all()  # no change: grey
