"""Mesh stabilisation: landmarks carried along the image's own optical flow, anchored by each detection.

MediaPipe's landmarks jitter about 1 % of the inter-ocular distance per frame on a face that moves only
rigidly (`../shared/docs/AGING.md`), and an effect tied to the landmarks jitters with them. The skin itself
does not: pyramidal Lucas–Kanade flow follows it to a fraction of a pixel. So each track's landmarks are
predicted from the previous frame's stabilised landmarks along the flow, then pulled towards the new
detection:

    p_t = w · (p_{t−1} + flow) + (1 − w) · detection_t,   w = weight · exp(−(d / tolerance)²)

with d the distance between prediction and detection in face-size units. Where the two agree (jitter) the
flow wins and the mesh sticks to the skin; where they disagree (a fast expression, a failed flow, an
occlusion) the detection wins at once, so the mesh never drifts or lags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError
from faceage_video.types import Frame, Landmarks

# Gray frames are reduced so the face spans at most this many pixels across before the flow: LK is then
# equally cheap at 4K, and the error it leaves is well under the 0.2 px jitter floor of a 100 px face.
_MAX_FACE_PX = 220.0


@dataclass(frozen=True)
class StabilizerOptions:
    """Options of `MeshStabilizer`.

    Attributes:
        weight: most weight on the flow prediction, in [0, 1). 0 turns stabilisation off (detections pass
            through). Measured on known motion (raw detections, 3 faces × 40 frames): 0.7 → 0.68 % of the
            inter-ocular distance per frame, 0.85 → 0.55 %, 0.93 → 0.48 % (tolerance 0.04) and 0.37 %
            (tolerance 0.08), against 1.8 % unstabilised.
        tolerance: prediction–detection distance, as a fraction of the face size (inter-ocular distance ×
            2.5), at which the flow's weight falls to 1/e of `weight`.
        window: Lucas–Kanade window side in pixels (odd), at the reduced scale.
    """

    weight: float = 0.93
    tolerance: float = 0.06
    window: int = 15

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and 0.0 <= self.weight < 1.0):
            raise OptionsError(f"stabiliser weight must be in [0, 1) (0 = off), got {self.weight}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 0.0):
            raise OptionsError(f"stabiliser tolerance must be > 0, got {self.tolerance}")
        if self.window < 5 or self.window % 2 == 0:
            raise OptionsError(f"stabiliser window must be odd and >= 5 px, got {self.window}")


def face_size(landmarks: Landmarks) -> float:
    """Face size in pixels: 2.5 × the distance between the iris centres (or the eye corners)."""
    lm = np.asarray(landmarks, np.float64)
    a, b = (lm[468], lm[473]) if len(lm) > 473 else (lm[33], lm[263])
    return max(2.5 * float(np.linalg.norm(a - b)), 1.0)


class MeshStabilizer:
    """Per-track flow-guided landmark stabilisation, frame by frame in order.

    Not thread-safe: one per stream, like the tracker.
    """

    def __init__(self, options: StabilizerOptions) -> None:
        self.options = options
        # Per track: the reduced gray patch of its last frame, that patch's frame box, the scale, and the
        # stabilised landmarks there.
        self._prev: dict[int, tuple[NDArray[np.uint8], tuple[int, int, int, int], float, Landmarks]] = {}

    def reset(self, track_id: int | None = None) -> None:
        """Forget one track (it ended) or every track (a scene cut)."""
        if track_id is None:
            self._prev.clear()
        else:
            self._prev.pop(track_id, None)

    def __call__(self, frame: Frame, track_id: int, detected: Landmarks) -> Landmarks:
        """Stabilised landmarks of one track in this frame.

        Args:
            frame: (H, W, 3) uint8 RGB, the frame the detection came from.
            track_id: the tracker's id.
            detected: (N, 2) float32 landmarks in frame pixels (already One-Euro smoothed or raw).

        Returns:
            (N, 2) float32 landmarks; the detection itself on a track's first frame or when off.
        """
        det = np.asarray(detected, np.float32)
        if self.options.weight == 0.0:
            return det
        size = face_size(det)
        scale = min(1.0, _MAX_FACE_PX / size)
        out = det
        prev = self._prev.get(track_id)
        if prev is not None and abs(prev[2] - scale) < 0.1 * scale:
            pg, box, sc, pts = prev
            # The same frame box in both frames, so the flow needs no offset between the patches.
            cur = _patch(frame, box, sc)
            if cur.shape == pg.shape:
                w = self.options.window
                p0 = _to_patch(pts, box, sc).reshape(-1, 1, 2)
                p1, st, _ = cv2.calcOpticalFlowPyrLK(
                    pg,
                    cur,
                    p0,
                    None,
                    winSize=(w, w),
                    maxLevel=3,
                    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01),
                )
                if p1 is not None:
                    pred = _from_patch(np.asarray(p1, np.float32).reshape(-1, 2), box, sc)
                    ok = st.reshape(-1).astype(bool) & np.isfinite(pred).all(axis=1)
                    d = np.linalg.norm(pred - det, axis=1) / size
                    wt = self.options.weight * np.exp(-((d / self.options.tolerance) ** 2))
                    wt = np.where(ok, wt, 0.0).astype(np.float32)[:, None]
                    out = (wt * np.where(ok[:, None], pred, det) + (1.0 - wt) * det).astype(np.float32)
        box = _box(frame.shape, out, size)
        self._prev[track_id] = (_patch(frame, box, scale), box, scale, out)
        return out


def _box(shape: tuple[int, ...], lm: NDArray[np.float32], size: float) -> tuple[int, int, int, int]:
    """Frame box (x0, y0, x1, y1) around the landmarks with a margin, clipped to the frame."""
    h, w = shape[:2]
    m = 0.35 * size
    x0 = int(max(0, math.floor(float(lm[:, 0].min()) - m)))
    y0 = int(max(0, math.floor(float(lm[:, 1].min()) - m)))
    x1 = int(min(w, max(x0 + 8, math.ceil(float(lm[:, 0].max()) + m))))
    y1 = int(min(h, max(y0 + 8, math.ceil(float(lm[:, 1].max()) + m))))
    return x0, y0, x1, y1


def _patch(frame: Frame, box: tuple[int, int, int, int], scale: float) -> NDArray[np.uint8]:
    """The box of the frame as a gray patch reduced by `scale` (rounded size)."""
    x0, y0, x1, y1 = box
    gray = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return np.asarray(gray, np.uint8)


def _to_patch(pts: Landmarks, box: tuple[int, int, int, int], scale: float) -> NDArray[np.float32]:
    # Pixel centres: frame x maps to patch (x − x0 + 0.5)·scale − 0.5, as resizing does.
    o = np.array([box[0], box[1]], np.float32)
    return ((pts - o + 0.5) * scale - 0.5).astype(np.float32)


def _from_patch(
    pts: NDArray[np.float32], box: tuple[int, int, int, int], scale: float
) -> NDArray[np.float32]:
    o = np.array([box[0], box[1]], np.float32)
    return ((pts + 0.5) / scale - 0.5 + o).astype(np.float32)
