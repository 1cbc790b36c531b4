"""Paste an aged crop back into the frame: feathered mask, inverse warp of the change, colour match.

The change the generator made (generated − original crop) is warped back, not the generated pixels: the
frame keeps its own detail, sharpness and noise, and only a smooth residual is resampled. Only the region of
interest the crop covers is warped, so a 4K frame costs no more than a small one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError
from faceage_video.face.align import crop_roi
from faceage_video.face.mesh import CanonicalMesh, MeshFit
from faceage_video.types import MASK_KINDS, Affine, Crop, Frame, Mask, MaskKind

# The upper half of the MediaPipe face oval is stretched upwards by this fraction of its height above the
# oval's middle: the oval stops on the upper forehead, and the hairline (greying, receding) is part of aging.
FOREHEAD_GROWTH = 0.35
# Colour match keeps a global shift of the change up to this many levels (0..255) per channel and removes
# the rest: a duller, yellower skin is a few levels and is part of aging; a larger shift of the whole face is
# the generator's colour or lighting cast, which would show as a tinted patch.
MAX_GLOBAL_SHIFT = 8.0
# Alpha below half a step of the 8-bit matte is zero: a pixel the matte writes as 0 is then untouched at any
# plate depth (a 10-bit plate would otherwise round alpha 0.0015 × 128 levels up to a changed pixel).
ALPHA_FLOOR = 0.5 / 255.0


@dataclass(frozen=True)
class BlendOptions:
    """Options of `paste_back` and `crop_mask`.

    Attributes:
        mask: "face" (face oval grown to the hairline) or "box" (most of the crop, hair included).
        feather: width of the soft edge, as a fraction of the crop side, in (0, 0.5].
        color_match: remove the part of the change's global colour shift that exceeds `MAX_GLOBAL_SHIFT`
            (see `paste_back`).
    """

    mask: MaskKind = "face"
    feather: float = 0.08
    color_match: bool = True

    def __post_init__(self) -> None:
        if self.mask not in MASK_KINDS:
            raise OptionsError(f"mask must be one of {', '.join(MASK_KINDS)}, got {self.mask!r}")
        if not (math.isfinite(self.feather) and 0.0 < self.feather <= 0.5):
            raise OptionsError(
                f"feather must be in (0, 0.5] of the crop side, got {self.feather}; a hard edge (0) shows "
                "as a seam"
            )


def _smoothstep(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """Monotone 0→1 ramp with zero slope at both ends, so the edge of the feather leaves no visible line."""
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def grow_forehead(oval: NDArray[np.floating], growth: float = FOREHEAD_GROWTH) -> NDArray[np.float32]:
    """Stretch the part of a face-oval polygon above its vertical middle upwards (−y).

    Args:
        oval: (K, 2) polygon in crop coordinates (the crop is upright, so up is −y).
        growth: fraction by which the height above the middle grows.

    Returns:
        (K, 2) float32 polygon; points at or below the middle are unchanged, so the shape stays continuous.
    """
    pts = np.asarray(oval, dtype=np.float32).copy()
    mid = 0.5 * (float(pts[:, 1].min()) + float(pts[:, 1].max()))
    above = pts[:, 1] < mid
    pts[above, 1] = mid - (mid - pts[above, 1]) * (1.0 + growth)
    return pts


def crop_mask(kind: MaskKind, size: int, oval_in_crop: NDArray[np.floating] | None, feather: float) -> Mask:
    """Blend mask in aligned crop coordinates.

    Args:
        kind: "face": the filled face oval grown upwards to the hairline, with a ramp inside the polygon;
            "box": the whole crop with a ramp towards its edges (keeps the hair).
        size: crop side S in pixels.
        oval_in_crop: (36, 2) face-oval polygon already mapped to crop pixels; needed for "face".
        feather: ramp width as a fraction of `size`.

    Returns:
        (S, S) float32 in [0, 1]: 0 on and outside the boundary and on the crop border, rising monotonically
        with the distance from the boundary to 1 once it is `feather * size` pixels inside.

    Raises:
        ValueError: on an unknown kind, a missing or malformed oval, or a feather outside (0, 0.5].
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
    if size < 4:
        raise ValueError(f"crop size must be at least 4 px, got {size}")
    if not 0.0 < feather <= 0.5:
        raise ValueError(f"feather must be in (0, 0.5], got {feather}")
    ramp = max(1.0, feather * size)
    if kind == "box":
        idx = np.arange(size, dtype=np.float32)
        edge = np.minimum(idx, size - 1 - idx)  # distance of each row/column to the crop border, 0 on it
        return _smoothstep(np.minimum(edge[:, None], edge[None, :]) / ramp)

    if oval_in_crop is None:
        raise ValueError('mask kind "face" needs the face-oval polygon in crop coordinates')
    oval = np.asarray(oval_in_crop, dtype=np.float32)
    if oval.ndim != 2 or oval.shape[1] != 2 or oval.shape[0] < 3 or not np.isfinite(oval).all():
        raise ValueError(f"oval_in_crop must be a finite (K>=3, 2) polygon, got shape {oval.shape}")
    poly = grow_forehead(oval)
    # One pixel of zero border, so the crop edge counts as outside and clipped ovals still fade to 0 there.
    filled = np.zeros((size + 2, size + 2), dtype=np.uint8)
    sub = 4  # fixed-point bits: sub-pixel polygon vertices
    pts = np.round((poly + 1.0) * (1 << sub)).astype(np.int32)
    cv2.fillPoly(filled, [pts], 1, lineType=cv2.LINE_8, shift=sub)
    # A polygon past the crop edge fills the padding too: clear it again.
    filled[0, :] = filled[-1, :] = filled[:, 0] = filled[:, -1] = 0
    dist = cv2.distanceTransform(filled, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    # The outermost filled pixels have distance 1: subtracting it puts them at exactly 0.
    return _smoothstep((dist - 1.0) / ramp)


def _color_matched(residual: NDArray[np.float32], mask: Mask) -> NDArray[np.float32]:
    """Remove the part of the residual's mask-weighted mean shift beyond ±MAX_GLOBAL_SHIFT per channel.

    Only this one global offset is touched: grey hair and regional skin changes are the aging effect and are
    kept, and so is any global shift small enough to be skin tone rather than a cast.
    """
    w = float(mask.sum())
    if w <= 0.0:
        return residual
    shift = (residual * mask[..., None]).reshape(-1, residual.shape[-1]).sum(axis=0) / w
    excess = shift - np.clip(shift, -MAX_GLOBAL_SHIFT, MAX_GLOBAL_SHIFT)
    if not np.any(excess):
        return residual
    return (residual - excess.astype(np.float32)).astype(np.float32)


def paste_back(
    frame: Frame,
    generated: NDArray[np.floating] | NDArray[np.uint8],
    original_crop: Crop,
    m: Affine,
    mask: Mask,
    options: BlendOptions,
) -> tuple[Frame, Mask]:
    """Blend the generator's change to one aligned crop back into the frame.

    out = frame + alpha · warp(generated − original_crop), with alpha = warp(mask), computed only inside the
    region of interest the crop covers (`align.crop_roi`).

    Args:
        frame: (H, W, 3) uint8 RGB; not modified.
        generated: (S, S, 3) aged crop, uint8 or float 0..255.
        original_crop: (S, S, 3) uint8, the crop the generator was given (same `m`).
        m: (2, 3) frame → crop similarity from `align.alignment_transform`.
        mask: (S, S) float32 in [0, 1] from `crop_mask`, in crop coordinates.
        options: blend options; `color_match` removes the excess global colour shift (see `_color_matched`).

    Returns:
        The new frame (a copy; every pixel with alpha 0 is bit-identical to `frame`) and the full-frame alpha,
        (H, W) float32 in [0, 1], for the matte export.

    Raises:
        ValueError: if the shapes of the frame, crops, mask or transform do not agree.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    size = mask.shape[0]
    if mask.shape != (size, size):
        raise ValueError(f"mask must be square (S, S), got {mask.shape}")
    if generated.shape != (size, size, 3) or original_crop.shape != (size, size, 3):
        raise ValueError(
            f"generated {generated.shape} and original_crop {original_crop.shape} must both be "
            f"({size}, {size}, 3) to match the mask"
        )
    if np.asarray(m).shape != (2, 3):
        raise ValueError(f"m must be a (2, 3) affine transform, got shape {np.asarray(m).shape}")

    return apply_change(frame, warp_change(frame.shape, generated, original_crop, m, mask, options))


@dataclass(frozen=True)
class WarpedChange:
    """One face's change, warped into the frame's region of interest (`paste_back` without the blend).

    Attributes:
        box: (x0, y0, x1, y1) region of interest in frame pixels; empty when the crop misses the frame.
        alpha: (y1 - y0, x1 - x0) float32 in [0, 1], the warped mask.
        change: (y1 - y0, x1 - x0, 3) float32, the change in 8-bit levels (0..255 scale) to add, times alpha.
    """

    box: tuple[int, int, int, int]
    alpha: NDArray[np.float32]
    change: NDArray[np.float32]

    @property
    def empty(self) -> bool:
        x0, y0, x1, y1 = self.box
        return x1 <= x0 or y1 <= y0


def warp_change(
    frame_shape: tuple[int, ...],
    generated: NDArray[np.floating] | NDArray[np.uint8],
    original_crop: Crop,
    m: Affine,
    mask: Mask,
    options: BlendOptions,
) -> WarpedChange:
    """The change of one crop and its mask, warped into the frame (the first half of `paste_back`).

    A caller with a higher-precision plate applies `alpha · change` itself (scaled to its own range);
    `apply_change` does it for the uint8 frame. Arguments as `paste_back`, `frame_shape` being (H, W, ...).
    """
    size = mask.shape[0]
    x0, y0, x1, y1 = crop_roi(m, size, frame_shape)
    if x1 <= x0 or y1 <= y0:  # the crop lies entirely outside the frame
        return WarpedChange((x0, y0, x0, y0), np.zeros((0, 0), np.float32), np.zeros((0, 0, 3), np.float32))

    mask32 = np.clip(mask.astype(np.float32), 0.0, 1.0)
    residual = generated.astype(np.float32) - original_crop.astype(np.float32)
    if options.color_match:
        residual = _color_matched(residual, mask32)

    # ROI pixel (u, v) is frame pixel (u + x0, v + y0): fold that shift into the frame → crop map and let
    # warpAffine sample the crop through it (WARP_INVERSE_MAP), for the ROI only.
    m_roi = np.asarray(m, dtype=np.float64).copy()
    m_roi[:, 2] += m_roi[:, :2] @ np.array([x0, y0], dtype=np.float64)
    dsize = (x1 - x0, y1 - y0)
    inverse = cv2.WARP_INVERSE_MAP
    alpha = cv2.warpAffine(
        mask32, m_roi, dsize, flags=cv2.INTER_LINEAR | inverse, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    # Cubic for the change: when a small crop is blown up onto a large face, bilinear shows diamond
    # artefacts in the wrinkles; the overshoot of cubic is harmless on a residual.
    change = cv2.warpAffine(
        residual, m_roi, dsize, flags=cv2.INTER_CUBIC | inverse, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return WarpedChange((x0, y0, x1, y1), _floored(alpha), np.asarray(change, np.float32))


def apply_change(frame: Frame, warped: WarpedChange) -> tuple[Frame, Mask]:
    """Add `alpha · change` to a uint8 frame (the second half of `paste_back`; same Returns)."""
    h, w = frame.shape[:2]
    out = frame.copy()
    alpha_full = np.zeros((h, w), dtype=np.float32)
    if warped.empty:
        return out, alpha_full
    x0, y0, x1, y1 = warped.box
    alpha, change = warped.alpha, warped.change
    roi = frame[y0:y1, x0:x1]
    blended = np.clip(np.rint(roi.astype(np.float32) + alpha[..., None] * change), 0, 255).astype(np.uint8)
    # Explicit select, so pixels the mask does not reach stay bit-identical whatever the arithmetic does.
    out[y0:y1, x0:x1] = np.where(alpha[..., None] > 0.0, blended, roi)
    alpha_full[y0:y1, x0:x1] = alpha
    return out, alpha_full


def _floored(alpha: NDArray[Any]) -> NDArray[np.float32]:
    """(H, W) alpha clipped to [0, 1], with values below `ALPHA_FLOOR` set to 0."""
    a = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)
    a[a < ALPHA_FLOOR] = 0.0
    return a.astype(np.float32, copy=False)


def warp_change_mesh(
    frame_shape: tuple[int, ...],
    residual: NDArray[np.float32],
    mask: Mask,
    fit: MeshFit,
    mesh: CanonicalMesh,
    options: BlendOptions,
) -> WarpedChange:
    """A change made in canonical space and its mask, warped into the frame through the dense mesh.

    Args:
        frame_shape: (H, W, ...) of the frame.
        residual: (S, S, 3) float32 change in canonical space, in levels of 0..255.
        mask: (S, S) float32 in [0, 1], in canonical space (`CanonicalMesh.mask`, times any fade).
        fit: the face's registration in this frame.
        mesh: the canonical mesh the residual lives in.
        options: `color_match` removes the excess global colour shift, as in `paste_back`.

    Returns:
        The change and alpha over the fit's region of interest (`fit.roi`).

    Raises:
        ValueError: if the residual or mask do not match the mesh size.
    """
    s = mesh.size
    if residual.shape != (s, s, 3) or mask.shape != (s, s):
        raise ValueError(
            f"residual {residual.shape} and mask {mask.shape} must be ({s}, {s}, 3) and ({s}, {s})"
        )
    x0, y0, x1, y1 = fit.roi
    if x1 <= x0 or y1 <= y0:
        return WarpedChange((x0, y0, x0, y0), np.zeros((0, 0), np.float32), np.zeros((0, 0, 3), np.float32))
    mask32 = np.clip(mask.astype(np.float32), 0.0, 1.0)
    res = np.asarray(residual, np.float32)
    if options.color_match:
        res = _color_matched(res, mask32)
    mx, my = mesh.inverse_map(fit)
    alpha = cv2.remap(mask32, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    scale = _frame_px_per_canonical_px(fit)
    alpha = np.asarray(alpha, np.float32) * _fold_fade(mx, my, scale)
    # A small texture blown up onto a large face shows bilinear diamonds in the wrinkles: upsample it in
    # canonical space with a cubic first (cheap at texture size), so the per-pixel warp can stay bilinear.
    up = int(np.clip(math.ceil(scale / 1.5), 1, 8))
    if up > 1:
        res = np.asarray(cv2.resize(res, (s * up, s * up), interpolation=cv2.INTER_CUBIC), np.float32)
        cx, cy = (mx + 0.5) * up - 0.5, (my + 0.5) * up - 0.5
    else:
        cx, cy = mx, my
    change = cv2.remap(res, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return WarpedChange(fit.roi, _floored(alpha), np.asarray(change, np.float32))


def apply_change_roi(frame: Frame, warped: WarpedChange) -> Frame:
    """Add `alpha · change` to a uint8 frame in the change's box only (a copy; alpha-0 pixels untouched).

    The memory-light form of `apply_change`: no full-frame alpha, one pass of float work over the box.
    """
    out = frame.copy()
    if warped.empty:
        return out
    x0, y0, x1, y1 = warped.box
    roi = frame[y0:y1, x0:x1]
    acc = warped.change * warped.alpha[..., None]
    acc += roi
    np.rint(acc, out=acc)
    np.clip(acc, 0, 255, out=acc)
    blended = acc.astype(np.uint8)
    # Explicit select, so pixels the mask does not reach stay bit-identical whatever the arithmetic does.
    off = warped.alpha <= 0.0
    blended[off] = roi[off]
    out[y0:y1, x0:x1] = blended
    return out


def paste_back_mesh(
    frame: Frame,
    residual: NDArray[np.float32],
    mask: Mask,
    fit: MeshFit,
    mesh: CanonicalMesh,
    options: BlendOptions,
) -> tuple[Frame, WarpedChange]:
    """`warp_change_mesh` then `apply_change_roi`: out = frame + alpha · warp⁻¹(residual).

    Args:
        frame: (H, W, 3) uint8 RGB; not modified. Other arguments as `warp_change_mesh`.

    Returns:
        The new frame (every pixel with alpha 0 bit-identical to `frame`) and the warped change, whose
        `alpha` over `box` is the matte.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    warped = warp_change_mesh(frame.shape, residual, mask, fit, mesh, options)
    return apply_change_roi(frame, warped), warped


def _fold_fade(mx: NDArray[np.float32], my: NDArray[np.float32], scale: float) -> NDArray[np.float32]:
    """(H, W) weight rising from 0 at frame pixels with no point of skin (`inverse_map` marks them off the
    texture: a fold of a turned face) to 1 two canonical pixels away. Without it the change stopped on the
    inverse map's grid cells there, as light or dark rectangles along the far cheek."""
    off = (mx < -1.0) | (my < -1.0)
    if not off.any():
        return np.ones(mx.shape, np.float32)
    dist = cv2.distanceTransform((~off).astype(np.uint8), cv2.DIST_L2, 3)
    return np.asarray(np.clip(dist / max(2.0 * scale, 1.0), 0.0, 1.0), np.float32)


def _frame_px_per_canonical_px(fit: MeshFit) -> float:
    """How many frame pixels one canonical pixel covers, from the fit's similarity (frame → canonical)."""
    lin = fit.similarity[:, :2]
    return float(1.0 / max(math.sqrt(abs(np.linalg.det(lin))), 1e-9))
