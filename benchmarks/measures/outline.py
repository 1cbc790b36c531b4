"""The outline halo: how much lighter (or darker) a change turns the edge of the face than the skin just inside.

A change pasted back inside the face oval that lifts the skin along the oval more than the skin beside it
shows as a light stripe along the jaw and temples, the way no face ages. The colour measures do not see it (it
is luminance) and neither does realism (its regions stop short of the outline). Measured in the image, at its
native resolution, from the input's MediaPipe face oval, as mean luma changes (Rec. 601, levels 0..255):

- `band`: the skin within `BAND` inter-ocular distances inside the oval; its change is also an edge against
  what lies outside the oval, which the tool leaves alone;
- `ring`: the skin from `BAND` to twice that inside it;
- `halo`: band minus ring. A uniform change reads 0, a light stripe positive, a dark one negative;
- `line`: the band's shell of `SHELL` inter-ocular distances whose change differs most from the ring's, minus
  the ring's. A narrow line along the jaw (a few pixels, 35 levels, on `liveportrait_d0`) is diluted in the
  band's mean, which the halo averages; the line keeps its height. A change that fades out towards the oval
  reads negative on both (the default's de-aging: halo −1.9, line −4.2 levels, a smooth fade, no line to the
  eye), so a negative line is not always a dark stripe; a positive one is a lit outline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.face.landmarks import FACE_OVAL
from faceage_video.types import Frame, Landmarks

# Depth of the band inside the face oval, in inter-ocular distances (iris centre to iris centre); the ring
# beside it is as deep again.
BAND = 0.2
# Depth of one shell of the band, for the line: four shells to the band.
SHELL = 0.05
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class OutlineChange:
    """The outline of one face.

    Attributes:
        band: mean luma change in the band along the oval (levels).
        ring: mean luma change in the ring just inside the band (levels).
        peak: mean luma change of the band's shell farthest from the ring's (levels); the band's where
            not measured.
    """

    band: float
    ring: float
    peak: float | None = None

    @property
    def line(self) -> float:
        """The band's most changed shell minus the ring: a narrow stripe at its own height."""
        return (self.band if self.peak is None else self.peak) - self.ring

    @property
    def halo(self) -> float:
        """Band minus ring: positive for a light stripe along the outline."""
        return self.band - self.ring


def outline_regions(
    shape: tuple[int, ...], landmarks: Landmarks
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(H, W) bool band along the inside of the face oval and (H, W) bool ring just inside the band.

    Args:
        shape: (H, W, ...) of the image.
        landmarks: (478, 2) MediaPipe landmarks, image pixels (the iris centres give the scale).
    """
    return _regions(*_depth(shape, landmarks))


def _regions(
    fill: NDArray[np.uint8], depth: NDArray[np.float32]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    return (fill > 0) & (depth <= BAND), (depth > BAND) & (depth <= 2 * BAND)


def _depth(shape: tuple[int, ...], landmarks: Landmarks) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """(H, W) 1 inside the face oval and (H, W) each pixel's depth inside it, in inter-ocular distances."""
    h, w = shape[:2]
    lm = np.asarray(landmarks, np.float64)
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, [np.round(lm[list(FACE_OVAL), :2] * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    depth = cv2.distanceTransform(fill, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    iod = float(np.hypot(*(lm[473, :2] - lm[468, :2]))) if len(lm) > 473 else 0.0
    iod = iod if iod > 1.0 else 0.35 * float(np.ptp(lm[list(FACE_OVAL), 0]))
    return fill, np.asarray(depth, np.float32) / np.float32(iod)


def outline_change(inp: Frame, out: Frame, landmarks: Landmarks) -> OutlineChange | None:
    """The outline of one face, input and output pixel for pixel; None where the face has no band or ring in
    the image.

    Args:
        inp: (H, W, 3) uint8 RGB input. out: the output, same shape.
        landmarks: (478, 2) the input face's landmarks, image pixels.

    Raises:
        ValueError: the shapes differ.
    """
    if inp.shape != out.shape:
        raise ValueError(f"input {inp.shape} and output {out.shape} must have the same shape")
    fill, depth = _depth(inp.shape, landmarks)
    band, ring = _regions(fill, depth)
    if not band.any() or not ring.any():
        return None
    d = (out.astype(np.float32) - inp.astype(np.float32)) @ LUMA
    ring_mean = float(d[ring].mean())
    edges = np.arange(0.0, BAND + 1e-6, SHELL)
    shells = [band & (depth > lo) & (depth <= hi) for lo, hi in pairwise(edges)]
    means = [float(d[s].mean()) for s in shells if s.any()]
    peak = max(means, key=lambda m: abs(m - ring_mean)) if means else None
    return OutlineChange(band=float(d[band].mean()), ring=ring_mean, peak=peak)


def summarize_outline(changes: Sequence[OutlineChange | None]) -> dict[str, Any]:
    """`faces`, `band_mean` and `ring_mean` (their own changes, signed), `halo_mean` (signed),
    `halo_abs_mean` and `halo_abs_p90`, `line_mean` (signed) and `line_abs_p90` over the faces measured; None
    without faces."""
    found = [c for c in changes if c is not None]
    halos = np.array([c.halo for c in found], np.float64)
    lines = np.array([c.line for c in found], np.float64)
    if not len(halos):
        return {"faces": 0, "band_mean": None, "ring_mean": None, "halo_mean": None, "halo_abs_mean": None,
                "halo_abs_p90": None, "line_mean": None, "line_abs_p90": None}  # fmt: skip
    return {
        "faces": len(halos),
        "band_mean": round(float(np.mean([c.band for c in found])), 2),
        "ring_mean": round(float(np.mean([c.ring for c in found])), 2),
        "halo_mean": round(float(halos.mean()), 2),
        "halo_abs_mean": round(float(np.abs(halos).mean()), 2),
        "halo_abs_p90": round(float(np.percentile(np.abs(halos), 90)), 2),
        "line_mean": round(float(lines.mean()), 2),
        "line_abs_p90": round(float(np.percentile(np.abs(lines), 90)), 2),
    }
