"""What a live run is asked to do: source, outputs and every stage's options, validated when built.

`RealtimeOptions` is the one frozen options object of the live mode; the `Literal`s here are the choices the
CLI offers, and `source_kind`/`output_kind` say what a `--source`/`--output` string names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from faceage_video.engine.generator import EngineOptions
from faceage_video.engine.temporal import TemporalOptions
from faceage_video.errors import OptionsError
from faceage_video.face.blend import BlendOptions
from faceage_video.face.hair import HairOptions
from faceage_video.face.landmarks import LandmarkerOptions
from faceage_video.face.tracker import OneEuroOptions, TrackerOptions
from faceage_video.media.reader import is_url
from faceage_video.types import FaceSelection

SourceKind = Literal["camera", "url", "file"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("camera", "url", "file")
OutputKind = Literal["window", "virtualcam", "stream", "file", "preview"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("window", "virtualcam", "stream", "file", "preview")
GeneratorMode = Literal["async", "sync"]
GENERATOR_MODES: tuple[GeneratorMode, ...] = ("async", "sync")

# Stream outputs: URL scheme → FFmpeg muxer.
STREAM_MUXERS: dict[str, str] = {
    "udp": "mpegts",
    "tcp": "mpegts",
    "srt": "mpegts",
    "rtp": "rtp_mpegts",
    "rtmp": "flv",
    "rtmps": "flv",
}
# Landmark smoothing for live use. The offline default (min_cutoff 1 Hz, beta 0.05) lags about 45 ms behind a
# head moving half a face per second; here beta 0.3 lifts the cutoff to 1.5 + 0.3·50 = 16.5 Hz at that speed
# (under 10 ms of lag), and the higher still cutoff still removes the sub-pixel jitter of a face held still.
LIVE_ONE_EURO = OneEuroOptions(min_cutoff=1.5, beta=0.3, d_cutoff=1.0)
# Residual EMA for live use: weight 0.3 on history averages about 1.4 frames (the offline 0.6: 2.5 frames),
# and the motion-aware term still follows a new expression at once.
LIVE_TEMPORAL = TemporalOptions(strength=0.3)
# The hair matte, found on every third frame and carried with the head in between: finding it costs about
# what the face's own stages do, and hair moves with the head.
LIVE_HAIR_EVERY = 3
_CAMERA_RE = re.compile(r"^(\d+|/dev/video\d+)$")


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
    if o == "window":
        return "window"
    if o == "virtualcam":
        return "virtualcam"
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
        hair: the hair stage (off by default): greys or colours the hair around each face by the share
            between its age and the target, at the controls' direction, target age and strength; the matte
            is found every `LIVE_HAIR_EVERY` frames.
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
    hair: HairOptions = field(default_factory=lambda: HairOptions(every=LIVE_HAIR_EVERY))
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
        singles: tuple[OutputKind, ...] = ("window", "virtualcam")
        for k in singles:
            if kinds.count(k) > 1:
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
