"""Measuring a live run: counters and per-frame samples, and the typed report they end in.

`LiveStats` is written by the capture thread, the generator and the loop, and read by the preview server's
threads, so every access holds its lock. `LiveReport` is what a run returns; `LiveReport.to_dict` is its
JSON form (schema `faceage-live-stats/1`: the `--stats` file and the preview page's /stats).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from faceage_video.live.controls import ControlState
from faceage_video.live.options import GeneratorMode, SourceKind

STATS_SCHEMA = "faceage-live-stats/1"
EndReason = Literal["source_ended", "quit", "interrupted", "time_limit", "error"]
# Seconds of output the HUD's rolling fps and latency cover.
HUD_WINDOW_S = 2.0
# Most per-frame samples kept for the percentiles (an hour at 30 fps); older samples fall out.
_MAX_SAMPLES = 108_000


@dataclass(frozen=True)
class FrameCounts:
    """Frames of a run. `captured` = `processed` + `dropped` once the run has ended.

    Attributes:
        captured: frames the source delivered (after the `--fps` limit).
        processed: frames every output took.
        dropped: stale frames replaced in the capture slot before the loop took them.
        with_faces: processed frames with at least one aged face. faces_aged: faces over all frames.
        faces_last: faces aged in the last frame.
        reused_residual: faces pasted with a residual generated for an earlier frame.
        rate_skipped: frames skipped to keep to the asked `--fps` (not drops).
    """

    captured: int
    processed: int
    dropped: int
    with_faces: int
    faces_aged: int
    faces_last: int
    reused_residual: int
    rate_skipped: int


@dataclass(frozen=True)
class FpsSummary:
    """Frames per second: after the warm-up, over the whole output span, and of the generator."""

    sustained: float | None
    overall: float | None
    generator: float | None


@dataclass(frozen=True)
class LatencySummary:
    """Capture → output latency in ms over `n` frames; None where there were no frames."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None
    n: int


@dataclass(frozen=True)
class Spread:
    """Median and 95th percentile of a sample in ms; None where it is empty."""

    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class CpuUse:
    """CPU time of the whole process (every thread): what a frame costs whatever else the machine runs.

    1000 / `per_frame_ms` · cores is the fps the cores could sustain.
    """

    process_s: float
    cores_used: float | None
    per_frame_ms: float | None


@dataclass(frozen=True)
class Rolling:
    """fps, p50/p95 latency (ms) and generator runs per second over the last `HUD_WINDOW_S` seconds."""

    fps: float
    p50: float
    p95: float
    gen_fps: float

    def rounded(self) -> Rolling:
        return Rolling(*(round(v, 2) for v in (self.fps, self.p50, self.p95, self.gen_fps)))


@dataclass(frozen=True)
class Measures:
    """What `LiveStats` measured, up to now."""

    schema: str
    wall_s: float
    warmup_s: float
    frames: FrameCounts
    drop_rate: float
    fps: FpsSummary
    latency_ms: LatencySummary
    residual_age_ms: Spread
    stage_ms: dict[str, Spread]
    generator_runs: int
    cpu: CpuUse


@dataclass(frozen=True)
class PacerState:
    """The generation pacer: adaptive or fixed, its k now and the largest k it reached."""

    adaptive: bool
    k: int
    k_max: int


@dataclass(frozen=True)
class ModelInfo:
    """The model that ran: its bundle name and training steps."""

    name: str
    steps: int | None


@dataclass(frozen=True)
class LiveReport(Measures):
    """A live run's statistics and what ran: what `run_realtime` returns and `--stats` writes.

    Attributes (beyond `Measures`):
        source, source_kind: the source as given, and what it is.
        outputs: the outputs' names (a preview's real URL once bound).
        width, height, source_fps: the frames' size and rate.
        capture_queue_max, generator_queue_max: deepest the hand-off slots ever were (1 at most).
        generator_skipped: generator requests replaced before the generator took them.
        generator_mode, generate_every: async or sync, and the pacer's state.
        controls: the controls now. rolling: the HUD's rolling figures, rounded.
        model: the model, once loaded. ended: why the run ended ("error" while it runs).
    """

    source: str
    source_kind: SourceKind
    outputs: tuple[str, ...]
    width: int
    height: int
    source_fps: float
    capture_queue_max: int
    generator_queue_max: int
    generator_skipped: int
    generator_mode: GeneratorMode
    generate_every: PacerState
    controls: ControlState
    rolling: Rolling
    model: ModelInfo | None
    ended: EndReason

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema `faceage-live-stats/1`); `model` is {} before a model is loaded."""
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        if self.model is None:
            d["model"] = {}
        return d


def _percentiles(values: Iterable[float], qs: tuple[int, ...]) -> list[float | None]:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return [None for _ in qs]
    return [round(float(np.percentile(arr, q)), 2) for q in qs]


def _spread(values: Iterable[float]) -> Spread:
    return Spread(*_percentiles(values, (50, 95)))


class LiveStats:
    """Counters and per-frame samples of a live run, safe to read from the preview server's threads."""

    def __init__(self, warmup_s: float) -> None:
        self._lock = threading.Lock()
        self.warmup_s = warmup_s
        self._t_start = time.perf_counter()
        self._cpu_start = time.process_time()
        self.captured = 0
        self.processed = 0
        self.with_faces = 0
        self.faces_aged = 0
        self.faces_last = 0
        self.reused = 0
        self.generated = 0
        self.rate_skipped = 0
        self.latency_ms: deque[float] = deque(maxlen=_MAX_SAMPLES)
        self.residual_age_ms: deque[float] = deque(maxlen=_MAX_SAMPLES)
        self.stage_ms: dict[str, deque[float]] = {}
        self._recent: deque[tuple[float, float]] = deque()  # (output time, latency ms)
        self._gen_times: deque[float] = deque()
        self.t_first_out: float | None = None
        self.t_last_out: float | None = None
        self._sustained_n = 0
        self._sustained_t0: float | None = None

    def start(self, now: float) -> None:
        """The run starts now: wall and CPU time count from here."""
        with self._lock:
            self._t_start = now
            self._cpu_start = time.process_time()

    def frame_captured(self) -> None:
        with self._lock:
            self.captured += 1

    def frame_rate_skipped(self) -> None:
        with self._lock:
            self.rate_skipped += 1

    def stage(self, name: str, seconds: float) -> None:
        with self._lock:
            self.stage_ms.setdefault(name, deque(maxlen=_MAX_SAMPLES)).append(seconds * 1000.0)

    def generator_ran(self, now: float) -> None:
        with self._lock:
            self.generated += 1
            self._gen_times.append(now)
            while self._gen_times and self._gen_times[0] < now - HUD_WINDOW_S:
                self._gen_times.popleft()

    def frame_out(self, capture_t: float, now: float, faces: int, reused: int, ages_ms: list[float]) -> None:
        """Record one frame handed to every output."""
        lat = (now - capture_t) * 1000.0
        with self._lock:
            self.processed += 1
            self.faces_last = faces
            if faces:
                self.with_faces += 1
                self.faces_aged += faces
            self.reused += reused
            self.residual_age_ms.extend(ages_ms)
            self.latency_ms.append(lat)
            self._recent.append((now, lat))
            while self._recent and self._recent[0][0] < now - HUD_WINDOW_S:
                self._recent.popleft()
            if self.t_first_out is None:
                self.t_first_out = now
            self.t_last_out = now
            if now >= self.t_first_out + self.warmup_s:
                if self._sustained_t0 is None:
                    self._sustained_t0 = now
                else:
                    self._sustained_n += 1

    def rolling(self) -> Rolling:
        """fps, p50/p95 latency and generator rate over the last couple of seconds, for the HUD."""
        with self._lock:
            recent = list(self._recent)
            gens = len(self._gen_times)
        fps = p50 = p95 = 0.0
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0]
            fps = (len(recent) - 1) / span if span > 0 else 0.0
            lats = np.array([r[1] for r in recent])
            p50, p95 = float(np.percentile(lats, 50)), float(np.percentile(lats, 95))
        return Rolling(fps, p50, p95, gens / HUD_WINDOW_S)

    def measure(self, dropped: int) -> Measures:
        """Everything measured so far; `dropped` comes from the capture slot, which counts the drops."""
        with self._lock:
            now = time.perf_counter()
            wall = now - self._t_start
            cpu = time.process_time() - self._cpu_start
            lat = list(self.latency_ms)
            first, last = self.t_first_out, self.t_last_out
            if self._sustained_t0 is not None and self._sustained_n >= 1 and last is not None:
                sustained: float | None = self._sustained_n / max(last - self._sustained_t0, 1e-9)
            elif first is not None and last is not None and self.processed >= 2 and last > first:
                sustained = (self.processed - 1) / (last - first)
            else:
                sustained = None
            out_span = (last - first) if first is not None and last is not None else 0.0
            p50, p95, p99 = _percentiles(lat, (50, 95, 99))
            return Measures(
                schema=STATS_SCHEMA,
                wall_s=round(wall, 3),
                warmup_s=self.warmup_s,
                frames=FrameCounts(
                    captured=self.captured,
                    processed=self.processed,
                    dropped=dropped,
                    with_faces=self.with_faces,
                    faces_aged=self.faces_aged,
                    faces_last=self.faces_last,
                    reused_residual=self.reused,
                    rate_skipped=self.rate_skipped,
                ),
                drop_rate=round(dropped / self.captured, 4) if self.captured else 0.0,
                fps=FpsSummary(
                    sustained=round(sustained, 2) if sustained is not None else None,
                    overall=round((self.processed - 1) / out_span, 2) if out_span > 0 else None,
                    generator=round(self.generated / out_span, 2) if out_span > 0 else None,
                ),
                latency_ms=LatencySummary(
                    p50=p50,
                    p95=p95,
                    p99=p99,
                    mean=round(float(np.mean(lat)), 2) if lat else None,
                    max=round(float(np.max(lat)), 2) if lat else None,
                    n=len(lat),
                ),
                residual_age_ms=_spread(self.residual_age_ms),
                stage_ms={k: _spread(v) for k, v in sorted(self.stage_ms.items())},
                generator_runs=self.generated,
                cpu=CpuUse(
                    process_s=round(cpu, 3),
                    cores_used=round(cpu / wall, 2) if wall > 0 else None,
                    per_frame_ms=round(1000.0 * cpu / self.processed, 2) if self.processed else None,
                ),
            )
