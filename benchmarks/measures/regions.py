"""The face region: a canonical face frame from MediaPipe landmarks, and the boxes measured inside it.

A face is resampled by one similarity (`FaceFrame`) onto a canonical frame where the iris centres lie on a
horizontal line `IOD` px apart. Every region is then a fixed box in that frame, so the measures mean the same
thing on a 200 px UTKFace chip and on a 4K face, and a tilted head is measured upright. The boxes, in units of
the inter-ocular distance d from the mid-point of the eyes (x right, y down):

| region | x | y | what it holds |
|---|---|---|---|
| inner face | −0.85…0.85 | −0.80…1.15 | forehead to chin top, cheek to cheek; no hair, ears or background |
| forehead | −0.60…0.60 | −0.80…−0.40 | forehead lines |
| eyes | −0.85…0.85 | −0.22…0.18 | both eyes, crow's feet, the bridge |
| cheeks | ±0.30…±0.80 | 0.22…0.70 | both cheeks, under-eye bags (nose left out) |
| mouth | −0.55…0.55 | 0.62…1.10 | upper lip, lips, corners: the moustache smear |

The template puts the mouth corners 0.86 d below the eye line and 0.81 d apart, the nose tip 0.45 d below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.types import Frame, Landmarks

Region = Literal["inner", "forehead", "eyes", "cheeks", "mouth"]
PARTS: tuple[Region, ...] = ("forehead", "eyes", "cheeks", "mouth")

# Iris centres of the 478 MediaPipe landmarks: 468 (image-left eye), 473 (image-right eye).
LEFT_IRIS, RIGHT_IRIS = 468, 473
# Canonical frame: inter-ocular distance in px, and where the mid-point of the eyes lands. 80 px is about a
# UTKFace chip's own (median 78 px on 20 validation chips), so those are measured near native resolution.
IOD = 80.0
SIZE = 224
EYES_AT = (112.0, 100.0)

# Boxes (x0, x1, y0, y1) in units of d, as in the module docstring; cheeks is two boxes mirrored in x.
_BOXES: dict[Region, tuple[tuple[float, float, float, float], ...]] = {
    "inner": ((-0.85, 0.85, -0.80, 1.15),),
    "forehead": ((-0.60, 0.60, -0.80, -0.40),),
    "eyes": ((-0.85, 0.85, -0.22, 0.18),),
    "cheeks": ((-0.80, -0.30, 0.22, 0.70), (0.30, 0.80, 0.22, 0.70)),
    "mouth": ((-0.55, 0.55, 0.62, 1.10),),
}

Canonical = NDArray[np.uint8]  # (SIZE, SIZE, 3) RGB face in the canonical frame
Masks = dict[Region, NDArray[np.bool_]]  # region -> (SIZE, SIZE) bool, only pixels the image covers


@dataclass(frozen=True)
class FaceFrame:
    """Where one face is: the similarity from image pixels to the canonical frame.

    Attributes:
        matrix: (2, 3) float64 affine, image pixel → canonical pixel (rotation, uniform scale, shift).
    """

    matrix: tuple[tuple[float, float, float], tuple[float, float, float]]

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (2, 3) or not np.isfinite(m).all():
            raise ValueError(f"a face frame is a finite (2, 3) affine, got {m.shape}")
        if abs(np.linalg.det(m[:, :2])) < 1e-9:
            raise ValueError("a face frame must not collapse the image (zero scale)")

    @property
    def m(self) -> NDArray[np.float64]:
        """(2, 3) float64 image → canonical."""
        return np.asarray(self.matrix, dtype=np.float64)

    @property
    def iod_px(self) -> float:
        """Inter-ocular distance of the face in image pixels."""
        return IOD / float(np.sqrt(abs(np.linalg.det(self.m[:, :2]))))

    @classmethod
    def from_eyes(cls, left: NDArray[np.floating], right: NDArray[np.floating]) -> FaceFrame:
        """The frame that puts two eye centres (image-left, image-right), in image pixels, on the canonical ones.

        Raises:
            ValueError: the eyes coincide.
        """
        left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
        v = right - left
        d = float(np.hypot(*v))
        if d < 1e-6:
            raise ValueError("the two eye centres coincide: no face frame")
        s = IOD / d
        c, sn = v[0] / d * s, v[1] / d * s  # scale · (cos, sin) of the eye line's angle
        rot = np.array([[c, sn], [-sn, c]])  # rotates the eye line onto +x and scales it to IOD
        mid = 0.5 * (left + right)
        shift = np.asarray(EYES_AT) - rot @ mid
        m = np.hstack([rot, shift[:, None]])
        return cls((tuple(m[0]), tuple(m[1])))  # type: ignore[arg-type]

    @classmethod
    def from_landmarks(cls, landmarks: Landmarks) -> FaceFrame:
        """The frame of one face from its (478, 2) MediaPipe landmarks (the iris centres).

        Raises:
            ValueError: landmarks without the iris points (MediaPipe's 468-point mesh).
        """
        lm = np.asarray(landmarks)
        if lm.ndim != 2 or lm.shape[0] <= RIGHT_IRIS:
            raise ValueError(f"need the 478 MediaPipe landmarks with irises, got shape {lm.shape}")
        return cls.from_eyes(lm[LEFT_IRIS, :2], lm[RIGHT_IRIS, :2])

    def then(self, image_to_image: NDArray[np.floating]) -> FaceFrame:
        """The frame of the same face in another image, given that image's (2, 3) map *into* this one."""
        a = np.vstack([self.m, [0.0, 0.0, 1.0]]) @ np.vstack(
            [np.asarray(image_to_image, np.float64), [0, 0, 1]]
        )
        return FaceFrame((tuple(a[0]), tuple(a[1])))  # type: ignore[arg-type]


def canonical(image: Frame, frame: FaceFrame) -> tuple[Canonical, NDArray[np.bool_]]:
    """Resample a face into the canonical frame.

    Args:
        image: (H, W, 3) uint8 RGB.
        frame: where the face is.

    Returns:
        The (SIZE, SIZE, 3) uint8 face and the (SIZE, SIZE) bool mask of canonical pixels that fall inside the
        image (nothing from beyond its edge is ever measured).
    """
    m = frame.m
    source = image
    scale = IOD / frame.iod_px
    if scale < 1 / 1.5:
        # warpAffine has no area filter: shrink a large face with INTER_AREA first, so its detail is averaged,
        # not aliased, and fold that resize (pixel centres kept) into the map.
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        source = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        fx, fy = source.shape[1] / w, source.shape[0] / h
        to_small = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
        m = (np.vstack([m, [0.0, 0.0, 1.0]]) @ np.linalg.inv(to_small))[:2]
    face = cv2.warpAffine(source, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(image.shape[:2], np.uint8)
    valid = cv2.warpAffine(ones, frame.m, (SIZE, SIZE), flags=cv2.INTER_NEAREST, borderValue=0)
    # One pixel in from the edge: bilinear samples there mix in the replicated border.
    valid = cv2.erode(valid, np.ones((3, 3), np.uint8))
    return np.asarray(face, np.uint8), valid.astype(bool)


def region_masks(valid: NDArray[np.bool_] | None = None) -> Masks:
    """(SIZE, SIZE) bool masks of every region, limited to `valid` pixels when given."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    u, v = (xs - EYES_AT[0]) / IOD, (ys - EYES_AT[1]) / IOD
    out: Masks = {}
    for name, boxes in _BOXES.items():
        m = np.zeros((SIZE, SIZE), bool)
        for x0, x1, y0, y1 in boxes:
            m |= (u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)
        out[name] = m if valid is None else m & valid
    return out


def region_polygon(frame: FaceFrame, region: Region = "inner") -> NDArray[np.float64]:
    """Corners of a region's (first) box in image pixels, (4, 2), for drawing it on the picture."""
    x0, x1, y0, y1 = _BOXES[region][0]
    pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * IOD + np.asarray(EYES_AT)
    inv = cv2.invertAffineTransform(frame.m)
    return pts @ inv[:, :2].T + inv[:, 2]


def largest_face(faces: list[Landmarks]) -> Landmarks | None:
    """The face with the widest eye distance (the subject, not a bystander), or None."""
    if not faces:
        return None
    return max(faces, key=lambda lm: float(np.hypot(*(lm[RIGHT_IRIS, :2] - lm[LEFT_IRIS, :2]))))
