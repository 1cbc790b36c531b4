"""Scale-out on Ray: one long clip, or many shots, split at keyframes and aged by warm actors.

    driver                                           Ray actors (one per GPU, or per `cpus_per_actor` CPUs)
    ──────                                           ──────────
    probe + keyframe seeks (packets only) ─ plan ─►  segment k: seek to the keyframe before its warm-up,
                                                     decode → analyse → generate → smooth → blend, the
                                                     warm-up frames dropped, → encode (video only) to a file
    one progress bar ◄──── frames done ──────────── (a tiny progress actor collects the counts)
    stitch: remux every segment's packets ◄─ path ── (or the file's bytes as an object ref)
            + the source audio, packet for packet

Segments. The driver seeks (packet level, nothing decoded) to about every `segment_seconds` and takes the
nearest keyframe, so a segment starts where the decoder can start. Segment k holds the frames whose pts lie in
[keyframe_k, keyframe_k+1); each worker decodes from a little earlier, `warmup_frames` frames that go through
landmarks, tracking, scene-cut detection and temporal smoothing but are not written, so a seam neither jumps
nor flickers (the state of a fresh segment converges to the single-process state within a few frames).

Encoded once, stitched without re-encoding. Each segment is encoded by the same `VideoWriter` as a
single-process run, with the same codec settings and the input's own pts, into the output's container;
every segment therefore starts with a keyframe and carries the same stream headers, and the driver copies
the packets into the output in order (a remux). The audio is copied once, from the source, packet for packet,
by the writer's own remuxer, so frame count, pts and audio equal a single-process run's; pixels differ only
where the encoder placed its keyframes (codec noise).

Faults. An actor that dies (process killed, node lost) fails only its own segment; the driver starts a
replacement actor and runs the segment again, at most `max_retries` times. An error raised by the pipeline
itself (a bad input, a bad option) is not retried: it fails its shot, and in a batch the other shots go on.

Data movement. Frames never leave a worker: segments travel as file paths on storage every node sees
(`transport="path"`), or as the encoded bytes in Ray's object store (`transport="bytes"`). Workers read the
input themselves, so it must be visible to every node (shared storage, or a URL with `allow_protocols`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from faceage_video.errors import FaceAgeError, OptionsError
from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoInfo, open_input, probe
from faceage_video.media.remux import stitch_segments
from faceage_video.pipeline import AgeOptions, Report, expected_frames, finish_report, progress_bar

SegmentTransport = Literal["auto", "path", "bytes"]
TRANSPORTS: tuple[SegmentTransport, ...] = ("auto", "path", "bytes")

# Packets read forward from a seek point while looking for the next keyframe (a long GOP ends far sooner).
_MAX_SCAN_PACKETS = 20_000
# Engines an actor keeps loaded at once (a batch may mix models or directions).
_MAX_ENGINES = 2
# Seconds between polls of the cluster for finished segments and progress.
_POLL_S = 0.25


class DistributedError(FaceAgeError):
    """Ray is missing or unreachable, or a segment failed on every allowed retry."""

    exit_code = 7


@dataclass(frozen=True)
class RayOptions:
    """How a clip or a batch is spread over a Ray cluster.

    Attributes:
        address: the cluster: None or "local" starts a local one (all this machine's CPUs and GPUs); "auto"
            joins the cluster this machine belongs to; "ray://host:10001" or "host:6379" a remote one. When
            this process is already connected (`ray.init` was called) that connection is used.
        segment_seconds: target segment length; segments start at the keyframe nearest each multiple.
            Longer segments spend less on warm-up and seeking, shorter ones balance load across more actors.
        warmup_frames: frames decoded and processed before each segment (except the first) and then dropped,
            so tracking and temporal smoothing have settled when the segment's first frame is written.
        actors: worker actors; None: one per GPU on a GPU cluster, else one per `cpus_per_actor` CPUs.
            Never more than there are segments.
        cpus_per_actor: CPUs each actor reserves (decode, landmarks, blend and encode run on the CPU even
            when the generator runs on a GPU).
        gpus_per_actor: GPUs each actor reserves; None: 1 where the cluster has GPUs, else 0.
        max_retries: times a segment is run again after its worker died; then its shot fails.
        transport: how encoded segments reach the driver: "path" (files on storage every node sees), "bytes"
            (object refs of the encoded file's bytes), "auto" (path on a one-node cluster, else bytes).
        work_dir: folder for the segment files; None: a hidden folder beside each output, removed at the end.
        fail_segment: test-only fault injection: the worker running this segment index kills its own process
            halfway through the segment's first attempt.
    """

    address: str | None = None
    segment_seconds: float = 4.0
    warmup_frames: int = 12
    actors: int | None = None
    cpus_per_actor: float = 2.0
    gpus_per_actor: float | None = None
    max_retries: int = 2
    transport: SegmentTransport = "auto"
    work_dir: str | None = None
    fail_segment: int | None = None

    def __post_init__(self) -> None:
        if not self.segment_seconds > 0:
            raise OptionsError(f"segment_seconds must be > 0, got {self.segment_seconds}")
        if not 0 <= self.warmup_frames <= 1000:
            raise OptionsError(f"warmup_frames must be in 0..1000, got {self.warmup_frames}")
        if self.actors is not None and self.actors < 1:
            raise OptionsError(
                f"actors must be >= 1 (or None for one per GPU / per cpus_per_actor), got {self.actors}"
            )
        if not self.cpus_per_actor > 0:
            raise OptionsError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise OptionsError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor}")
        if not 0 <= self.max_retries <= 100:
            raise OptionsError(f"max_retries must be in 0..100, got {self.max_retries}")
        if self.transport not in TRANSPORTS:
            raise OptionsError(f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")


# ----------------------------------------------------------------------------------------------------------
# Planning (driver): keyframes found by seeking, never by decoding


@dataclass(frozen=True)
class Segment:
    """One piece of a clip, as a worker processes it.

    Attributes:
        index: position in the clip.
        start_pts: first written frame: pts >= this (None for the first segment: from `read_start_s`).
        end_pts: frames from this pts on belong to the next segment (None for the last).
        start_s, end_s: the same bounds in reader seconds (None: the clip's start / end).
        read_start_s: where the worker's reader starts, warm-up included (`ReaderOptions.start_s`).
        read_end_s: where the worker's reader stops (`ReaderOptions.end_s`): the run's end, last segment only.
    """

    index: int
    start_pts: int | None
    end_pts: int | None
    start_s: float | None
    end_s: float | None
    read_start_s: float | None
    read_end_s: float | None

    def is_warmup(self, frame: DecodedFrame) -> bool:
        """True for a lead-in frame, processed only to settle the state."""
        if self.start_pts is None:
            return False
        if frame.pts is not None:
            return frame.pts < self.start_pts
        return self.start_s is not None and frame.time_s < self.start_s

    def is_past(self, frame: DecodedFrame) -> bool:
        """True once the frames belong to the next segment."""
        if self.end_pts is None:
            return False
        if frame.pts is not None:
            return frame.pts >= self.end_pts
        return self.end_s is not None and frame.time_s >= self.end_s


def _keyframes_around(container: Any, stream: Any, target_pts: int) -> tuple[int | None, int | None]:
    """The video keyframes just before (or at) and just after `target_pts`, by one seek and a packet scan."""
    try:
        container.seek(target_pts, stream=stream, backward=True, any_frame=False)
    except Exception:  # an unseekable file gets no boundary here
        return None, None
    before: int | None = None
    scanned = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            scanned += 1
            if packet.is_keyframe:
                if packet.pts <= target_pts:
                    before = packet.pts if before is None else max(before, packet.pts)
                else:
                    return before, packet.pts
            if scanned > _MAX_SCAN_PACKETS:
                break
    except Exception:  # a read error ends the scan; what was found stands
        pass
    return before, None


def plan_segments(
    path: str,
    info: VideoInfo,
    segment_seconds: float,
    warmup_frames: int = 12,
    start_s: float | None = None,
    end_s: float | None = None,
    allow_protocols: bool = False,
) -> list[Segment]:
    """Split [start_s, end_s) of a clip at keyframes into segments of about `segment_seconds`.

    Only packets are read: one seek per boundary and a scan to the next keyframe, whatever the clip's length.

    Args:
        path: the clip.
        info: its `probe` facts.
        segment_seconds: target length; a boundary is the keyframe nearest each target that leaves at least
            half a segment since the previous boundary.
        warmup_frames: lead-in frames each segment after the first decodes and drops.
        start_s, end_s: the part of the clip to process, in reader seconds (as `AgeOptions`).
        allow_protocols: see `ReaderOptions.allow_protocols`.

    Returns:
        The segments in order; one when the clip has no usable keyframe inside the range.
    """
    tb = info.time_base
    origin = Fraction(info.start_time_s)
    first_s = start_s or 0.0
    last_s = end_s if end_s is not None else info.duration_s
    fps = float(info.fps) if info.fps else 25.0
    boundaries: list[int] = []
    container = open_input(path, allow_protocols)
    try:
        stream = container.streams.video[0]
        prev_s = first_s
        while True:
            target_s = prev_s + segment_seconds
            if last_s is not None and target_s > last_s - segment_seconds / 2:
                break
            before, after = _keyframes_around(container, stream, int((origin + Fraction(target_s)) / tb))
            best: tuple[float, int] | None = None
            for kf in (before, after):
                if kf is None:
                    continue
                kf_s = float(kf * tb) - info.start_time_s
                if kf_s < prev_s + segment_seconds / 2 or (last_s is not None and kf_s >= last_s - 1.0 / fps):
                    continue
                if best is None or abs(kf_s - target_s) < abs(best[0] - target_s):
                    best = (kf_s, kf)
            if best is None:
                break  # no keyframe ahead that leaves a useful last segment: the rest is one segment
            boundaries.append(best[1])
            prev_s = best[0]
    finally:
        container.close()

    def seconds(pts: int) -> float:
        return float(pts * tb) - info.start_time_s  # the reader's own clock, so comparisons agree

    segments: list[Segment] = []
    starts: list[int | None] = [None, *boundaries]
    ends: list[int | None] = [*boundaries, None]
    for k, (s_pts, e_pts) in enumerate(zip(starts, ends, strict=True)):
        if s_pts is None:
            seg_start, read_start = start_s, start_s  # exactly what a single-process run reads
        else:
            seg_start = seconds(s_pts)
            read_start = max(first_s, seg_start - (warmup_frames + 0.5) / fps)
        segments.append(
            Segment(
                index=k,
                start_pts=s_pts,
                end_pts=e_pts,
                start_s=seg_start,
                end_s=seconds(e_pts) if e_pts is not None else end_s,
                read_start_s=read_start,
                read_end_s=end_s if e_pts is None else None,
            )
        )
    return segments


# ----------------------------------------------------------------------------------------------------------
# Workers


@dataclass(frozen=True)
class _SegmentJob:
    shot: int
    segment: Segment
    input: str
    suffix: str  # the output's extension: segments use the output's container
    out_dir: str | None  # "path" transport: where the segment file goes (storage every node sees)
    crash_after: int | None  # fault injection: exit the process after this many frames


@dataclass
class _SegmentResult:
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


class _SegmentWorker:
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

    def run(
        self, job: _SegmentJob, options: AgeOptions, progress: Any
    ) -> tuple[_SegmentResult, bytes | None]:
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
        crash_after = job.crash_after

        def on_progress(frames: int) -> None:
            progress.set.remote(key, frames)
            if crash_after is not None and frames >= crash_after:
                os._exit(17)  # fault injection: die as a killed worker would, mid-segment

        report = Report(input=job.input, output=str(path))
        try:
            reader = VideoReader(
                job.input,
                ReaderOptions(
                    start_s=seg.read_start_s, end_s=seg.read_end_s, allow_protocols=options.allow_protocols
                ),
            )
            with reader:
                writer = VideoWriter(path, reader.info, replace(options.writer, audio=False))
                with writer:
                    stage_s = run_stages(
                        _segment_frames(iter(reader), seg),
                        writer,
                        eng,
                        replace(options, progress=False),
                        report,
                        warmup=seg.is_warmup,
                        on_progress=on_progress,
                    )
            progress.set.remote(key, report.frames)
            result = _SegmentResult(
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


class _ProgressCounter:
    """A Ray actor holding frames done per segment; a retried segment starts again from 0."""

    def __init__(self) -> None:
        self._done: dict[tuple[int, int], int] = {}

    def set(self, key: tuple[int, int], frames: int) -> None:
        self._done[key] = frames

    def total(self) -> int:
        return sum(self._done.values())


# ----------------------------------------------------------------------------------------------------------
# The pool: actors, scheduling, retries, progress


@dataclass
class ShotPlan:
    """One clip to age on the cluster (a batch has many).

    Attributes:
        input, output: paths.
        options: the shot's options.
        info: the input's facts (filled in by `prepare`).
        segments: the plan (filled in by `prepare`).
        key: the caller's name for the shot (a batch's shot id).
    """

    input: str
    output: str
    options: AgeOptions
    key: str = ""
    info: VideoInfo | None = None
    segments: list[Segment] = field(default_factory=list)
    work_dir: Path | None = None
    results: dict[int, _SegmentResult] = field(default_factory=dict)
    retries: int = 0
    started: float = 0.0
    failed: BaseException | None = None


def _drop(ray: Any, ref: Any) -> None:
    """Read a failed task's other return, so Ray does not report its error as unhandled."""
    with contextlib.suppress(Exception):
        ray.get(ref, timeout=5)


def _check_ray_options(opts: AgeOptions) -> None:
    if not isinstance(opts.faces, str):
        raise OptionsError(
            "faces given by track id need the whole clip's tracking in one process: with --ray use "
            "--faces all or largest, or run without --ray"
        )
    if opts.matte or opts.side_by_side:
        raise OptionsError("--matte and --side-by-side are not supported with --ray yet; run without --ray")


# Ray resolves a node address of 127.0.0.1 to the machine's public one unless clusters are off; with this
# set before Ray is imported, a local cluster's GCS, raylet, workers and agents all bind to loopback only.
_RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCAL_NODE_IP = "127.0.0.1"


def _import_ray(local: bool = False) -> Any:
    """Import Ray; for a local cluster (`local`) first make it bind to loopback (see `_RAY_LOCAL_ONLY_ENV`)."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault(_RAY_LOCAL_ONLY_ENV, "0")
    try:
        import ray
    except ImportError:
        raise DistributedError(
            "Ray is not installed: install the extra with `pip install 'faceage-video[ray]'` "
            '(or `pip install "ray[default]"`)'
        ) from None
    return ray


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """While starting a local cluster, keep Ray from replacing 127.0.0.1 by the public address.

    Ray reads `_RAY_LOCAL_ONLY_ENV` once, at import; when Ray was imported before `_import_ray` could set it,
    the flag it derives is set here for the duration of `ray.init` (a private name, so only if present).
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    before = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None and before is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if constants is not None and before is not None:
            constants.ENABLE_RAY_CLUSTER = before


class RayPool:
    """Warm aging actors on a Ray cluster, and the driver-side scheduler that feeds them segments.

    Use as a context manager; the actors live until `close()`, so a batch loads each model once per actor.
    """

    def __init__(self, options: RayOptions = RayOptions()) -> None:
        """Connect to (or start) the cluster.

        Raises:
            DistributedError: Ray is not installed or the cluster cannot be reached.
        """
        self.options = options
        addr = options.address
        local = addr is None or addr == "local"
        ray = self._ray = _import_ray(local)
        self._started_ray = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            try:
                if local:
                    # Loopback only: a local cluster must not listen on the network.
                    with _loopback_only(ray):
                        ray.init(_node_ip_address=LOCAL_NODE_IP, dashboard_host=LOCAL_NODE_IP, **kw)
                    if ray.util.get_node_ip_address() != LOCAL_NODE_IP:
                        ray.shutdown()
                        raise RuntimeError(
                            f"Ray was imported before faceage-video could set {_RAY_LOCAL_ONLY_ENV}=0, so the "
                            "local cluster would listen on every interface; set it in the environment"
                        )
                else:
                    ray.init(address=addr, **kw)
            except Exception as exc:
                raise DistributedError(
                    f"cannot start or join the Ray cluster {addr or 'local'!r} "
                    f"({type(exc).__name__}: {exc}); check the address "
                    "(host:6379, ray://host:10001, auto or local)"
                ) from exc
            self._started_ray = True
        self._actors: list[Any] = []
        self._progress_actor: Any = None
        self._size: tuple[int, float, float] = (1, options.cpus_per_actor, 0.0)
        self.retries = 0

    # -- lifetime

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the actors, and the cluster when this pool started it."""
        ray = self._ray
        for a in [*self._actors, self._progress_actor]:
            if a is not None:
                with contextlib.suppress(Exception):
                    ray.kill(a)
        self._actors = []
        self._progress_actor = None
        if self._started_ray:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._started_ray = False

    # -- actors

    def _transport(self) -> Literal["path", "bytes"]:
        if self.options.transport != "auto":
            return self.options.transport
        alive = [n for n in self._ray.nodes() if n.get("Alive")]
        return "path" if len(alive) <= 1 else "bytes"

    def _sizing(self, n_segments: int) -> tuple[int, float, float]:
        """Actors to run, and the CPUs and GPUs each reserves, so that all of them fit the cluster.

        Without `actors`: one per GPU (or per `gpus_per_actor`), else one per `cpus_per_actor` CPUs. With
        `actors`: that many, each reserving at most its share of the cluster (an actor that cannot be placed
        would wait forever).
        """
        o = self.options
        res = self._ray.cluster_resources()
        have_cpu, have_gpu = float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))
        gpus = o.gpus_per_actor if o.gpus_per_actor is not None else (1.0 if have_gpu >= 1 else 0.0)
        cpus = min(o.cpus_per_actor, have_cpu)
        if o.actors is not None:
            n = o.actors
            cpus = min(cpus, have_cpu / n)
            if gpus > 0:
                gpus = min(gpus, have_gpu / n)
        elif gpus > 0:
            n = int(have_gpu // gpus)
        else:
            n = int(have_cpu // cpus)
        return max(1, min(n, n_segments)), cpus, gpus

    def _new_actor(self) -> Any:
        _, cpus, gpus = self._size
        cls = self._ray.remote(_SegmentWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        return cls.remote()

    def _ensure(self, n_segments: int) -> None:
        if self._progress_actor is None:
            self._progress_actor = self._ray.remote(_ProgressCounter).options(num_cpus=0).remote()
        if not self._actors:
            self._size = self._sizing(n_segments)
        while len(self._actors) < self._size[0]:
            self._actors.append(self._new_actor())

    # -- planning

    def prepare(self, shot: ShotPlan, segment_seconds: float | None = None) -> None:
        """Probe the input and plan its segments (on the driver: packets only).

        Raises:
            InputError, OutputError, OptionsError: the input, output or options cannot work (nothing is run).
        """
        o = shot.options
        _check_ray_options(o)
        from faceage_video.media.writer import VideoWriter

        ReaderOptions(start_s=o.start_s, end_s=o.end_s, allow_protocols=o.allow_protocols)
        shot.info = probe(shot.input, o.allow_protocols)
        dur = shot.info.duration_s
        if o.start_s is not None and dur is not None and o.start_s >= dur:
            raise OptionsError(
                f"start ({o.start_s} s) is at or past the end of {shot.input} ({dur:.2f} s); "
                "pick a start inside the clip"
            )
        # Open (and drop) the final writer once, so a bad output path, codec/container or audio/container
        # pairing fails here, with the writer's own message, before any worker starts.
        VideoWriter(
            shot.output,
            shot.info,
            o.writer,
            audio_source=shot.input if o.writer.audio else None,
            start_s=o.start_s,
            end_s=o.end_s,
            allow_protocols=o.allow_protocols,
        ).abort()
        shot.segments = plan_segments(
            shot.input,
            shot.info,
            segment_seconds or self.options.segment_seconds,
            self.options.warmup_frames,
            o.start_s,
            o.end_s,
            o.allow_protocols,
        )

    # -- running

    def run(
        self,
        shots: Sequence[ShotPlan],
        on_done: Callable[[ShotPlan, Report | None, BaseException | None], None] | None = None,
        progress: bool = True,
    ) -> list[Report | BaseException]:
        """Age every prepared shot; a failed shot does not stop the others.

        Segments of all shots share one queue, so actors stay busy across shot boundaries; a shot is stitched
        on the driver as soon as its last segment is in.

        Args:
            shots: shots whose `prepare` succeeded (a shot with `failed` set is passed through as failed).
            on_done: called on the driver as each shot finishes, with its report or its error.
            progress: show one progress bar for all frames of all shots.

        Returns:
            Per shot, in order, its `Report` or the exception that failed it.
        """
        ray = self._ray
        transport = self._transport()
        outcome: dict[int, Report | BaseException] = {}
        queue: deque[tuple[int, int, int]] = deque()
        total_frames = 0
        for i, shot in enumerate(shots):
            if shot.failed is not None:
                outcome[i] = shot.failed
                if on_done:
                    on_done(shot, None, shot.failed)
                continue
            assert shot.info is not None
            work = Path(self.options.work_dir or Path(shot.output).resolve().parent)
            shot.work_dir = work / f".{Path(shot.output).name}.segments-{secrets.token_hex(4)}"
            shot.work_dir.mkdir(parents=True, exist_ok=False)
            shot.started = time.perf_counter()
            queue.extend((i, k, 0) for k in range(len(shot.segments)))
            total_frames += expected_frames(shot.info, shot.options.start_s, shot.options.end_s) or 0
        if not queue:
            return [outcome[i] for i in range(len(shots))]
        self._ensure(len(queue))
        idle = list(self._actors)
        # meta ref -> (actor, bytes ref, shot, segment, attempt)
        inflight: dict[Any, tuple[Any, Any, int, int, int]] = {}
        prog, task = progress_bar(total_frames or None, progress)
        t0 = time.perf_counter()

        def fail_shot(i: int, exc: BaseException) -> None:
            shots[i].failed = exc
            outcome[i] = exc
            for item in [q for q in queue if q[0] == i]:
                queue.remove(item)
            if shots[i].work_dir is not None:
                shutil.rmtree(shots[i].work_dir, ignore_errors=True)  # type: ignore[arg-type]
            if on_done:
                on_done(shots[i], None, exc)

        def submit(actor: Any, i: int, k: int, attempt: int) -> None:
            shot = shots[i]
            seg = shot.segments[k]
            crash = None
            if self.options.fail_segment == k and attempt == 0:
                est = expected_frames(shot.info, seg.start_s, seg.end_s) if shot.info else None  # type: ignore[arg-type]
                crash = max(1, (est or 2) // 2)
            job = _SegmentJob(
                shot=i,
                segment=seg,
                input=shot.input,
                suffix=Path(shot.output).suffix,
                out_dir=str(shot.work_dir) if transport == "path" else None,
                crash_after=crash,
            )
            meta, data = actor.run.options(num_returns=2).remote(job, shot.options, self._progress_actor)
            inflight[meta] = (actor, data, i, k, attempt)

        try:
            with prog:
                while queue or inflight:
                    while idle and queue:
                        i, k, attempt = queue.popleft()
                        submit(idle.pop(), i, k, attempt)
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_POLL_S)
                    for ref in ready:
                        actor, data_ref, i, k, attempt = inflight.pop(ref)
                        shot = shots[i]
                        try:
                            res: _SegmentResult = ray.get(ref)
                        except (
                            ray.exceptions.RayActorError,
                            ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ObjectLostError,
                        ) as exc:
                            # The worker died: replace it, and run its segment again.
                            _drop(ray, data_ref)
                            with contextlib.suppress(Exception):
                                ray.kill(actor)
                            self._actors.remove(actor)
                            fresh = self._new_actor()
                            self._actors.append(fresh)
                            idle.append(fresh)
                            if shot.failed is not None:
                                continue
                            if attempt >= self.options.max_retries:
                                fail_shot(
                                    i,
                                    DistributedError(
                                        f"{shot.input}: segment {k} failed {attempt + 1} times (worker died: "
                                        f"{type(exc).__name__}); raise max_retries or check the workers' logs"
                                    ),
                                )
                            else:
                                self.retries += 1
                                shot.retries += 1
                                queue.appendleft((i, k, attempt + 1))
                            continue
                        except ray.exceptions.RayTaskError as exc:
                            _drop(ray, data_ref)
                            idle.append(actor)
                            if shot.failed is None:
                                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                                fail_shot(i, cause)
                            continue
                        idle.append(actor)
                        if shot.failed is not None:
                            continue
                        if res.path is None:
                            assert shot.work_dir is not None
                            p = shot.work_dir / f"seg{k:05d}{Path(shot.output).suffix}"
                            p.write_bytes(ray.get(data_ref))
                            res.path = str(p)
                        del data_ref
                        shot.results[k] = res
                        if len(shot.results) == len(shot.segments):
                            try:
                                outcome[i] = self._finish(shot)
                            except Exception as exc:  # one shot's failure must not stop the rest
                                fail_shot(i, exc)
                            else:
                                if on_done:
                                    on_done(shot, outcome[i], None)  # type: ignore[arg-type]
                    done = ray.get(self._progress_actor.total.remote())
                    el = time.perf_counter() - t0
                    prog.update(task, completed=done, fps=f"{done / max(el, 1e-9):.1f}")
        finally:
            for shot in shots:
                if shot.work_dir is not None:
                    shutil.rmtree(shot.work_dir, ignore_errors=True)
        return [outcome[i] for i in range(len(shots))]

    def _finish(self, shot: ShotPlan) -> Report:
        """Stitch a shot whose segments are all in, and build its report."""
        assert shot.info is not None and shot.work_dir is not None
        o = shot.options
        results = [shot.results[k] for k in range(len(shot.segments))]
        report = Report(input=shot.input, output=shot.output)
        for r in results:
            report.frames += r.frames
            report.frames_with_faces += r.frames_with_faces
            report.faces += r.faces
            for tid, n in r.tracks.items():
                report.tracks[tid] = report.tracks.get(tid, 0) + n
            for stage, s in r.stage_s.items():
                report.stage_s[stage] = round(report.stage_s.get(stage, 0.0) + s, 3)
            for w in r.warnings:
                if w not in report.warnings:
                    report.warnings.append(w)
        report.model = results[0].model if results else {}
        report.options = {
            "faces": o.faces,
            "mask": o.blend.mask,
            "temporal": o.temporal.strength,
            "codec": o.writer.codec,
            "batch_size": o.engine.batch_size,
            "xla": o.engine.xla,
            "ray": {
                "segments": len(results),
                "actors": len(self._actors),
                "retries": shot.retries,
                "transport": self._transport(),
                "segment_seconds": self.options.segment_seconds,
                "warmup_frames": self.options.warmup_frames,
                "nodes": sorted({r.node for r in results}),
            },
        }
        src, dst = shot.input, shot.output
        paths = [r.path for r in results if r.path and r.frames > 0]

        def stitch() -> list[str]:
            assert shot.info is not None
            return stitch_segments(
                paths,
                dst,
                src,
                shot.info,
                audio=o.writer.audio,
                start_s=o.start_s,
                end_s=o.end_s,
                allow_protocols=o.allow_protocols,
            )

        if report.frames_with_faces == 0:
            # As age_video: no face anywhere means the output frames are the input's.
            msg = "no face found in the whole clip: the output frames equal the input's"
            whole = o.start_s is None and o.end_s is None and o.writer.audio
            if whole and Path(src).suffix.lower() == Path(dst).suffix.lower():
                tmp = Path(dst).with_name(f".{Path(dst).name}.copy")
                shutil.copyfile(src, tmp)
                tmp.replace(dst)
                msg = "no face found in the whole clip: the output is a copy of the input"
            else:
                report.warnings.extend(stitch())
            report.warnings.append(msg)
        else:
            report.warnings.extend(stitch())
        shutil.rmtree(shot.work_dir, ignore_errors=True)
        shot.work_dir = None
        return finish_report(report, shot.started, o.report)


def age_video_ray(
    input: str | Path,
    output: str | Path,
    options: AgeOptions | None = None,
    address: str | None = None,
    segment_seconds: float | None = None,
    ray_options: RayOptions | None = None,
    pool: RayPool | None = None,
) -> Report:
    """`age_video` on a Ray cluster: split at keyframes, age the segments on warm actors, stitch by remux.

    Args:
        input: a video every worker can read (shared storage, or a URL with `allow_protocols`).
        output: the file to write (atomic, as `age_video`).
        options: as `age_video`; faces by track id, `matte` and `side_by_side` are refused.
        address: overrides `ray_options.address` ("local", "auto", "host:6379", "ray://host:10001").
        segment_seconds: overrides `ray_options.segment_seconds`.
        ray_options: the scale-out settings (default: the pool's, else `RayOptions()`); with `pool`, only its
            segment_seconds applies.
        pool: warm actors to reuse (a batch); otherwise a pool is made for this call and closed after it.

    Returns:
        The run's `Report`; `report.options["ray"]` says segments, actors and retries. Track ids in
        `report.tracks` are per segment, summed.

    Raises:
        InputError, OutputError, ModelError, OptionsError: as `age_video`.
        DistributedError: Ray is missing or unreachable, or a segment failed on every retry.
    """
    ropts = ray_options or (pool.options if pool is not None else RayOptions())
    if address is not None:
        ropts = replace(ropts, address=address)
    if segment_seconds is not None:
        ropts = replace(ropts, segment_seconds=segment_seconds)
    opts = options or AgeOptions()
    _check_ray_options(opts)
    shot = ShotPlan(input=str(input), output=str(output), options=opts)
    own = pool is None
    p = pool or RayPool(ropts)
    try:
        p.prepare(shot, ropts.segment_seconds)
        (res,) = p.run([shot], progress=opts.progress)
    finally:
        if own:
            p.close()
    if isinstance(res, BaseException):
        raise res
    if res.frames_with_faces == 0:
        warnings.warn(res.warnings[-1], stacklevel=2)
    return res
