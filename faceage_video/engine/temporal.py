"""Temporal stability: a per-track EMA of the generator's change, and a scene-cut detector.

The generator runs on each frame independently, so its change to a face (the residual, generated − original
crop, in aligned crop coordinates) flickers from frame to frame. Alignment already cancels head motion, so
the residual of one track can be averaged over time in crop coordinates without motion compensation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError
from faceage_video.types import Frame

# Gaussian sigma, as a fraction of the crop side, of the blur applied to the frame-to-frame change before it
# is compared with `motion_scale`: blurring averages per-pixel flicker away (what we want to smooth) while a
# real change of expression, which covers a region, survives.
_MOTION_BLUR_FRACTION = 0.02
# Scene-cut detector: frames are reduced to this width before the histogram (cost is negligible even at 4K),
# and the HSV histogram has these bins. Few bins keep a small brightness change inside its bins.
_CUT_WIDTH = 96
_CUT_BINS = (8, 4, 4)


@dataclass(frozen=True)
class TemporalOptions:
    """Options of `ResidualSmoother` and `SceneCutDetector`.

    Attributes:
        strength: EMA weight on the history, in [0, 1). 0 turns smoothing off (the residual passes through
            unchanged); 0.6 averages over about 2.5 frames.
        scene_cut_threshold: HSV-histogram distance in (0, 1] between consecutive frames above which a new
            shot starts and every track's history is dropped.
        motion_scale: frame-to-frame change of the (blurred) residual, in levels of 0..255, at which the
            weight on history falls to 1/e of `strength`. Where the residual changes this much (a new
            expression) the EMA follows at once instead of ghosting. `math.inf` disables this.
    """

    strength: float = 0.6
    scene_cut_threshold: float = 0.5
    motion_scale: float = 24.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strength) and 0.0 <= self.strength < 1.0):
            raise OptionsError(
                f"strength must be in [0, 1) (0 = off; 1 would freeze the first frame), got {self.strength}"
            )
        if not (math.isfinite(self.scene_cut_threshold) and 0.0 < self.scene_cut_threshold <= 1.0):
            raise OptionsError(f"scene_cut_threshold must be in (0, 1], got {self.scene_cut_threshold}")
        if math.isnan(self.motion_scale) or self.motion_scale <= 0.0:
            raise OptionsError(f"motion_scale must be > 0 levels (inf = off), got {self.motion_scale}")


class ResidualSmoother:
    """Per-track, motion-aware exponential moving average of the residual in aligned crop coordinates.

    out_t = w · out_{t−1} + (1 − w) · r_t, per pixel, with w = strength · exp(−(d / motion_scale)²) and d the
    magnitude of the blurred change r_t − out_{t−1}: full smoothing where the residual only flickers, little
    where it really changes.
    """

    def __init__(self, options: TemporalOptions) -> None:
        self.options = options
        self._history: dict[int, NDArray[np.float32]] = {}

    def smooth(self, track_id: int, residual: NDArray[np.float32]) -> NDArray[np.float32]:
        """Smooth one track's residual.

        Args:
            track_id: the tracker's id; each id has its own history.
            residual: (S, S, 3) float32 change, generated − original crop, in levels of 0..255.

        Returns:
            (S, S, 3) float32 smoothed residual. The input itself when strength is 0, and an unchanged copy
            on a track's first frame.

        Raises:
            ValueError: if the residual's shape differs from the track's history.
        """
        strength = self.options.strength
        if strength == 0.0:
            return residual
        r = np.asarray(residual, dtype=np.float32)
        prev = self._history.get(track_id)
        if prev is None:
            self._history[track_id] = r.copy()
            return r.copy()
        if prev.shape != r.shape:
            raise ValueError(
                f"track {track_id}: residual shape changed from {prev.shape} to {r.shape}; reset the track"
            )
        weight: NDArray[np.float32] | float = strength
        if math.isfinite(self.options.motion_scale):
            sigma = max(0.5, _MOTION_BLUR_FRACTION * r.shape[0])
            delta = cv2.GaussianBlur(r - prev, (0, 0), sigma)
            d2 = np.sum(delta * delta, axis=-1, keepdims=True) if delta.ndim == 3 else (delta * delta)
            weight = (strength * np.exp(-d2 / (self.options.motion_scale**2))).astype(np.float32)
        out = (weight * prev + (1.0 - weight) * r).astype(np.float32)
        self._history[track_id] = out
        return out.copy()

    def reset(self, track_id: int | None = None) -> None:
        """Forget one track's history, or every track's when `track_id` is None. Unknown ids are ignored."""
        if track_id is None:
            self._history.clear()
        else:
            self._history.pop(track_id, None)

    def __contains__(self, track_id: object) -> bool:
        """Whether a track has history (its next residual will be smoothed)."""
        return track_id in self._history


class SceneCutDetector:
    """Flags the first frame of a new shot from the change of a small HSV histogram.

    The distance is the total variation 0.5 · Σ|p − q| between the normalised 8×4×4 HSV histograms of two
    consecutive frames, downscaled to 96 px wide: 0 for the same picture, 1 for pictures with no colour in
    common. A moving camera or a talking head changes few pixels' bins; a cut changes most.
    """

    def __init__(self, threshold: float) -> None:
        """Args:
        threshold: distance in (0, 1] above which a frame starts a new shot.

        Raises:
            OptionsError: if the threshold is outside (0, 1].
        """
        if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise OptionsError(f"scene-cut threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._prev: NDArray[np.float32] | None = None
        self.last_distance = 0.0

    def __call__(self, frame: Frame) -> bool:
        """Whether `frame` starts a new shot relative to the previous frame given (False for the first).

        Args:
            frame: (H, W, 3) uint8 RGB.

        Returns:
            True on a cut. The distance is kept in `last_distance`.
        """
        hist = self.histogram(frame)
        prev, self._prev = self._prev, hist
        if prev is None:
            self.last_distance = 0.0
            return False
        self.last_distance = 0.5 * float(np.abs(hist - prev).sum())
        return self.last_distance > self.threshold

    def reset(self) -> None:
        """Forget the previous frame, e.g. after a seek."""
        self._prev = None
        self.last_distance = 0.0

    @staticmethod
    def histogram(frame: Frame) -> NDArray[np.float32]:
        """Normalised (sum 1) 8×4×4 HSV histogram of the frame reduced to 96 px wide."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
        h, w = frame.shape[:2]
        if w > _CUT_WIDTH:
            small = cv2.resize(
                frame, (_CUT_WIDTH, max(1, round(h * _CUT_WIDTH / w))), interpolation=cv2.INTER_AREA
            )
        else:
            small = frame
        hsv = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(_CUT_BINS), [0, 180, 0, 256, 0, 256])
        total = float(hist.sum())
        return (hist / max(total, 1.0)).astype(np.float32).ravel()
