"""What a run did: the `Report` (written by `--report`), its finishing touches, and the progress bar."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceage_video.errors import OutputError
from faceage_video.media.atomic import write_file_atomic
from faceage_video.media.reader import VideoInfo

if TYPE_CHECKING:
    from faceage_video.pipeline import AgeOptions


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

    def to_json(self) -> str:
        d = asdict(self)
        d["tracks"] = {str(k): v for k, v in self.tracks.items()}
        return json.dumps(d, indent=2, default=str)


def report_options(opts: AgeOptions, batch_size: int, xla: bool | None) -> dict[str, Any]:
    """The options a `Report` records for a run (`batch_size` and `xla` as the engine really ran)."""
    return {
        "faces": opts.faces,
        "mask": opts.blend.mask,
        "temporal": opts.temporal.strength,
        "codec": opts.writer.codec,
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


def progress_bar(total: int | None, enabled: bool) -> tuple[Any, Any]:
    """The terminal progress bar of a run and its task: (rich `Progress`, task id); `total` None: unknown."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]aging"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]} fps"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
    task = prog.add_task("aging", total=total, fps="-")
    return prog, task


def expected_frames(info: VideoInfo, start_s: float | None, end_s: float | None) -> int | None:
    """Frames a read of [start_s, end_s) should yield, from the duration and rate; None when unknown."""
    if info.duration_s is None:
        return info.frame_count
    span = min(end_s if end_s is not None else info.duration_s, info.duration_s) - (start_s or 0.0)
    return max(0, round(span * float(info.fps))) if info.fps else info.frame_count
