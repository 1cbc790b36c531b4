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

import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.temporal import ResidualSmoother, SceneCutDetector, TemporalOptions
from faceage_video.errors import InputError, OptionsError, OutputError
from faceage_video.face.align import align_face, apply_affine
from faceage_video.face.blend import (
    BlendOptions,
    apply_change,
    crop_mask,
    paste_back,
    paste_back_mesh,
    warp_change,
)
from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, face_box, oval_polygon
from faceage_video.face.mesh import CanonicalMesh, MeshFit
from faceage_video.face.stabilize import MeshStabilizer, StabilizerOptions
from faceage_video.face.tracker import FaceTracker, TrackedFace, TrackerOptions
from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoInfo, VideoReader
from faceage_video.media.sequence import (
    IntegerTransfer,
    Plate,
    PlateFrame,
    SequenceOptions,
    SequenceReader,
    SequenceWriter,
    apply_plate_change,
    is_sequence_path,
    matte_plate,
    matte_spec,
    output_pattern,
    with_matte_alpha,
)
from faceage_video.media.writer import (
    MatteWriter,
    VideoWriter,
    WriterOptions,
    check_writable_file,
    matte_format,
    write_file_atomic,
)
from faceage_video.types import Affine, Crop, FaceSelection, Frame, Mask

T = TypeVar("T")
# Decoded 10/12-bit video comes as 16-bit RGB (ReaderOptions.deep), display-referred like the 8-bit frames.
_DEEP_VIDEO = IntegerTransfer(65535.0)

# Bytes all three inter-stage queues may hold together (see the module docstring).
QUEUE_BUDGET_BYTES = 384 * 2**20
# Bytes one in-flight frame costs per pixel: the RGB input (3), the RGB output (3), the float32 matte (4).
FRAME_COST_PER_PX = 10
# Frames alive beyond the queues: one in each worker's hands and one being pasted (see the docstring).
_FRAMES_IN_HAND = 3


@dataclass(frozen=True)
class AgeOptions:
    """Everything `age_video` needs, one frozen options object per stage.

    Attributes:
        engine: model, direction, strength, batch size, XLA.
        landmarks: landmarker model, most faces, detection thresholds, downscale width.
        tracker: association and One Euro landmark smoothing.
        temporal: residual smoothing strength and scene-cut threshold.
        blend: mask kind, feather, colour match.
        writer: codec and quality of the output; `writer.audio` False drops the audio.
        faces: "all", "largest", or a tuple of track ids (as `faceage-video info` lists them).
        start_s: first second to process; None = from the start.
        end_s: stop before this second; None = to the end.
        matte: also write the blend mask here (grey video, or PNG sequence for a folder/pattern).
        side_by_side: also write an input | output preview video here.
        report: also write a JSON report here.
        allow_protocols: let FFmpeg read URLs and indirect demuxers (off: local files and pipes only).
        sequence: frame rate, gap policy and colour management of an image-sequence input.
        matte_alpha: write the matte as the alpha channel of an RGB sequence output.
        queue_size: frames each inter-stage queue holds.
        progress: show a progress bar on the terminal.
    """

    engine: EngineOptions = field(default_factory=EngineOptions)
    landmarks: LandmarkerOptions = field(default_factory=LandmarkerOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    temporal: TemporalOptions = field(default_factory=TemporalOptions)
    blend: BlendOptions = field(default_factory=BlendOptions)
    writer: WriterOptions = field(default_factory=WriterOptions)
    faces: FaceSelection | tuple[int, ...] = "all"
    start_s: float | None = None
    end_s: float | None = None
    matte: str | None = None
    side_by_side: str | None = None
    report: str | None = None
    allow_protocols: bool = False
    sequence: SequenceOptions = field(default_factory=SequenceOptions)
    matte_alpha: bool = False
    queue_size: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.faces, str) and self.faces not in ("all", "largest"):
            raise OptionsError(f"faces must be 'all', 'largest' or track ids, got {self.faces!r}")
        if not isinstance(self.faces, str) and not all(isinstance(i, int) and i >= 0 for i in self.faces):
            raise OptionsError(f"face track ids must be integers >= 0, got {self.faces!r}")
        if not 1 <= self.queue_size <= 256:
            raise OptionsError(f"queue_size must be in 1..256, got {self.queue_size}")
        if self.landmarks.mode != "video":
            raise OptionsError("the video pipeline needs the landmarker in 'video' mode")
        # Constructing these validates start/end with their own messages.
        ReaderOptions(start_s=self.start_s, end_s=self.end_s)


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


@dataclass
class _FaceJob:
    track_id: int
    m: Affine | MeshFit  # frame → crop similarity (five-point space), or the mesh registration
    crop: Crop  # (S, S, 3) uint8
    mask: Mask  # (S, S) in crop (canonical) coordinates
    mesh: CanonicalMesh | None = None  # set in canonical mesh space


@dataclass
class _FrameJob:
    frame: DecodedFrame
    faces: list[_FaceJob]
    ended: list[int]  # track ids whose smoothing state must be dropped before this frame
    cut: bool  # a scene cut starts at this frame
    image: Frame | None = None  # the output picture once blended
    matte: Mask | None = None
    plate: Plate | None = None  # the output plate at full precision, for a sequence input


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


def select_faces(faces: list[TrackedFace], selection: FaceSelection | tuple[int, ...]) -> list[TrackedFace]:
    """Keep the faces the user asked for: all, the largest one, or those with given track ids."""
    if selection == "all" or not faces:
        return faces
    if selection == "largest":

        def area(f: TrackedFace) -> float:
            b = face_box(f.landmarks)
            return float((b[2] - b[0]) * (b[3] - b[1]))

        return [max(faces, key=area)]
    wanted = set(selection)
    return [f for f in faces if f.track_id in wanted]


class FaceAnalyzer:
    """Landmarks → tracking → alignment for one stream, frame by frame, in order.

    Shared by the offline pipeline, the real-time mode and `faceage-video info`.
    """

    def __init__(
        self,
        landmarks: LandmarkerOptions,
        tracker: TrackerOptions,
        temporal: TemporalOptions,
        blend: BlendOptions,
        template_size: int,
        template: Any,
        selection: FaceSelection | tuple[int, ...] = "all",
        stabilizer: StabilizerOptions | None = None,
    ) -> None:
        self.landmarker = FaceLandmarker(landmarks)
        # In canonical mesh space the change rides on every landmark, so the mesh follows the skin: the raw
        # detections carried along the optical flow (`face.stabilize`). On known motion this cut the jitter
        # from 1.8 % to 0.4 % of the inter-ocular distance per frame, where One Euro smoothing, which lags
        # behind real motion, made it 4.3 % (`python -m benchmarks.geometry`, benchmarks/README.md).
        self.mesh_mode = isinstance(template, CanonicalMesh)
        if stabilizer is None:
            stabilizer = StabilizerOptions() if self.mesh_mode else StabilizerOptions(weight=0.0)
        self.stabilizer = MeshStabilizer(stabilizer)
        self.tracker = FaceTracker(tracker)
        self.cuts = SceneCutDetector(temporal.scene_cut_threshold)
        self.blend = blend
        self.template = template
        self.size = template_size
        self.selection = selection

    def analyze(self, frame: DecodedFrame) -> _FrameJob:
        """Detect, track and align the faces of one frame."""
        cut = self.cuts(frame.image)
        ended: list[int] = []
        if cut:
            ended = [t.track_id for t in self.tracker.tracks]
            self.tracker.reset()
            self.stabilizer.reset()
        detections = self.landmarker.detect(frame.image, round(frame.time_s * 1000))
        tracked = self.tracker.update(detections, frame.time_s)
        ended += self.tracker.ended
        for tid in self.tracker.ended:
            self.stabilizer.reset(tid)
        if self.mesh_mode:
            tracked = [replace(f, landmarks=self.stabilizer(frame.image, f.track_id, f.raw)) for f in tracked]
        jobs: list[_FaceJob] = []
        for face in select_faces(tracked, self.selection):
            if isinstance(self.template, CanonicalMesh):
                jobs.append(self._mesh_job(frame.image, face))
                continue
            crop, m = align_face(frame.image, face.landmarks, self.template)
            oval = apply_affine(m, oval_polygon(face.landmarks)) if self.blend.mask == "face" else None
            mask = crop_mask(self.blend.mask, self.size, oval, self.blend.feather)
            jobs.append(_FaceJob(face.track_id, m, crop, mask))
        return _FrameJob(frame, jobs, ended, cut)

    def _mesh_job(self, image: Frame, face: TrackedFace) -> _FaceJob:
        mesh = self.template
        assert isinstance(mesh, CanonicalMesh)
        fit = mesh.fit(face.landmarks, image.shape)
        mask = mesh.face_mask(fit, self.blend.mask)
        return _FaceJob(face.track_id, fit, mesh.to_canonical(image, fit), mask, mesh)

    def close(self) -> None:
        self.landmarker.close()


def render(
    jobs: list[_FrameJob],
    engine: AgingEngine,
    smoother: ResidualSmoother,
    blend: BlendOptions,
    mattes: bool = True,
) -> None:
    """Generate every face of consecutive frames in one batch, smooth per track, paste back (in place)."""
    crops = [f.crop for j in jobs for f in j.faces]
    residuals = engine.residual(np.stack(crops)) if crops else np.zeros((0,), np.float32)
    composite(jobs, residuals, smoother, blend, mattes)


def composite(
    jobs: list[_FrameJob],
    residuals: NDArray[np.float32],
    smoother: ResidualSmoother,
    blend: BlendOptions,
    mattes: bool = True,
) -> None:
    """Smooth each face's residual per track and paste it back, frame by frame in order (in place).

    Args:
        jobs: consecutive frames; `residuals` holds one (S, S, 3) change per face, in job then face order.
        mattes: also build each frame's full-frame matte (`job.matte`); off, canonical-space faces keep
            every per-face buffer to the face's region, so memory does not grow with the frame size.
    """
    k = 0
    for job in jobs:
        for tid in job.ended:
            smoother.reset(tid)
        if job.cut:
            smoother.reset()
        img = job.frame.image
        matte: Mask | None = None
        # A sequence or deep-video frame also takes the change on its full-precision plate.
        plate = job.frame.plate
        transfer = job.frame.transfer if isinstance(job.frame, PlateFrame) else _DEEP_VIDEO
        for face in job.faces:
            res = smoother.smooth(face.track_id, residuals[k])
            k += 1
            if face.mesh is not None and isinstance(face.m, MeshFit):
                img, warped = paste_back_mesh(img, res, face.mask, face.m, face.mesh, blend)
                if plate is not None:
                    plate = apply_plate_change(plate, warped, transfer)
                if not mattes:
                    continue
                if matte is None:
                    matte = np.zeros(img.shape[:2], np.float32)
                if not warped.empty:
                    x0, y0, x1, y1 = warped.box
                    np.maximum(matte[y0:y1, x0:x1], warped.alpha, out=matte[y0:y1, x0:x1])
                continue
            assert not isinstance(face.m, MeshFit)
            generated = face.crop.astype(np.float32) + res
            if plate is None:
                img, alpha = paste_back(img, generated, face.crop, face.m, face.mask, blend)
            else:
                warped = warp_change(img.shape, generated, face.crop, face.m, face.mask, blend)
                img, alpha = apply_change(img, warped)
                plate = apply_plate_change(plate, warped, transfer)
            matte = alpha if matte is None else np.maximum(matte, alpha)
        job.image = img
        job.matte = matte
        job.plate = plate


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


def _progress(total: int | None, enabled: bool) -> tuple[Any, Any]:
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


def _expected_frames(info: VideoInfo, start_s: float | None, end_s: float | None) -> int | None:
    if info.duration_s is None:
        return info.frame_count
    span = min(end_s if end_s is not None else info.duration_s, info.duration_s) - (start_s or 0.0)
    return max(0, round(span * float(info.fps))) if info.fps else info.frame_count


def _same_path(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs(src: str, dst: str, opts: AgeOptions) -> None:
    """Refuse, before any work, extra outputs that would overwrite the input or another output, a report that
    could not be written (missing or read-only folder: it is written last, so it would fail only after the
    whole run), and a malformed matte pattern."""
    extra = (("--matte", opts.matte), ("--side-by-side", opts.side_by_side), ("--report", opts.report))
    named = [("output", dst)] + [(what, path) for what, path in extra if path]
    for i, (what, path) in enumerate(named):
        if _same_path(path, src):
            raise OutputError(f"{path}: {what} is the input file; choose a different output path")
        for other, other_path in named[:i]:
            if _same_path(path, other_path):
                raise OutputError(f"{path}: {what} and {other} are the same file; give each its own path")
    if opts.report:
        check_writable_file(opts.report, "--report", [("input", src), *named[:-1]])
    if opts.matte:
        matte_format(opts.matte)  # a bad PNG pattern fails now, not at the first frame


def queue_frames(width: int, height: int, queue_size: int) -> int:
    """Frames each inter-stage queue may hold for frames of this size: `queue_size`, capped by the byte
    budget, at least 1."""
    per_queue = QUEUE_BUDGET_BYTES // 3
    return max(1, min(queue_size, per_queue // max(1, width * height * FRAME_COST_PER_PX)))


def pending_cap(image: Frame) -> int:
    """Most frames that may wait for one generator batch: a queue's share of the byte budget, at least 1."""
    h, w = image.shape[:2]
    return queue_frames(w, h, 1 << 30)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else physical memory); None if
    unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_frame_memory(info: VideoInfo, batch_size: int, queue_size: int) -> int:
    """Refuse frames too large for this machine; return the frames each queue may hold.

    Raises:
        InputError: even one frame a queue (plus the generator batch and the frames in hand) needs more than
            the available memory; the message names the size, the need and the fix.
    """
    q = queue_frames(info.width, info.height, queue_size)
    waiting = min(batch_size, queue_frames(info.width, info.height, 1 << 30))  # see pending_cap
    frame = info.width * info.height * FRAME_COST_PER_PX
    need = (3 * q + waiting + _FRAMES_IN_HAND) * frame
    have = available_memory()
    if have is not None and need > have:
        raise InputError(
            f"{info.path}: {info.width}×{info.height} frames need about {need / 2**30:.1f} GiB here "
            f"({3 * q + waiting + _FRAMES_IN_HAND} frames in flight) but {have / 2**30:.1f} GiB is "
            "available; lower --batch-size, free memory, or downscale the clip first"
        )
    return q


def _can_copy_input(src: str, dst: str, opts: AgeOptions) -> bool:
    """Whether a clip without faces may be handed back as a byte copy: whole clip, same container, audio
    kept, and a local file."""
    return (
        opts.start_s is None
        and opts.end_s is None
        and Path(src).suffix.lower() == Path(dst).suffix.lower()
        and opts.writer.audio
        and os.path.isfile(src)
    )


def age_video(
    input: str | Path,
    output: str | Path,
    options: AgeOptions | None = None,
    engine: AgingEngine | None = None,
) -> Report:
    """Age or de-age every selected face of a video.

    Args:
        input: a video file (or, with `allow_protocols`, a URL).
        output: the file to write; its extension picks the container. Written to a temporary file beside it
            and renamed only on success, so an error or Ctrl-C leaves nothing under this name.
        options: every stage's options; defaults age with the bundled model.
        engine: a loaded engine to reuse across calls (its options win over `options.engine`).

    Returns:
        The run's `Report` (also written to `options.report` when set).

    Raises:
        InputError, OutputError, ModelError, OptionsError: bad input, output, model or options, each with a
            message naming the cause and the fix.
    """
    opts = options or AgeOptions()
    src, dst = str(input), str(output)
    t0 = time.perf_counter()
    _check_outputs(src, dst, opts)
    seq = _sequence_io(src, dst, opts)
    reader: VideoReader | SequenceReader
    if seq:
        reader = SequenceReader(src, opts.sequence, opts.start_s, opts.end_s)
        if opts.matte_alpha and "A" in reader.info.channels:
            raise OptionsError(
                f"{src}: has an alpha channel already; write the matte as its own sequence (--matte PATTERN)"
            )
    else:
        # deep=None: a 10/12-bit video is decoded at 16 bits too, and the change applied at that precision.
        reader = VideoReader(
            src,
            ReaderOptions(
                start_s=opts.start_s, end_s=opts.end_s, allow_protocols=opts.allow_protocols, deep=None
            ),
        )
    timer = _Timer()
    with reader:
        info = reader.info.video if isinstance(reader, SequenceReader) else reader.info
        if opts.start_s is not None and info.duration_s is not None and opts.start_s >= info.duration_s:
            raise OptionsError(
                f"start ({opts.start_s} s) is at or past the end of {src} ({info.duration_s:.2f} s); "
                "pick a start inside the clip"
            )
        batch_size = engine.options.batch_size if engine is not None else opts.engine.batch_size
        stage_opts = replace(opts, queue_size=check_frame_memory(info, batch_size, opts.queue_size))
        writer_cm: VideoWriter | SequenceWriter
        if isinstance(reader, SequenceReader) and is_sequence_path(dst):
            writer_cm = SequenceWriter(output_pattern(dst, reader.info.pattern))
        else:
            writer_cm = VideoWriter(
                dst,
                info,
                opts.writer,
                audio_source=src if opts.writer.audio and not seq else None,
                start_s=opts.start_s,
                end_s=opts.end_s,
                allow_protocols=opts.allow_protocols,
            )
        with writer_cm as writer:
            startup: dict[str, float] = {}
            eng = engine or load_engine(opts.engine, startup)
            report = Report(
                input=src,
                output=dst,
                model={
                    "name": eng.manifest.name,
                    "steps": eng.manifest.training.get("steps"),
                    "direction": eng.options.direction,
                    "strength": eng.options.strength,
                },
                options={
                    "faces": opts.faces,
                    "mask": opts.blend.mask,
                    "temporal": opts.temporal.strength,
                    "codec": opts.writer.codec,
                    "batch_size": eng.options.batch_size,
                    "xla": eng.xla,
                },
            )
            matte: MatteWriter | SequenceWriter | None = None
            if opts.matte and isinstance(reader, SequenceReader) and is_sequence_path(opts.matte):
                matte = SequenceWriter(output_pattern(opts.matte, reader.info.pattern))
            elif opts.matte:
                matte = MatteWriter(opts.matte, info, opts.start_s)
            sbs = None
            if opts.side_by_side:
                sbs_info = replace(info, width=info.width * 2)
                sbs = VideoWriter(
                    opts.side_by_side,
                    sbs_info,
                    replace(opts.writer, audio=False),
                    start_s=opts.start_s,
                    end_s=opts.end_s,
                )
            try:
                _run_stages(
                    reader,
                    writer,
                    matte,
                    sbs,
                    eng,
                    stage_opts,
                    timer,
                    report,
                    _expected_frames(info, opts.start_s, opts.end_s),
                    started=t0,
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
            copy = not seq and report.frames_with_faces == 0 and _can_copy_input(src, dst, opts)
            if copy and isinstance(writer, VideoWriter):
                # Nothing to change: hand back the input itself, bit for bit, in the writer's atomic commit.
                writer.commit_copy_of(src)
    if report.frames_with_faces == 0:
        msg = "no face found in the whole clip: the output frames equal the input's"
        if copy:
            msg = "no face found in the whole clip: the output is a copy of the input"
        report.warnings.append(msg)
        warnings.warn(msg, stacklevel=2)
    report.stage_s = {k: round(v, 3) for k, v in timer.seconds.items()}
    return finish_report(report, t0, opts.report)


def _sequence_io(src: str, dst: str, opts: AgeOptions) -> bool:
    """Whether the input is an image sequence; refuses output forms that do not fit the input.

    Raises:
        OutputError: a sequence output (or `matte_alpha`) without a sequence input.
    """
    seq_in, seq_out = is_sequence_path(src), is_sequence_path(dst)
    if seq_out and not seq_in:
        raise OutputError(
            f"{dst}: an image-sequence output needs an image-sequence input; write a video file instead"
        )
    if opts.matte_alpha and not seq_out:
        raise OutputError(f"{dst}: --matte-alpha needs an image-sequence output, e.g. out.%04d.exr")
    return seq_in


def load_engine(options: EngineOptions, startup: dict[str, float]) -> AgingEngine:
    """Build the engine, adding to `startup` the seconds of the TensorFlow import and of the model build."""
    t = time.perf_counter()
    import tensorflow  # noqa: F401  # imported by the engine anyway; timed on its own

    startup["import_tensorflow"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    eng = AgingEngine(options)
    startup["model"] = round(time.perf_counter() - t, 3)
    return eng


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


def run_stages(
    frames: Iterable[DecodedFrame],
    writer: VideoWriter,
    engine: AgingEngine,
    options: AgeOptions,
    report: Report,
    *,
    warmup: Callable[[DecodedFrame], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Run the stages (analyse → generate/smooth/blend → encode) on any frame source into an open writer.

    `age_video` is this plus opening the reader and writers; a distributed worker uses it on one segment.
    `options.matte`, `side_by_side`, `start_s`/`end_s` and `report` are not used here.

    Args:
        frames: decoded frames in presentation order.
        writer: where the output frames go; the caller closes it.
        engine: a loaded engine.
        options: the stages' options.
        report: counts are added to it (warm-up frames are not counted).
        warmup: frames for which this is True go through every stage, so tracking and temporal smoothing
            settle on them, but are not written or counted (a segment's lead-in).
        on_progress: called with the number of frames written so far after each generator batch.

    Returns:
        Seconds spent in each stage.
    """
    timer = _Timer()
    _run_stages(frames, writer, None, None, engine, options, timer, report, None, warmup, on_progress)
    return dict(timer.seconds)


def _write_plate(writer: SequenceWriter, fr: PlateFrame, plate: Plate, matte: Mask, opts: AgeOptions) -> None:
    """One sequence frame under its own number; with `matte_alpha` the matte becomes its alpha channel."""
    if opts.matte_alpha:
        plate, spec = with_matte_alpha(fr, plate, matte)
        writer.write_plate(fr.number, plate, spec)
    else:
        writer.write_plate(fr.number, plate, fr.spec)


def _run_stages(
    frames: Iterable[DecodedFrame],
    writer: VideoWriter | SequenceWriter,
    matte: MatteWriter | SequenceWriter | None,
    sbs: VideoWriter | None,
    engine: AgingEngine,
    opts: AgeOptions,
    timer: _Timer,
    report: Report,
    expected: int | None,
    warmup: Callable[[DecodedFrame], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
    started: float | None = None,
) -> None:
    """The stages; with `started` (the run's `perf_counter()` start) it stamps `report.startup_s`."""
    # Full-frame mattes only where something writes them: a matte output, or a sequence (matte as alpha).
    need_mattes = matte is not None or isinstance(writer, SequenceWriter) or opts.matte_alpha
    stop = threading.Event()
    errors: list[BaseException] = []
    q_frames: queue.Queue[Any] = queue.Queue(opts.queue_size)
    q_jobs: queue.Queue[Any] = queue.Queue(opts.queue_size)
    q_out: queue.Queue[Any] = queue.Queue(opts.queue_size)
    t_landmarker = time.perf_counter()
    analyzer = FaceAnalyzer(
        opts.landmarks, opts.tracker, opts.temporal, opts.blend, engine.size, engine.template, opts.faces
    )
    report.startup["landmarker"] = round(time.perf_counter() - t_landmarker, 3)
    smoother = ResidualSmoother(opts.temporal)
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
                _write_plate(writer, fr, job.plate if job.plate is not None else fr.plate, m, opts)
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
    prog, task = _progress(expected, opts.progress)
    t_start = time.perf_counter()
    if started is not None:
        report.startup_s = t_start - started
    try:
        with prog:
            pending: list[_FrameJob] = []
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
                    render(pending, engine, smoother, opts.blend, need_mattes)
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
                    el = time.perf_counter() - t_start
                    prog.update(task, completed=report.frames, fps=f"{report.frames / max(el, 1e-9):.1f}")
                    if on_progress is not None:
                        on_progress(report.frames)
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
