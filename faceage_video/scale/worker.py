"""The Ray actor that ages one segment: decode from its warm-up, run the stages, encode video only.

Engines stay loaded across calls (a batch reuses them); progress goes to a tiny counter actor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from faceage_video.media.reader import DecodedFrame, ReaderOptions, is_url
from faceage_video.media.writer import WriterOptions
from faceage_video.report import Report
from faceage_video.scale.plan import Segment
from faceage_video.stages import StageOptions

# Engines an actor keeps loaded at once (a batch may mix models or directions).
_MAX_ENGINES = 2


@dataclass(frozen=True)
class SegmentJob:
    shot: int
    segment: Segment
    input: str
    suffix: str  # the output's extension: segments use the output's container
    out_dir: str | None  # "path" transport: where the segment file goes (storage every node sees)
    reader: ReaderOptions  # the shot's reader (`allow_protocols`); the segment sets its own window
    writer: WriterOptions  # the shot's codec and quality; segments carry no audio


@dataclass
class SegmentResult:
    shot: int
    index: int
    path: str | None  # "path" transport
    frames: int
    frames_with_faces: int
    faces: int
    tracks: dict[int, int]
    stage_s: dict[str, float]
    warnings: list[str]
    model: dict[str, Any]
    node: str


def _segment_frames(frames: Iterator[DecodedFrame], segment: Segment) -> Iterator[DecodedFrame]:
    for frame in frames:
        if segment.is_past(frame):
            return
        yield frame


@contextmanager
def _segment_again(job: SegmentJob) -> Iterator[Iterator[DecodedFrame]]:
    """The frames of a job's segment, warm-up included, from a reader of their own (the input-age probe)."""
    from faceage_video.media.reader import VideoReader

    seg = job.segment
    with VideoReader(job.input, replace(job.reader, start_s=seg.read_start_s, end_s=seg.read_end_s)) as r:
        yield _segment_frames(iter(r), seg)


class SegmentWorker:
    """A Ray actor: loads each engine once and keeps it warm, processes one segment per call."""

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("GLOG_minloglevel", "2")
        self._engines: dict[Any, Any] = {}

    def ready(self) -> int:
        return os.getpid()

    def _engine(self, options: Any) -> Any:
        from faceage_video.engine.generator import AgingEngine

        eng = self._engines.pop(options, None)
        if eng is None:
            eng = AgingEngine(options)
            while len(self._engines) >= _MAX_ENGINES:
                self._engines.pop(next(iter(self._engines)))
        self._engines[options] = eng  # most recently used last
        return eng

    def probe_ages(
        self, input: str, reader: ReaderOptions, options: StageOptions, starts: list[float]
    ) -> tuple[dict[int, float], int]:
        """The input age of every face track in a shot's first seconds (`stages.probe_input_ages`), and the
        most faces seen in the first frame at any of `starts` (the segments' starts, seconds).

        Returns:
            ({track id: age}, most faces); ({}, 0) where the run takes no estimate (an input age given, no
            target age, a bundle that is not age-conditioned).
        """
        from faceage_video.engine.input_age import track_ages_for
        from faceage_video.face.landmarks import FaceLandmarker
        from faceage_video.media.reader import VideoReader
        from faceage_video.stages import FaceAnalyzer, probe_input_ages

        eng = self._engine(options.engine)
        ages = track_ages_for(eng, options.input_age)
        if ages is None:
            return {}, 0
        with (
            closing(FaceAnalyzer.for_run(options, eng, hair=False)) as analyzer,
            VideoReader(input, reader) as r,
        ):
            probe_input_ages(r, analyzer, ages, options.input_age.window)
        most = 0
        with FaceLandmarker(replace(options.landmarks, mode="image")) as lm:
            for t in starts:
                with VideoReader(input, replace(reader, start_s=t)) as r:
                    frame = next(iter(r), None)
                if frame is not None:
                    most = max(most, len(lm.detect(frame.image)))
        return ages.held(), most

    def run(
        self, job: SegmentJob, options: StageOptions, progress: Any
    ) -> tuple[SegmentResult, bytes | None]:
        """Process one segment; returns its counts and, without a shared folder, the encoded bytes."""
        import socket

        from faceage_video.media.reader import VideoReader
        from faceage_video.media.writer import VideoWriter
        from faceage_video.pipeline import run_stages

        seg = job.segment
        eng = self._engine(options.engine)
        local_dir = None
        if job.out_dir is not None:
            out_dir = Path(job.out_dir)
        else:
            local_dir = tempfile.mkdtemp(prefix="faceage-seg-")
            out_dir = Path(local_dir)
        path = out_dir / f"shot{job.shot:05d}_seg{seg.index:05d}{job.suffix}"
        key = (job.shot, seg.index)

        def on_progress(done: int, total: int | None, fps: float) -> None:
            progress.set.remote(key, done)

        report = Report(input=job.input, output=str(path))
        try:
            reader = VideoReader(
                job.input, replace(job.reader, start_s=seg.read_start_s, end_s=seg.read_end_s)
            )
            with reader:
                writer = VideoWriter(path, reader.info, replace(job.writer, audio=False))
                with writer:
                    stage_s = run_stages(
                        _segment_frames(iter(reader), seg),
                        writer,
                        eng,
                        options,
                        report,
                        warmup=seg.is_warmup,
                        progress=on_progress,
                        probe=None if is_url(job.input) else lambda: _segment_again(job),
                    )
            progress.set.remote(key, report.frames)
            result = SegmentResult(
                shot=job.shot,
                index=seg.index,
                path=str(path) if local_dir is None else None,
                frames=report.frames,
                frames_with_faces=report.frames_with_faces,
                faces=report.faces,
                tracks=dict(report.tracks),
                stage_s=stage_s,
                warnings=list(reader.warnings) + list(writer.warnings),
                model={
                    "name": eng.manifest.name,
                    "steps": eng.manifest.training.get("steps"),
                    "direction": eng.options.direction,
                    "strength": eng.options.strength,
                },
                node=socket.gethostname(),
            )
            data = path.read_bytes() if local_dir is not None else None
            return result, data
        finally:
            if local_dir is not None:
                shutil.rmtree(local_dir, ignore_errors=True)


class ProgressCounter:
    """A Ray actor holding frames done per segment; a retried segment starts again from 0."""

    def __init__(self) -> None:
        self._done: dict[tuple[int, int], int] = {}

    def set(self, key: tuple[int, int], frames: int) -> None:
        self._done[key] = frames

    def total(self) -> int:
        return sum(self._done.values())
