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

The pieces live beside it: `atomic` (temporary names, commit, abort), `sink` (the encoder stream), `remux`
(the audio copy); `matte` writes mattes with the same sink.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError, OutputError
from faceage_video.media.atomic import (
    check_target,
    copy_file_atomic,
)
from faceage_video.media.reader import VideoInfo, bit_depth
from faceage_video.media.remux import AudioRemuxer
from faceage_video.media.sink import AVCOL_RANGE_JPEG, EncodedOutput, SinkSpec, VideoSink
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
_UNSPECIFIED_RANGE = 0
_UNSPECIFIED_TAG = 2
# MPEG-4 Part 2 stores the time base denominator in 16 bits.
_MPEG4_MAX_TB_DEN = 65535
# Coarsest tick a coarsened time base may have: keeps frames of any real rate apart.
_MAX_COARSE_TICK_S = Fraction(1, 1000)


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


def _mpeg4_qscale(crf: int) -> int:
    # x264's qp2qscale: qscale = 0.85 * 2^((qp - 12) / 6), clamped to MPEG-4's 1..31.
    return int(min(31, max(1, round(0.85 * 2 ** ((crf - 12) / 6)))))


def encoder_time_base(codec: Codec, time_base: Fraction) -> Fraction:
    """The input's time base, coarsened by the smallest integer factor when the codec cannot store it.

    At most `_MPEG4_MAX_TB_DEN` divisions: the divisors are tried from the largest usable denominator down,
    so a huge prime denominator (1/2147483647) costs milliseconds, not minutes. When no divisor keeps a tick
    of a millisecond or finer, the finest clock the codec stores (1/65535 s) is used and timestamps round.
    """
    if codec != "mpeg4" or time_base.denominator <= _MPEG4_MAX_TB_DEN:
        return time_base
    den = time_base.denominator
    for d in range(_MPEG4_MAX_TB_DEN, 0, -1):
        if den % d == 0:
            coarse = Fraction(time_base.numerator, d)
            if coarse <= _MAX_COARSE_TICK_S:
                return coarse
            break
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


class VideoWriter(EncodedOutput):
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
        self.path = check_target(path, protected)
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
        self._open(self.path)
        self._audio: AudioRemuxer | None = None
        try:
            pix_fmt, codec_options, colour = self._encoding(codec, info, options)
            pix_fmt, codec_options = _deep_encoding(codec, info, pix_fmt, codec_options)
            # Frames given as 16-bit plates (write_plate) keep more than 8 bits in this stream.
            self.deep = bit_depth(pix_fmt) > 8
            spec = SinkSpec.of(
                info,
                encoder,
                pix_fmt,
                codec_options,
                colour,
                encoder_time_base=encoder_time_base(codec, info.time_base),
                threads=options.threads,
                rebase=start_s is not None,
            )
            self._sink = VideoSink(self._container, self.path, spec)
            if codec == "mpeg4":
                cc = self._sink.stream.codec_context
                cc.qscale = True
                cc.global_quality = _mpeg4_qscale(options.crf)
            if options.audio and audio_source is not None:
                self._audio = AudioRemuxer(
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
        self._copy_source: str | None = None

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
            colour["color_range"] = AVCOL_RANGE_JPEG
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
        if self._copy_source is not None:
            self.abort()  # drop the encoded frames: the copy takes their place under the same atomic rename
            copy_file_atomic(self._copy_source, self.path)
            return
        super().close()

    def commit_copy_of(self, source: str) -> None:
        """Make `close()` commit a byte copy of `source` instead of the frames written (nothing was changed).

        The copy goes to a random, exclusively created temporary file and is renamed onto `path`, so it is
        as atomic as an encoded output; a failure (full disk) raises `OutputError` from `close()` and leaves
        nothing under `path` and no temporary file.
        """
        self._copy_source = source

    def _before_close(self) -> None:
        """Mux the audio packets after the last video frame."""
        if self._audio is None:
            return
        if self._sink.first_pts is None:
            self._audio.begin(None, Fraction(0))
        self._audio.pump(None)
        self.warnings.extend(self._audio.warnings)
        self._audio.close()

    def _on_abort(self) -> None:
        if self._audio is not None:
            with contextlib.suppress(Exception):
                self._audio.close()
