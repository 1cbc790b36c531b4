"""Temporal stability on known motion: a still photo moved along a known path, then mapped back exactly.

A clip is made from one still photo: frame t shows the photo through a similarity A_t (drift, slow rotation,
zoom along smooth sine paths), plus sensor noise, then H.264. The tool runs on that clip like on any other.
Both the input and the output frames are then mapped back into the photo's plane with the exact inverse
A_t⁻¹, where the face does not move at all. With D_t = out_t − in_t there (the tool's change):

- `added_change`: mean |D_t − D_{t−1}| inside the face, levels of 0..255 per frame. Zero for any change that
  is fixed to the skin, however strong; noise, jitter or flicker of the change raise it. It cannot be
  cancelled by a tool that also denoises.
- `change_size`: mean |D_t|, how strong the change is; `added_pct` = 100 · added / size.
- `in_change`, `out_change`, `out_minus_in`: mean |x_t − x_{t−1}| of input and output frames and their
  difference, the definition AGING.md's reference numbers use (input 0.91, bundled model +0.84).

Sizes and paths are `MotionOptions`; every draw is seeded, so a clip is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.types import Frame

Affine = NDArray[np.float64]  # (2, 3) photo pixel → frame pixel


@dataclass(frozen=True)
class MotionOptions:
    """How a still photo is moved into a clip.

    Attributes:
        frames: frames per clip.
        size: (width, height) of the clip's frames.
        scale: base scale of the photo in the frame.
        drift_px: amplitude of the drift in x and y, frame pixels.
        rotate_deg: amplitude of the rotation.
        zoom: amplitude of the zoom, as a fraction of the base scale.
        noise: standard deviation of the Gaussian sensor noise, levels of 0..255.
        crf: H.264 quality of the input clip (x264 scale).
        fps: frame rate of the clip.
    """

    frames: int = 30
    size: tuple[int, int] = (320, 320)
    scale: float = 1.2
    drift_px: float = 40.0
    rotate_deg: float = 6.0
    zoom: float = 0.08
    noise: float = 1.5
    crf: int = 18
    fps: int = 25

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"a clip needs at least 2 frames to measure change, got {self.frames}")
        if min(self.size) < 32 or any(s % 2 for s in self.size):
            raise ValueError(f"size must be even and at least 32 px a side (H.264 4:2:0), got {self.size}")
        if self.scale <= 0 or not 0 <= self.zoom < 0.5:
            raise ValueError(f"need scale > 0 and zoom in [0, 0.5), got {self.scale}, {self.zoom}")
        if self.drift_px < 0 or self.rotate_deg < 0 or self.noise < 0:
            raise ValueError("drift_px, rotate_deg and noise must be >= 0")
        if not 0 <= self.crf <= 51 or self.fps < 1:
            raise ValueError(f"need crf in 0..51 and fps >= 1, got {self.crf}, {self.fps}")


def motion_path(photo_size: tuple[int, int], options: MotionOptions, seed: int) -> list[Affine]:
    """The known similarity of every frame, photo pixel → frame pixel.

    Each of drift x, drift y, rotation and zoom follows its own sine over the clip, with a seeded phase and a
    period between one and two clip lengths, so the motion is smooth and never repeats exactly.

    Args:
        photo_size: (width, height) of the photo.
        options: the path's amplitudes and the clip size.
        seed: fixes the phases and periods.

    Returns:
        `options.frames` (2, 3) float64 affines.
    """
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * math.pi, 4)
    periods = rng.uniform(1.0, 2.0, 4) * options.frames
    pw, ph = photo_size
    fw, fh = options.size
    out: list[Affine] = []
    for t in range(options.frames):
        s = [math.sin(2 * math.pi * t / periods[k] + phases[k]) for k in range(4)]
        theta = math.radians(options.rotate_deg * s[2])
        scale = options.scale * (1.0 + options.zoom * s[3])
        c, sn = scale * math.cos(theta), scale * math.sin(theta)
        rot = np.array([[c, -sn], [sn, c]])
        centre_photo = np.array([(pw - 1) / 2, (ph - 1) / 2])
        centre_frame = np.array(
            [(fw - 1) / 2 + options.drift_px * s[0], (fh - 1) / 2 + options.drift_px * s[1]]
        )
        out.append(np.hstack([rot, (centre_frame - rot @ centre_photo)[:, None]]))
    return out


def render_clip(photo: Frame, path: Sequence[Affine], options: MotionOptions, seed: int) -> list[Frame]:
    """Frames of the photo moved along `path`, with seeded sensor noise, before any encoding.

    The photo's edge is replicated beyond it (not mirrored, so no second face appears).

    Returns:
        (H, W, 3) uint8 RGB frames, one per affine.
    """
    rng = np.random.default_rng(seed + 1_000_003)
    frames: list[Frame] = []
    for a in path:
        f = np.asarray(
            cv2.warpAffine(photo, a, options.size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        )
        noisy = f.astype(np.float32) + rng.normal(0.0, options.noise, f.shape).astype(np.float32)
        frames.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return frames


def encode_h264(frames: Sequence[Frame], path: Path, options: MotionOptions) -> Path:
    """Write frames as H.264 (libx264, yuv420p, CRF `options.crf`, pts 0, 1, 2… at 1/fps) with PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs: Any = out.add_stream(
            "libx264", rate=options.fps, options={"crf": str(options.crf), "preset": "medium"}
        )
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, options.fps)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return path


def map_back(
    frames: Sequence[Frame], path: Sequence[Affine], photo_size: tuple[int, int]
) -> NDArray[np.float32]:
    """Frames resampled into the photo's plane through the exact inverse of their known similarity.

    Returns:
        (T, H, W, 3) float32, H × W the photo's size.
    """
    out = np.empty((len(frames), photo_size[1], photo_size[0], 3), np.float32)
    for t, (f, a) in enumerate(zip(frames, path, strict=True)):
        # WARP_INVERSE_MAP: sample the frame at A_t(photo pixel), i.e. apply A_t⁻¹ to the frame.
        out[t] = cv2.warpAffine(
            f.astype(np.float32), a, photo_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
    return out


def visible(
    path: Sequence[Affine], photo_size: tuple[int, int], frame_size: tuple[int, int]
) -> NDArray[np.bool_]:
    """(H, W) bool: photo pixels that every frame of the path shows (two pixels in from the frame edge)."""
    ok = np.ones((photo_size[1], photo_size[0]), bool)
    ones = np.asarray(
        cv2.erode(
            np.ones((frame_size[1], frame_size[0]), np.uint8),
            np.ones((5, 5), np.uint8),
            borderType=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    )
    for a in path:
        seen = cv2.warpAffine(
            ones, a, photo_size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0
        )
        ok &= seen.astype(bool)
    return ok


def temporal_change(
    inputs: NDArray[np.float32], outputs: NDArray[np.float32], mask: NDArray[np.bool_]
) -> dict[str, float]:
    """Frame-to-frame change inside the face, in a plane where the face does not move.

    Args:
        inputs: (T, H, W, 3) input frames mapped back (`map_back`), T >= 2.
        outputs: (T, H, W, 3) output frames mapped back the same way.
        mask: (H, W) bool, the face (and only pixels every frame shows).

    Returns:
        `added_change`, `change_size`, `added_pct`, `in_change`, `out_change`, `out_minus_in` (see the module
        docstring), levels of 0..255 per frame; `added_pct` is None for a change of size 0.

    Raises:
        ValueError: shapes differ, fewer than 2 frames, or an empty mask.
    """
    if inputs.shape != outputs.shape or inputs.ndim != 4 or inputs.shape[0] < 2:
        raise ValueError(f"need two (T>=2, H, W, 3) stacks of one shape, got {inputs.shape}, {outputs.shape}")
    if mask.shape != inputs.shape[1:3] or not mask.any():
        raise ValueError(f"mask {mask.shape} must be (H, W) of the frames and select some pixel")
    d = outputs[:, mask] - inputs[:, mask]  # (T, P, 3)
    added = float(np.abs(np.diff(d, axis=0)).mean())
    size = float(np.abs(d).mean())
    c_in = float(np.abs(np.diff(inputs[:, mask], axis=0)).mean())
    c_out = float(np.abs(np.diff(outputs[:, mask], axis=0)).mean())
    return {
        "added_change": round(added, 4),
        "change_size": round(size, 4),
        "added_pct": round(100.0 * added / size, 2) if size > 0 else None,  # type: ignore[dict-item]
        "in_change": round(c_in, 4),
        "out_change": round(c_out, 4),
        "out_minus_in": round(c_out - c_in, 4),
    }


def added_change_by_flow(
    frames_in: Sequence[Frame], frames_out: Sequence[Frame], masks: Sequence[NDArray[np.bool_] | None]
) -> dict[str, float | None]:
    """The change a tool adds between frames of footage whose motion is unknown, compensated by the input's flow.

    With D_t = out_t − in_t, the mean |D_t − warp(D_{t−1})| inside the face, where `warp` follows the dense
    flow of the *input* (DIS, as `faceage_video.metrics`). On known motion use `temporal_change` instead:
    flow is imprecise on skin, so this reads high wherever D has detail (a fixed wrinkle moved by a wrong
    flow counts as change). It is an upper bound, comparable between tools on the same footage.

    Args:
        frames_in: (H, W, 3) uint8 input frames.
        frames_out: the output frames, pixel for pixel.
        masks: per frame, the (H, W) bool face region, or None where no face was found (pairs skipped).

    Returns:
        `added_change_flow` (levels per frame) and `pairs` (frame pairs measured); None without a pair.
    """
    from faceage_video.metrics import input_flow

    total, pairs = 0.0, 0
    for t in range(1, len(frames_in)):
        mask = masks[t]
        if mask is None or masks[t - 1] is None or not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        pad = 16
        h, w = mask.shape
        y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
        x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
        roi = (slice(y0, y1), slice(x0, x1))
        flow = input_flow(frames_in[t - 1][roi], frames_in[t][roi])
        gy, gx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
        d_prev = frames_out[t - 1][roi].astype(np.float32) - frames_in[t - 1][roi].astype(np.float32)
        d_cur = frames_out[t][roi].astype(np.float32) - frames_in[t][roi].astype(np.float32)
        warped = cv2.remap(
            d_prev, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        total += float(np.abs(d_cur - warped)[mask[roi]].mean())
        pairs += 1
    return {"added_change_flow": round(total / pairs, 4) if pairs else None, "pairs": pairs}
