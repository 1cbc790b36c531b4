"""Known-motion clips: still validation photos moved along known paths, aged by the real video pipeline.

For each face: `stability.motion_path` → `render_clip` (sensor noise) → H.264 via PyAV → the full pipeline
(`faceage_video.age_video`, lossless FFV1 output, temporal smoothing as configured) → both videos decoded →
mapped back with the exact inverse path → `stability.temporal_change` inside the photo's inner face.
Seeds are the face's index in the fixed list, so every run makes the same clips.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.measures import regions, stability
from benchmarks.stills import Direction, Face, Space, Transform
from faceage_video.engine.generator import EngineOptions
from faceage_video.types import Frame


@dataclass(frozen=True)
class _Manifest:
    name: str
    training: dict[str, Any] = field(default_factory=dict)


class TransformEngine:
    """Wraps any crop transform (a baseline, a stand-in) in the interface `age_video` uses of `AgingEngine`."""

    def __init__(self, transform: Transform, template: Space, direction: Direction, name: str) -> None:
        self._transform = transform
        self.template = template
        self.size = template.size
        self.options = EngineOptions(direction=direction)
        self.manifest = _Manifest(name)
        self.xla = False
        self.conditioned = False  # no ages: the pipeline asks it for none

    def generate(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        return np.asarray(self._transform(crops), np.float32)

    def residual(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The change the transform makes, float32 (N, S, S, 3)."""
        return self.generate(crops) - crops.astype(np.float32)


def decode(path: Path) -> list[Frame]:
    """Every frame of a video's first stream, RGB, in presentation order."""
    import av

    with av.open(str(path)) as c:
        return [np.asarray(f.to_ndarray(format="rgb24"), np.uint8) for f in c.decode(video=0)]


def photo_face_mask(face: Face) -> NDArray[np.bool_]:
    """(H, W) bool: the photo's inner face region, in the photo's own pixels."""
    inner = regions.region_masks()["inner"].astype(np.uint8)
    h, w = face.image.shape[:2]
    back = cv2.warpAffine(
        inner, face.frame.m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0
    )
    return np.asarray(back, bool)


def run_clip(
    face: Face,
    engine: Any,
    seed: int,
    options: stability.MotionOptions,
    workdir: Path,
    temporal: Any = None,
    hair: Any = None,
    region: NDArray[np.bool_] | None = None,
) -> tuple[dict[str, Any], list[Frame], list[Frame]]:
    """Make one known-motion clip of a face, run the pipeline on it, and measure the change it adds.

    Args:
        face: the still photo and its landmarks.
        engine: an `AgingEngine` or a `TransformEngine`.
        seed: fixes the path and the noise.
        options: the motion.
        workdir: where the clips are written.
        temporal: `TemporalOptions` for the pipeline; its defaults when None.
        hair: `HairOptions` for the pipeline (the hair stage); off when None.
        region: (H, W) bool in the photo's pixels where the change is measured; the inner face when None.

    Returns:
        The `temporal_change` numbers (plus `frames`, `faces_found`), the decoded input frames and the output
        frames.
    """
    from faceage_video.engine.temporal import TemporalOptions
    from faceage_video.media.writer import WriterOptions
    from faceage_video.pipeline import AgeOptions, StageOptions, age_video

    size = (face.image.shape[1], face.image.shape[0])
    path = stability.motion_path(size, options, seed)
    src = stability.encode_h264(
        stability.render_clip(face.image, path, options, seed), workdir / f"in-{seed}.mp4", options
    )
    dst = workdir / f"out-{seed}-{engine.options.direction}.mkv"
    report = age_video(
        src,
        dst,
        AgeOptions(
            stages=StageOptions(
                engine=engine.options,
                temporal=temporal or TemporalOptions(),
                **({"hair": hair} if hair else {}),
            ),
            writer=WriterOptions(codec="ffv1", audio=False),
        ),
        engine=engine,
    )
    frames_in, frames_out = decode(src), decode(dst)
    if len(frames_in) != len(frames_out):
        raise RuntimeError(f"the pipeline wrote {len(frames_out)} frames for {len(frames_in)}")
    mask = (photo_face_mask(face) if region is None else region) & stability.visible(path, size, options.size)
    result = stability.temporal_change(
        stability.map_back(frames_in, path, size), stability.map_back(frames_out, path, size), mask
    )
    result.update(frames=len(frames_in), faces_found=report.frames_with_faces)
    return result, frames_in, frames_out


def contact_sheet(frames_in: Sequence[Frame], frames_out: Sequence[Frame], every: int = 10) -> Frame:
    """Every `every`-th frame of a clip, input row above output row, native resolution, (H, W, 3) uint8."""
    picks = list(range(0, len(frames_in), every))
    top = np.concatenate([frames_in[i] for i in picks], axis=1)
    bottom = np.concatenate([frames_out[i] for i in picks], axis=1)
    return np.concatenate([top, bottom], axis=0)


def run_motion(
    faces: Sequence[Face],
    engine: Any,
    options: stability.MotionOptions,
    sheet: Path | None = None,
    temporal: Any = None,
) -> dict[str, Any]:
    """Known-motion stability of one engine on several faces.

    Args:
        faces: the photos, in a fixed order; face i uses seed i.
        engine: what ages them.
        options: the motion.
        sheet: write every clip's contact sheet (every 10th frame, input above output) here, one band per
            clip, as JPEG; None writes none.
        temporal: `TemporalOptions` for the pipeline.

    Returns:
        `clips` (one dict per face) and the means over them: `added_change`, `change_size`, `added_pct`,
        `in_change`, `out_change`, `out_minus_in`.
    """
    rows: list[dict[str, Any]] = []
    bands: list[Frame] = []
    with tempfile.TemporaryDirectory(prefix="faceage-motion-") as tmp:
        for i, face in enumerate(faces):
            row: dict[str, Any] = {"face": face.name}
            try:
                result, f_in, f_out = run_clip(face, engine, i, options, Path(tmp), temporal)
                row.update(result)
                if sheet is not None:
                    bands.append(contact_sheet(f_in, f_out))
            except Exception as error:  # one broken clip must not lose the others' numbers
                row["error"] = f"{type(error).__name__}: {error}"
            rows.append(row)
    out: dict[str, Any] = {"clips": rows}
    ok = [r for r in rows if "error" not in r]
    for key in ("added_change", "change_size", "in_change", "out_change", "out_minus_in"):
        out[key] = round(float(np.mean([r[key] for r in ok])), 4) if ok else None
    size = out["change_size"]
    out["added_pct"] = round(100.0 * out["added_change"] / size, 2) if ok and size else None
    if sheet is not None and bands:
        width = max(b.shape[1] for b in bands)
        padded = [np.pad(b, ((0, 8), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in bands]
        write_jpeg(sheet, np.concatenate(padded, axis=0))
        out["sheet"] = str(sheet)
    return out


def write_jpeg(path: Path, image: Frame, quality: int = 92) -> None:
    """Write an RGB picture as JPEG through a temporary file renamed on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.jpg")
    if not cv2.imwrite(
        str(tmp), np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    ):
        raise OSError(f"cannot write {path}")
    tmp.replace(path)
