"""Blend masks and paste_back on synthetic frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceage_video.errors import OptionsError
from faceage_video.face import blend
from faceage_video.face.align import crop_roi
from faceage_video.face.blend import BlendOptions, crop_mask, paste_back
from tests.helpers import similarity

S = 128


def ellipse_oval(
    size: int = S, cx: float = 64.0, cy: float = 72.0, rx: float = 40.0, ry: float = 44.0
) -> np.ndarray:
    ang = np.linspace(-np.pi / 2, 1.5 * np.pi, 36, endpoint=False)
    return np.stack([cx + rx * np.cos(ang), cy + ry * np.sin(ang)], axis=1).astype(np.float32)


def textured_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["face", "box"])
def test_mask_range_border_and_core(kind: str) -> None:
    m = crop_mask(kind, S, ellipse_oval(), 0.08)  # type: ignore[arg-type]
    assert m.shape == (S, S) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0
    border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
    assert np.all(border == 0.0)
    assert m[72, 64] == 1.0  # deep inside


def test_face_mask_zero_outside_polygon_and_grown_upwards() -> None:
    oval = ellipse_oval()
    m = crop_mask("face", S, oval, 0.08)
    grown = blend.grow_forehead(oval)
    inside = np.zeros((S, S), np.uint8)
    cv2.fillPoly(inside, [np.round(grown).astype(np.int32)], 1)
    # Nothing outside the (grown) polygon, with a pixel of tolerance for rasterisation.
    outside = cv2.dilate(inside, np.ones((3, 3), np.uint8)) == 0
    assert np.all(m[outside] == 0.0)
    # Grown: covers forehead rows above the original oval's top, not below its chin.
    assert m[int(oval[:, 1].min()) + 2, 64] > 0.5  # original top edge is now well inside
    assert grown[:, 1].min() < oval[:, 1].min() - 10
    assert m[int(oval[:, 1].max()) + 1, 64] == 0.0


def test_face_mask_ramp_is_monotone_and_feather_sets_its_width() -> None:
    oval = ellipse_oval()
    m = crop_mask("face", S, oval, 0.08)
    row = m[72]  # through the middle; the oval is symmetric about x = 64
    centre = 64
    assert np.all(np.diff(row[: centre + 1]) >= 0.0)
    assert np.all(np.diff(row[centre:]) <= 0.0)
    ramp = np.count_nonzero((row > 0.0) & (row < 1.0))
    wide = crop_mask("face", S, oval, 0.2)[72]
    assert np.count_nonzero((wide > 0.0) & (wide < 1.0)) > ramp
    b = crop_mask("box", S, None, 0.1)[64]
    assert np.all(np.diff(b[:64]) >= 0.0) and b[20] == 1.0


def test_face_mask_has_no_seam() -> None:
    """The ramp is continuous: no step between neighbouring pixels beyond the smoothstep's slope."""
    m = crop_mask("face", S, ellipse_oval(), 0.08)
    max_step = 1.5 * np.sqrt(2) / (0.08 * S) + 1e-3  # steepest smoothstep slope over a diagonal step
    assert np.abs(np.diff(m, axis=0)).max() <= max_step
    assert np.abs(np.diff(m, axis=1)).max() <= max_step


def test_face_mask_clipped_by_crop_fades_at_crop_edge() -> None:
    oval = ellipse_oval(cy=40.0)  # grown forehead runs past the crop top
    m = crop_mask("face", S, oval, 0.08)
    assert np.all(m[0] == 0.0)
    assert m[6, 64] > 0.0


def test_mask_and_options_validation() -> None:
    with pytest.raises(ValueError, match="oval"):
        crop_mask("face", S, None, 0.08)
    with pytest.raises(ValueError, match="kind"):
        crop_mask("oval", S, None, 0.08)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="feather"):
        BlendOptions(feather=0.0)
    with pytest.raises(OptionsError, match="mask"):
        BlendOptions(mask="circle")  # type: ignore[arg-type]


def _paste_case(frame: np.ndarray, m: np.ndarray, delta: float = 40.0, kind: str = "face"):
    crop = cv2.warpAffine(frame, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    generated = np.clip(crop.astype(np.float32) + delta, 0, 255)
    mask = crop_mask(kind, S, ellipse_oval(), 0.08)  # type: ignore[arg-type]
    return crop, generated, mask


def test_paste_back_changes_inside_and_keeps_alpha_zero_bit_identical() -> None:
    frame = textured_frame(300, 400)
    frame[..., 1] = 100  # room for the +40 change without clipping
    m = similarity(0.8, 10.0, -100.0, -60.0)
    crop, generated, mask = _paste_case(frame, m, delta=40.0)
    before = frame.copy()
    out, alpha = paste_back(frame, generated, crop, m, mask, BlendOptions(color_match=False))
    np.testing.assert_array_equal(frame, before)  # input untouched
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert alpha.shape == frame.shape[:2] and alpha.dtype == np.float32
    zero = alpha == 0.0
    assert zero.any() and (~zero).any()
    np.testing.assert_array_equal(out[zero], frame[zero])
    core = alpha == 1.0
    assert core.sum() > 500
    change = out[core].astype(np.int16) - frame[core].astype(np.int16)
    assert np.abs(change[:, 1] - 40).max() <= 1  # the change, not the generated pixels, is pasted


def test_paste_back_colour_match_caps_a_global_cast_only() -> None:
    frame = np.full((300, 400, 3), 100, np.uint8)
    m = similarity(0.8, 0.0, -100.0, -60.0)
    crop, generated, mask = _paste_case(frame, m, delta=30.0)
    out, alpha = paste_back(frame, generated, crop, m, mask, BlendOptions(color_match=True))
    core = alpha == 1.0
    assert np.all(np.abs(out[core].astype(int) - 100 - int(blend.MAX_GLOBAL_SHIFT)) <= 1)
    crop, generated, mask = _paste_case(frame, m, delta=5.0)  # within the allowance: kept whole
    out, alpha = paste_back(frame, generated, crop, m, mask, BlendOptions(color_match=True))
    assert np.all(out[alpha == 1.0] == 105)


def test_paste_back_warps_only_the_roi(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = np.full((1500, 2000, 3), 90, np.uint8)
    m = similarity(0.5, -15.0, -300.0, -200.0)
    crop, generated, mask = _paste_case(frame, m)
    sizes: list[tuple[int, int]] = []
    real = cv2.warpAffine

    def spy(src, mat, dsize, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(tuple(dsize))
        return real(src, mat, dsize, *args, **kwargs)

    monkeypatch.setattr(blend.cv2, "warpAffine", spy)
    out, alpha = paste_back(frame, generated, crop, m, mask, BlendOptions())
    x0, y0, x1, y1 = crop_roi(m, S, frame.shape)
    assert sizes and all(s == (x1 - x0, y1 - y0) for s in sizes)
    assert (x1 - x0) * (y1 - y0) < 0.1 * frame.shape[0] * frame.shape[1]
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(alpha[outside] == 0.0)
    np.testing.assert_array_equal(out[outside], frame[outside])


@pytest.mark.parametrize("corner", [(-30.0, -40.0), (250.0, 150.0)])
def test_paste_back_near_frame_edges(corner: tuple[float, float]) -> None:
    h, w = 240, 320
    frame = textured_frame(h, w, seed=5)
    frame[..., 0] = 60
    # Place the crop's top-left at `corner` in the frame (scale 1): part of the crop lies outside.
    m = similarity(1.0, 0.0, -corner[0], -corner[1])
    crop, generated, mask = _paste_case(frame, m, delta=50.0)
    out, alpha = paste_back(frame, generated, crop, m, mask, BlendOptions(color_match=False))
    assert out.shape == frame.shape and alpha.shape == (h, w)
    assert (alpha > 0.5).sum() > 100
    zero = alpha == 0.0
    np.testing.assert_array_equal(out[zero], frame[zero])
    strong = alpha > 0.99
    assert np.all(out[strong][:, 0] >= 108)


def test_paste_back_crop_fully_outside_is_a_no_op() -> None:
    frame = textured_frame(100, 100)
    m = similarity(1.0, 0.0, 1000.0, 1000.0)
    crop, generated, mask = _paste_case(frame, m)
    out, alpha = paste_back(frame, generated, crop, m, mask, BlendOptions())
    np.testing.assert_array_equal(out, frame)
    assert not alpha.any()


def test_paste_back_rejects_mismatched_shapes() -> None:
    frame = textured_frame(100, 100)
    m = similarity(1.0, 0.0, 0.0, 0.0)
    crop, generated, mask = _paste_case(frame, m)
    with pytest.raises(ValueError, match="generated"):
        paste_back(frame, generated[:64], crop, m, mask, BlendOptions())


def test_a_pixel_the_8bit_matte_writes_as_zero_gets_no_change_at_any_plate_depth() -> None:
    """Alpha under half a matte step is 0, so a 10- or 16-bit plate cannot round a trace of change into a
    pixel that the matte calls untouched."""
    frame = textured_frame(300, 400)
    m = similarity(0.8, 10.0, -100.0, -60.0)
    crop, generated, mask = _paste_case(frame, m, delta=40.0)
    warped = blend.warp_change(frame.shape, generated, crop, m, mask, BlendOptions(color_match=False))
    a = warped.alpha
    assert not np.any((a > 0.0) & (a < blend.ALPHA_FLOOR))
    assert np.any(a > 0.0) and np.any(a == 0.0)
    matte = np.rint(a * 255.0)
    assert np.all(a[matte == 0] == 0.0)
