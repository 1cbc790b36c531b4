"""Face tracking: stable ids across frames and One Euro smoothing of each track's landmarks.

Detections are associated to tracks by geometry (Hungarian assignment on the distance between face centres,
measured in face sizes), never by the order the detector reports them in, so two faces that swap places in
the detector's list keep their ids.

Scale normalisation: the One Euro filter's speed term is measured in *percent of the face size per second*
(`OneEuroFilter.__call__(..., scale=face_size / 100)`), as MediaPipe's own landmark smoother does with its
object scale. A 400-px face and a 100-px face making the same head movement therefore get the same cutoff,
and `beta` means "Hz of extra cutoff per face-size percent per second", whatever the resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from faceage_video.errors import OptionsError
from faceage_video.types import Landmarks

# Speed units per face size: the tracker passes scale = face_size / 100 so speeds are face-size percent / s.
SPEED_UNITS_PER_FACE = 100.0
# Timestamps that do not increase are treated as this far apart, like the landmarker's 1 ms bump, so a
# repeated pts never divides by zero.
_MIN_DT_S = 1e-3
# Cost given to pairs beyond the gate; any finite value far above every admissible cost works.
_GATED_COST = 1e6


@dataclass(frozen=True)
class OneEuroOptions:
    """Options of `OneEuroFilter` (Casiez, Roussel & Vogel, CHI 2012).

    Attributes:
        min_cutoff: cutoff frequency in Hz when the signal is still. Lower removes more jitter.
        beta: how fast the cutoff rises with speed, in Hz per (unit / s) of the filter's `scale`. Higher lags
            less on fast movement. 0 makes the filter a plain low-pass.
        d_cutoff: cutoff frequency in Hz of the low-pass on the derivative that drives the adaptation.
    """

    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0.0):
                raise OptionsError(f"{name} must be a positive number of Hz, got {v}")
        if not (math.isfinite(self.beta) and self.beta >= 0.0):
            raise OptionsError(f"beta must be >= 0 (0 disables speed adaptation), got {self.beta}")


def _alpha(cutoff: NDArray[np.float64] | float, dt: float) -> NDArray[np.float64]:
    """Smoothing factor of a first-order low-pass with `cutoff` Hz sampled every `dt` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter, vectorised: every element of the array is filtered independently.

    The filter is a low-pass whose cutoff rises with the (low-passed) speed of the signal, so it removes
    jitter when the signal is still and lags little when it moves.
    """

    def __init__(self, options: OneEuroOptions) -> None:
        self.options = options
        self._x: NDArray[np.float64] | None = None
        self._dx: NDArray[np.float64] | None = None
        self._t: float = 0.0

    def __call__(self, x: NDArray[np.floating], t_s: float, scale: float = 1.0) -> NDArray[np.floating]:
        """Filter one sample.

        Args:
            x: the sample, any shape; the shape must stay the same until `reset`.
            t_s: its time in seconds. A time that does not increase counts as 1 ms later.
            scale: size of one speed unit in the units of `x`: the cutoff uses |dx/dt| / scale. Pass the
                object size (or a fixed fraction of it) so the filter behaves the same at every resolution.

        Returns:
            The filtered sample, same shape, and the dtype of `x` when it is floating (float64 otherwise).
            The first sample after construction or `reset` is returned unchanged.

        Raises:
            ValueError: if the shape changed since the previous sample or `scale` is not positive.
        """
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"scale must be a positive number, got {scale}")
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        xf = np.asarray(x, dtype=np.float64)
        if self._x is None or self._dx is None:
            self._x = xf.copy()
            self._dx = np.zeros_like(xf)
            self._t = float(t_s)
            return xf.astype(out_dtype, copy=True)
        if xf.shape != self._x.shape:
            raise ValueError(
                f"sample shape changed from {self._x.shape} to {xf.shape}; call reset() between signals"
            )
        dt = float(t_s) - self._t
        if dt <= 0.0:
            dt = _MIN_DT_S
        self._t += dt
        opts = self.options
        dx = (xf - self._x) / dt
        a_d = _alpha(opts.d_cutoff, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = opts.min_cutoff + opts.beta * np.abs(self._dx) / scale
        a = _alpha(cutoff, dt)
        self._x = a * xf + (1.0 - a) * self._x
        return self._x.astype(out_dtype, copy=True)

    def reset(self) -> None:
        """Forget the history; the next sample passes through unchanged."""
        self._x = None
        self._dx = None
        self._t = 0.0


@dataclass(frozen=True)
class TrackerOptions:
    """Options of `FaceTracker`.

    Attributes:
        max_faces: most tracks alive at once, coasting ones included. When more faces appear, the largest
            unmatched detections get the free slots.
        max_missed: frames a track survives without a detection. A face that reappears within this many
            frames keeps its id; after that its track ends and a new face gets a new id.
        match_threshold: largest distance between a track's and a detection's face centres, as a fraction
            of the face size (mean of the two), for them to be associated.
        one_euro: landmark smoothing; `beta` is in Hz per face-size percent per second (see module doc).
    """

    max_faces: int = 4
    max_missed: int = 5
    match_threshold: float = 0.5
    one_euro: OneEuroOptions = field(default_factory=OneEuroOptions)

    def __post_init__(self) -> None:
        if not 1 <= self.max_faces <= 16:
            raise OptionsError(f"max_faces must be in 1..16, got {self.max_faces}")
        if self.max_missed < 0:
            raise OptionsError(f"max_missed must be >= 0 frames, got {self.max_missed}")
        if not (math.isfinite(self.match_threshold) and self.match_threshold > 0.0):
            raise OptionsError(
                f"match_threshold must be a positive fraction of the face size, got {self.match_threshold}"
            )
        if not isinstance(self.one_euro, OneEuroOptions):
            raise OptionsError(f"one_euro must be OneEuroOptions, got {type(self.one_euro).__name__}")


@dataclass(frozen=True)
class TrackedFace:
    """One tracked face in one frame.

    Attributes:
        track_id: stable id, never reused within a tracker's lifetime.
        landmarks: (478, 2) float32 smoothed landmarks in frame pixels; use these for alignment.
        raw: (478, 2) float32 landmarks as detected (the last detection while coasting).
        age: frames since the track was created (0 on its first frame).
        missed: consecutive frames without a detection; 0 for every face `update` returns.
    """

    track_id: int
    landmarks: Landmarks
    raw: Landmarks
    age: int
    missed: int


@dataclass
class _Track:
    """Mutable per-track state, private to the tracker."""

    track_id: int
    smoother: OneEuroFilter
    raw: Landmarks
    smoothed: Landmarks
    centre: NDArray[np.float64]
    size: float
    age: int = 0
    missed: int = 0

    def view(self) -> TrackedFace:
        return TrackedFace(self.track_id, self.smoothed, self.raw, self.age, self.missed)


def face_centre_and_size(landmarks: Landmarks) -> tuple[NDArray[np.float64], float]:
    """Centre of the landmarks' bounding box and its size sqrt(width * height), at least 1 px."""
    lo = landmarks.min(axis=0).astype(np.float64)
    hi = landmarks.max(axis=0).astype(np.float64)
    wh = hi - lo
    return (lo + hi) / 2.0, max(1.0, float(math.sqrt(max(wh[0], 0.0) * max(wh[1], 0.0))))


class FaceTracker:
    """Gives detections stable ids and smooths each face's landmarks.

    Attributes:
        ended: ids of the tracks that ended during the last `update` (or were dropped by `reset`), so the
            caller can drop per-track state such as the residual smoother's history.
    """

    def __init__(self, options: TrackerOptions) -> None:
        self.options = options
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.ended: list[int] = []

    @property
    def tracks(self) -> list[TrackedFace]:
        """Every live track, coasting ones (missed > 0) included, ordered by id."""
        return [t.view() for t in sorted(self._tracks, key=lambda t: t.track_id)]

    def update(self, detections: list[Landmarks], t_s: float) -> list[TrackedFace]:
        """Associate this frame's detections with the tracks and smooth their landmarks.

        Args:
            detections: (N, 2) landmark arrays in frame pixels, in any order; N is the same for all.
            t_s: the frame's time in seconds.

        Returns:
            The faces detected in this frame, ordered by track id. Detections beyond `max_faces` live tracks
            are dropped (the smallest first).

        Raises:
            ValueError: if a detection is not an (N, 2) array of finite numbers.
        """
        dets = [self._check(d) for d in detections]
        geo = [face_centre_and_size(d) for d in dets]
        self.ended = []

        pairs: list[tuple[int, int]] = []
        if self._tracks and dets:
            cost = np.empty((len(self._tracks), len(dets)), dtype=np.float64)
            for i, tr in enumerate(self._tracks):
                for j, (centre, size) in enumerate(geo):
                    cost[i, j] = float(np.linalg.norm(tr.centre - centre)) / (0.5 * (tr.size + size))
            gated = np.where(cost <= self.options.match_threshold, cost, _GATED_COST)
            rows, cols = linear_sum_assignment(gated)
            pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if gated[r, c] < _GATED_COST]

        matched_tracks = {r for r, _ in pairs}
        matched_dets = {c for _, c in pairs}
        for r, c in pairs:
            tr = self._tracks[r]
            tr.centre, tr.size = geo[c]
            tr.raw = dets[c]
            tr.smoothed = tr.smoother(dets[c], t_s, scale=tr.size / SPEED_UNITS_PER_FACE)
            tr.missed = 0
            tr.age += 1

        survivors: list[_Track] = []
        for i, tr in enumerate(self._tracks):
            if i not in matched_tracks:
                tr.missed += 1
                tr.age += 1
                if tr.missed > self.options.max_missed:
                    self.ended.append(tr.track_id)
                    continue
            survivors.append(tr)
        self._tracks = survivors

        # Largest faces first: when slots run out, the prominent face is the one the user wants aged.
        new = sorted((j for j in range(len(dets)) if j not in matched_dets), key=lambda j: -geo[j][1])
        for j in new:
            if len(self._tracks) >= self.options.max_faces:
                break
            smoother = OneEuroFilter(self.options.one_euro)
            centre, size = geo[j]
            smoothed = smoother(dets[j], t_s, scale=size / SPEED_UNITS_PER_FACE)
            self._tracks.append(_Track(self._next_id, smoother, dets[j], smoothed, centre, size))
            self._next_id += 1

        return [t.view() for t in sorted(self._tracks, key=lambda t: t.track_id) if t.missed == 0]

    def reset(self) -> None:
        """End every track (e.g. on a scene cut); their ids go to `ended`. Ids are still never reused."""
        self.ended = [t.track_id for t in self._tracks]
        self._tracks = []

    @staticmethod
    def _check(landmarks: Landmarks) -> Landmarks:
        arr = np.asarray(landmarks, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
            raise ValueError(f"a detection must be an (N, 2) landmark array, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("a detection holds NaN or infinite landmark coordinates")
        return arr
