"""A grey face stays grey: the generator's change loses its colour where the input has none.

Aging darkens, lightens and draws lines; it does not colour a black-and-white photograph. A generator trained
adversarially on colour faces can still paint rosy cheeks or a blue stubble shadow onto a grey face, a few
levels over a tenth of it: too little to move the face's mean chroma, but a person sees it at once. So the
chroma of the change is scaled by how colourful the input crop is: none on a grey crop, all of it on a
normally coloured one, and a share in between for a strongly desaturated grade.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# Rec. 601 luma weights: the grey part of a change is its luma in every channel.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Colourfulness of a crop: the median over its pixels of max(R, G, B) − min(R, G, B), in levels of 0..255.
# A black-and-white photo through JPEG or H.264 reads 0–2; skin of any tone reads 25–60.
GREY_BELOW = 4.0
COLOUR_FROM = 12.0


def colourfulness(crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(N, S, S, 3) uint8 RGB → (N,) median max − min channel spread per crop, in levels."""
    c = np.asarray(crops)
    if len(c) == 0:
        return np.zeros(0, np.float32)
    spread = c.max(axis=-1).astype(np.int16) - c.min(axis=-1).astype(np.int16)
    return np.median(spread.reshape(len(c), -1), axis=1).astype(np.float32)


def chroma_share(crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(N,) share of the change's chroma kept per crop: 0 at `GREY_BELOW` and under, 1 from `COLOUR_FROM`."""
    k = (colourfulness(crops) - GREY_BELOW) / (COLOUR_FROM - GREY_BELOW)
    return np.clip(k, 0.0, 1.0).astype(np.float32)


def keep_grey(crops: NDArray[np.uint8], generated: NDArray[np.float32]) -> NDArray[np.float32]:
    """Generated crops whose change carries chroma only in proportion to the input's own colour.

    Args:
        crops: (N, S, S, 3) uint8 RGB inputs.
        generated: (N, S, S, 3) float32 generator outputs in 0..255.

    Returns:
        (N, S, S, 3) float32: input + luma(change) + k·(change − luma(change)), k = `chroma_share`; the
        generated crops themselves (not a copy) where every k is 1.
    """
    k = chroma_share(crops)
    if np.all(k >= 1.0):
        return generated
    base = crops.astype(np.float32)
    change = generated - base
    grey = (change @ LUMA)[..., None]
    return (base + grey + k[:, None, None, None] * (change - grey)).astype(np.float32)
