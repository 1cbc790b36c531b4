"""Quality metrics: temporal flicker around a face and PSNR.

Flicker is the mean absolute difference between frame t and frame t−1 warped onto t by optical flow, inside
the face box. The flow comes from the *input* frames and is applied to both the input and the output, so
motion is compensated identically in both and the ratio output/input isolates the flicker the processing
added: 1.0 means none, 2.0 means the face changes twice as much from frame to frame as in the source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.types import Frame

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, x1/y1 exclusive

# Flow is computed on the face box grown by this fraction of its size on each side (at least a few pixels),
# not on the whole frame: the motion of the face is local, and a 4K frame would cost 50× more.
_FLOW_MARGIN = 0.25
_FLOW_MARGIN_MIN_PX = 16


def _clip_box(box: Box, shape: tuple[int, ...]) -> Box:
    h, w = shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def input_flow(prev: Frame, cur: Frame) -> NDArray[np.float32]:
    """Dense backward flow of `cur` into `prev` (DIS, medium preset) on grey levels.

    Returns:
        (H, W, 2) float32: pixel (x, y) of `cur` shows what `prev` showed at (x, y) + flow[y, x].
    """
    dis = cv2.DISOpticalFlow.create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    g_prev = cv2.cvtColor(np.ascontiguousarray(prev), cv2.COLOR_RGB2GRAY)
    g_cur = cv2.cvtColor(np.ascontiguousarray(cur), cv2.COLOR_RGB2GRAY)
    # An output buffer, not an initial guess: DIS ignores its content unless setUseInitialFlow(True).
    out = np.zeros((*g_cur.shape[:2], 2), dtype=np.float32)
    return np.asarray(dis.calc(g_cur, g_prev, out), dtype=np.float32)


def warped_temporal_difference(prev: Frame, cur: Frame, flow: NDArray[np.float32], box: Box) -> float:
    """Mean absolute difference between `cur` and `prev` warped onto it, inside a box.

    Args:
        prev: (H, W, 3) uint8 frame t−1.
        cur: (H, W, 3) uint8 frame t.
        flow: (H, W, 2) backward flow as from `input_flow(prev_in, cur_in)`: `prev` is sampled at
            (x, y) + flow[y, x] for pixel (x, y) of `cur`.
        box: (x0, y0, x1, y1) in pixels; clipped to the frame.

    Returns:
        Mean |cur − warp(prev)| over the box's pixels whose sample lies inside `prev`, and over channels, in
        levels of 0..255; 0.0 when no pixel qualifies.

    Raises:
        ValueError: if the frames and the flow do not share one size.
    """
    if prev.shape != cur.shape or flow.shape != (*cur.shape[:2], 2):
        raise ValueError(f"frames {prev.shape}, {cur.shape} and flow {flow.shape} must share (H, W)")
    x0, y0, x1, y1 = _clip_box(box, cur.shape)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    h, w = cur.shape[:2]
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    fx = gx + flow[y0:y1, x0:x1, 0]
    fy = gy + flow[y0:y1, x0:x1, 1]
    warped = cv2.remap(prev, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    # Samples from beyond the frame edge have no true value: leave them out rather than count a guess.
    valid = (fx >= 0) & (fx <= w - 1) & (fy >= 0) & (fy <= h - 1)
    if not valid.any():
        return 0.0
    diff = np.abs(cur[y0:y1, x0:x1].astype(np.float32) - warped).mean(axis=-1)
    return float(diff[valid].mean())


def flicker(
    frames_in: Sequence[Frame], frames_out: Sequence[Frame], boxes: Sequence[Box]
) -> tuple[float, float, float]:
    """Temporal flicker of the output against the input around the face.

    Args:
        frames_in: the source frames, (H, W, 3) uint8, at least two.
        frames_out: the processed frames, same count and size.
        boxes: the face box (x0, y0, x1, y1) of each frame; the pair t−1 → t uses `boxes[t]`.

    Returns:
        (input_flicker, output_flicker, ratio): mean warped differences over all consecutive pairs, in
        levels of 0..255, and output/input (1.0 when both are 0, inf when only the input is 0).

    Raises:
        ValueError: on fewer than two frames or mismatched lengths or sizes.
    """
    n = len(frames_in)
    if n < 2:
        raise ValueError(f"flicker needs at least two frames, got {n}")
    if len(frames_out) != n or len(boxes) != n:
        raise ValueError(f"got {n} input frames, {len(frames_out)} output frames and {len(boxes)} boxes")
    total_in = total_out = 0.0
    for t in range(1, n):
        a_in, b_in, a_out, b_out = frames_in[t - 1], frames_in[t], frames_out[t - 1], frames_out[t]
        if not (a_in.shape == b_in.shape == a_out.shape == b_out.shape):
            raise ValueError(f"frames {t - 1} and {t} differ in size between input and output")
        x0, y0, x1, y1 = _clip_box(boxes[t], b_in.shape)
        margin = max(_FLOW_MARGIN_MIN_PX, int(_FLOW_MARGIN * max(x1 - x0, y1 - y0)))
        rx0, ry0, rx1, ry1 = _clip_box((x0 - margin, y0 - margin, x1 + margin, y1 + margin), b_in.shape)
        if rx1 <= rx0 or ry1 <= ry0:
            continue
        region = (slice(ry0, ry1), slice(rx0, rx1))
        flow = input_flow(a_in[region], b_in[region])
        local: Box = (x0 - rx0, y0 - ry0, x1 - rx0, y1 - ry0)
        total_in += warped_temporal_difference(a_in[region], b_in[region], flow, local)
        total_out += warped_temporal_difference(a_out[region], b_out[region], flow, local)
    f_in, f_out = total_in / (n - 1), total_out / (n - 1)
    if f_in > 0.0:
        return f_in, f_out, f_out / f_in
    return f_in, f_out, 1.0 if f_out == 0.0 else math.inf


def psnr(
    a: NDArray[np.generic], b: NDArray[np.generic], mask: NDArray[np.bool_] | None = None, peak: float = 255.0
) -> float:
    """Peak signal-to-noise ratio in dB.

    Args:
        a: (H, W) or (H, W, C) image.
        b: same shape.
        mask: optional (H, W) boolean; only these pixels (all channels) count.
        peak: the largest possible value (255 for uint8).

    Returns:
        PSNR in dB; inf when the images are equal where counted.

    Raises:
        ValueError: on mismatched shapes or an empty mask.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        if mask.shape != a.shape[:2]:
            raise ValueError(f"mask {mask.shape} must match the image's (H, W) {a.shape[:2]}")
        if not mask.any():
            raise ValueError("mask selects no pixel")
        diff = diff[mask.astype(bool)]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)
