"""Landmark cache: MediaPipe's 478 landmarks of every face photo, detected once and stored in one `.npz`.

Both the canonical layout (the mean registered shape) and the canonical-texture crop cache read it, so
MediaPipe runs once per photo however often the cache or the layout is rebuilt.

    landmarks.npz
        paths       (N,) str       image files, in record order
        landmarks   (N, 478, 2)    float32 pixel x, y in the photo; NaN where no face was found
        found       (N,) bool
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, detect_padded, face_box
from training.datasets import FaceRecord


def read_rgb(path: str) -> NDArray[np.uint8] | None:
    """An image file as (H, W, 3) uint8 RGB, or None where it cannot be read."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), np.uint8)


def largest_face(faces: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The largest of several landmark sets: a chip's subject, not a bystander in its margin."""

    def area(lm: NDArray[np.float32]) -> float:
        b = face_box(lm)
        return float((b[2] - b[0]) * (b[3] - b[1]))

    return max(faces, key=area)


def detect_landmarks(
    records: Sequence[FaceRecord], out: str | Path, landmarker_path: str | None = None, every: int = 500
) -> dict[str, NDArray[np.generic]]:
    """Detect the largest face of each record and write `out` (an `.npz`, atomically).

    An existing `out` whose paths match `records` is read instead of recomputed.

    Returns:
        {"paths": (N,), "landmarks": (N, 478, 2) float32, "found": (N,) bool}.
    """
    out = Path(out)
    paths = np.array([r.path for r in records])
    if out.exists():
        data = dict(np.load(out))
        if data["paths"].shape == paths.shape and (data["paths"] == paths).all():
            return data
    lms = np.full((len(records), 478, 2), np.nan, np.float32)
    found = np.zeros(len(records), bool)
    opts = LandmarkerOptions(mode="image", max_faces=2, model_path=landmarker_path)
    t0 = time.perf_counter()
    with FaceLandmarker(opts) as lm:
        for i, rec in enumerate(records):
            img = read_rgb(rec.path)
            faces = detect_padded(lm, img) if img is not None else []
            if faces:
                lms[i] = largest_face(faces)[:, :2]
                found[i] = True
            if (i + 1) % every == 0 or i + 1 == len(records):
                rate = (i + 1) / (time.perf_counter() - t0)
                eta = (len(records) - i - 1) / rate
                print(f"landmarks {i + 1}/{len(records)}  {rate:.1f} faces/s  ETA {eta:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez(tmp, paths=paths, landmarks=lms, found=found)
    tmp.replace(out)
    return {"paths": paths, "landmarks": lms, "found": found}
