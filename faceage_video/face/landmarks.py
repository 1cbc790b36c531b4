"""MediaPipe FaceLandmarker: 478 landmarks per face, in IMAGE or VIDEO mode.

The landmarker model (`face_landmarker.task`) is resolved offline, in this order: an explicit path, the
`FACEAGE_LANDMARKER` environment variable, the user cache (`~/.cache/faceage-video/face_landmarker.task`),
then the copy shipped inside this package (`faceage_video/face/models/`, Apache-2.0, with its sha256).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import ModelError, OptionsError
from faceage_video.types import Frame, Landmarks

RunningMode = Literal["image", "video"]

ENV_VAR = "FACEAGE_LANDMARKER"
MODEL_NAME = "face_landmarker.task"
# The copy shipped in the package (MediaPipe's float16 model, Apache-2.0; see models/README.md).
PACKAGED_MODEL = Path(__file__).resolve().parent / "models" / MODEL_NAME
# Indices of the face-oval ring, in order around the face (MediaPipe FACE_LANDMARKS_FACE_OVAL walked as a loop).
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip


def resolve_landmarker_model(path: str | os.PathLike[str] | None = None) -> Path:
    """Find `face_landmarker.task` without touching the network.

    Args:
        path: an explicit model path; wins over every other source.

    Returns:
        The path of an existing model file.

    Raises:
        ModelError: naming each place looked at and how to fix it.
    """
    return resolve_offline(
        path,
        ENV_VAR,
        PACKAGED_MODEL,
        f"MediaPipe landmarker model {MODEL_NAME}",
        f"reinstall faceage-video (it ships the model), or pass --landmarker PATH, or set {ENV_VAR}.",
    )


def resolve_offline(
    path: str | os.PathLike[str] | None, env_var: str, packaged: Path, what: str, fix: str
) -> Path:
    """A model file shipped in the package, found without touching the network: an explicit `path`, else
    `$env_var`, else the user cache (`~/.cache/faceage-video/<name>`) then the packaged copy; the first
    non-empty file wins.

    Raises:
        ModelError: "`what` not found (looked at: …). Fix: `fix`".
    """
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get(env_var):
        candidates = [Path(os.environ[env_var])]
    else:
        candidates = [Path.home() / ".cache" / "faceage-video" / packaged.name, packaged]
    for cand in candidates:
        if cand.is_file() and cand.stat().st_size > 0:
            return cand
    raise ModelError(f"{what} not found (looked at: {', '.join(map(str, candidates))}). Fix: {fix}")


@dataclass(frozen=True)
class LandmarkerOptions:
    """Options of `FaceLandmarker`.

    Attributes:
        max_faces: most faces reported per frame.
        mode: "video" for a decoded stream (needs increasing timestamps, tracks between frames), "image" for
            independent pictures.
        min_detection_confidence: face detector threshold.
        min_presence_confidence: landmark presence threshold.
        min_tracking_confidence: below this the VIDEO mode re-runs the detector.
        model_path: explicit `face_landmarker.task`; None resolves it offline.
        detect_width: frames wider than this are downscaled before landmarking (landmarks are mapped back).
            0 keeps full size.
    """

    max_faces: int = 4
    mode: RunningMode = "video"
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    model_path: str | None = None
    detect_width: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.max_faces <= 16:
            raise OptionsError(f"max_faces must be in 1..16, got {self.max_faces}")
        if self.mode not in ("image", "video"):
            raise OptionsError(f"mode must be 'image' or 'video', got {self.mode!r}")
        for name in ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise OptionsError(f"{name} must be in 0..1, got {v}")
        if self.detect_width < 0:
            raise OptionsError(f"detect_width must be >= 0, got {self.detect_width}")


class FaceLandmarker:
    """A context-managed MediaPipe FaceLandmarker.

    `detect(frame, timestamp_ms)` returns one (478, 2) float32 array of pixel coordinates per face found.
    In VIDEO mode timestamps must strictly increase; the wrapper bumps equal or decreasing ones by 1 ms so a
    VFR stream or a repeated pts never crashes the graph.
    """

    def __init__(self, options: LandmarkerOptions) -> None:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.options = options
        model = resolve_landmarker_model(options.model_path)
        try:
            mode = vision.RunningMode.VIDEO if options.mode == "video" else vision.RunningMode.IMAGE
            opts = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(model)),
                running_mode=mode,
                num_faces=options.max_faces,
                min_face_detection_confidence=options.min_detection_confidence,
                min_face_presence_confidence=options.min_presence_confidence,
                min_tracking_confidence=options.min_tracking_confidence,
            )
            self._lm = vision.FaceLandmarker.create_from_options(opts)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"cannot load landmarker model {model}: {exc}. Fix: reinstall faceage-video or pass a valid "
                f"face_landmarker.task with --landmarker."
            ) from exc
        self._last_ts = -1

    def detect(self, frame: Frame, timestamp_ms: int = 0) -> list[Landmarks]:
        """Landmarks of every face in an RGB frame.

        Args:
            frame: (H, W, 3) uint8 RGB.
            timestamp_ms: the frame's time; used only in VIDEO mode.

        Returns:
            A list of (478, 2) float32 arrays in frame pixel coordinates.
        """
        import cv2
        import mediapipe as mp

        h, w = frame.shape[:2]
        scale = 1.0
        img = frame
        if self.options.detect_width and w > self.options.detect_width:
            scale = self.options.detect_width / w
            size = (self.options.detect_width, max(1, round(h * scale)))
            # interpolation by keyword: the third positional argument of cv2.resize is `dst`.
            img = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        mp_img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img))
        if self.options.mode == "video":
            ts = max(int(timestamp_ms), self._last_ts + 1)
            self._last_ts = ts
            result = self._lm.detect_for_video(mp_img, ts)
        else:
            result = self._lm.detect(mp_img)
        faces: list[Landmarks] = []
        for face in result.face_landmarks:
            arr = np.array([(p.x * w, p.y * h) for p in face], dtype=np.float32)
            faces.append(arr)
        return faces

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._lm.close()

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def detect_padded(landmarker: FaceLandmarker, image: Frame, pad_frac: float = 0.5) -> list[Landmarks]:
    """Detect faces in a tight face chip by padding it first (MediaPipe misses faces that fill the frame).

    Args:
        landmarker: an IMAGE-mode landmarker.
        image: (H, W, 3) uint8 RGB chip.
        pad_frac: border added on each side, as a fraction of the chip side.

    Returns:
        Landmarks in the chip's own pixel coordinates.
    """
    import cv2

    h, w = image.shape[:2]
    p = round(max(h, w) * pad_frac)
    padded = np.asarray(cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE), dtype=np.uint8)
    return [lm - np.float32(p) for lm in landmarker.detect(padded)]


def face_box(landmarks: Landmarks) -> NDArray[np.float32]:
    """Axis-aligned (x0, y0, x1, y1) box around the landmarks."""
    return np.array(
        [landmarks[:, 0].min(), landmarks[:, 1].min(), landmarks[:, 0].max(), landmarks[:, 1].max()],
        dtype=np.float32,
    )


def oval_polygon(landmarks: Landmarks, indices: Sequence[int] = FACE_OVAL) -> NDArray[np.float32]:
    """(36, 2) face-oval polygon, in order, for the blend mask."""
    return np.asarray(landmarks[list(indices)], dtype=np.float32)
