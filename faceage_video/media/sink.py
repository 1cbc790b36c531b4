"""One encoded video stream in an open output container: the encoder sink shared by every video writer.

`SinkSpec` says what to encode (encoder, pixel format, size, rate, clocks, colour tags); `VideoSink` adds the
stream, checks and rebases timestamps, encodes frames and drains the encoder.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from faceage_video.errors import OptionsError, OutputError
from faceage_video.media.atomic import AtomicOutput, commit, remove, temp_path
from faceage_video.media.reader import VideoInfo

# AVColorRange JPEG: full range (0..255 luma).
AVCOL_RANGE_JPEG = 2


def open_output(temp: Path, target: Path) -> Any:
    """Open the container at `temp` for writing; errors name `target`, the path the user gave.

    Raises:
        OutputError: FFmpeg cannot create it (unknown extension, unwritable folder).
    """
    try:
        return av.open(str(temp), mode="w")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise OutputError(
            f"{target}: cannot be created ({type(e).__name__}: {e}); check the extension"
        ) from e


@dataclass(frozen=True)
class SinkSpec:
    """What a `VideoSink` encodes.

    Attributes:
        encoder: FFmpeg encoder name, e.g. "libx264".
        pix_fmt: the stream's pixel format; frames are given already in it.
        width, height: frame size in pixels.
        fps: nominal frame rate (also spaces frames given without a pts).
        time_base: seconds per pts tick of the frames given (the input's).
        encoder_time_base: the encoder's clock; equals `time_base` unless the codec cannot store that.
        codec_options: encoder options (crf, preset, profile...).
        colour: stream and frame colour tags (color_range, colorspace, ...), AVColor* codes.
        threads: encoder threads; 0 lets the encoder pick one per core.
        rebase: subtract the first frame's pts from every pts (the reader started at `start_s`).
    """

    encoder: str
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    encoder_time_base: Fraction
    codec_options: dict[str, str] = field(default_factory=dict)
    colour: dict[str, int] = field(default_factory=dict)
    threads: int = 0
    rebase: bool = False

    @classmethod
    def of(
        cls,
        info: VideoInfo,
        encoder: str,
        pix_fmt: str,
        codec_options: dict[str, str],
        colour: dict[str, int],
        *,
        encoder_time_base: Fraction | None = None,
        threads: int = 0,
        rebase: bool = False,
    ) -> SinkSpec:
        """A stream with the input's size, rate and time base (`encoder_time_base` None: the same)."""
        return cls(
            encoder=encoder,
            pix_fmt=pix_fmt,
            width=info.width,
            height=info.height,
            fps=info.fps,
            time_base=info.time_base,
            encoder_time_base=encoder_time_base if encoder_time_base is not None else info.time_base,
            codec_options=codec_options,
            colour=colour,
            threads=threads,
            rebase=rebase,
        )

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise OptionsError(f"sink size must be positive, got {self.width}x{self.height}")
        if self.threads < 0:
            raise OptionsError(f"threads must be >= 0 (0 = one per core); got {self.threads}")


class VideoSink:
    """One encoded video stream in an open output container: pts bookkeeping, colour tags, flush."""

    def __init__(self, container: Any, target: Path, spec: SinkSpec) -> None:
        """Add the stream to `container`.

        Raises:
            OutputError: FFmpeg refuses the encoder or its options; names `target`.
        """
        self.target = target
        self.container = container
        self.spec = spec
        try:
            stream = container.add_stream(spec.encoder, rate=spec.fps, options=spec.codec_options)
        except (av.FFmpegError, ValueError) as e:
            raise OutputError(
                f"{target}: cannot add a {spec.encoder} stream ({e}); choose another codec"
            ) from e
        stream.width = spec.width
        stream.height = spec.height
        stream.pix_fmt = spec.pix_fmt
        stream.time_base = spec.time_base
        cc = stream.codec_context
        cc.time_base = spec.encoder_time_base
        cc.framerate = spec.fps
        cc.thread_count = spec.threads
        for name, value in spec.colour.items():
            setattr(cc, name, value)
        self.stream = stream
        self.pix_fmt = spec.pix_fmt
        self.width, self.height = spec.width, spec.height
        self.time_base = spec.time_base
        self.first_pts: int | None = None  # in `time_base`, before rebasing
        self.last_pts: int | None = None
        self.frames = 0

    def next_pts(self, pts: int | None, time_base: Fraction) -> int:
        """The frame's pts in the stream's time base, checked to increase.

        Raises:
            ValueError: the pts does not increase.
        """
        if pts is None:
            if self.last_pts is None:
                out = 0
            else:
                out = self.last_pts + max(1, round(1 / (self.spec.fps * self.time_base)))
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
        """Encode `frame` (already in `pix_fmt`) at `pts` (from `next_pts`) and mux its packets.

        Raises:
            OutputError: the encoder failed.
        """
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts
        shifted = pts - self.first_pts if self.spec.rebase else pts
        etb = self.spec.encoder_time_base
        frame.pts = shifted if etb == self.time_base else round(shifted * self.time_base / etb)
        frame.time_base = etb
        for name, value in self.spec.colour.items():
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

    def finish(self) -> None:
        """Flush the encoder and make sure an empty output is still a valid file (before the container's
        close; see `atomic.commit`)."""
        self.flush()
        if self.frames == 0:
            self.container.start_encoding()  # an empty but valid file rather than none

    @property
    def shift_s(self) -> Fraction:
        """Seconds subtracted from every timestamp (0 unless rebasing)."""
        if not self.spec.rebase or self.first_pts is None:
            return Fraction(0)
        return self.first_pts * self.time_base


class EncodedOutput(AtomicOutput):
    """An encoded file written atomically: a hidden temporary container beside `path`, renamed by `close()`.

    Subclasses call `_open(path)` first, set `_sink` once the stream is added, and may hook `_before_close`
    (mux what is left, before the container closes) and `_on_abort` (release what they hold).
    """

    path: Path
    _sink: VideoSink

    def _open(self, path: Path) -> None:
        """Open the temporary container for `path` (a checked target).

        Raises:
            OutputError: FFmpeg cannot create it.
        """
        self.path = path
        self._done = False
        self._temp = temp_path(path)
        # Removes the temporary file if the writer is dropped without close() or abort().
        self._finalizer = weakref.finalize(self, remove, self._temp)
        self._container = open_output(self._temp, path)

    def _before_close(self) -> None:
        """Mux what is left after the last frame (nothing by default)."""

    def _on_abort(self) -> None:
        """Release what the subclass holds besides the container (nothing by default)."""

    def close(self) -> None:
        """Flush the encoder, run `_before_close`, close the file and rename it onto `path`.

        Raises:
            OutputError: flushing or writing failed; the temporary file is removed and `path` untouched.
        """
        if self._done:
            return

        def finish() -> None:
            self._sink.finish()
            self._before_close()
            self._container.close()

        commit(self.path, self._temp, finish, self.abort)
        self._done = True
        self._finalizer.detach()

    def abort(self) -> None:
        """Stop writing and delete the temporary file; nothing is left under `path`. Safe to call twice."""
        if self._done:
            return
        self._done = True
        self._on_abort()
        with contextlib.suppress(Exception):
            self._container.close()
        remove(self._temp)
        self._finalizer.detach()
