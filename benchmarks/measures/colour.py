"""Colour fidelity in CIELAB inside the inner face: global cast, local blotches, black-and-white tint.

For one face, with Δa*, Δb* the per-pixel change of the output against the input (CIE 1976 L*a*b*, D65):
- **cast**: |mean(Δa*, Δb*)| over the inner face, in ΔE units;
- **blotches**: the 95th percentile of |(Δa*, Δb*) − mean| after a Gaussian blur of σ = `BLUR_SIGMA` px of
  the canonical frame (so sensor noise and JPEG grain do not count);
- **black-and-white**: an input whose mean chroma C* = |(a*, b*)| is under `BW_CHROMA` is black-and-white,
  and its output is tinted when its mean chroma reaches `BW_CHROMA + BW_TINT`, or when a patch of it does:
  the `BW_PATCH_PERCENTILE`th percentile of its chroma, blurred like the blotches, reaches `BW_CHROMA`. Pink
  cheeks and a blue chin painted on a grey face cover too little of it to move the mean, but a person sees
  them at once.

The gates (`CAST_GATE`, `BLOTCH_GATE`, no tinted face) apply to the mean over faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.measures.regions import Canonical

BLUR_SIGMA = 2.0
BLOTCH_PERCENTILE = 95.0
BW_CHROMA = 3.0
BW_TINT = 1.5
BW_PATCH_PERCENTILE = 95.0
CAST_GATE = 1.5
BLOTCH_GATE = 3.0

Lab = NDArray[np.float32]  # (H, W, 3) L* 0..100, a*, b* about −128..127


def to_lab(image: NDArray[np.uint8]) -> Lab:
    """CIELAB of an sRGB uint8 image, (H, W, 3) float32 (OpenCV's float path: true L*a*b*, not scaled)."""
    return np.asarray(cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB), np.float32)


def greyscale(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A black-and-white copy of an RGB image: its Rec. 601 luma in all three channels."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


@dataclass(frozen=True)
class ColourChange:
    """The colour change of one face.

    Attributes:
        cast: |mean(Δa*, Δb*)| over the inner face.
        blotches: 95th percentile of the blurred local chroma change once the mean is removed.
        chroma_in: mean C* of the input face.
        chroma_out: mean C* of the output face.
        chroma_out_patch: the BW_PATCH_PERCENTILE-th percentile of the output's blurred C*.
        bw: the input is black-and-white (chroma_in < BW_CHROMA).
        tinted: a black-and-white input whose output reaches BW_CHROMA + BW_TINT on average, or BW_CHROMA in
            its most colourful patch (chroma_out_patch).
    """

    cast: float
    blotches: float
    chroma_in: float
    chroma_out: float
    chroma_out_patch: float
    bw: bool
    tinted: bool


def colour_change(inp: Canonical, out: Canonical, mask: NDArray[np.bool_]) -> ColourChange:
    """Colour change of one face, both faces in the same frame (canonical or not).

    Args:
        inp: (H, W, 3) uint8 RGB input face.
        out: (H, W, 3) uint8 RGB output face, pixel for pixel with `inp`.
        mask: (H, W) bool, the inner face.

    Returns:
        The face's `ColourChange`.

    Raises:
        ValueError: shapes differ or the mask selects nothing.
    """
    if inp.shape != out.shape or mask.shape != inp.shape[:2]:
        raise ValueError(f"input {inp.shape}, output {out.shape} and mask {mask.shape} must share (H, W)")
    if not mask.any():
        raise ValueError("the face mask selects no pixel: the face is outside the image")
    lab_in, lab_out = to_lab(inp), to_lab(out)
    delta = lab_out[..., 1:] - lab_in[..., 1:]  # (H, W, 2) Δa*, Δb*
    mean = delta[mask].mean(axis=0)
    # Blur the mean-free change inside the mask only: normalised convolution, so the background outside the
    # face (which the tool does not touch) does not dilute blotches at the face's edge.
    w = mask.astype(np.float32)
    wb = cv2.GaussianBlur(w, (0, 0), BLUR_SIGMA)
    local = np.empty_like(delta)
    for k in range(2):
        local[..., k] = cv2.GaussianBlur((delta[..., k] - mean[k]) * w, (0, 0), BLUR_SIGMA) / np.maximum(
            wb, 1e-6
        )
    blotches = float(np.percentile(np.hypot(local[..., 0], local[..., 1])[mask], BLOTCH_PERCENTILE))
    c_in = float(np.hypot(lab_in[..., 1], lab_in[..., 2])[mask].mean())
    chroma_out = np.hypot(lab_out[..., 1], lab_out[..., 2])
    c_out = float(chroma_out[mask].mean())
    patch = cv2.GaussianBlur(chroma_out * w, (0, 0), BLUR_SIGMA) / np.maximum(wb, 1e-6)
    c_patch = float(np.percentile(patch[mask], BW_PATCH_PERCENTILE))
    bw = c_in < BW_CHROMA
    return ColourChange(
        cast=float(np.hypot(*mean)),
        blotches=blotches,
        chroma_in=c_in,
        chroma_out=c_out,
        chroma_out_patch=c_patch,
        bw=bw,
        tinted=bool(bw and (c_out >= BW_CHROMA + BW_TINT or c_patch >= BW_CHROMA)),
    )


def summarize_colour(changes: Sequence[ColourChange]) -> dict[str, Any]:
    """Mean and 90th percentile over faces, and the black-and-white count.

    Returns:
        `faces`, `cast_mean`, `cast_p90`, `blotches_mean`, `blotches_p90`, `bw_faces`, `bw_tinted`,
        `bw_chroma_out_max` and `bw_chroma_patch_max` (None without b/w faces); every statistic None
        without faces.
    """
    if not changes:
        return {"faces": 0, "cast_mean": None, "cast_p90": None, "blotches_mean": None, "blotches_p90": None,
                "bw_faces": 0, "bw_tinted": 0, "bw_chroma_out_max": None, "bw_chroma_patch_max": None}  # fmt: skip
    cast = np.array([c.cast for c in changes])
    blot = np.array([c.blotches for c in changes])
    bw = [c for c in changes if c.bw]
    return {
        "faces": len(changes),
        "cast_mean": round(float(cast.mean()), 3),
        "cast_p90": round(float(np.percentile(cast, 90)), 3),
        "blotches_mean": round(float(blot.mean()), 3),
        "blotches_p90": round(float(np.percentile(blot, 90)), 3),
        "bw_faces": len(bw),
        "bw_tinted": sum(c.tinted for c in bw),
        "bw_chroma_out_max": round(max(c.chroma_out for c in bw), 3) if bw else None,
        "bw_chroma_patch_max": round(max(c.chroma_out_patch for c in bw), 3) if bw else None,
    }


def as_dict(change: ColourChange) -> dict[str, Any]:
    """A JSON-able dict of one face's change, rounded."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(change).items()}
