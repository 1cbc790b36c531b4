"""Video decoding with PyAV: upright RGB frames that keep their own timestamps.

`probe` reads the stream facts the rest of the pipeline needs (size, rate, time base, colour tags, audio
streams). `VideoReader` decodes one video stream with FFmpeg frame+slice threading and yields each frame as
an upright (H, W, 3) uint8 RGB array together with its original pts and time base, so a variable-frame-rate
clip stays variable-frame-rate through to the writer.

Clock: `start_s`, `end_s` and `DecodedFrame.time_s` count seconds from the video stream's first timestamp
(`VideoInfo.start_time_s`), so "second 2" means the same thing for an MP4 that starts at 0 and an MPEG-TS
that starts at 1.4 s. `pts` is always the raw container value.

Only local files are read unless `allow_protocols` is set: URLs are refused and FFmpeg is told to open
nothing but files and pipes, because playlist demuxers (HLS, concat) follow paths written inside the input.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Any

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from numpy.typing import NDArray

from faceage_video.errors import InputError, OptionsError
from faceage_video.types import Frame

# FFmpeg's "unspecified" AVColorRange, and the "unspecified" colour space / primaries / transfer.
_UNSPECIFIED_RANGE = 0
_UNSPECIFIED_TAG = 2
# What FFmpeg may open while reading a local file: the file itself, or stdin/stdout for pipes.
LOCAL_PROTOCOLS = "file,pipe"
# Demuxers that open further files named inside the input; refused unless protocols are allowed.
_INDIRECT_DEMUXERS = frozenset({"hls", "applehttp", "concat", "dash", "imf"})
# "scheme:" or "scheme://" at the start of a path (two or more letters, so "C:" is not a scheme).
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
# Most warnings kept; a broken file can produce one per packet.
_MAX_WARNINGS = 200


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of the input, which the writer remuxes untouched.

    Attributes:
        index: stream index in the container.
        codec: FFmpeg codec name, e.g. "aac".
        sample_rate: samples per second.
        channels: channel count.
    """

    index: int
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoInfo:
    """Facts about the input's first video stream.

    Attributes:
        path: the input path as given.
        width: upright display width in pixels, after rotation metadata is applied.
        height: upright display height in pixels.
        rotation: degrees the stored picture is turned counter-clockwise to display it upright (FFmpeg's
            display matrix, as `av.VideoFrame.rotation`), normalised to 0, 90, 180 or 270. The reader has
            already applied it to every frame.
        fps: average frame rate.
        time_base: seconds per pts tick of the video stream.
        frame_count: the container's frame count, an estimate; None when the container does not say.
        duration_s: stream (or container) duration in seconds; None when unknown.
        codec: FFmpeg decoder name, e.g. "h264", "mpeg4".
        pix_fmt: decoded pixel format, e.g. "yuv420p".
        color_range: AVColorRange (1 limited "tv", 2 full "pc"); None when the file leaves it unspecified.
        colorspace: AVColorSpace, the YUV matrix (1 BT.709, 5 BT.470BG, 6 SMPTE 170M, 9 BT.2020); None when
            unspecified.
        color_primaries: AVColorPrimaries; None when unspecified.
        color_trc: AVColorTransferCharacteristic; None when unspecified.
        audio: every audio stream, in container order.
        start_time_s: presentation time of the stream's first timestamp; the zero of `start_s`, `end_s` and
            `DecodedFrame.time_s`.
    """

    path: str
    width: int
    height: int
    rotation: int
    fps: Fraction
    time_base: Fraction
    frame_count: int | None
    duration_s: float | None
    codec: str
    pix_fmt: str
    color_range: int | None
    colorspace: int | None
    color_primaries: int | None
    color_trc: int | None
    audio: tuple[AudioStreamInfo, ...]
    start_time_s: float = 0.0


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame.

    Attributes:
        index: 0-based position among the frames this reader yielded (not counting frames before `start_s`).
        image: (H, W, 3) uint8 RGB, upright, C-contiguous.
        pts: the frame's presentation timestamp in `time_base` units, as stored; None if the container has
            none (the writer then spaces frames at the average rate).
        time_base: seconds per pts tick.
        time_s: seconds since the stream's first timestamp.
        plate: with `ReaderOptions.deep`, the same picture as (H, W, 3) uint16 RGB (0..65535) at the
            stream's own bit depth, and `image` is derived from it; None otherwise.
    """

    index: int
    image: Frame
    pts: int | None
    time_base: Fraction
    time_s: float
    plate: NDArray[np.uint16] | None = None


@dataclass(frozen=True)
class ReaderOptions:
    """Options of `VideoReader`.

    Attributes:
        threads: decoder threads; 0 lets FFmpeg pick one per core. Frame and slice threading are both on.
        start_s: first second to yield (frames at or after it); None starts at the beginning. The reader
            seeks to the keyframe before it and decodes forward.
        end_s: stop before this second; None reads to the end.
        allow_protocols: open URLs and let FFmpeg follow any protocol (network, playlists). Off by default,
            so only local files and pipes are read.
        deep: also decode every frame as 16-bit RGB (`DecodedFrame.plate`), so a 10/12-bit stream keeps its
            precision; None does so only for a stream deeper than 8 bits (see `bit_depth`).
    """

    threads: int = 0
    start_s: float | None = None
    end_s: float | None = None
    allow_protocols: bool = False
    deep: bool | None = False

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise OptionsError(f"threads must be >= 0 (0 = one per core), got {self.threads}")
        if self.start_s is not None and not self.start_s >= 0:
            raise OptionsError(f"start_s must be >= 0 seconds, got {self.start_s}")
        if self.end_s is not None and not self.end_s > 0:
            raise OptionsError(f"end_s must be > 0 seconds, got {self.end_s}")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise OptionsError(
                f"end_s ({self.end_s}) must be after start_s ({self.start_s}); swap them or drop one"
            )


def bit_depth(pix_fmt: str) -> int:
    """Bits per component of an FFmpeg pixel format ("yuv422p10le" → 10); 8 when unknown."""
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.FFmpegError):
        return 8


def is_url(path: str) -> bool:
    """True when `path` starts with a protocol such as "http://", "rtmp://" or "concat:"."""
    return bool(_URL_RE.match(path))


def open_input(path: str | os.PathLike[str], allow_protocols: bool = False) -> Any:
    """Open a media file with PyAV, turning every failure into an `InputError`.

    Args:
        path: a local file, or a URL when `allow_protocols` is set.
        allow_protocols: see `ReaderOptions.allow_protocols`.

    Returns:
        An open `av.container.InputContainer`; the caller closes it.

    Raises:
        InputError: the file is missing, a folder, unreadable or not a media file, or it is a URL or a
            playlist and protocols are not allowed.
    """
    name = os.fspath(path)
    if not allow_protocols:
        if is_url(name):
            raise InputError(
                f"{name}: URLs and protocol prefixes are refused for safety; pass a local file path, "
                "or allow protocols explicitly (allow_protocols=True)"
            )
        if not os.path.exists(name):
            raise InputError(f"{name}: no such file; check the path")
        if os.path.isdir(name):
            raise InputError(f"{name}: is a folder, not a video file; pass the path of a video")
    options = {} if allow_protocols else {"protocol_whitelist": LOCAL_PROTOCOLS}
    try:
        container = av.open(name, mode="r", container_options=options)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(
            f"{name}: cannot be opened as a video ({type(e).__name__}: {e}); check that it is a video file "
            "FFmpeg can read and that it is not truncated"
        ) from e
    if not allow_protocols and container.format.name in _INDIRECT_DEMUXERS:
        container.close()
        raise InputError(
            f"{name}: is a {container.format.name} playlist, which reads other files; convert it to a "
            "single video file, or allow protocols explicitly (allow_protocols=True)"
        )
    return container


def _tag(value: int | None, unspecified: int) -> int | None:
    return None if value is None or int(value) == unspecified else int(value)


def _rotation_of(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation of a decoded frame, snapped to 0/90/180/270."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError, av.FFmpegError):
        return 0
    return (round(degrees / 90) * 90) % 360


def _is_mirrored(frame: av.VideoFrame) -> bool:
    """True when the frame's display matrix also mirrors the picture (negative determinant)."""
    side_data: Any = frame.side_data  # a Mapping keyed by side-data type
    matrix = side_data.get(SideDataType.DISPLAYMATRIX)
    if matrix is None:
        return False
    # Nine native-endian int32 (16.16 fixed point); the upper-left 2x2 is the rotation/flip part.
    m = struct.unpack("=9i", bytes(matrix)[:36])
    return m[0] * m[4] - m[1] * m[3] < 0


def _first_frame(container: Any, stream: Any) -> av.VideoFrame | None:
    """Decode the first frame that decodes, tolerating broken packets; None if none does."""
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.FFmpegError:
                continue
            if frames:
                return frames[0]
    except av.FFmpegError:
        return None
    return None


def _video_info(name: str, container: Any, stream: Any, first: av.VideoFrame | None) -> VideoInfo:
    cc = stream.codec_context
    rotation = _rotation_of(first) if first is not None else 0
    coded_w = first.width if first is not None else cc.width
    coded_h = first.height if first is not None else cc.height
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    time_base = stream.time_base or Fraction(1, 90000)
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not fps:
        raise InputError(f"{name}: the video stream states no frame rate; remux it into MP4 or MKV first")
    if stream.duration:
        duration_s: float | None = float(stream.duration * time_base)
    elif container.duration:
        duration_s = container.duration / av.time_base
    else:
        duration_s = None

    # The header may leave colour tags unspecified while the bitstream (seen in the first frame) sets them.
    def colour(attr: str, unspecified: int) -> int | None:
        header = _tag(getattr(cc, attr, None), unspecified)
        if header is None and first is not None:
            return _tag(getattr(first, attr, None), unspecified)
        return header

    audio = tuple(
        AudioStreamInfo(
            index=a.index,
            codec=a.codec_context.name,
            sample_rate=int(a.codec_context.sample_rate or 0),
            channels=int(a.codec_context.channels or 0),
        )
        for a in container.streams.audio
    )
    pix_fmt = first.format.name if first is not None else (cc.pix_fmt or "")
    return VideoInfo(
        path=name,
        width=width,
        height=height,
        rotation=rotation,
        fps=Fraction(fps),
        time_base=Fraction(time_base),
        frame_count=int(stream.frames) or None,
        duration_s=duration_s,
        codec=cc.name,
        pix_fmt=pix_fmt,
        color_range=colour("color_range", _UNSPECIFIED_RANGE),
        colorspace=colour("colorspace", _UNSPECIFIED_TAG),
        color_primaries=colour("color_primaries", _UNSPECIFIED_TAG),
        color_trc=colour("color_trc", _UNSPECIFIED_TAG),
        audio=audio,
        start_time_s=float(stream.start_time * time_base) if stream.start_time is not None else 0.0,
    )


def _video_stream(name: str, container: Any) -> Any:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise InputError(f"{name}: has no video stream (found: {kinds}); pass a video file")
    return container.streams.video[0]


def probe(path: str | os.PathLike[str], allow_protocols: bool = False) -> VideoInfo:
    """Read the facts of a video's first video stream; decodes one frame to learn its rotation.

    Args:
        path: a local video file (or a URL when `allow_protocols`).
        allow_protocols: see `ReaderOptions.allow_protocols`.

    Returns:
        The `VideoInfo`.

    Raises:
        InputError: missing, unreadable, not a video, or no video stream.
    """
    name = os.fspath(path)
    container = open_input(name, allow_protocols)
    try:
        stream = _video_stream(name, container)
        first = _first_frame(container, stream)
        return _video_info(name, container, stream, first)
    finally:
        container.close()


def upright(image: Frame, rotation: int) -> Frame:
    """Turn an (H, W, C) array counter-clockwise by `rotation` degrees (0/90/180/270)."""
    k = (rotation // 90) % 4
    return image if k == 0 else np.ascontiguousarray(np.rot90(image, k))


class VideoReader:
    """Decodes a video's first video stream into upright RGB frames.

    Use as a context manager; iterate to decode. A corrupt packet or a decode error is skipped and noted in
    `warnings`, and decoding continues with whatever still decodes; a truncated file ends early with a
    warning. Each iteration starts again from `start_s`.
    """

    def __init__(self, path: str | os.PathLike[str], options: ReaderOptions = ReaderOptions()) -> None:
        """Open the input and read its facts.

        Raises:
            InputError: missing, unreadable, not a video, or no video stream.
        """
        self.options = options
        self.path = os.fspath(path)
        self.warnings: list[str] = []
        self.info: VideoInfo = probe(self.path, options.allow_protocols)
        self._container: Any = open_input(self.path, options.allow_protocols)
        self._stream = _video_stream(self.path, self._container)
        cc = self._stream.codec_context
        # Must be set before the decoder opens on the first packet.
        cc.thread_type = "AUTO"
        cc.thread_count = options.threads
        self._mirrored_warned = False
        self._suppressed = 0
        self._iterated = False

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the container; safe to call twice."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def _warn(self, message: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self._suppressed += 1
            note = f"{self._suppressed} further warnings not listed"
            if self.warnings[-1].endswith("further warnings not listed"):
                self.warnings[-1] = note
            else:
                self.warnings.append(note)

    def _packets(self) -> Iterator[Any]:
        """Demux the video stream, stepping over read errors; stop at the end or after a run of errors."""
        consecutive = 0
        while True:
            try:
                for packet in self._container.demux(self._stream):
                    consecutive = 0
                    yield packet
                return
            except av.FFmpegError as e:
                # A fresh demux() resumes after the bad spot; a truncated file gives up after a few tries.
                consecutive += 1
                self._warn(f"{self.path}: read error, skipped ({type(e).__name__}: {e})")
                if consecutive >= 8:
                    self._warn(f"{self.path}: file ends early (truncated or unreadable); stopped decoding")
                    return

    def _decode(self) -> Iterator[av.VideoFrame]:
        stream = self._stream
        for packet in self._packets():
            if packet.is_corrupt:
                where = f" at pts {packet.pts}" if packet.pts is not None else ""
                self._warn(f"{self.path}: packet{where} is flagged corrupt by the demuxer (decoded anyway)")
            try:
                frames = stream.decode(packet)
            except av.FFmpegError as e:
                where = f" at pts {packet.pts}" if packet.pts is not None else ""
                self._warn(f"{self.path}: corrupt packet{where} skipped ({type(e).__name__}: {e})")
                continue
            yield from frames
        # A demux that ended on errors never sent the flush packet: drain the decoder here.
        with contextlib.suppress(av.FFmpegError, ValueError):
            yield from stream.decode(None)

    def _reopen(self) -> None:
        """A fresh container positioned at the start (more reliable than seeking to 0 in unindexed files)."""
        self._container.close()
        self._container = open_input(self.path, self.options.allow_protocols)
        self._stream = _video_stream(self.path, self._container)
        self._stream.codec_context.thread_type = "AUTO"
        self._stream.codec_context.thread_count = self.options.threads

    def _frame_time(self, frame: av.VideoFrame) -> float | None:
        if frame.pts is None:
            return None
        return float(frame.pts * self.info.time_base) - self.info.start_time_s

    def _positioned(self, start_s: float | None) -> Iterator[av.VideoFrame]:
        """Decoded frames from a point at or before `start_s` (from the beginning when None)."""
        if self._iterated:
            self._reopen()
        self._iterated = True
        if start_s is None or start_s <= 0:
            yield from self._decode()
            return
        target = int((self.info.start_time_s + start_s) / self.info.time_base)
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as e:
            self._warn(f"{self.path}: seek to {start_s} s failed ({e}); decoding from the beginning")
        else:
            frames = self._decode()
            first = next(frames, None)
            t = self._frame_time(first) if first is not None else None
            if first is not None and t is not None and t <= start_s + 1e-6:
                yield first
                yield from frames
                return
            # Unindexed containers (MPEG-TS, raw streams) can land past the start or on a frame that
            # cannot be decoded alone; decoding from the beginning is slower but exact.
            self._warn(f"{self.path}: seek to {start_s} s was inexact; decoded from the beginning instead")
        self._reopen()
        yield from self._decode()

    def __iter__(self) -> Iterator[DecodedFrame]:
        """Yield the frames in [start_s, end_s) in presentation order.

        Raises:
            InputError: the reader was closed.
        """
        if self._container is None:
            raise InputError(f"{self.path}: reader is closed; open a new VideoReader")
        info, opts = self.info, self.options
        tb = info.time_base
        index = 0
        decoded = 0
        last_pts: int | None = None
        deep_frames = opts.deep if opts.deep is not None else bit_depth(info.pix_fmt) > 8
        for frame in self._positioned(opts.start_s):
            decoded += 1
            pts = frame.pts
            if pts is not None and last_pts is not None and pts <= last_pts:
                # Repeated or backwards pts after a broken packet: keep timestamps increasing.
                self._warn(f"{self.path}: frame with non-increasing pts {pts} dropped")
                continue
            t = self._frame_time(frame)
            time_s = t if t is not None else (decoded - 1) / float(info.fps)
            if opts.start_s is not None and time_s < opts.start_s - 1e-9:
                continue
            if opts.end_s is not None and time_s >= opts.end_s - 1e-9:
                return
            if frame.is_corrupt:
                self._warn(f"{self.path}: frame at {time_s:.3f} s decoded with errors (kept)")
            if not self._mirrored_warned and _is_mirrored(frame):
                self._mirrored_warned = True
                self._warn(f"{self.path}: display matrix mirrors the picture; only its rotation is applied")
            plate: NDArray[np.uint16] | None = None
            image: Frame
            if deep_frames:
                deep: Any = frame.to_ndarray(format="rgb48le")
                deep = upright(deep, info.rotation)
                plate = deep
                # The 8-bit picture the model sees, from the same pixels (as sequence.IntegerTransfer).
                image = np.rint(deep / np.float32(257.0)).astype(np.uint8)
            else:
                rgb: Any = frame.to_ndarray(format="rgb24")
                image = upright(rgb, info.rotation)
            last_pts = pts
            yield DecodedFrame(index=index, image=image, pts=pts, time_base=tb, time_s=time_s, plate=plate)
            index += 1
