"""Classic, training-free aging transforms: the teacher for warm-starting G and F, and the baseline to beat.

Shape/colour: Burt & Perrett (1995) add the difference of the mean aligned old and young faces.
Texture: Tiddeman, Burt & Perrett (2001) rescale each band-pass layer so its local amplitude matches the
target age group's mean local amplitude (the average of the amplitude envelopes, not the envelope of the
average face, which would have lost every wrinkle).

All arrays are float32 RGB in [0, 1], (N, S, S, 3) or (S, S, 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float32]

# Gaussian scales (pixels at 128 px) separating the band-pass layers: fine skin texture to folds.
BAND_SIGMAS: tuple[float, ...] = (0.8, 1.6, 3.2)
ENVELOPE_SIGMA = 4.0


def _blur(x: Array, sigma: float) -> Array:
    return np.asarray(cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101), np.float32)


def bands(img: Array) -> tuple[list[Array], Array]:
    """Band-pass decomposition (difference of Gaussians, full resolution): img == sum(bands) + base."""
    out: list[Array] = []
    prev = img
    for s in BAND_SIGMAS:
        low = _blur(img, s)
        out.append(prev - low)
        prev = low
    return out, prev


def envelopes(img: Array) -> list[Array]:
    """Local amplitude of each band of the luminance, (S, S) each."""
    lum = img.mean(axis=-1) if img.ndim == 3 else img
    bs, _ = bands(lum.astype(np.float32))
    return [_blur(np.abs(b), ENVELOPE_SIGMA) for b in bs]


@dataclass(frozen=True)
class AgePrototypes:
    """Mean faces and mean band envelopes of the young and old domains, at one crop size."""

    young_mean: Array  # (S, S, 3)
    old_mean: Array  # (S, S, 3)
    young_env: Array  # (B, S, S)
    old_env: Array  # (B, S, S)

    @classmethod
    def from_crops(cls, young: NDArray[np.uint8], old: NDArray[np.uint8]) -> AgePrototypes:
        """Build the prototypes from uint8 (N, S, S, 3) crops of each domain."""

        def stats(crops: NDArray[np.uint8]) -> tuple[Array, Array]:
            mean = np.zeros(crops.shape[1:], np.float64)
            env = np.zeros((len(BAND_SIGMAS), *crops.shape[1:3]), np.float64)
            for c in crops:
                f = c.astype(np.float32) / 255.0
                mean += f
                env += np.stack(envelopes(f))
            n = max(len(crops), 1)
            return (mean / n).astype(np.float32), (env / n).astype(np.float32)

        ym, ye = stats(young)
        om, oe = stats(old)
        return cls(ym, om, ye, oe)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            young_mean=self.young_mean,
            old_mean=self.old_mean,
            young_env=self.young_env,
            old_env=self.old_env,
        )

    @classmethod
    def load(cls, path: str | Path) -> AgePrototypes:
        d = np.load(path)
        return cls(d["young_mean"], d["old_mean"], d["young_env"], d["old_env"])


@dataclass(frozen=True)
class TeacherOptions:
    """Strengths of the classic transform.

    Attributes:
        shape: weight of the mean-face difference (1.0 = Burt & Perrett).
        texture: exponent of the band-amplitude ratio (1.0 = full Tiddeman texture transfer, 0 = none).
        max_gain: cap of the per-pixel band gain, so flat regions are not blown into noise.
        min_gain: floor of the gain, so de-aging smooths skin without erasing the eyes and mouth.
    """

    shape: float = 1.0
    texture: float = 1.0
    max_gain: float = 3.0
    min_gain: float = 0.35


def age_transform(
    img: Array, protos: AgePrototypes, direction: str, options: TeacherOptions = TeacherOptions()
) -> Array:
    """Move one face crop towards the other age group.

    Args:
        img: (S, S, 3) float32 RGB in [0, 1], aligned with the template the prototypes were built with.
        protos: the age prototypes.
        direction: "older" (young → old) or "younger".
        options: strengths.

    Returns:
        (S, S, 3) float32 in [0, 1].
    """
    if direction == "older":
        src_mean, dst_mean, dst_env = protos.young_mean, protos.old_mean, protos.old_env
    elif direction == "younger":
        src_mean, dst_mean, dst_env = protos.old_mean, protos.young_mean, protos.young_env
    else:
        raise ValueError(f"direction must be 'older' or 'younger', got {direction!r}")
    bs, base = bands(img)
    own_env = envelopes(img)
    out = base + options.shape * (dst_mean - src_mean)
    for k, b in enumerate(bs):
        gain = (dst_env[k] + 1e-3) / (own_env[k] + 1e-3)
        gain = np.clip(gain**options.texture, options.min_gain, options.max_gain)
        out = out + b * gain[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def age_transform_batch(
    crops: NDArray[np.uint8],
    protos: AgePrototypes,
    direction: str,
    options: TeacherOptions = TeacherOptions(),
) -> NDArray[np.uint8]:
    """`age_transform` over a uint8 batch (N, S, S, 3), returning uint8."""
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        f = age_transform(c.astype(np.float32) / 255.0, protos, direction, options)
        out[i] = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out
