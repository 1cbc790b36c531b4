"""Five-point similarity alignment to one canonical template.

The same functions serve inference (crop, generate, paste back) and training preprocessing, so the
generator sees identical crops in both. The template leaves room above the eyes for the forehead and the
hair, because grey hair and a receding hairline are part of aging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.types import Affine, Crop, Frame, Landmarks, Points5

# MediaPipe FaceLandmarker indices of the five alignment points, in template order.
# 468 and 473 are the iris centres; 1 is the nose tip; 61 and 291 are the mouth corners.
FIVE_POINT_INDICES: tuple[int, ...] = (468, 473, 1, 61, 291)

# Template in unit coordinates (x, y in [0, 1] of the crop side): image-left eye, image-right eye, nose tip,
# image-left mouth corner, image-right mouth corner. Eyes sit at 46 % height and 32 % apart, which leaves
# the forehead and the top of the hair inside the crop and the chin above its bottom edge.
UNIT_TEMPLATE: NDArray[np.float64] = np.array(
    [
        [0.340, 0.460],
        [0.660, 0.460],
        [0.500, 0.605],
        [0.370, 0.735],
        [0.630, 0.735],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class AlignTemplate:
    """The canonical five-point template at a crop resolution.

    Attributes:
        size: side of the square crop in pixels.
        unit_points: (5, 2) template points in unit coordinates.
    """

    size: int = 128
    unit_points: tuple[tuple[float, float], ...] = tuple(map(tuple, UNIT_TEMPLATE.tolist()))  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"template size must be at least 16 px, got {self.size}")
        if len(self.unit_points) != 5:
            raise ValueError(f"template needs 5 points, got {len(self.unit_points)}")
        if not all(len(p) == 2 for p in self.unit_points) or not np.isfinite(self.unit_points).all():
            raise ValueError(f"template points must be 5 finite (x, y) pairs, got {self.unit_points!r}")

    @property
    def points(self) -> Points5:
        """(5, 2) template points in crop pixels (pixel centres at integer coordinates)."""
        return np.asarray(self.unit_points, dtype=np.float64) * self.size - 0.5

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form, stored in model manifests."""
        return {"size": self.size, "unit_points": [list(p) for p in self.unit_points]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> AlignTemplate:
        """Inverse of `to_dict`."""
        d: Any = data
        pts = d.get("unit_points", UNIT_TEMPLATE.tolist())
        points: Any = tuple(tuple(float(v) for v in p) for p in pts)  # checked by __post_init__
        return cls(size=int(d["size"]), unit_points=points)


def five_points(landmarks: Landmarks) -> Points5:
    """Pick the five alignment points from 478 MediaPipe landmarks.

    Args:
        landmarks: (478, 2) pixel coordinates.

    Returns:
        (5, 2) float64 points in template order.

    Raises:
        ValueError: if the landmark array does not hold the iris points.
    """
    if landmarks.ndim != 2 or landmarks.shape[0] <= max(FIVE_POINT_INDICES) or landmarks.shape[1] < 2:
        raise ValueError(f"expected (478, 2) landmarks with irises, got shape {landmarks.shape}")
    return np.asarray(landmarks[list(FIVE_POINT_INDICES), :2], dtype=np.float64)


def estimate_similarity(src: NDArray[np.float64], dst: NDArray[np.float64]) -> Affine:
    """Least-squares similarity (rotation, uniform scale, translation) mapping `src` onto `dst`.

    Umeyama's closed form, with reflections excluded so a face is never mirrored.

    Args:
        src: (N, 2) points, N >= 2.
        dst: (N, 2) points.

    Returns:
        (2, 3) affine matrix M with dst ≈ M @ [x, y, 1].

    Raises:
        ValueError: mismatched or non-(N, 2) shapes, fewer than two points, NaN/inf, or either set collapsed
            to one place (no scale or rotation can be estimated).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[0] < 2 or src.shape[1] != 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite (got NaN or inf)")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("source points are degenerate (all at one place)")
    if (d**2).sum() / len(dst) < 1e-12:
        raise ValueError("target points are degenerate (all at one place)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def invert_affine(m: Affine) -> Affine:
    """Inverse of a (2, 3) affine transform."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(m: Affine, points: NDArray[np.floating]) -> NDArray[np.float64]:
    """Map (N, 2) points through a (2, 3) affine transform."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def alignment_transform(points5: Points5, template: AlignTemplate) -> Affine:
    """Frame → crop similarity transform that puts the five points on the template."""
    return estimate_similarity(points5, template.points)


def warp_to_crop(frame: Frame, m: Affine, size: int) -> Crop:
    """Cut the aligned face crop out of a frame.

    Args:
        frame: (H, W, 3) uint8 RGB.
        m: (2, 3) frame → crop transform from `alignment_transform`.
        size: crop side in pixels.

    Returns:
        (size, size, 3) uint8 crop. Pixels beyond the frame edge are reflected, so the generator never sees
        hard black borders it would learn to age.
    """
    crop = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return np.asarray(crop, dtype=np.uint8)


def align_face(frame: Frame, landmarks: Landmarks, template: AlignTemplate) -> tuple[Crop, Affine]:
    """Align one face: five points from its landmarks, similarity to the template, warp.

    Returns:
        The (S, S, 3) crop and its (2, 3) frame → crop transform.
    """
    m = alignment_transform(five_points(landmarks), template)
    return warp_to_crop(frame, m, template.size), m


def crop_roi(m: Affine, size: int, frame_shape: tuple[int, ...], pad: int = 2) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) in the frame that the crop square covers, clipped to the frame."""
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    pts = apply_affine(invert_affine(m), corners)
    h, w = frame_shape[:2]
    x0 = int(max(0, np.floor(pts[:, 0].min()) - pad))
    y0 = int(max(0, np.floor(pts[:, 1].min()) - pad))
    x1 = int(min(w, np.ceil(pts[:, 0].max()) + pad + 1))
    y1 = int(min(h, np.ceil(pts[:, 1].max()) + pad + 1))
    return x0, y0, x1, y1
