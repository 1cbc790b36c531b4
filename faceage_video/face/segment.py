"""Person segmentation: which pixels of a frame are the person (head, hair, body) and which are background.

The hair stage (`face.hair`) needs it to keep the background out of the hair matte. The model is
MediaPipe's selfie segmentation (`selfie_segmentation.tflite`, 256 × 256, Apache-2.0), shipped in the
package beside the landmarker and resolved offline: an explicit path, the `FACEAGE_SEGMENTER` environment
variable, the user cache (`~/.cache/faceage-video/selfie_segmentation.tflite`), then the packaged copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceage_video.errors import ModelError, OptionsError
from faceage_video.face.landmarks import resolve_offline
from faceage_video.types import Frame, Mask

ENV_VAR = "FACEAGE_SEGMENTER"
MODEL_NAME = "selfie_segmentation.tflite"
# MediaPipe's selfie segmentation model, as shipped in the `mediapipe` 0.10.14 wheel (Apache-2.0; see
# models/README.md).
PACKAGED_MODEL = Path(__file__).resolve().parent / "models" / MODEL_NAME


@dataclass(frozen=True)
class SegmenterOptions:
    """Options of `PersonSegmenter`.

    Attributes:
        model_path: an explicit model file; None resolves it (module docstring).
        width: frames wider than this are reduced to it first (the network itself sees 256 × 256, so a
            larger input only costs the resize).
    """

    model_path: str | None = None
    width: int = 512

    def __post_init__(self) -> None:
        if not 64 <= self.width <= 4096:
            raise OptionsError(f"segmenter width must be in 64..4096 px, got {self.width}")


def resolve_segmenter_model(path: str | os.PathLike[str] | None = None) -> Path:
    """Find `selfie_segmentation.tflite` without touching the network.

    Raises:
        ModelError: naming each place looked at and how to fix it.
    """
    return resolve_offline(
        path,
        ENV_VAR,
        PACKAGED_MODEL,
        "person segmentation model",
        f"reinstall faceage-video, which ships {MODEL_NAME}, or point {ENV_VAR} at a copy.",
    )


class PersonSegmenter:
    """MediaPipe's selfie segmentation in IMAGE mode: `segmenter(frame)` is the person's confidence.

    Frames are independent of each other (no state between calls).
    """

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        """Load the model.

        Raises:
            ModelError: the model is missing or cannot be loaded (names the file and the fix).
        """
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.options = options or SegmenterOptions()
        model = resolve_segmenter_model(self.options.model_path)
        try:
            opts = vision.ImageSegmenterOptions(
                base_options=BaseOptions(model_asset_path=str(model)),
                running_mode=vision.RunningMode.IMAGE,
                output_confidence_masks=True,
                output_category_mask=False,
            )
            self._seg = vision.ImageSegmenter.create_from_options(opts)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"cannot load person segmentation model {model}: {exc}. Fix: reinstall faceage-video, or point "
                f"{ENV_VAR} at a valid {MODEL_NAME}."
            ) from exc

    def __call__(self, frame: Frame) -> Mask:
        """The person's confidence over a frame.

        Args:
            frame: (H, W, 3) uint8 RGB.

        Returns:
            (h, w) float32 in [0, 1] at the reduced size (`options.width`; the frame's own when smaller),
            covering the whole frame; `resize_to` brings a region of it to frame pixels.
        """
        import mediapipe as mp

        h, w = frame.shape[:2]
        img = frame
        if w > self.options.width:
            size = (self.options.width, max(1, round(h * self.options.width / w)))
            img = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), np.uint8)
        result = self._seg.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
        conf = np.asarray(result.confidence_masks[0].numpy_view(), np.float32)
        return np.clip(conf.reshape(conf.shape[0], conf.shape[1]), 0.0, 1.0)

    def close(self) -> None:
        self._seg.close()


def resize_to(person: Mask, frame_shape: tuple[int, ...], box: tuple[int, int, int, int]) -> Mask:
    """The part of a reduced person mask over a frame box, at frame resolution.

    Args:
        person: (h, w) confidence over the whole frame (`PersonSegmenter.__call__`).
        frame_shape: (H, W, ...) of the frame.
        box: (x0, y0, x1, y1) in frame pixels.

    Returns:
        (y1 - y0, x1 - x0) float32 in [0, 1].
    """
    x0, y0, x1, y1 = box
    sy, sx = person.shape[0] / frame_shape[0], person.shape[1] / frame_shape[1]
    # Sample at pixel centres: frame pixel x maps to mask coordinate (x + 0.5) · sx − 0.5.
    xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5) * sx - 0.5)[None, :].repeat(y1 - y0, 0)
    ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * sy - 0.5)[:, None].repeat(x1 - x0, 1)
    out = cv2.remap(person, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(np.clip(out, 0.0, 1.0), np.float32)
