"""Domain types shared by every stage.

Shapes are stated where the array crosses a stage boundary.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]  # (H, W, 3) RGB
Crop = NDArray[np.uint8]  # (S, S, 3) RGB, aligned to the template
Mask = NDArray[np.float32]  # (H, W) in [0, 1]
Landmarks = NDArray[np.float32]  # (478, 2) pixel x, y in the frame
Points5 = NDArray[
    np.float64
]  # (5, 2) x, y: eye centres (image left, right), nose tip, mouth corners (left, right)
Affine = NDArray[np.float64]  # (2, 3) maps frame pixels to crop pixels

Direction = Literal["older", "younger"]
DIRECTIONS: tuple[Direction, ...] = ("older", "younger")

MaskKind = Literal["face", "box"]
MASK_KINDS: tuple[MaskKind, ...] = ("face", "box")

FaceSelection = Literal["all", "largest"]
