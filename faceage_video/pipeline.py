"""The one place that wires the stages: decode → landmarks/track/align → generate/smooth/blend → encode.

Stages run concurrently in threads joined by bounded queues (FFmpeg, MediaPipe and TensorFlow release the
GIL in their kernels). Memory is bounded whatever the clip length: at most

    (2 · queue_size + batch_size + 2) frames of H × W × 3 bytes

are alive at once (the decode and analysis queues, the frames waiting for one generator batch, and one frame
in each worker's hands), plus one matte per frame in the encode queue and the model.

The queues are bounded in bytes, not only in frames: each holds at most `queue_size` frames and at most
`QUEUE_BUDGET_BYTES / 3` of them (counting `FRAME_COST_PER_PX` bytes a pixel: the frame, its output and its
float matte), and never fewer than one; the frames waiting for one generator batch are held to the same
share (`pending_cap`). So a 512² clip keeps 8 frames a queue and an 8K clip one. A clip whose frames would
not fit the machine's available memory even then is refused before any work (`check_frame_memory`).
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from faceage_video.checks import (
    can_copy_input,
    check_frame_memory,
    check_outputs,
    check_sequence_io,
    pending_cap,
)
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.input_age import track_ages_for
from faceage_video.engine.temporal import ResidualSmoother
from faceage_video.errors import OptionsError
from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, face_box
from faceage_video.face.tracker import FaceTracker, TrackerOptions
from faceage_video.media.matte import MattePngWriter, MatteVideoWriter, MatteWriter
from faceage_video.media.patterns import is_sequence_path, output_pattern
from faceage_video.media.plates import Plate
from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoReader, is_url
from faceage_video.media.sequence import (
    PlateFrame,
    SequenceReader,
    SequenceWriter,
    matte_plate,
    matte_spec,
    with_matte_alpha,
)
from faceage_video.media.writer import VideoWriter
from faceage_video.options import AgeOptions, ExtraOutputs
from faceage_video.report import (
    Progress,
    Report,
    expected_frames,
    finish_report,
    note_no_face,
    report_options,
)
from faceage_video.stages import FaceAnalyzer, FrameJob, StageOptions, probe_input_ages, render
from faceage_video.types import Frame, Mask

__all__ = ["AgeOptions", "ExtraOutputs", "Report", "StageOptions", "age_video", "inspect_video", "run_stages"]

T = TypeVar("T")
# Opens a run's frames again from their start (`_run_stages`' input-age probe).
Probe = Callable[[], AbstractContextManager[Iterable[DecodedFrame]]]


class _Stop:
    """End-of-stream marker passed down the queues."""


_STOP = _Stop()


class _Timer:
    """Thread-safe seconds per stage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, dt: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + dt


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put with back-pressure; gives up (False) when the run is stopping."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _STOP


def _worker(
    name: str, body: Callable[[], None], errors: list[BaseException], stop: threading.Event
) -> threading.Thread:
    def run() -> None:
        try:
            body()
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)
            stop.set()

    t = threading.Thread(target=run, name=f"faceage-{name}", daemon=True)
    t.start()
    return t


def _side_by_side(a: Frame, b: Frame) -> Frame:
    return np.ascontiguousarray(np.concatenate([a, b], axis=1))


def age_video(
    input: str | Path,
    output: str | Path,
    options: AgeOptions | None = None,
    engine: AgingEngine | None = None,
    *,
    progress: Progress | None = None,
) -> Report:
    """Age or de-age every selected face of a video.

    Args:
        input: a video file (or, with `allow_protocols`, a URL).
        output: the file to write; its extension picks the container. Written to a temporary file beside it
            and renamed only on success, so an error or Ctrl-C leaves nothing under this name.
        options: every stage's options; defaults age with the bundled model.
        engine: a loaded engine to reuse across calls (its options win over `options.stages.engine`).
        progress: told the frames done, the total and the rate after each generator batch; None: silent.

    Returns:
        The run's `Report` (also written to `options.report` when set).

    Raises:
        InputError, OutputError, ModelError, OptionsError: bad input, output, model or options, each with a
            message naming the cause and the fix.
    """
    opts = options or AgeOptions()
    st, ro, ex = opts.stages, opts.reader, opts.extras
    src, dst = str(input), str(output)
    t0 = time.perf_counter()
    check_outputs(src, dst, opts)
    seq = check_sequence_io(src, dst, opts)
    reader: VideoReader | SequenceReader
    if seq:
        reader = SequenceReader(src, opts.sequence, ro.start_s, ro.end_s)
        if ex.matte_alpha and "A" in reader.info.channels:
            raise OptionsError(
                f"{src}: has an alpha channel already; write the matte as its own sequence (--matte PATTERN)"
            )
    else:
        # deep=None: a 10/12-bit video is decoded at 16 bits too, and the change applied at that precision.
        reader = VideoReader(src, replace(ro, deep=None))
    timer = _Timer()
    with reader:
        info = reader.info.video if isinstance(reader, SequenceReader) else reader.info
        if ro.start_s is not None and info.duration_s is not None and ro.start_s >= info.duration_s:
            raise OptionsError(
                f"start ({ro.start_s} s) is at or past the end of {src} ({info.duration_s:.2f} s); "
                "pick a start inside the clip"
            )
        batch_size = engine.options.batch_size if engine is not None else st.engine.batch_size
        stage_opts = replace(st, queue_size=check_frame_memory(info, batch_size, st.queue_size))
        writer_cm: VideoWriter | SequenceWriter
        if isinstance(reader, SequenceReader) and is_sequence_path(dst):
            writer_cm = SequenceWriter(output_pattern(dst, reader.info.pattern))
        else:
            writer_cm = VideoWriter(
                dst,
                info,
                opts.writer,
                audio_source=src if opts.writer.audio and not seq else None,
                start_s=ro.start_s,
                end_s=ro.end_s,
                allow_protocols=ro.allow_protocols,
            )
        with writer_cm as writer:
            startup: dict[str, float] = {}
            eng = engine or load_engine(st.engine, startup)
            report = Report(
                input=src,
                output=dst,
                model={
                    "name": eng.manifest.name,
                    "steps": eng.manifest.training.get("steps"),
                    "direction": eng.options.direction,
                    "strength": eng.options.strength,
                },
                options=report_options(st, opts.writer, eng.options.batch_size, eng.xla),
            )
            matte: MatteVideoWriter | MattePngWriter | SequenceWriter | None = None
            if ex.matte and isinstance(reader, SequenceReader) and is_sequence_path(ex.matte):
                matte = SequenceWriter(output_pattern(ex.matte, reader.info.pattern))
            elif ex.matte:
                matte = MatteWriter(ex.matte, info, ro.start_s)
            sbs = None
            if ex.side_by_side:
                sbs_info = replace(info, width=info.width * 2)
                sbs = VideoWriter(
                    ex.side_by_side,
                    sbs_info,
                    replace(opts.writer, audio=False),
                    start_s=ro.start_s,
                    end_s=ro.end_s,
                )
            try:
                _run_stages(
                    reader,
                    writer,
                    eng,
                    stage_opts,
                    report,
                    timer=timer,
                    matte=matte,
                    sbs=sbs,
                    matte_alpha=ex.matte_alpha,
                    expected=expected_frames(info, ro.start_s, ro.end_s),
                    progress=progress,
                    started=t0,
                    probe=None if is_url(src) else lambda: _reopen(src, seq, opts),
                )
                report.startup = {**startup, **report.startup}
            except BaseException:
                for w in (matte, sbs):
                    if w is not None:
                        w.abort()
                raise
            for w in (matte, sbs):
                if w is not None:
                    w.close()
            report.warnings.extend(reader.warnings)
            copy = not seq and report.frames_with_faces == 0 and can_copy_input(src, dst, opts)
            if copy and isinstance(writer, VideoWriter):
                # Nothing to change: hand back the input itself, bit for bit, in the writer's atomic commit.
                writer.commit_copy_of(src)
    msg = note_no_face(report, copy)
    if msg is not None:
        warnings.warn(msg, stacklevel=2)
    report.stage_s = {k: round(v, 3) for k, v in timer.seconds.items()}
    return finish_report(report, t0, ex.report)


def _reopen(src: str, seq: bool, opts: AgeOptions) -> VideoReader | SequenceReader:
    """The run's input opened again as `age_video` opens it: the same frames from the same start."""
    ro = opts.reader
    if seq:
        return SequenceReader(src, opts.sequence, ro.start_s, ro.end_s)
    return VideoReader(src, replace(ro, deep=None))


def load_engine(options: EngineOptions, startup: dict[str, float]) -> AgingEngine:
    """Build the engine, adding to `startup` the seconds of the TensorFlow import and of the model build."""
    t = time.perf_counter()
    import tensorflow  # noqa: F401  # imported by the engine anyway; timed on its own

    startup["import_tensorflow"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    eng = AgingEngine(options)
    startup["model"] = round(time.perf_counter() - t, 3)
    return eng


def run_stages(
    frames: Iterable[DecodedFrame],
    writer: VideoWriter,
    engine: AgingEngine,
    options: StageOptions,
    report: Report,
    *,
    warmup: Callable[[DecodedFrame], bool] | None = None,
    progress: Progress | None = None,
    expected: int | None = None,
    probe: Probe | None = None,
) -> dict[str, float]:
    """Run the stages (analyse → generate/smooth/blend → encode) on any frame source into an open writer.

    `age_video` is this plus opening the reader and writers; a distributed worker uses it on one segment.

    Args:
        frames: decoded frames in presentation order.
        writer: where the output frames go; the caller closes it.
        engine: a loaded engine.
        options: the stages' options.
        report: counts are added to it (warm-up frames are not counted).
        warmup: frames for which this is True go through every stage, so tracking and temporal smoothing
            settle on them, but are not written or counted (a segment's lead-in).
        progress: told the frames written so far (and `expected`, the rate) after each generator batch.
        expected: the frames `progress` is told to expect; None: unknown.
        probe: opens `frames` again from their start, so the faces' input ages can be estimated over their
            first seconds before the run (`stages.probe_input_ages`); None: estimated as the run goes.

    Returns:
        Seconds spent in each stage.
    """
    timer = _Timer()
    _run_stages(
        frames,
        writer,
        engine,
        options,
        report,
        timer=timer,
        expected=expected,
        warmup=warmup,
        progress=progress,
        probe=probe,
    )
    return dict(timer.seconds)


def _write_plate(
    writer: SequenceWriter, fr: PlateFrame, plate: Plate, matte: Mask, matte_alpha: bool
) -> None:
    """One sequence frame under its own number; with `matte_alpha` the matte becomes its alpha channel."""
    if matte_alpha:
        plate, spec = with_matte_alpha(fr, plate, matte)
        writer.write_plate(fr.number, plate, spec)
    else:
        writer.write_plate(fr.number, plate, fr.spec)


def _run_stages(
    frames: Iterable[DecodedFrame],
    writer: VideoWriter | SequenceWriter,
    engine: AgingEngine,
    opts: StageOptions,
    report: Report,
    *,
    timer: _Timer,
    matte: MatteVideoWriter | MattePngWriter | SequenceWriter | None = None,
    sbs: VideoWriter | None = None,
    matte_alpha: bool = False,
    expected: int | None = None,
    warmup: Callable[[DecodedFrame], bool] | None = None,
    progress: Progress | None = None,
    started: float | None = None,
    probe: Probe | None = None,
) -> None:
    """The stages; with `started` (the run's `perf_counter()` start) it stamps `report.startup_s`.

    `matte` and `sbs` are the extra outputs (None: not written); `matte_alpha` writes the matte as the alpha
    channel of a sequence output; `expected` is the total `progress` is told; `probe` opens the same frames
    again, for the input-age probe (`stages.probe_input_ages`) where faces get estimated ages.
    """
    # Full-frame mattes only where something writes them: a matte output, or a sequence (matte as alpha).
    need_mattes = matte is not None or isinstance(writer, SequenceWriter) or matte_alpha
    stop = threading.Event()
    errors: list[BaseException] = []
    q_frames: queue.Queue[Any] = queue.Queue(opts.queue_size)
    q_jobs: queue.Queue[Any] = queue.Queue(opts.queue_size)
    q_out: queue.Queue[Any] = queue.Queue(opts.queue_size)
    t_landmarker = time.perf_counter()
    analyzer = FaceAnalyzer.for_run(opts, engine)
    report.startup["landmarker"] = round(time.perf_counter() - t_landmarker, 3)
    smoother = ResidualSmoother(opts.temporal)
    t_estimator = time.perf_counter()
    input_ages = track_ages_for(engine, opts.input_age)
    if input_ages is not None:
        report.startup["age_estimator"] = round(time.perf_counter() - t_estimator, 3)
        if probe is not None:
            t = time.perf_counter()
            with closing(FaceAnalyzer.for_run(opts, engine, hair=False)) as prober, probe() as probe_frames:
                probe_input_ages(probe_frames, prober, input_ages, opts.input_age.window)
            report.input_ages.update(input_ages.held())
            timer.add("input_age_probe", time.perf_counter() - t)
    batch = engine.options.batch_size

    def decode() -> None:
        it: Iterator[DecodedFrame] = iter(frames)
        while not stop.is_set():
            t = time.perf_counter()
            frame = next(it, None)
            timer.add("decode", time.perf_counter() - t)
            if frame is None or not _put(q_frames, frame, stop):
                break
        _put(q_frames, _STOP, stop)

    def analyze() -> None:
        while True:
            frame = _get(q_frames, stop)
            if frame is _STOP:
                break
            t = time.perf_counter()
            job = analyzer.analyze(frame)
            timer.add("landmarks_track_align", time.perf_counter() - t)
            if not _put(q_jobs, job, stop):
                return
        _put(q_jobs, _STOP, stop)

    def encode() -> None:
        while True:
            job = _get(q_out, stop)
            if job is _STOP:
                break
            t = time.perf_counter()
            fr = job.frame
            m = job.matte
            if m is None and need_mattes:
                m = np.zeros(fr.image.shape[:2], np.float32)
            if isinstance(writer, SequenceWriter):
                _write_plate(writer, fr, job.plate if job.plate is not None else fr.plate, m, matte_alpha)
            elif writer.deep and fr.plate is not None:
                writer.write_plate(job.plate if job.plate is not None else fr.plate, fr.pts, fr.time_base)
            else:
                writer.write(job.image, fr.pts, fr.time_base)
            if isinstance(matte, SequenceWriter):
                matte.write_plate(fr.number, matte_plate(m, fr.plate.dtype), matte_spec(fr))
            elif matte is not None:
                matte.write(m, fr.pts, fr.time_base)
            if sbs is not None:
                sbs.write(_side_by_side(fr.image, job.image), fr.pts, fr.time_base)
            timer.add("encode", time.perf_counter() - t)

    threads = [
        _worker("decode", decode, errors, stop),
        _worker("analyze", analyze, errors, stop),
        _worker("encode", encode, errors, stop),
    ]
    t_start = time.perf_counter()
    if started is not None:
        report.startup_s = t_start - started
    try:
        pending: list[FrameJob] = []
        n_crops = 0
        done = False
        while not done:
            job = _get(q_jobs, stop)
            if job is _STOP:
                done = True
            else:
                pending.append(job)
                n_crops += len(job.faces)
            # Flush when a batch is full, at the end, or when frames wait without faces to fill it
            # (a face-free stretch must not stall the output), or when the waiting frames hold a
            # queue's share of the byte budget (large frames: a batch of 8K frames is 2.6 GB).
            if pending and (
                done
                or n_crops >= batch
                or (n_crops == 0 and len(pending) >= batch)
                or len(pending) >= pending_cap(pending[0].frame.image)
            ):
                t = time.perf_counter()
                render(pending, engine, smoother, opts.blend, need_mattes, input_ages, opts.hair)
                if input_ages is not None:
                    report.input_ages.update(input_ages.held())
                timer.add("generate_smooth_blend", time.perf_counter() - t)
                for j in pending:
                    if warmup is not None and warmup(j.frame):
                        continue
                    report.frames += 1
                    if j.faces:
                        report.frames_with_faces += 1
                        report.faces += len(j.faces)
                        for f in j.faces:
                            report.tracks[f.track_id] = report.tracks.get(f.track_id, 0) + 1
                    if not _put(q_out, j, stop):
                        break
                pending, n_crops = [], 0
                if progress is not None:
                    el = time.perf_counter() - t_start
                    progress(report.frames, expected, report.frames / max(el, 1e-9))
            if errors:
                break
        _put(q_out, _STOP, stop)
        for th in threads:
            while th.is_alive():
                th.join(timeout=0.1)
                if errors:
                    stop.set()
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=5.0)
        analyzer.close()
    if errors:
        raise errors[0]


def inspect_video(
    path: str | Path,
    landmarks: LandmarkerOptions,
    tracker: TrackerOptions,
    max_seconds: float | None = None,
    allow_protocols: bool = False,
) -> dict[str, Any]:
    """Streams, faces and track ids of a video, for `faceage-video info`.

    Returns:
        A JSON-able dict: the video info, and per track id its first/last time and frame count.
    """
    reader = VideoReader(str(path), ReaderOptions(end_s=max_seconds, allow_protocols=allow_protocols))
    tracks: dict[int, dict[str, Any]] = {}
    frames = 0
    with reader, FaceLandmarker(landmarks) as lm:
        trk = FaceTracker(tracker)
        for fr in reader:
            frames += 1
            for face in trk.update(lm.detect(fr.image, round(fr.time_s * 1000)), fr.time_s):
                b = face_box(face.landmarks)
                t = tracks.setdefault(face.track_id, {"first_s": fr.time_s, "frames": 0, "box": None})
                t["last_s"] = fr.time_s
                t["frames"] += 1
                t["box"] = [round(float(v), 1) for v in b]
        info = reader.info
        warn = list(reader.warnings)
    d = asdict(info)
    d["fps"] = float(info.fps)
    d["time_base"] = str(info.time_base)
    return {"info": d, "frames_scanned": frames, "tracks": tracks, "warnings": warn}
