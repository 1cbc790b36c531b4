"""What a run did: the `Report` (written by `--report`), its finishing touches, and the `Progress` callback.

The library draws nothing on the terminal: a caller that wants a progress bar passes a `Progress` (the CLI's
`ProgressBar`) and draws it from the frames done, the total and the rate.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from faceage_video.errors import OutputError
from faceage_video.media.atomic import write_file_atomic
from faceage_video.media.reader import VideoInfo

if TYPE_CHECKING:
    from faceage_video.media.writer import WriterOptions
    from faceage_video.stages import StageOptions


class Progress(Protocol):
    """Told how a run is going, after each generator batch (and, on Ray, every poll of the workers)."""

    def __call__(self, done: int, total: int | None, fps: float) -> None:
        """Args:
        done: frames written so far.
        total: frames the run should write; None when the input does not say.
        fps: frames per second since the stages started (start-up excluded).
        """


@dataclass
class Report:
    """What a run did, as written by `--report`.

    Attributes:
        input, output: paths.
        frames: frames written. frames_with_faces: frames where at least one face was aged.
        faces: aged face crops in total. tracks: frames per track id.
        fps: frames per wall-clock second, start-up included. wall_s: total seconds.
        processing_fps: frames per second once the stages run, start-up excluded (what the bar shows).
        startup_s: seconds from the call until the first frame could enter the stages: TensorFlow import,
            model build, landmarker, opening the files. startup: those parts by name, in seconds.
        stage_s: seconds spent inside each stage (stages overlap, so these add up to more than wall_s).
        warnings: decode problems and other things the user should know.
        model: the bundle's name and training steps.
        input_ages: each track's estimated input age in years, where `--target-age` was given without
            `--input-age` (`engine.input_age`).
    """

    input: str
    output: str
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    tracks: dict[int, int] = field(default_factory=dict)
    fps: float = 0.0
    wall_s: float = 0.0
    processing_fps: float = 0.0
    startup_s: float = 0.0
    startup: dict[str, float] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    input_ages: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["tracks"] = {str(k): v for k, v in self.tracks.items()}
        d["input_ages"] = {str(k): round(v, 1) for k, v in self.input_ages.items()}
        return json.dumps(d, indent=2, default=str)


def report_options(
    stages: StageOptions, writer: WriterOptions, batch_size: int, xla: bool | None
) -> dict[str, Any]:
    """The options a `Report` records for a run (`batch_size` and `xla` as the engine really ran)."""
    return {
        "faces": stages.faces,
        "mask": stages.blend.mask,
        "temporal": stages.temporal.strength,
        "codec": writer.codec,
        "batch_size": batch_size,
        "xla": xla,
    }


def note_no_face(report: Report, copied: bool) -> str | None:
    """The end of a run without any face: append (and return) the warning saying the output is the input's
    frames, or a byte copy of it when `copied`; None (nothing appended) when a face was found."""
    if report.frames_with_faces:
        return None
    msg = "no face found in the whole clip: the output frames equal the input's"
    if copied:
        msg = "no face found in the whole clip: the output is a copy of the input"
    report.warnings.append(msg)
    return msg


def finish_report(report: Report, started: float, path: str | None) -> Report:
    """Stamp wall time and fps (since `started`, a `time.perf_counter()`), and write the JSON when asked.

    `processing_fps` leaves out `report.startup_s` (set by the stages; 0 when they did not run).
    """
    report.wall_s = time.perf_counter() - started
    report.fps = report.frames / report.wall_s if report.wall_s > 0 else 0.0
    busy = report.wall_s - report.startup_s
    report.processing_fps = report.frames / busy if busy > 0 else 0.0
    report.startup_s = round(report.startup_s, 3)
    if path:
        rp = Path(path)
        if not rp.parent.is_dir():
            raise OutputError(f"report folder {rp.parent} does not exist")
        write_file_atomic(rp, report.to_json().encode())
    return report


def expected_frames(info: VideoInfo, start_s: float | None, end_s: float | None) -> int | None:
    """Frames a read of [start_s, end_s) should yield, from the duration and rate; None when unknown."""
    if info.duration_s is None:
        return info.frame_count
    span = min(end_s if end_s is not None else info.duration_s, info.duration_s) - (start_s or 0.0)
    return max(0, round(span * float(info.fps))) if info.fps else info.frame_count
