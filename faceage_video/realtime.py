"""Real-time mode: a live source through the same stages as `age`, latency before completeness.

    capture thread ─► LatestSlot ─► main loop: FaceAnalyzer.analyze ─► render ─► HUD ─► outputs
    (camera, URL,     (1 frame)     (landmarks, track, align)   (smooth,        (window, virtualcam,
     paced file)                              │                  paste back)     stream, file, preview)
                                              ▼                    ▲
                             LatestSlot (1 request) ─► generator thread ─► ResidualCache

The stages are the offline pipeline's own (`pipeline.FaceAnalyzer`, `pipeline.render`, `select_faces` inside
the analyzer); only the scheduling differs.

Drop policy (ARCHITECTURE principle 8): every hand-off is a `LatestSlot` holding one item, and a newer item
replaces an unread one. A stale camera frame is dropped (and counted), never queued, so latency cannot build
up however slow a stage is: at most one captured frame waits, and every processed frame is the newest one.

Graceful degradation: the generator runs in its own thread on the newest crops it is offered. The main loop
never waits for it; it pastes the last residual generated for each still-tracked face at the face's *current*
alignment. Residuals live in aligned crop coordinates, where head motion is already cancelled, so a residual a
few frames old still fits the face. When the model keeps up every frame gets a fresh residual; when it does
not, the video keeps its frame rate and the effect updates less often. The video never freezes.

Latency: each frame carries its capture time (`time.perf_counter()` when the source delivered it; for a file
played at real-time pace, when it was released at its timestamp). Capture → output latency is measured when
the last output has taken the frame, together with fps and drops, for the HUD and `--stats`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.temporal import ResidualSmoother, TemporalOptions
from faceage_video.errors import OptionsError, OutputError, SourceError
from faceage_video.face.blend import BlendOptions
from faceage_video.face.landmarks import LandmarkerOptions
from faceage_video.face.tracker import OneEuroOptions, TrackerOptions
from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoInfo, VideoReader, is_url
from faceage_video.media.writer import VideoWriter, WriterOptions
from faceage_video.pipeline import FaceAnalyzer, render
from faceage_video.types import DIRECTIONS, Direction, FaceSelection, Frame

T = TypeVar("T")

SourceKind = Literal["camera", "url", "file"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("camera", "url", "file")
OutputKind = Literal["window", "virtualcam", "stream", "file", "preview"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("window", "virtualcam", "stream", "file", "preview")
GeneratorMode = Literal["async", "sync"]
GENERATOR_MODES: tuple[GeneratorMode, ...] = ("async", "sync")
EndReason = Literal["source_ended", "quit", "interrupted", "time_limit", "error"]

# Stream outputs: URL scheme → FFmpeg muxer.
STREAM_MUXERS: dict[str, str] = {
    "udp": "mpegts",
    "tcp": "mpegts",
    "srt": "mpegts",
    "rtp": "rtp_mpegts",
    "rtmp": "flv",
    "rtmps": "flv",
}
STATS_SCHEMA = "faceage-live-stats/1"
# Landmark smoothing for live use. The offline default (min_cutoff 1 Hz, beta 0.05) lags about 45 ms behind a
# head moving half a face per second; here beta 0.3 lifts the cutoff to 1.5 + 0.3·50 = 16.5 Hz at that speed
# (under 10 ms of lag), and the higher still cutoff still removes the sub-pixel jitter of a face held still.
LIVE_ONE_EURO = OneEuroOptions(min_cutoff=1.5, beta=0.3, d_cutoff=1.0)
# Residual EMA for live use: weight 0.3 on history averages about 1.4 frames (the offline 0.6: 2.5 frames),
# and the motion-aware term still follows a new expression at once.
LIVE_TEMPORAL = TemporalOptions(strength=0.3)
# Strength change per +/- key press or page button.
STRENGTH_STEP = 0.1
# Seconds of output the HUD's rolling fps and latency cover.
_HUD_WINDOW_S = 2.0
# Most per-frame samples kept for the percentiles (an hour at 30 fps); older samples fall out.
_MAX_SAMPLES = 108_000
# Wall time between polls of the hand-off slots, so quit, Ctrl-C and window keys are seen promptly.
_POLL_S = 0.05
# A camera that fails this many reads in a row has gone away.
_CAMERA_MAX_FAILURES = 10
# Time base of the pts written to file and stream outputs.
_OUT_TIME_BASE = Fraction(1, 90_000)
_CAMERA_RE = re.compile(r"^(\d+|/dev/video\d+)$")


# ----------------------------------------------------------------------------------------------------------
# Options


def parse_size(value: str | None) -> tuple[int, int] | None:
    """`640x480` → (640, 480); None or "" → None.

    Raises:
        OptionsError: not WIDTHxHEIGHT with even sides of at least 32 px.
    """
    if value is None or not value.strip():
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", value)
    if not m:
        raise OptionsError(f"--size must be WIDTHxHEIGHT such as 640x480, got {value!r}")
    return int(m.group(1)), int(m.group(2))


def source_kind(source: str) -> SourceKind:
    """A camera index or /dev/videoN is a camera, a string with a scheme is a URL, anything else a file."""
    if _CAMERA_RE.match(source.strip()):
        return "camera"
    if is_url(source):
        return "url"
    return "file"


def output_kind(output: str) -> OutputKind:
    """What an `--output` value names: window, virtualcam, an http:// preview, a stream URL, or a file.

    Raises:
        OptionsError: a URL whose scheme is neither http (the preview) nor a stream scheme.
    """
    o = output.strip()
    if o in ("window", "virtualcam"):
        return o  # type: ignore[return-value]
    if is_url(o):
        scheme = o.split(":", 1)[0].lower()
        if scheme == "http":
            return "preview"
        if scheme in STREAM_MUXERS:
            return "stream"
        raise OptionsError(
            f"output {output!r}: unknown scheme {scheme!r}; use http://127.0.0.1:PORT for the preview "
            f"page or a stream URL ({', '.join(s + '://' for s in STREAM_MUXERS)})"
        )
    return "file"


@dataclass(frozen=True)
class RealtimeOptions:
    """Everything `run_realtime` needs, one frozen options object per stage.

    Attributes:
        source: a camera index ("0") or /dev/videoN, a URL (needs `allow_protocols`), or a video file.
        outputs: one or more of "window", "virtualcam", a stream URL (udp://host:port as MPEG-TS,
            rtmp://… as FLV), "http://127.0.0.1:PORT" (the preview page), or a file path.
        realtime: play a file source at its own pace, as a camera would: frames are released at their
            timestamps and a frame not taken before the next is released is dropped. Off: every frame of the
            file is processed, as fast as the loop goes (no drops). Ignored for cameras and URLs.
        loop: start a file source again at its end instead of stopping.
        size: (width, height) asked of the camera; every frame is cropped to this aspect and scaled to it.
            None keeps the source's size (cropped to even sides for the encoders).
        fps: frame rate asked of the camera; frames beyond it are skipped (not counted as drops).
        allow_protocols: allow URL sources (RTSP, UDP, HTTP…).
        reconnect_tries: how many times a URL source that ends or drops is reopened before giving up.
        reconnect_delay_s: wait before the first reconnect; doubles with each try.
        io_timeout_s: a URL source that sends nothing for this long has dropped.
        engine: model, starting direction and strength, batch size (1: latency first), XLA.
        landmarks: landmarker options. `detect_width` (640 here) downscales wider frames before landmarking:
            a 1280×720 camera costs what a 640×360 one does, and a 640×480 one is left as it is.
        tracker: association and landmark smoothing (`LIVE_ONE_EURO`: low lag).
        temporal: residual EMA (`LIVE_TEMPORAL`: low lag) and scene cuts.
        blend: mask, feather, colour match.
        faces: "all", "largest", or track ids.
        generator: "async" runs the generator in its own thread and re-pastes the last residual of each
            tracked face, so the frame rate never waits for the model; "sync" generates every frame's faces
            before it is shown (fresher effect, lower frame rate when the model is slow).
        generate_every: offer crops to the generator on every k-th frame with faces only, leaving CPU to the
            rest of the loop; in between, the last residual is reused. 0 adapts k to the machine (see
            `GenerationPacer`); 1 offers every frame (the async generator still takes only the newest).
        generator_threads: TensorFlow intra-op threads for the generator; 0 leaves TensorFlow's default.
            Applied only if TensorFlow has not run anything in this process yet.
        hud: draw fps, latency, drops and the controls' state on the output.
        stats: write the run's statistics here as JSON at the end.
        max_seconds: stop after this many seconds; None runs until the source ends or quit.
        warmup_s: seconds after the first output left out of the sustained fps.
        enabled: start with the effect on.
        jpeg_quality: quality of the preview page's MJPEG frames.
        preview_public: let the preview page listen on a non-loopback address (it warns); off, such an
            address is refused.
        file_crf: x264 quality of file outputs.
        stream_crf: x264 quality of stream outputs.
        window_title: title of the OpenCV window.
    """

    source: str = "0"
    outputs: tuple[str, ...] = ("window",)
    realtime: bool = False
    loop: bool = False
    size: tuple[int, int] | None = None
    fps: float | None = None
    allow_protocols: bool = False
    reconnect_tries: int = 5
    reconnect_delay_s: float = 0.5
    io_timeout_s: float = 5.0
    engine: EngineOptions = field(default_factory=lambda: EngineOptions(batch_size=1, xla=False))
    landmarks: LandmarkerOptions = field(
        default_factory=lambda: LandmarkerOptions(max_faces=2, detect_width=640)
    )
    tracker: TrackerOptions = field(
        default_factory=lambda: TrackerOptions(max_faces=2, max_missed=3, one_euro=LIVE_ONE_EURO)
    )
    temporal: TemporalOptions = LIVE_TEMPORAL
    blend: BlendOptions = field(default_factory=BlendOptions)
    faces: FaceSelection | tuple[int, ...] = "all"
    generator: GeneratorMode = "async"
    generate_every: int = 0
    generator_threads: int = 0
    hud: bool = False
    stats: str | None = None
    max_seconds: float | None = None
    warmup_s: float = 1.0
    enabled: bool = True
    jpeg_quality: int = 80
    preview_public: bool = False
    file_crf: int = 20
    stream_crf: int = 23
    window_title: str = "faceage-video"

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise OptionsError("source is empty; pass a camera index, /dev/videoN, a URL or a video file")
        if not self.outputs:
            raise OptionsError(
                "give at least one output (window, virtualcam, a stream URL, http://…, a file)"
            )
        kinds = [output_kind(o) for o in self.outputs]
        for k in ("window", "virtualcam"):
            if kinds.count(k) > 1:  # type: ignore[arg-type]
                raise OptionsError(f"the {k} output is given twice; give it once")
        if len(set(self.outputs)) != len(self.outputs):
            raise OptionsError(f"an output is given twice: {list(self.outputs)}")
        if source_kind(self.source) == "url" and not self.allow_protocols:
            raise OptionsError(
                f"source {self.source!r} is a URL; URL sources are off by default for safety. "
                "Fix: add --allow-protocols to read RTSP/UDP/HTTP streams"
            )
        if self.size is not None:
            w, h = self.size
            if w < 32 or h < 32 or w % 2 or h % 2:
                raise OptionsError(f"size must have even sides of at least 32 px, got {w}x{h}")
        if self.fps is not None and not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            raise OptionsError(f"fps must be in (0, 240], got {self.fps}")
        if self.reconnect_tries < 0:
            raise OptionsError(f"reconnect_tries must be >= 0, got {self.reconnect_tries}")
        if not (math.isfinite(self.reconnect_delay_s) and self.reconnect_delay_s >= 0):
            raise OptionsError(f"reconnect_delay_s must be >= 0 seconds, got {self.reconnect_delay_s}")
        if not (math.isfinite(self.io_timeout_s) and self.io_timeout_s > 0):
            raise OptionsError(f"io_timeout_s must be > 0 seconds, got {self.io_timeout_s}")
        if self.landmarks.mode != "video":
            raise OptionsError("the real-time mode needs the landmarker in 'video' mode")
        if self.generator not in GENERATOR_MODES:
            raise OptionsError(f"generator must be one of {GENERATOR_MODES}, got {self.generator!r}")
        if not 0 <= self.generate_every <= 64:
            raise OptionsError(
                f"generate_every must be in 0..64 frames (0: adaptive), got {self.generate_every}"
            )
        if self.generator_threads < 0:
            raise OptionsError(
                f"generator_threads must be >= 0 (0 = TensorFlow's default), got {self.generator_threads}"
            )
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise OptionsError(f"max_seconds must be > 0, got {self.max_seconds}")
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise OptionsError(f"warmup_s must be >= 0 seconds, got {self.warmup_s}")
        if not 10 <= self.jpeg_quality <= 100:
            raise OptionsError(f"jpeg_quality must be in 10..100, got {self.jpeg_quality}")
        for name in ("file_crf", "stream_crf"):
            if not 0 <= getattr(self, name) <= 51:
                raise OptionsError(f"{name} must be in 0..51, got {getattr(self, name)}")
        if isinstance(self.faces, str) and self.faces not in ("all", "largest"):
            raise OptionsError(f"faces must be 'all', 'largest' or track ids, got {self.faces!r}")

    @property
    def source_kind(self) -> SourceKind:
        return source_kind(self.source)


# ----------------------------------------------------------------------------------------------------------
# Hand-off and controls


class LatestSlot(Generic[T]):
    """A one-item hand-off between threads that keeps only the newest item.

    `put` never blocks: an item not yet taken is replaced and counted in `dropped`. So the slot never holds
    more than one item (`max_depth` is 1 once anything was put), and a slow consumer always gets the
    newest item rather than a backlog.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.max_depth = 0

    def put(self, item: T) -> bool:
        """Offer an item; returns True when it replaced one that was never taken (a drop)."""
        with self._cond:
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self.max_depth = max(self.max_depth, 1)
            self._cond.notify_all()
            return replaced

    def put_wait(self, item: T, stop: threading.Event) -> bool:
        """Lossless put for a source paced by its consumer: wait until the slot is empty (False on stop)."""
        with self._cond:
            while self._full and not stop.is_set() and not self._closed:
                self._cond.wait(_POLL_S)
            if stop.is_set() or self._closed:
                return False
        self.put(item)
        return True

    def get(self, timeout: float) -> T | None:
        """Take the item, waiting up to `timeout` seconds; None when there was none or the slot closed."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self, count_unread_as_dropped: bool = False) -> None:
        """Wake every waiter; later gets return what is left, then None."""
        with self._cond:
            self._closed = True
            if count_unread_as_dropped and self._full:
                self._item, self._full = None, False
                self.dropped += 1
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return 1 if self._full else 0


@dataclass(frozen=True)
class ControlState:
    """The live controls at one moment.

    Attributes:
        enabled: the effect is on.
        direction: "older" (G) or "younger" (F).
        strength: share of the generated change applied, 0..1.
        quit: the user asked to stop.
    """

    enabled: bool
    direction: Direction
    strength: float
    quit: bool = False


class LiveControls:
    """Thread-safe controls shared by the window keys, the preview page and the processing loop."""

    def __init__(self, enabled: bool = True, direction: Direction = "older", strength: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._state = ControlState(enabled, direction, self._check_strength(strength))

    @staticmethod
    def _check_strength(value: float) -> float:
        v = float(value)
        if not math.isfinite(v):
            raise OptionsError(f"strength must be a number in 0..1, got {value!r}")
        return round(min(1.0, max(0.0, v)), 3)

    def snapshot(self) -> ControlState:
        with self._lock:
            return self._state

    def _update(self, **changes: Any) -> ControlState:
        with self._lock:
            self._state = replace(self._state, **changes)
            return self._state

    def toggle(self) -> ControlState:
        return self._update(enabled=not self.snapshot().enabled)

    def set_enabled(self, on: bool) -> ControlState:
        return self._update(enabled=bool(on))

    def set_strength(self, value: float) -> ControlState:
        """Set the strength; values outside 0..1 are clamped (a slider or key repeat overshoots)."""
        return self._update(strength=self._check_strength(value))

    def bump_strength(self, delta: float) -> ControlState:
        return self.set_strength(self.snapshot().strength + delta)

    def set_direction(self, direction: str) -> ControlState:
        if direction not in DIRECTIONS:
            raise OptionsError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return self._update(direction=direction)

    def switch_direction(self) -> ControlState:
        return self._update(direction="younger" if self.snapshot().direction == "older" else "older")

    def request_quit(self) -> ControlState:
        return self._update(quit=True)

    def handle_key(self, key: int | str) -> bool:
        """Apply one key: space toggles, +/= and - change the strength, d switches direction, q or Esc quits.

        Returns:
            True when the key meant something.
        """
        ch = chr(key & 0xFF) if isinstance(key, int) else key
        if ch == " ":
            self.toggle()
        elif ch in ("+", "="):
            self.bump_strength(STRENGTH_STEP)
        elif ch in ("-", "_"):
            self.bump_strength(-STRENGTH_STEP)
        elif ch in ("d", "D"):
            self.switch_direction()
        elif ch in ("q", "Q", "\x1b"):
            self.request_quit()
        else:
            return False
        return True

    def apply(self, command: dict[str, Any]) -> dict[str, Any]:
        """Apply a command from the preview page and return the new state as a dict.

        Args:
            command: {"action": "toggle" | "on" | "off" | "direction" | "stronger" | "weaker" | "quit"},
                and/or {"strength": 0..1}, {"direction": "older" | "younger"}, {"enabled": bool}.

        Raises:
            OptionsError: an unknown action or a bad value.
        """
        action = command.get("action")
        actions: dict[str, Callable[[], ControlState]] = {
            "toggle": self.toggle,
            "on": lambda: self.set_enabled(True),
            "off": lambda: self.set_enabled(False),
            "direction": self.switch_direction,
            "stronger": lambda: self.bump_strength(STRENGTH_STEP),
            "weaker": lambda: self.bump_strength(-STRENGTH_STEP),
            "quit": self.request_quit,
        }
        if action is not None:
            if action not in actions:
                raise OptionsError(f"unknown action {action!r}; one of {', '.join(actions)}")
            actions[action]()
        if "strength" in command:
            try:
                self.set_strength(float(command["strength"]))
            except (TypeError, ValueError):
                raise OptionsError(
                    f"strength must be a number in 0..1, got {command['strength']!r}"
                ) from None
        if "direction" in command:
            self.set_direction(str(command["direction"]))
        if "enabled" in command:
            self.set_enabled(bool(command["enabled"]))
        return asdict(self.snapshot())


# ----------------------------------------------------------------------------------------------------------
# Statistics


def _percentiles(values: Any, qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in qs}


class LiveStats:
    """Counters and per-frame samples of a live run, safe to read from the preview server's threads."""

    def __init__(self, warmup_s: float) -> None:
        self._lock = threading.Lock()
        self.warmup_s = warmup_s
        self.t_start = time.perf_counter()
        self.cpu_start = time.process_time()
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

    def count(self, name: str, delta: int = 1) -> None:
        """Add to a counter attribute ("captured", "rate_skipped")."""
        with self._lock:
            setattr(self, name, getattr(self, name) + delta)

    def stage(self, name: str, seconds: float) -> None:
        with self._lock:
            self.stage_ms.setdefault(name, deque(maxlen=_MAX_SAMPLES)).append(seconds * 1000.0)

    def generator_ran(self, now: float) -> None:
        with self._lock:
            self.generated += 1
            self._gen_times.append(now)
            while self._gen_times and self._gen_times[0] < now - _HUD_WINDOW_S:
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
            while self._recent and self._recent[0][0] < now - _HUD_WINDOW_S:
                self._recent.popleft()
            if self.t_first_out is None:
                self.t_first_out = now
            self.t_last_out = now
            if now >= self.t_first_out + self.warmup_s:
                if self._sustained_t0 is None:
                    self._sustained_t0 = now
                else:
                    self._sustained_n += 1

    def rolling(self) -> dict[str, float]:
        """fps, p50/p95 latency and generator rate over the last couple of seconds, for the HUD."""
        with self._lock:
            recent = list(self._recent)
            gens = len(self._gen_times)
        out = {"fps": 0.0, "p50": 0.0, "p95": 0.0, "gen_fps": gens / _HUD_WINDOW_S}
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0]
            out["fps"] = (len(recent) - 1) / span if span > 0 else 0.0
            lats = np.array([r[1] for r in recent])
            out["p50"], out["p95"] = float(np.percentile(lats, 50)), float(np.percentile(lats, 95))
        return out

    def summary(self, dropped: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-able statistics (the `--stats` file and the preview page's /stats)."""
        with self._lock:
            now = time.perf_counter()
            wall = now - self.t_start
            cpu = time.process_time() - self.cpu_start
            lat = list(self.latency_ms)
            first, last = self.t_first_out, self.t_last_out
            if self._sustained_t0 is not None and self._sustained_n >= 1 and last is not None:
                sustained: float | None = self._sustained_n / max(last - self._sustained_t0, 1e-9)
            elif first is not None and last is not None and self.processed >= 2 and last > first:
                sustained = (self.processed - 1) / (last - first)
            else:
                sustained = None
            out_span = (last - first) if first is not None and last is not None else 0.0
            d: dict[str, Any] = {
                "schema": STATS_SCHEMA,
                "wall_s": round(wall, 3),
                "warmup_s": self.warmup_s,
                "frames": {
                    "captured": self.captured,
                    "processed": self.processed,
                    "dropped": dropped,
                    "with_faces": self.with_faces,
                    "faces_aged": self.faces_aged,
                    "faces_last": self.faces_last,
                    "reused_residual": self.reused,
                    "rate_skipped": self.rate_skipped,
                },
                "drop_rate": round(dropped / self.captured, 4) if self.captured else 0.0,
                "fps": {
                    "sustained": round(sustained, 2) if sustained is not None else None,
                    "overall": round((self.processed - 1) / out_span, 2) if out_span > 0 else None,
                    "generator": round(self.generated / out_span, 2) if out_span > 0 else None,
                },
                "latency_ms": {
                    **_percentiles(lat),
                    "mean": round(float(np.mean(lat)), 2) if lat else None,
                    "max": round(float(np.max(lat)), 2) if lat else None,
                    "n": len(lat),
                },
                "residual_age_ms": _percentiles(self.residual_age_ms, (50, 95)),
                "stage_ms": {k: _percentiles(v, (50, 95)) for k, v in sorted(self.stage_ms.items())},
                "generator_runs": self.generated,
                # CPU time of the whole process (every thread) per frame out: what a frame costs whatever
                # else the machine runs; 1000 / per_frame_ms · cores is the fps the cores could sustain.
                "cpu": {
                    "process_s": round(cpu, 3),
                    "cores_used": round(cpu / wall, 2) if wall > 0 else None,
                    "per_frame_ms": round(1000.0 * cpu / self.processed, 2) if self.processed else None,
                },
            }
        if extra:
            d.update(extra)
        return d


# ----------------------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class LiveFrame:
    """One frame on its way through the live loop.

    Attributes:
        index: 0-based count of frames the capture thread delivered.
        image: (H, W, 3) uint8 RGB at the run's output size.
        capture_t: `time.perf_counter()` when the source delivered it.
        time_s: the stream clock in seconds: the file's own timestamps (plus the loop offset) for a file,
            seconds since the run started for a camera or URL. Strictly increasing.
    """

    index: int
    image: Frame
    capture_t: float
    time_s: float


class FrameSource(Protocol):
    """A source of RGB frames. `read` blocks until the next frame; None means a normal end (files only)."""

    name: str
    width: int
    height: int
    fps: float

    def read(self, stop: threading.Event) -> tuple[Frame, float | None] | None: ...

    def close(self) -> None: ...


def fit(image: Frame, size: tuple[int, int] | None) -> Frame:
    """Crop to the aspect of `size` (centred) and scale to it; with None, crop odd sides to even ones."""
    h, w = image.shape[:2]
    if size is None:
        if w % 2 == 0 and h % 2 == 0:
            return image
        return np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
    tw, th = size
    if (w, h) == (tw, th):
        return image
    if w * th > h * tw:  # wider than the target: crop the sides
        cw = max(2, round(h * tw / th))
        x0 = (w - cw) // 2
        image = image[:, x0 : x0 + cw]
    elif w * th < h * tw:
        ch = max(2, round(w * th / tw))
        y0 = (h - ch) // 2
        image = image[y0 : y0 + ch]
    # Area averaging only pays off from 2× down; below that bilinear looks the same at a fifth of the cost.
    interp = cv2.INTER_AREA if image.shape[1] >= 2 * tw else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (tw, th), interpolation=interp))


def _quiet_opencv() -> None:
    """OpenCV prints a warning per failed camera probe; our own error says it better."""
    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # type: ignore[attr-defined]


class CameraSource:
    """A camera through OpenCV (V4L2 on Linux), asked for a size and rate, with a one-frame driver buffer."""

    def __init__(self, spec: str, size: tuple[int, int] | None, fps: float | None) -> None:
        """Open the camera and read one frame.

        Raises:
            SourceError: no such device, or it cannot be opened or delivers nothing (busy).
        """
        _quiet_opencv()
        spec = spec.strip()
        self.name = f"camera {spec}"
        if spec.startswith("/dev/") and not os.path.exists(spec):
            raise SourceError(
                f"{spec}: no such camera device. Fix: list cameras with `ls /dev/video*` (or "
                "`v4l2-ctl --list-devices`) and pass one with --source"
            )
        target: int | str = int(spec) if spec.isdigit() else spec
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(target, api)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(
                f"{self.name} cannot be opened: it does not exist or another program is using it. Fix: check "
                "`ls /dev/video*`, close other apps that use the camera, or pick another with --source N"
            )
        if size is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps is not None:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        # One buffered frame in the driver: an old frame must not wait there either.
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, img = self._cap.read()
        if not ok or img is None:
            self._cap.release()
            raise SourceError(
                f"{self.name} opened but delivers no frames: it is probably busy (used by another program) "
                "or does not support the requested --size/--fps. Fix: close the other program or try another "
                "mode"
            )
        rgb: Frame = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # type: ignore[assignment]
        self._pending: Frame | None = rgb
        self.height, self.width = rgb.shape[:2]
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or fps or 30.0)

    def read(self, stop: threading.Event) -> tuple[Frame, float | None] | None:
        if self._pending is not None:
            img, self._pending = self._pending, None
            return img, None
        failures = 0
        while not stop.is_set():
            ok, bgr = self._cap.read()
            if ok and bgr is not None:
                out: Frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # type: ignore[assignment]
                return out, None
            failures += 1
            if failures >= _CAMERA_MAX_FAILURES:
                raise SourceError(
                    f"{self.name} stopped delivering frames (unplugged, or taken by another program)"
                )
            stop.wait(0.05)
        return None

    def close(self) -> None:
        self._cap.release()


class UrlSource:
    """A network stream (RTSP, UDP, HTTP…) through PyAV, reopened a bounded number of times if it drops."""

    def __init__(self, url: str, tries: int, delay_s: float, timeout_s: float) -> None:
        """Open the stream and decode one frame.

        Raises:
            SourceError: the stream cannot be opened or sends no picture within `timeout_s`.
        """
        self.name = url
        self.url = url
        self.tries = tries
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self.reconnects = 0
        first = self._open()
        self._pending: Frame | None = first
        self.height, self.width = first.shape[:2]

    def _open(self) -> Frame:
        import av

        us = str(int(self.timeout_s * 1e6))
        options = {"fflags": "nobuffer", "flags": "low_delay", "rw_timeout": us}
        scheme = self.url.split(":", 1)[0].lower()
        if scheme == "rtsp":
            options |= {"rtsp_transport": "tcp", "timeout": us}
        elif scheme == "udp":
            options |= {"timeout": us, "overrun_nonfatal": "1"}
        self.close()
        try:
            self._container = av.open(
                self.url, mode="r", options=options, timeout=(self.timeout_s, self.timeout_s)
            )
            if not self._container.streams.video:
                raise SourceError(f"{self.url}: the stream has no video")
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else 30.0
            self._frames = iter(self._container.decode(stream))
            frame = next(self._frames)
        except SourceError:
            self.close()
            raise
        except (av.FFmpegError, OSError, StopIteration, ValueError) as e:
            self.close()
            raise SourceError(
                f"{self.url}: cannot read the stream ({type(e).__name__}: {e}). Fix: check the URL, that the "
                "sender is running and reachable, and the protocol options"
            ) from e
        img: Frame = frame.to_ndarray(format="rgb24")
        return img

    def read(self, stop: threading.Event) -> tuple[Frame, float | None] | None:
        import av

        if self._pending is not None:
            img, self._pending = self._pending, None
            return img, None
        last_error = "the stream ended"
        try:
            assert self._frames is not None
            frame = next(self._frames)
            return frame.to_ndarray(format="rgb24"), None
        except StopIteration:
            pass
        except (av.FFmpegError, OSError, ValueError) as e:
            last_error = f"{type(e).__name__}: {e}"
        # Ended or dropped: reconnect, a bounded number of times with a growing wait.
        delay = self.delay_s
        for _ in range(self.tries):
            if stop.wait(delay):
                return None
            delay *= 2
            try:
                img = self._open()
            except SourceError as e:
                last_error = str(e)
                continue
            self.reconnects += 1
            return img, None
        raise SourceError(
            f"{self.url}: {last_error}; gave up after {self.tries} reconnect attempts. Fix: check the "
            "sender, or raise --reconnect"
        )

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
            self._frames = None


class FileSource:
    """A video file, optionally released at its own pace (`realtime`) and looped."""

    def __init__(self, path: str, realtime: bool, loop: bool) -> None:
        """Raises:
        InputError: the file is missing or not a video (from the reader).
        """
        self.name = path
        self._reader = VideoReader(path, ReaderOptions())
        info = self._reader.info
        self.width, self.height = info.width, info.height
        self.fps = float(info.fps)
        self.realtime = realtime
        self.loop = loop
        self._period = 1.0 / self.fps
        self._it: Iterator[DecodedFrame] = iter(self._reader)
        self._offset = 0.0  # media seconds added per loop
        self._last_t = -1.0
        self._t0: float | None = None

    def read(self, stop: threading.Event) -> tuple[Frame, float | None] | None:
        fr = next(self._it, None)
        if fr is None:
            if not self.loop or self._last_t < 0:
                return None
            self._offset = self._last_t + self._period
            self._it = iter(self._reader)
            fr = next(self._it, None)
            if fr is None:
                return None
        t = fr.time_s + self._offset
        self._last_t = t
        if self.realtime:
            now = time.perf_counter()
            if self._t0 is None:
                self._t0 = now - t
            due = self._t0 + t
            if due > now and stop.wait(due - now):
                return None
        return fr.image, t

    def close(self) -> None:
        self._reader.close()


def open_source(options: RealtimeOptions) -> FrameSource:
    """Open the options' source.

    Raises:
        SourceError: a camera or stream that cannot be opened. InputError: a missing or unreadable file.
    """
    kind = options.source_kind
    if kind == "camera":
        return CameraSource(options.source, options.size, options.fps)
    if kind == "url":
        return UrlSource(
            options.source, options.reconnect_tries, options.reconnect_delay_s, options.io_timeout_s
        )
    return FileSource(options.source, options.realtime, options.loop)


class CaptureThread:
    """Reads the source into a `LatestSlot` in its own thread, stamping each frame's capture time.

    A live or real-time source overwrites an unread frame (a drop); a file played as fast as possible waits
    for the loop to take each frame instead (`lossless`).
    """

    def __init__(
        self,
        source: FrameSource,
        slot: LatestSlot[LiveFrame],
        stats: LiveStats,
        size: tuple[int, int] | None,
        fps: float | None,
        lossless: bool,
    ) -> None:
        self.source = source
        self.slot = slot
        self.stats = stats
        self.size = size
        self.min_period = (1.0 / fps) * 0.95 if fps else 0.0
        self.lossless = lossless
        self.stop = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="faceage-capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        last_delivered = -math.inf
        last_time = -math.inf
        index = 0
        try:
            while not self.stop.is_set():
                got = self.source.read(self.stop)
                if got is None:
                    break
                image, media_t = got
                now = time.perf_counter()
                t = media_t if media_t is not None else now - t0
                # --fps: skip frames that come sooner than the asked rate (by the stream clock for a file).
                since = (t - last_time) if media_t is not None else (now - last_delivered)
                if self.min_period and since < self.min_period:
                    self.stats.count("rate_skipped")
                    continue
                last_delivered, last_time = now, t
                frame = LiveFrame(index, fit(image, self.size), now, t)
                index += 1
                if self.lossless:
                    if not self.slot.put_wait(frame, self.stop):
                        break
                    self.stats.count("captured")
                else:
                    self.stats.count("captured")
                    self.slot.put(frame)
        except BaseException as exc:  # re-raised by the processing loop
            self.error = exc
        finally:
            self.ended.set()
            self.slot.close()

    def join(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.slot.close()
        self._thread.join(timeout)


# ----------------------------------------------------------------------------------------------------------
# Generator side


@dataclass(frozen=True)
class _GenRequest:
    direction: Direction
    track_ids: tuple[int, ...]
    crops: NDArray[np.uint8]  # (N, S, S, 3)
    capture_t: float


@dataclass(frozen=True)
class _CachedResidual:
    residual: NDArray[np.float32]  # (S, S, 3) full-strength change G(crop) − crop
    capture_t: float  # capture time of the frame the crop came from


class ResidualCache:
    """The last full-strength residual generated for each (direction, track id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[Direction, int], _CachedResidual] = {}

    def put(
        self,
        direction: Direction,
        track_ids: tuple[int, ...],
        residuals: NDArray[np.float32],
        capture_t: float,
    ) -> None:
        with self._lock:
            for tid, r in zip(track_ids, residuals, strict=True):
                self._items[(direction, tid)] = _CachedResidual(r, capture_t)

    def get(self, direction: Direction, track_id: int) -> _CachedResidual | None:
        with self._lock:
            return self._items.get((direction, track_id))

    def drop(self, track_id: int) -> None:
        with self._lock:
            for key in [k for k in self._items if k[1] == track_id]:
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class _Engines:
    """One `AgingEngine` per direction; the second is loaded on the first switch to it."""

    def __init__(self, options: EngineOptions, preloaded: AgingEngine | None) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._engines: dict[Direction, AgingEngine] = {}
        self._loading: set[Direction] = set()
        self.error: BaseException | None = None
        if preloaded is not None:
            self._engines[preloaded.options.direction] = preloaded

    def get(self, direction: Direction) -> AgingEngine:
        """The engine of a direction, loading and warming it up first if needed (blocks)."""
        with self._lock:
            eng = self._engines.get(direction)
            if eng is None:
                eng = AgingEngine(replace(self.options, direction=direction, strength=1.0))
                _warm_up(eng)
                self._engines[direction] = eng
            return eng

    def get_nowait(self, direction: Direction) -> AgingEngine | None:
        """The engine if loaded; otherwise start loading it in the background and return None."""
        with self._lock:
            eng = self._engines.get(direction)
            if eng is not None or direction in self._loading:
                return eng
            self._loading.add(direction)

        def load() -> None:
            try:
                self.get(direction)
            except BaseException as exc:  # re-raised by the processing loop
                self.error = exc

        threading.Thread(target=load, name="faceage-model-load", daemon=True).start()
        return None

    def any(self) -> AgingEngine | None:
        """Some loaded engine (for its manifest), without loading anything."""
        with self._lock:
            return next(iter(self._engines.values()), None)


def _warm_up(engine: AgingEngine) -> None:
    """Trace and run the generator once, so the first live frame does not pay for it."""
    engine.generate(np.zeros((1, engine.size, engine.size, 3), np.uint8))


def full_residuals(engine: AgingEngine, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Full-strength change G(crop) − crop, (N, S, S, 3) float32; the live strength applies at paste time."""
    out: NDArray[np.float32] = engine.generate(crops) - crops.astype(np.float32)
    return out


class _Residuals:
    """Stands in for the engine in `pipeline.render`: hands back residuals made beforehand (cached/async)."""

    def __init__(self, residuals: NDArray[np.float32]) -> None:
        self._r = residuals

    def residual(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        if len(crops) != len(self._r):
            raise ValueError(f"{len(crops)} crops but {len(self._r)} residuals prepared")
        return self._r


class GenerationPacer:
    """Chooses k: the generator is offered the crops of every k-th frame with faces.

    With a fixed `every` (>= 1) k never changes. Adaptive (`every` = 0): once a second, when more than
    `HIGH` of the frames captured in that second were dropped, the loop is behind the source, and on a small
    machine the generator is what takes the CPU from it; k grows by one (up to `MAX_K`), since a residual
    reused a few frames longer costs the viewer less than a dropped frame. When drops fall under `LOW`, k
    shrinks again, down to 1.
    """

    HIGH = 0.10
    LOW = 0.02
    MAX_K = 8

    def __init__(self, every: int) -> None:
        self.adaptive = every == 0
        self.k = max(1, every)
        self.k_max = self.k
        self._n = 0
        self._window: tuple[float, int, int] | None = None  # (start time, captured, dropped) at its start

    def update(self, now: float, captured: int, dropped: int) -> None:
        """Feed the capture counters; adjusts k once a second when adaptive."""
        if not self.adaptive:
            return
        if self._window is None:
            self._window = (now, captured, dropped)
            return
        t0, c0, d0 = self._window
        if now - t0 < 1.0:
            return
        dc, dd = captured - c0, dropped - d0
        rate = dd / dc if dc > 0 else 0.0
        if rate > self.HIGH and self.k < self.MAX_K:
            self.k += 1
        elif rate < self.LOW and self.k > 1:
            self.k -= 1
        self.k_max = max(self.k_max, self.k)
        self._window = (now, captured, dropped)

    def offer(self) -> bool:
        """Whether this frame with faces goes to the generator."""
        self._n += 1
        if self._n >= self.k:
            self._n = 0
            return True
        return False


def _limit_tf_threads(n: int) -> None:
    if n <= 0:
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TensorFlow already ran something in this process
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)


# ----------------------------------------------------------------------------------------------------------
# Outputs


class LiveOutput(Protocol):
    """One destination of the output frames."""

    kind: OutputKind
    name: str

    def write(self, image: Frame, frame: LiveFrame) -> None: ...

    def close(self) -> None: ...


def _live_info(path: str, width: int, height: int, fps: float) -> VideoInfo:
    return VideoInfo(
        path=path, width=width, height=height, rotation=0, fps=Fraction(fps).limit_denominator(1001),
        time_base=_OUT_TIME_BASE, frame_count=None, duration_s=None, codec="rawvideo", pix_fmt="rgb24",
        color_range=1, colorspace=1, color_primaries=1, color_trc=1, audio=(),
    )  # fmt: skip


class _Pts:
    """Strictly increasing pts in `_OUT_TIME_BASE` from a frame's stream clock."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._last = -1

    def __call__(self, time_s: float) -> int:
        if self._t0 is None:
            self._t0 = time_s
        pts = max(round((time_s - self._t0) / _OUT_TIME_BASE), self._last + 1)
        self._last = pts
        return int(pts)


class FileOutput:
    """The output frames encoded to a file (H.264, ultrafast) with their real timing; atomic like `age`'s."""

    kind: OutputKind = "file"

    def __init__(self, path: str, width: int, height: int, fps: float, crf: int, source: str) -> None:
        self.name = path
        info = _live_info(source, width, height, fps)
        self._writer = VideoWriter(
            path, info, WriterOptions(codec="h264", crf=crf, preset="ultrafast", audio=False), start_s=0.0
        )
        self._pts = _Pts()

    def write(self, image: Frame, frame: LiveFrame) -> None:
        self._writer.write(image, self._pts(frame.time_s), _OUT_TIME_BASE)

    def close(self) -> None:
        self._writer.close()


class StreamOutput:
    """The output frames as a low-latency H.264 stream: MPEG-TS over UDP/TCP/SRT, FLV over RTMP."""

    kind: OutputKind = "stream"

    def __init__(self, url: str, width: int, height: int, fps: float, crf: int, timeout_s: float) -> None:
        import av

        self.name = url
        scheme = url.split(":", 1)[0].lower()
        target = url
        if scheme == "udp" and "pkt_size" not in url:
            target += ("&" if "?" in url else "?") + "pkt_size=1316"  # 7 TS packets: no IP fragmentation
        try:
            self._container = av.open(target, mode="w", format=STREAM_MUXERS[scheme], timeout=timeout_s)
            rate = Fraction(fps).limit_denominator(1001)
            gop = str(max(1, round(fps)))  # a keyframe a second: a receiver joining late starts quickly
            self._stream = self._container.add_stream(
                "libx264",
                rate=rate,
                options={"preset": "ultrafast", "tune": "zerolatency", "crf": str(crf), "g": gop},
            )
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = _OUT_TIME_BASE
            self._stream.codec_context.time_base = _OUT_TIME_BASE
        except (av.FFmpegError, OSError, ValueError) as e:
            with contextlib.suppress(Exception):
                self._container.close()
            raise OutputError(
                f"{url}: cannot open the stream output ({type(e).__name__}: {e}). Fix: check the address "
                "and, for RTMP/TCP/SRT, that the receiving server is running"
            ) from e
        self._pts = _Pts()

    def write(self, image: Frame, frame: LiveFrame) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format="yuv420p"
        )
        vf.pts = self._pts(frame.time_s)
        vf.time_base = _OUT_TIME_BASE
        try:
            self._container.mux(self._stream.encode(vf))
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"{self.name}: sending the stream failed ({type(e).__name__}: {e})") from e

    def close(self) -> None:
        import av

        try:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.mux(self._stream.encode(None))
        finally:
            with contextlib.suppress(Exception):
                self._container.close()


class VirtualCamOutput:
    """A virtual camera other apps can pick (pyvirtualcam: v4l2loopback on Linux, OBS on Windows/macOS)."""

    kind: OutputKind = "virtualcam"

    def __init__(self, width: int, height: int, fps: float) -> None:
        self.name = "virtualcam"
        try:
            import pyvirtualcam
        except ImportError:
            raise OutputError(
                "the virtualcam output needs pyvirtualcam. Fix: pip install 'faceage-video[webcam]', and on "
                "Linux load the v4l2loopback kernel module"
            ) from None
        try:
            self._cam = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB)
        except (RuntimeError, ValueError, OSError) as e:
            hint = (
                "on Linux install and load v4l2loopback (`sudo apt install v4l2loopback-dkms && "
                "sudo modprobe v4l2loopback devices=1 exclusive_caps=1`)"
                if sys.platform.startswith("linux")
                else "install OBS Studio and start its Virtual Camera once"
            )
            raise OutputError(f"no virtual camera backend available ({e}). Fix: {hint}") from e
        self.name = f"virtualcam {self._cam.device}"

    def write(self, image: Frame, frame: LiveFrame) -> None:
        self._cam.send(np.ascontiguousarray(image))

    def close(self) -> None:
        self._cam.close()


class WindowOutput:
    """An OpenCV window; its keys drive the controls."""

    kind: OutputKind = "window"

    def __init__(self, title: str, controls: LiveControls) -> None:
        self.name = "window"
        self.title = title
        self.controls = controls
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise OutputError(
                "the window output needs a display ($DISPLAY is not set). Fix: run it in a desktop session, "
                "or use --output http://127.0.0.1:8080 and open that page in a browser"
            )
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as e:
            raise OutputError(
                f"cannot open a window ({e}). Fix: use --output http://127.0.0.1:8080 instead"
            ) from e
        self._shown = False

    def write(self, image: Frame, frame: LiveFrame) -> None:
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self._shown = True
        self.poll()

    def poll(self) -> None:
        """Pump the window's events: keys go to the controls; closing the window quits."""
        key = cv2.waitKey(1)
        if key >= 0:
            self.controls.handle_key(key)
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.controls.request_quit()

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


class PreviewOutput:
    """The local preview page (see `faceage_video.preview`)."""

    kind: OutputKind = "preview"

    def __init__(
        self,
        url: str,
        controls: LiveControls,
        stats: Callable[[], dict[str, Any]],
        quality: int,
        allow_remote: bool = False,
    ) -> None:
        from faceage_video.preview import PreviewOptions, PreviewServer

        m = re.fullmatch(r"http://([^/:]+|\[[^\]]+\]):(\d+)/?", url.strip())
        if not m:
            raise OptionsError(f"preview output must look like http://127.0.0.1:8080, got {url!r}")
        self.server = PreviewServer(
            PreviewOptions(
                host=m.group(1).strip("[]"),
                port=int(m.group(2)),
                jpeg_quality=quality,
                allow_remote=allow_remote,
            ),
            controls.apply,
            stats,
        )
        self.server.start()
        self.name = self.server.url

    def write(self, image: Frame, frame: LiveFrame) -> None:
        self.server.publish(image)

    def close(self) -> None:
        self.server.close()


# ----------------------------------------------------------------------------------------------------------
# HUD


def draw_hud(image: Frame, lines: list[str]) -> Frame:
    """Draw text lines on a dark translucent panel in the top-left corner (in place; returns `image`)."""
    h, w = image.shape[:2]
    scale = max(0.4, min(1.0, w / 1280))
    thick = 1 if scale < 0.7 else 2
    lh = int(22 * scale / 0.6)
    pw = min(w, int(max(len(s) for s in lines) * 11 * scale / 0.6) + 12)
    ph = min(h, lh * len(lines) + 10)
    roi = image[:ph, :pw]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, s in enumerate(lines):
        cv2.putText(image, s, (6, lh * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)  # fmt: skip
    return image


# ----------------------------------------------------------------------------------------------------------
# The run


class RealtimeSession:
    """One live run: source, stages, outputs and their threads, opened in `__enter__`, closed in `__exit__`.

    Use `run_realtime` unless you embed the loop (tests pass `controls` to drive it from outside).
    """

    def __init__(
        self,
        options: RealtimeOptions,
        engine: AgingEngine | None = None,
        controls: LiveControls | None = None,
        on_frame: Callable[[LiveFrame, Frame], None] | None = None,
    ) -> None:
        self.options = options
        self.controls = controls or LiveControls(
            options.enabled, options.engine.direction, options.engine.strength
        )
        self.stats = LiveStats(options.warmup_s)
        self.on_frame = on_frame
        self._preloaded = engine
        self.capture_slot: LatestSlot[LiveFrame] = LatestSlot()
        self.gen_slot: LatestSlot[_GenRequest] = LatestSlot()
        self.cache = ResidualCache()
        self.smoother = ResidualSmoother(options.temporal)
        self.outputs: list[LiveOutput] = []
        self.window: WindowOutput | None = None
        self.source: FrameSource | None = None
        self.capture: CaptureThread | None = None
        self.analyzer: FaceAnalyzer | None = None
        self.engines: _Engines | None = None
        self.ended: EndReason = "error"
        self._gen_stop = threading.Event()
        self._gen_thread: threading.Thread | None = None
        self._gen_error: BaseException | None = None
        self._stack = contextlib.ExitStack()
        self._state_seen: tuple[Direction, bool] | None = None  # (direction, enabled) of the previous frame
        self.pacer = GenerationPacer(options.generate_every)
        self.width = self.height = 0
        self.fps = 0.0

    # -- lifetime -------------------------------------------------------------------------------------

    def __enter__(self) -> RealtimeSession:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self) -> None:
        opts = self.options
        if opts.stats is not None:  # written at the end: refuse now what could not be written then
            from faceage_video.media.writer import check_writable_file

            files = [("output", o) for o in opts.outputs if output_kind(o) == "file"]
            check_writable_file(opts.stats, "--stats", [("source", opts.source), *files])
        # Source first: a missing or busy camera fails before anything slow is loaded.
        self.source = open_source(opts)
        self._stack.callback(self.source.close)
        sample = fit(np.zeros((self.source.height, self.source.width, 3), np.uint8), opts.size)
        self.height, self.width = sample.shape[:2]
        self.fps = float(opts.fps or self.source.fps or 30.0)
        self._stack.callback(self._close_outputs)
        for spec in opts.outputs:
            self.outputs.append(self._open_output(spec))
        _limit_tf_threads(opts.generator_threads)
        eng = self._preloaded
        want = self.controls.snapshot().direction
        self.engines = _Engines(replace(opts.engine, direction=want, strength=1.0), eng)
        first = self.engines.get(want)
        _warm_up(first)  # a preloaded engine may never have run
        self.analyzer = FaceAnalyzer(
            opts.landmarks, opts.tracker, opts.temporal, opts.blend, first.size, first.template, opts.faces
        )
        self._stack.callback(self.analyzer.close)
        self._stack.callback(self._stop_threads)

    def _open_output(self, spec: str) -> LiveOutput:
        kind = output_kind(spec)
        w, h, fps, opts = self.width, self.height, self.fps, self.options
        if kind == "window":
            self.window = WindowOutput(opts.window_title, self.controls)
            return self.window
        if kind == "virtualcam":
            return VirtualCamOutput(w, h, fps)
        if kind == "preview":
            return PreviewOutput(spec, self.controls, self.live_stats, opts.jpeg_quality, opts.preview_public)
        if kind == "stream":
            return StreamOutput(spec, w, h, fps, opts.stream_crf, opts.io_timeout_s)
        return FileOutput(spec, w, h, fps, opts.file_crf, self.source.name if self.source else "")

    def _close_outputs(self) -> None:
        errors: list[BaseException] = []
        for out in reversed(self.outputs):
            try:
                out.close()
            except Exception as e:  # close every output even if one fails
                errors.append(e)
        self.outputs.clear()
        if errors:
            raise errors[0]

    def _stop_threads(self) -> None:
        if self.capture is not None:
            self.capture.join()
            self.capture_slot.close(count_unread_as_dropped=True)
        self._gen_stop.set()
        self.gen_slot.close()
        if self._gen_thread is not None:
            self._gen_thread.join(10.0)

    # -- threads --------------------------------------------------------------------------------------

    def _generator_loop(self) -> None:
        assert self.engines is not None
        try:
            while not self._gen_stop.is_set():
                req = self.gen_slot.get(_POLL_S)
                if req is None:
                    if self.gen_slot.closed:
                        return
                    continue
                eng = self.engines.get(req.direction)
                t = time.perf_counter()
                res = full_residuals(eng, req.crops)
                now = time.perf_counter()
                self.stats.stage("generate", now - t)
                self.cache.put(req.direction, req.track_ids, res, req.capture_t)
                self.stats.generator_ran(now)
        except BaseException as exc:  # re-raised by the processing loop
            self._gen_error = exc

    # -- stats ----------------------------------------------------------------------------------------

    def live_stats(self) -> dict[str, Any]:
        """The run's statistics so far (the preview page polls this)."""
        opts = self.options
        eng = self.engines.any() if self.engines else None
        return self.stats.summary(
            self.capture_slot.dropped,
            {
                "source": opts.source,
                "source_kind": opts.source_kind,
                "outputs": [o.name for o in self.outputs] or list(opts.outputs),
                "width": self.width,
                "height": self.height,
                "source_fps": round(self.fps, 3),
                "capture_queue_max": self.capture_slot.max_depth,
                "generator_queue_max": self.gen_slot.max_depth,
                "generator_skipped": self.gen_slot.dropped,
                "generator_mode": opts.generator,
                "generate_every": {
                    "adaptive": self.pacer.adaptive,
                    "k": self.pacer.k,
                    "k_max": self.pacer.k_max,
                },
                "controls": asdict(self.controls.snapshot()),
                "rolling": {k: round(v, 2) for k, v in self.stats.rolling().items()},
                "model": {"name": eng.manifest.name, "steps": eng.manifest.training.get("steps")}
                if eng
                else {},
                "ended": self.ended,
            },
        )

    def write_stats(self) -> None:
        if self.options.stats is None:
            return
        from faceage_video.media.writer import write_file_atomic

        write_file_atomic(Path(self.options.stats), (json.dumps(self.live_stats(), indent=2) + "\n").encode())

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Process frames until the source ends, quit, the time limit or Ctrl-C; returns the statistics.

        Raises:
            SourceError, OutputError: the source or an output failed mid-run (outputs are still closed).
        """
        assert self.source is not None
        opts = self.options
        live = opts.source_kind != "file" or opts.realtime
        self.capture = CaptureThread(
            self.source, self.capture_slot, self.stats, opts.size, opts.fps, not live
        )
        if opts.generator == "async":
            self._gen_thread = threading.Thread(
                target=self._generator_loop, name="faceage-generator", daemon=True
            )
            self._gen_thread.start()
        t_start = time.perf_counter()
        self.stats.t_start = t_start
        self.stats.cpu_start = time.process_time()
        self.capture.start()
        restore = _stop_on_sigterm()
        try:
            self.ended = self._loop(t_start)
        except KeyboardInterrupt:
            self.ended = "interrupted"
        except BaseException:
            self.ended = "error"
            raise
        finally:
            restore()
            self._stop_threads()
            with contextlib.suppress(OSError):
                self.write_stats()
        return self.live_stats()

    def _loop(self, t_start: float) -> EndReason:
        assert self.capture is not None
        opts = self.options
        while True:
            if self.controls.snapshot().quit:
                return "quit"
            if opts.max_seconds is not None and time.perf_counter() - t_start >= opts.max_seconds:
                return "time_limit"
            if self._gen_error is not None:
                raise self._gen_error
            frame = self.capture_slot.get(_POLL_S)
            if frame is None:
                if self.window is not None:
                    self.window.poll()
                if self.capture.error is not None:
                    raise self.capture.error
                if self.capture.ended.is_set() and len(self.capture_slot) == 0:
                    return "source_ended"
                continue
            self._process(frame)

    def _process(self, frame: LiveFrame) -> None:
        assert self.analyzer is not None and self.engines is not None
        opts = self.options
        state = self.controls.snapshot()
        if self.engines.error is not None:
            raise self.engines.error
        seen, self._state_seen = self._state_seen, (state.direction, state.enabled)
        if seen is not None and (seen[0] != state.direction or (state.enabled and not seen[1])):
            # A new direction, or the effect turned back on: the residuals held do not apply any more.
            self.cache.clear()
            self.smoother.reset()
        image = frame.image
        faces = reused = 0
        ages: list[float] = []
        if state.enabled:
            t = time.perf_counter()
            job = self.analyzer.analyze(
                DecodedFrame(frame.index, frame.image, None, _OUT_TIME_BASE, frame.time_s)
            )
            self.stats.stage("landmarks_track_align", time.perf_counter() - t)
            for tid in job.ended:
                self.cache.drop(tid)
            if job.cut:
                self.cache.clear()
            ids = tuple(f.track_id for f in job.faces)
            if ids:
                self._request_residuals(frame, state.direction, ids, np.stack([f.crop for f in job.faces]))
            residuals = np.zeros((len(ids), *job.faces[0].crop.shape), np.float32) if ids else np.zeros((0,))
            for i, tid in enumerate(ids):
                cached = self.cache.get(state.direction, tid)
                if cached is None:
                    continue  # not generated yet: the change fades in through the smoother
                residuals[i] = cached.residual * np.float32(state.strength)
                age_ms = (frame.capture_t - cached.capture_t) * 1000.0
                ages.append(age_ms)
                reused += age_ms > 0
            t = time.perf_counter()
            # The offline pipeline's own smooth + paste-back, on residuals prepared above.
            render(
                [job], cast(AgingEngine, _Residuals(residuals.astype(np.float32))), self.smoother, opts.blend
            )
            self.stats.stage("render", time.perf_counter() - t)
            assert job.image is not None
            image = job.image
            faces = len(ids)
        if opts.hud:
            if image is frame.image:
                image = image.copy()
            draw_hud(image, self._hud_lines(state, faces))
        t = time.perf_counter()
        for out in self.outputs:
            out.write(image, frame)
        now = time.perf_counter()
        self.stats.stage("output", now - t)
        self.stats.frame_out(frame.capture_t, now, faces, reused, ages)
        if self.on_frame is not None:
            self.on_frame(frame, image)

    def _request_residuals(
        self, frame: LiveFrame, direction: Direction, ids: tuple[int, ...], crops: NDArray[np.uint8]
    ) -> None:
        """On every k-th frame with faces, generate now (sync) or offer the crops to the generator thread."""
        assert self.engines is not None
        self.pacer.update(frame.capture_t, self.stats.captured, self.capture_slot.dropped)
        if not self.pacer.offer():
            return
        if self.options.generator == "async":
            self.gen_slot.put(_GenRequest(direction, ids, crops, frame.capture_t))
            return
        eng = self.engines.get_nowait(direction)  # a switch loads the other model without freezing
        if eng is None:
            return
        t = time.perf_counter()
        res = full_residuals(eng, crops)
        now = time.perf_counter()
        self.stats.stage("generate", now - t)
        self.stats.generator_ran(now)
        self.cache.put(direction, ids, res, frame.capture_t)

    def _hud_lines(self, state: ControlState, faces: int) -> list[str]:
        r = self.stats.rolling()
        captured = max(1, self.stats.captured)
        drop = 100.0 * self.capture_slot.dropped / captured
        return [
            f"{'ON ' if state.enabled else 'OFF'} {state.direction} x{state.strength:.1f}  faces {faces}",
            f"{r['fps']:4.1f} fps  lat p50 {r['p50']:3.0f} p95 {r['p95']:3.0f} ms",
            f"drops {drop:4.1f}%  gen {r['gen_fps']:4.1f}/s (1/{self.pacer.k})",
        ]


def _stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM (a service manager, `docker stop`) stop the run like Ctrl-C: outputs closed, file kept.

    Only the main thread can install signal handlers; elsewhere this does nothing. Returns the undo.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def run_realtime(
    options: RealtimeOptions,
    engine: AgingEngine | None = None,
    controls: LiveControls | None = None,
    on_frame: Callable[[LiveFrame, Frame], None] | None = None,
) -> dict[str, Any]:
    """Age or de-age the faces of a live source and send the result to the outputs, latency first.

    Args:
        options: source, outputs and every stage's options.
        engine: a loaded engine to reuse (its direction is the starting one; the other loads on a switch).
        controls: shared controls, to drive the run from outside (tests, an embedding app); by default the
            window keys and the preview page drive a private one.
        on_frame: called with each frame and its output picture after the outputs took it (runs in the
            processing loop, so a slow callback slows the loop, and the latest-frame policy drops frames).

    Returns:
        The statistics (also written to `options.stats`): frame counts, drop rate, sustained fps,
        p50/p95/p99 capture → output latency in ms, per-stage times, and why the run ended ("source_ended",
        "quit", "interrupted" by Ctrl-C or SIGTERM, "time_limit").

    Raises:
        SourceError: the camera or stream cannot be opened, or drops for good.
        InputError: a file source is missing or unreadable.
        OutputError: an output cannot be opened (missing virtualcam backend, port in use, no display…)
            or fails mid-run.
        ModelError, OptionsError: a bad model or options.
        Every device and output is closed before an error leaves, and on Ctrl-C.
    """
    with RealtimeSession(options, engine, controls, on_frame) as session:
        return session.run()
