"""Planning on the driver: the scale-out options, and segments found at keyframes by seeking (packets only).

A segment starts at a keyframe, so a worker's decoder can start there; it is read from `warmup_frames` earlier
so tracking and temporal smoothing have settled when its first frame is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from faceage_video.errors import FaceAgeError, OptionsError
from faceage_video.media.reader import DecodedFrame, VideoInfo, open_input

SegmentTransport = Literal["auto", "path", "bytes"]
TRANSPORTS: tuple[SegmentTransport, ...] = ("auto", "path", "bytes")

# Packets read forward from a seek point while looking for the next keyframe (a long GOP ends far sooner).
_MAX_SCAN_PACKETS = 20_000


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
        segment_timeout_s: seconds the first attempt at a segment may take before its worker is taken for
            lost: killed, replaced, and the segment run again (counted against `max_retries`); each retry
            may take twice as long as the attempt before it (`attempt_timeout_s`). A killed actor's task
            reference has been seen never to resolve; None waits for ever.
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
    segment_timeout_s: float | None = 3600.0

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
        if self.segment_timeout_s is not None and not self.segment_timeout_s > 0:
            raise OptionsError(f"segment_timeout_s must be > 0 or None, got {self.segment_timeout_s}")
        if self.transport not in TRANSPORTS:
            raise OptionsError(f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")

    def attempt_timeout_s(self, attempt: int) -> float | None:
        """Seconds attempt `attempt` (0 first) at a segment may take: `segment_timeout_s` doubled for each
        retry, None for ever. A retry starts a fresh worker that loads the model before its first frame, and
        an overrun may be a busy machine rather than a lost worker, so each retry is given more time."""
        if self.segment_timeout_s is None:
            return None
        return self.segment_timeout_s * 2.0 ** max(attempt, 0)


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
