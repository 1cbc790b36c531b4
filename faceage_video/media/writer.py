"""Video encoding with PyAV: atomic output that keeps the input's timing, colour tags and audio.

`VideoWriter` encodes upright RGB frames with the pts and time base the reader gave them, so the output has
the input's frame count, timestamps (VFR stays VFR), frame rate, size and colour tags. Every audio stream of
the source is copied packet for packet (never re-encoded): a second demuxer on the source pulls audio packets
up to the time of the video frame just written, so memory stays bounded on long clips.

Atomicity: everything is written to a hidden temporary file beside the target (same extension), and renamed
onto the target only by `close()`. An exception, Ctrl-C included, inside the `with` block calls `abort()`,
which deletes the temporary file, so nothing ever appears under the final name half-written.

Rotation: the reader turns frames upright, so the writer stores upright frames and no rotation metadata.

Where a container cannot store the input's time base the muxer picks its own and timestamps are rescaled:
MP4/MOV keep time bases of 1/10000 and finer exactly; Matroska counts milliseconds; AVI counts frames.
Matroska also cannot store negative times, so when the audio starts before the video (AAC priming) its
muxer delays every stream by that much, keeping them in sync; MP4/MOV keep the times as they are.

`MatteWriter` stores one single-channel mask per frame, as a grey video or a PNG sequence.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError, OutputError
from faceage_video.media.reader import VideoInfo, bit_depth, open_input
from faceage_video.types import Frame

Codec = Literal["h264", "hevc", "ffv1", "prores", "mpeg4"]
CODECS: tuple[Codec, ...] = ("h264", "hevc", "ffv1", "prores", "mpeg4")

# x264/x265 speed presets, fastest first.
Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
PRESETS: tuple[Preset, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)  # fmt: skip

# FFmpeg encoder behind each codec choice.
ENCODERS: dict[Codec, str] = {
    "h264": "libx264",
    "hevc": "libx265",
    "ffv1": "ffv1",
    "prores": "prores_ks",
    "mpeg4": "mpeg4",
}
# File extensions each codec may be written into, the most useful first (named in errors).
CONTAINERS: dict[Codec, tuple[str, ...]] = {
    "h264": (".mp4", ".mov", ".mkv", ".m4v"),
    "hevc": (".mp4", ".mov", ".mkv"),
    "ffv1": (".mkv", ".avi"),  # PyAV refuses FFV1 in MOV; FFV1 in MP4 is non-standard, few tools read it
    "prores": (".mov", ".mkv"),
    "mpeg4": (".mp4", ".mov", ".mkv", ".avi"),
}
CRF_RANGE = (0, 51)
# libx265 corrupts its heap (and aborts the process) on frames about 33-48 px wide; refuse small frames.
_HEVC_MIN_SIZE = (64, 16)

# AVColorSpace (the stream's matrix tag) -> swscale colour-space constant for the RGB -> YUV conversion.
_SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_AVCOL_SPC_RGB = 0
_AVCOL_RANGE_JPEG = 2
_UNSPECIFIED_RANGE = 0
_UNSPECIFIED_TAG = 2
# MPEG-4 Part 2 stores the time base denominator in 16 bits.
_MPEG4_MAX_TB_DEN = 65535
# Constant rate factor of grey H.264 mattes: visually lossless edges.
_MATTE_H264_CRF = 12
# Audio is read this far before start_s after a seek, so no packet at the cut is missed.
_AUDIO_SEEK_MARGIN_S = 1.0

Mask8 = NDArray[np.uint8]  # (H, W) 0..255


@dataclass(frozen=True)
class WriterOptions:
    """Options of `VideoWriter`.

    Attributes:
        codec: one of `CODECS`.
            "h264": libx264, yuv420p; yuv444p when a side is odd (needs a High 4:4:4 decoder).
            "hevc": libx265, the same pixel formats; frames at least 64x16.
            "ffv1": lossless RGB, bit-exact; .mkv or .avi.
            "prores": prores_ks HQ, 4:2:2 10-bit; .mov or .mkv.
            "mpeg4": MPEG-4 Part 2, yuv420p.
        crf: quality on the x264 scale, 0 (best) to 51; 18 is visually lossless. h264 and hevc use it as
            their constant rate factor; mpeg4 turns it into a fixed quantiser with x264's own QP -> qscale
            relation (18 -> 2, 23 -> 3, 28 -> 5). ffv1 is lossless and prores uses its HQ profile, so both
            ignore it.
        preset: x264/x265 speed preset, one of `PRESETS`; only h264 and hevc use it.
        audio: copy the source's audio streams; False writes video only.
        threads: encoder threads; 0 lets the encoder pick one per core.
    """

    codec: Codec = "h264"
    crf: int = 18
    preset: str = "medium"
    audio: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise OptionsError(f"codec must be one of {', '.join(CODECS)}; got {self.codec!r}")
        lo, hi = CRF_RANGE
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not lo <= self.crf <= hi:
            raise OptionsError(
                f"crf must be an integer in {lo}..{hi} (lower is better, 18 default); got {self.crf}"
            )
        if self.preset not in PRESETS:
            raise OptionsError(f"preset must be one of {', '.join(PRESETS)}; got {self.preset!r}")
        if self.threads < 0:
            raise OptionsError(f"threads must be >= 0 (0 = one per core); got {self.threads}")


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_target(path: str | os.PathLike[str], protected: list[str]) -> Path:
    """Refuse a target that would overwrite an input or cannot be created."""
    target = Path(os.fspath(path))
    for src in protected:
        if _same_file(target, src):
            raise OutputError(f"{target}: is the input file; choose a different output path")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name such as {target / 'out.mp4'}")
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{target}: output folder {parent} is not writable; pick another folder")
    return target


def _temp_path(target: Path) -> Path:
    """Hidden sibling with the same extension, so FFmpeg picks the same muxer."""
    return target.with_name(f".{target.stem}.{secrets.token_hex(4)}.partial{target.suffix}")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _open_output(temp: Path, target: Path) -> Any:
    try:
        return av.open(str(temp), mode="w")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise OutputError(
            f"{target}: cannot be created ({type(e).__name__}: {e}); check the extension"
        ) from e


def _mpeg4_qscale(crf: int) -> int:
    # x264's qp2qscale: qscale = 0.85 * 2^((qp - 12) / 6), clamped to MPEG-4's 1..31.
    return int(min(31, max(1, round(0.85 * 2 ** ((crf - 12) / 6)))))


def _encoder_time_base(codec: Codec, time_base: Fraction) -> Fraction:
    """The input's time base, coarsened by the smallest integer factor when the codec cannot store it."""
    if codec != "mpeg4" or time_base.denominator <= _MPEG4_MAX_TB_DEN:
        return time_base
    den = time_base.denominator
    for k in range(2, den + 1):
        if den % k == 0 and den // k <= _MPEG4_MAX_TB_DEN:
            return Fraction(time_base.numerator, den // k)
    return Fraction(1, _MPEG4_MAX_TB_DEN)


def _deep_encoding(
    codec: Codec, info: VideoInfo, pix_fmt: str, opts: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """The pixel format (and options) that keep a 10/12-bit input's depth in codecs that carry it.

    hevc: Main 10 (4:2:0, or 4:4:4 for odd sizes); prores: 4444 for 4:4:4 or RGB input, else 422 HQ (10-bit
    already); ffv1: 10/12-bit planar RGB. h264 stays 8-bit, since few players decode High 10.
    """
    bits = bit_depth(info.pix_fmt)
    if bits <= 8:
        return pix_fmt, opts
    full_chroma = "444" in info.pix_fmt or info.pix_fmt.startswith(("gbr", "rgb", "bgr"))
    if codec == "hevc":
        return ("yuv444p10le" if pix_fmt == "yuv444p" else "yuv420p10le"), opts
    if codec == "prores" and full_chroma:
        return "yuv444p10le", {**opts, "profile": "4444"}
    if codec == "ffv1":
        return ("gbrp10le" if bits <= 10 else "gbrp12le"), opts
    return pix_fmt, opts


class _AtomicOutput:
    """Context-manager behaviour of the writers: a normal exit commits, any exception aborts."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _commit(
    path: Path,
    temp: Path,
    container: Any,
    sink: _VideoSink,
    abort: Callable[[], None],
    before_close: Callable[[], None] | None = None,
) -> None:
    """Flush the encoder, run `before_close`, close the container and rename `temp` onto `path`.

    Any failure, Ctrl-C included, calls `abort` first, so nothing is ever left under `path`.

    Raises:
        OutputError: flushing, muxing or renaming failed.
    """
    try:
        sink.flush()
        if sink.frames == 0:
            container.start_encoding()  # an empty but valid file rather than none
        if before_close is not None:
            before_close()
        container.close()
        os.replace(temp, path)
    except (av.FFmpegError, OSError) as e:
        abort()
        raise OutputError(f"{path}: could not be finished ({type(e).__name__}: {e})") from e
    except BaseException:
        abort()
        raise


class _VideoSink:
    """One encoded video stream in an open output container: pts bookkeeping, colour tags, flush."""

    def __init__(
        self,
        container: Any,
        target: Path,
        encoder: str,
        pix_fmt: str,
        width: int,
        height: int,
        fps: Fraction,
        time_base: Fraction,
        encoder_time_base: Fraction,
        codec_options: dict[str, str],
        colour: dict[str, int],
        threads: int,
        rebase: bool,
    ) -> None:
        self.target = target
        self.container = container
        try:
            stream = container.add_stream(encoder, rate=fps, options=codec_options)
        except (av.FFmpegError, ValueError) as e:
            raise OutputError(f"{target}: cannot add a {encoder} stream ({e}); choose another codec") from e
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        stream.time_base = time_base
        cc = stream.codec_context
        cc.time_base = encoder_time_base
        cc.framerate = fps
        cc.thread_count = threads
        for name, value in colour.items():
            setattr(cc, name, value)
        self.stream = stream
        self.pix_fmt = pix_fmt
        self.width, self.height = width, height
        self.fps = fps
        self.time_base = time_base
        self.encoder_time_base = encoder_time_base
        self.colour = colour
        self.rebase = rebase
        self.first_pts: int | None = None  # in `time_base`, before rebasing
        self.last_pts: int | None = None
        self.frames = 0

    def next_pts(self, pts: int | None, time_base: Fraction) -> int:
        """The frame's pts in the stream's time base, checked to increase."""
        if pts is None:
            if self.last_pts is None:
                out = 0
            else:
                out = self.last_pts + max(1, round(1 / (self.fps * self.time_base)))
        elif time_base == self.time_base:
            out = int(pts)
        else:
            out = round(pts * time_base / self.time_base)
        if self.last_pts is not None and out <= self.last_pts:
            raise ValueError(
                f"pts must increase: got {pts} (time base {time_base}) after {self.last_pts} "
                f"(time base {self.time_base}); drop repeated frames before writing"
            )
        return out

    def encode(self, frame: av.VideoFrame, pts: int) -> None:
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts
        shifted = pts - self.first_pts if self.rebase else pts
        if self.encoder_time_base == self.time_base:
            frame.pts = shifted
        else:
            frame.pts = round(shifted * self.time_base / self.encoder_time_base)
        frame.time_base = self.encoder_time_base
        for name, value in self.colour.items():
            setattr(frame, name, value)
        try:
            self.container.mux(self.stream.encode(frame))
        except av.FFmpegError as e:
            raise OutputError(f"{self.target}: encoding failed ({type(e).__name__}: {e})") from e
        self.frames += 1

    def flush(self) -> None:
        """Drain the encoder's delayed frames (B-frames, lookahead) into the container."""
        try:
            self.container.mux(self.stream.encode(None))
        except av.FFmpegError as e:
            raise OutputError(f"{self.target}: flushing the encoder failed ({type(e).__name__}: {e})") from e

    @property
    def shift_s(self) -> Fraction:
        """Seconds subtracted from every timestamp (0 unless rebasing)."""
        if not self.rebase or self.first_pts is None:
            return Fraction(0)
        return self.first_pts * self.time_base


class _AudioRemuxer:
    """Copies the audio packets of a source into an output, in step with the video.

    Packets keep their bytes, side data and durations; only their timestamps move, by the same shift as the
    video. A packet is kept when it starts before the end of the window and ends after its start.
    """

    def __init__(
        self,
        source: str,
        output: Any,
        target: Path,
        origin_s: float,
        start_s: float | None,
        end_s: float | None,
        allow_protocols: bool,
    ) -> None:
        self.warnings: list[str] = []
        self._input = open_input(source, allow_protocols)
        streams = list(self._input.streams.audio)
        supported = output.supported_codecs
        for s in streams:
            name = s.codec_context.name
            if name not in supported:
                self._input.close()
                raise OutputError(
                    f"{target}: '{target.suffix}' cannot hold the {name} audio of {source}; "
                    "write .mkv, or drop the audio (audio=False)"
                )
        self._out: dict[int, Any] = {}
        try:
            for s in streams:
                self._out[s.index] = output.add_stream_from_template(s)
        except (av.FFmpegError, ValueError) as e:
            self._input.close()
            raise OutputError(f"{target}: cannot add the audio of {source} ({e}); write .mkv instead") from e
        self._output = output
        self._source = source
        self._origin = Fraction(origin_s)
        self._end = self._origin + Fraction(end_s) if end_s is not None else None
        self._window_start: Fraction | None = None
        self._shift = Fraction(0)
        self._pending: Any = None
        self.packets_written = 0
        self._finished: set[int] = set()
        self._packets: Any = iter(())
        if streams:
            if start_s is not None and start_s > _AUDIO_SEEK_MARGIN_S:
                seek_to = float(self._origin) + start_s - _AUDIO_SEEK_MARGIN_S
                with contextlib.suppress(av.FFmpegError):
                    self._input.seek(int(seek_to * av.time_base), backward=True)
            self._packets = self._input.demux(streams)

    def begin(self, window_start: Fraction | None, shift: Fraction) -> None:
        """Fix the cut: keep packets from `window_start` (None: all), moved earlier by `shift` seconds."""
        self._window_start = window_start
        self._shift = shift

    def _next(self) -> Any:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                return None
            except av.FFmpegError as e:
                self.warnings.append(f"{self._source}: audio read error, rest of the audio dropped ({e})")
                self._packets = iter(())
                return None
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue  # demuxer's flush packets
            return packet

    def pump(self, until: Fraction | None) -> None:
        """Mux every packet presented at or before `until` seconds (absolute); None: all the rest."""
        while True:
            packet = self._next()
            if packet is None:
                return
            ts = packet.pts if packet.pts is not None else packet.dts
            t = ts * packet.time_base
            if self._end is not None and t >= self._end:
                # This stream is past the cut; stop reading once every stream is.
                self._finished.add(packet.stream_index)
                if len(self._finished) == len(self._out):
                    self._packets = iter(())
                continue
            if until is not None and t > until:
                self._pending = packet
                return
            # Keep the packet that straddles the cut, so sound starts with the first frame; it lands at a
            # negative time, which MP4/MOV store exactly in their edit list.
            if self._window_start is not None and t < self._window_start:
                ends = t + (packet.duration or 0) * packet.time_base
                if ends <= self._window_start:
                    continue
            if self._shift:
                ticks = round(self._shift / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= ticks
                if packet.dts is not None:
                    packet.dts -= ticks
            packet.stream = self._out[packet.stream_index]
            self._output.mux(packet)
            self.packets_written += 1

    def close(self) -> None:
        self._input.close()


class VideoWriter(_AtomicOutput):
    """Encodes upright RGB frames to a video file, copying the source's audio; atomic.

    Use as a context manager: a normal exit calls `close()` (flush, mux the rest of the audio, rename onto
    `path`); an exception, KeyboardInterrupt included, calls `abort()` (nothing appears under `path`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: VideoInfo,
        options: WriterOptions,
        audio_source: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        allow_protocols: bool = False,
    ) -> None:
        """Check the target and open the hidden temporary output.

        Args:
            path: final output file; its extension picks the container (see `CONTAINERS`).
            info: the input's `VideoInfo`: size, rate, time base and colour tags are copied from it.
            options: codec and quality.
            audio_source: file whose audio streams are copied (normally the input); None writes no audio.
            start_s: set when the reader started at `start_s`: the first written frame's pts becomes 0, and
                audio that ends before that frame is dropped, every audio timestamp moving by the same
                amount (the packet straddling the cut starts slightly below 0).
            end_s: set when the reader stopped at `end_s`: audio from `end_s` on is dropped.
            allow_protocols: let `audio_source` be a URL (see `ReaderOptions.allow_protocols`).

        Raises:
            OutputError: `path` is the input, its folder is missing, or the codec cannot go in that
                container (naming one that can), or the audio codec cannot.
        """
        self.options = options
        self.info = info
        self.warnings: list[str] = []
        protected = [info.path] + ([audio_source] if audio_source else [])
        self.path = _check_target(path, protected)
        codec = options.codec
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS[codec]:
            raise OutputError(
                f"{self.path}: {codec} cannot be written into '{suffix or '(no extension)'}'; use "
                f"{' or '.join(CONTAINERS[codec])}, or another codec"
            )
        encoder = ENCODERS[codec]
        try:
            av.Codec(encoder, "w")
        except (av.FFmpegError, ValueError) as e:
            raise OutputError(
                f"{self.path}: this FFmpeg build has no {encoder} encoder; choose another codec"
            ) from e

        min_w, min_h = _HEVC_MIN_SIZE
        if codec == "hevc" and (info.width < min_w or info.height < min_h):
            raise OutputError(
                f"{self.path}: hevc needs frames at least {min_w}x{min_h} px, these are "
                f"{info.width}x{info.height}; use h264"
            )
        self._temp = _temp_path(self.path)
        self._done = False
        # Removes the temporary file if the writer is dropped without close() or abort().
        self._finalizer = weakref.finalize(self, _remove, self._temp)
        self._container = _open_output(self._temp, self.path)
        self._audio: _AudioRemuxer | None = None
        try:
            pix_fmt, codec_options, colour = self._encoding(codec, info, options)
            pix_fmt, codec_options = _deep_encoding(codec, info, pix_fmt, codec_options)
            # Frames given as 16-bit plates (write_plate) keep more than 8 bits in this stream.
            self.deep = bit_depth(pix_fmt) > 8
            self._sink = _VideoSink(
                self._container,
                self.path,
                encoder,
                pix_fmt,
                info.width,
                info.height,
                info.fps,
                info.time_base,
                _encoder_time_base(codec, info.time_base),
                codec_options,
                colour,
                options.threads,
                rebase=start_s is not None,
            )
            if codec == "mpeg4":
                cc = self._sink.stream.codec_context
                cc.qscale = True
                cc.global_quality = _mpeg4_qscale(options.crf)
            if options.audio and audio_source is not None:
                self._audio = _AudioRemuxer(
                    audio_source,
                    self._container,
                    self.path,
                    info.start_time_s,
                    start_s,
                    end_s,
                    allow_protocols,
                )
        except BaseException:
            self.abort()
            raise
        # The RGB -> YUV conversion must use the matrix and range the stream is tagged with.
        self._sws_colorspace = (
            _SWS_COLORSPACE.get(info.colorspace or -1) if pix_fmt.startswith("yuv") else None
        )
        self._sws_range = info.color_range if pix_fmt.startswith("yuv") else None
        self._start_s = start_s

    @staticmethod
    def _encoding(
        codec: Codec, info: VideoInfo, options: WriterOptions
    ) -> tuple[str, dict[str, str], dict[str, int]]:
        """Pixel format, encoder options and stream colour tags for a codec."""
        odd = info.width % 2 == 1 or info.height % 2 == 1
        colour = {
            "color_range": info.color_range if info.color_range is not None else _UNSPECIFIED_RANGE,
            "colorspace": info.colorspace if info.colorspace is not None else _UNSPECIFIED_TAG,
            "color_primaries": info.color_primaries if info.color_primaries is not None else _UNSPECIFIED_TAG,
            "color_trc": info.color_trc if info.color_trc is not None else _UNSPECIFIED_TAG,
        }
        opts: dict[str, str] = {}
        if codec in ("h264", "hevc"):
            # 4:2:0 needs even sides; 4:4:4 keeps an odd size exactly instead of padding or cropping it.
            pix_fmt = "yuv444p" if odd else "yuv420p"
            opts = {"crf": str(options.crf), "preset": options.preset}
            if codec == "hevc":
                opts["x265-params"] = "log-level=error"
        elif codec == "ffv1":
            # Lossless RGB: decoded output equals the frames written, bit for bit. The matrix tag becomes RGB.
            pix_fmt = "bgr0"
            opts = {"level": "3"}
            colour["colorspace"] = _AVCOL_SPC_RGB
            colour["color_range"] = _AVCOL_RANGE_JPEG
        elif codec == "prores":
            pix_fmt = "yuv422p10le"
            opts = {"profile": "hq", "vendor": "apl0"}
        else:  # mpeg4
            pix_fmt = "yuv420p"
        return pix_fmt, opts, colour

    @property
    def frames_written(self) -> int:
        """Video frames passed to the encoder so far."""
        return self._sink.frames

    @property
    def audio_packets_written(self) -> int:
        """Audio packets copied so far; they keep pace with the frames written."""
        return self._audio.packets_written if self._audio is not None else 0

    def write(self, image: Frame, pts: int | None, time_base: Fraction) -> None:
        """Encode one upright frame, then mux the audio up to its time.

        Args:
            image: (H, W, 3) uint8 RGB with H, W = `info.height`, `info.width`.
            pts: presentation timestamp in `time_base` units, as the reader gave it; None spaces the frame one
                average frame duration after the previous one.
            time_base: seconds per pts tick.

        Raises:
            ValueError: wrong shape or dtype, or a pts that does not increase.
            OutputError: the encoder failed, or the writer is already closed.
        """
        if self._done:
            raise OutputError(f"{self.path}: writer is closed; open a new VideoWriter")
        sink = self._sink
        if image.shape != (sink.height, sink.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"expected a ({sink.height}, {sink.width}, 3) uint8 RGB frame;"
                f" got {image.shape}, {image.dtype}"
                " (convert to RGB uint8 first)"
            )
        self._send(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"), pts, time_base)

    def write_plate(self, plate: NDArray[np.uint16], pts: int | None, time_base: Fraction) -> None:
        """Encode one upright 16-bit RGB frame (`DecodedFrame.plate`); a `deep` writer keeps its low bits.

        Args:
            plate: (H, W, 3) uint16 RGB, 0..65535, H, W = `info.height`, `info.width`.
            pts, time_base: as `write`.

        Raises:
            ValueError, OutputError: as `write`.
        """
        if self._done:
            raise OutputError(f"{self.path}: writer is closed; open a new VideoWriter")
        sink = self._sink
        if plate.shape != (sink.height, sink.width, 3) or plate.dtype != np.uint16:
            raise ValueError(
                f"expected a ({sink.height}, {sink.width}, 3) uint16 RGB plate; got {plate.shape}, {plate.dtype}"
            )
        if sink.pix_fmt.startswith("gbrp"):
            # Planar RGB: requantise here, exactly (16-bit values decoded from n-bit codes give the same codes
            # back); swscale would dither, and pixels outside the face must stay bit-identical.
            top = (1 << bit_depth(sink.pix_fmt)) - 1
            codes = np.rint(plate.astype(np.float32) * np.float32(top / 65535.0)).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(codes, format=sink.pix_fmt)  # (H, W, 3) RGB order
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plate), format="rgb48le")
        self._send(frame, pts, time_base)

    def _send(self, frame: av.VideoFrame, pts: int | None, time_base: Fraction) -> None:
        """Convert an RGB frame to the stream's format, encode it, then mux the audio up to its time."""
        sink = self._sink
        out_pts = sink.next_pts(pts, time_base)
        frame = frame.reformat(
            format=sink.pix_fmt, dst_colorspace=self._sws_colorspace, dst_color_range=self._sws_range
        )
        first = sink.first_pts is None
        sink.encode(frame, out_pts)
        if self._audio is not None:
            if first:
                window = out_pts * sink.time_base if self._start_s is not None else None
                self._audio.begin(window, sink.shift_s)
            try:
                self._audio.pump(out_pts * sink.time_base)
            except av.FFmpegError as e:
                raise OutputError(f"{self.path}: copying the audio failed ({type(e).__name__}: {e})") from e

    def close(self) -> None:
        """Flush the encoder, mux the remaining audio, close the file and rename it onto `path`.

        Raises:
            OutputError: flushing or writing failed; the temporary file is removed and `path` untouched.
        """
        if self._done:
            return
        _commit(self.path, self._temp, self._container, self._sink, self.abort, self._finish_audio)
        self._done = True
        self._finalizer.detach()

    def _finish_audio(self) -> None:
        """Mux the audio packets after the last video frame."""
        if self._audio is None:
            return
        if self._sink.first_pts is None:
            self._audio.begin(None, Fraction(0))
        self._audio.pump(None)
        self.warnings.extend(self._audio.warnings)
        self._audio.close()

    def abort(self) -> None:
        """Stop writing and delete the temporary file; nothing is left under `path`. Safe to call twice."""
        if self._done:
            return
        self._done = True
        if self._audio is not None:
            with contextlib.suppress(Exception):
                self._audio.close()
        with contextlib.suppress(Exception):
            self._container.close()
        _remove(self._temp)
        self._finalizer.detach()


MatteFormat = Literal["ffv1", "h264", "png"]
_PNG_PATTERN_RE = re.compile(r"%0?\d*d")
DEFAULT_MATTE_PATTERN = "matte_%06d.png"


def matte_format(path: str | os.PathLike[str]) -> MatteFormat:
    """How `MatteWriter` stores mattes at `path`.

    A folder (existing, or named with a trailing slash) or a printf pattern ending in .png ("matte_%05d.png")
    is a PNG sequence; .mkv and .avi are lossless FFV1 grey video; .mp4 and .mov are H.264.

    Raises:
        OutputError: any other extension.
    """
    name = os.fspath(path)
    p = Path(name)
    if p.is_dir() or name.endswith(("/", os.sep)):
        return "png"
    if _PNG_PATTERN_RE.search(p.name) and p.suffix.lower() == ".png":
        return "png"
    suffix = p.suffix.lower()
    if suffix in (".mkv", ".avi"):
        return "ffv1"
    if suffix in (".mp4", ".mov"):
        return "h264"
    raise OutputError(
        f"{name}: matte path must be a folder, a PNG pattern like matte_%05d.png, or end in .mkv/.avi "
        "(lossless) or .mp4/.mov (H.264)"
    )


def _mask_to_u8(mask: NDArray[Any], height: int, width: int) -> Mask8:
    if mask.shape != (height, width):
        raise ValueError(f"expected a ({height}, {width}) matte, got shape {mask.shape}")
    if mask.dtype == np.uint8:
        return np.ascontiguousarray(mask)
    if np.issubdtype(mask.dtype, np.floating):
        m = np.nan_to_num(mask.astype(np.float32, copy=False), nan=0.0)
        return np.ascontiguousarray(np.rint(np.clip(m, 0.0, 1.0) * 255.0).astype(np.uint8))
    raise ValueError(f"matte must be float in [0, 1] or uint8, got {mask.dtype}")


class MatteWriter(_AtomicOutput):
    """Writes one single-channel matte per frame: a grey video or a PNG sequence.

    Mattes are (H, W) float32 in [0, 1] (values outside are clipped) or uint8, stored as 0..255.
    Grey video: .mkv/.avi hold lossless FFV1 `gray`; .mp4/.mov hold H.264 (CRF 12) with the matte in the
    full-range luma and neutral chroma. Timing follows `VideoWriter`: each frame keeps its pts, and with
    `start_s` set the first frame starts at 0. Video output is atomic like `VideoWriter`'s.
    PNG sequence: frame i (0-based count of written mattes) goes to `pattern % i`; each file appears
    complete (written hidden, then renamed), and `abort()` deletes the files this writer made.
    """

    def __init__(self, path: str | os.PathLike[str], info: VideoInfo, start_s: float | None = None) -> None:
        """Check the target and open it.

        Raises:
            OutputError: `path` is the input, its folder is missing, or its extension is not a matte format.
        """
        self.info = info
        self.format: MatteFormat = matte_format(path)
        self._done = False
        self._count = 0
        self._container: Any = None
        name = os.fspath(path)
        if self.format == "png":
            if Path(name).is_dir() or name.endswith(("/", os.sep)):
                folder, pattern = Path(name), DEFAULT_MATTE_PATTERN
            else:
                folder, pattern = Path(name).parent, Path(name).name
            if not folder.is_dir():
                raise OutputError(f"{name}: matte folder {folder} does not exist; create it first")
            self.folder, self.pattern = folder, pattern
            self.path = folder / pattern
            return
        self.path = _check_target(name, [info.path])
        self._temp = _temp_path(self.path)
        self._finalizer = weakref.finalize(self, _remove, self._temp)
        self._container = _open_output(self._temp, self.path)
        if self.format == "ffv1":
            encoder, pix_fmt, opts = "ffv1", "gray", {"level": "3"}
        else:
            odd = info.width % 2 == 1 or info.height % 2 == 1
            encoder, pix_fmt = "libx264", ("yuv444p" if odd else "yuv420p")
            opts = {"crf": str(_MATTE_H264_CRF), "preset": "medium"}
        colour = {"color_range": _AVCOL_RANGE_JPEG}
        try:
            self._sink = _VideoSink(
                self._container,
                self.path,
                encoder,
                pix_fmt,
                info.width,
                info.height,
                info.fps,
                info.time_base,
                info.time_base,
                opts,
                colour,
                0,
                rebase=start_s is not None,
            )
        except BaseException:
            self.abort()
            raise

    def write(self, mask: NDArray[Any], pts: int | None, time_base: Fraction) -> None:
        """Store one matte.

        Args:
            mask: (H, W) float in [0, 1] or uint8, H, W = `info.height`, `info.width`.
            pts: as `VideoWriter.write`; ignored by PNG sequences.
            time_base: seconds per pts tick.

        Raises:
            ValueError: wrong shape or dtype, or a pts that does not increase.
            OutputError: writing failed, or the writer is closed.
        """
        if self._done:
            raise OutputError(f"{self.path}: matte writer is closed; open a new MatteWriter")
        m8 = _mask_to_u8(mask, self.info.height, self.info.width)
        if self.format == "png":
            self._write_png(m8)
            return
        sink = self._sink
        out_pts = sink.next_pts(pts, time_base)
        grey = av.VideoFrame.from_ndarray(m8, format="gray")
        if sink.pix_fmt != "gray":
            # Full range in and out keeps luma equal to the matte; chroma is neutral (128).
            grey = grey.reformat(
                format=sink.pix_fmt, src_color_range=_AVCOL_RANGE_JPEG, dst_color_range=_AVCOL_RANGE_JPEG
            )
        sink.encode(grey, out_pts)
        self._count += 1

    def _write_png(self, m8: Mask8) -> None:
        final = self.folder / (self.pattern % self._count)
        ok, buf = cv2.imencode(".png", m8)
        if not ok:
            raise OutputError(f"{final}: PNG encoding failed")
        temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        try:
            temp.write_bytes(buf.tobytes())
            os.replace(temp, final)
        except OSError as e:
            _remove(temp)
            raise OutputError(f"{final}: cannot be written ({e})") from e
        self._count += 1

    def close(self) -> None:
        """Flush and finish; a video is renamed onto its final path.

        Raises:
            OutputError: flushing or writing failed; nothing is left under the final name.
        """
        if self._done:
            return
        if self.format == "png":
            self._done = True
            return
        _commit(self.path, self._temp, self._container, self._sink, self.abort)
        self._done = True
        self._finalizer.detach()

    def abort(self) -> None:
        """Delete what this writer made: the temporary video, or the PNGs written so far."""
        if self._done:
            return
        self._done = True
        if self.format == "png":
            for i in range(self._count):
                _remove(self.folder / (self.pattern % i))
            return
        with contextlib.suppress(Exception):
            self._container.close()
        _remove(self._temp)
        self._finalizer.detach()
