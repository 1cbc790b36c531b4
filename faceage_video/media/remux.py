"""Packet copies, no re-encoding: the source's audio copied beside a video, and segments stitched into one.

`AudioRemuxer` copies every audio stream of a source into an output, packet for packet, in step with the
video written, so memory stays bounded on long clips. `stitch_segments` concatenates keyframe-led encoded
segments (the Ray path's) into one output and copies the source's audio once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from faceage_video.errors import OutputError
from faceage_video.media.atomic import check_target, remove, temp_path
from faceage_video.media.reader import VideoInfo, open_input

# Audio is read this far before start_s after a seek, so no packet at the cut is missed.
_AUDIO_SEEK_MARGIN_S = 1.0


class AudioRemuxer:
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


def _same_headers(a: Any, b: Any) -> bool:
    ea, eb = a.codec_context.extradata, b.codec_context.extradata
    return (ea or b"") == (eb or b"")


def stitch_segments(
    segments: Sequence[str | Path],
    output: str | Path,
    source: str,
    info: VideoInfo,
    *,
    audio: bool,
    start_s: float | None,
    end_s: float | None,
    allow_protocols: bool = False,
) -> list[str]:
    """Concatenate encoded segments into `output` by copying packets, and copy the source's audio once.

    The result equals what `VideoWriter` writes in one pass for the same frames: same stream time base, pts
    (rebased to 0 when `start_s` is set, as the writer does), and the source's audio packets, cut to
    `start_s`/`end_s` the writer's way. Atomic: written beside `output` and renamed on success.

    Args:
        segments: the segment files in order (each a keyframe-led, self-contained encode of >= 1 frame).
        output: the final file.
        source: the input, whose audio is copied.
        info: the input's facts.
        audio: copy the source's audio (the writer's `audio` switch).
        start_s, end_s: the window the segments were read from, as the reader's options had it.
        allow_protocols: let `source` be a URL (see `ReaderOptions.allow_protocols`).

    Returns:
        Warnings from the audio copy.

    Raises:
        OutputError: the segments were encoded with different stream headers, their timestamps do not
            follow each other, or the output cannot be written.
    """
    target = check_target(output, [source])
    temp = temp_path(target)
    out = av.open(str(temp), mode="w")
    warn: list[str] = []
    try:
        opened = [av.open(str(p)) for p in segments]
        try:
            inputs = [(c, c.streams.video[0]) for c in opened if c.streams.video]
            if not inputs:
                raise OutputError(f"{target}: no segment holds a video stream; nothing to stitch")
            first_stream: Any = inputs[0][1]
            ov = out.add_stream_from_template(first_stream, rate=info.fps)
            ov.time_base = info.time_base  # as VideoWriter sets it; the muxer may then pick its own
            remuxer = None
            if audio:
                remuxer = AudioRemuxer(
                    source,
                    out,
                    target,
                    info.start_time_s,
                    start_s,
                    end_s,
                    allow_protocols,
                )
            tb = Fraction(first_stream.time_base)
            shift = 0
            last_dts: int | None = None
            started = False
            for k, (c, vs) in enumerate(inputs):
                if not _same_headers(vs, first_stream) or vs.time_base != first_stream.time_base:
                    raise OutputError(
                        f"{target}: segment {k} was encoded with different stream headers or time base; "
                        "all segments must use the same codec settings (re-run without --ray)"
                    )
                for packet in c.demux(vs):
                    raw = packet.pts if packet.pts is not None else packet.dts
                    if packet.size == 0 or raw is None:
                        continue
                    ts = int(raw)
                    if not started:
                        started = True
                        if start_s is not None:
                            shift = ts  # the writer rebases the first frame to 0
                        if remuxer is not None:
                            window = ts * tb if start_s is not None else None
                            remuxer.begin(window, shift * tb)
                    if packet.dts is not None and last_dts is not None and packet.dts - shift <= last_dts:
                        # A variable-rate seam can make the next encoder's first dts collide; nudge it.
                        new = last_dts + 1 + shift
                        if packet.pts is not None and new > packet.pts:
                            raise OutputError(
                                f"{target}: segment {k} starts before segment {k - 1} ends "
                                f"(dts {packet.dts}); its timestamps cannot be joined without re-encoding"
                            )
                        packet.dts = new
                    if shift:
                        if packet.pts is not None:
                            packet.pts -= shift
                        if packet.dts is not None:
                            packet.dts -= shift
                    if packet.dts is not None:
                        last_dts = int(packet.dts)
                    packet.stream = ov
                    out.mux(packet)
                    if remuxer is not None:
                        remuxer.pump(ts * tb)
            if remuxer is not None:
                remuxer.pump(None)
                warn.extend(remuxer.warnings)
                remuxer.close()
        finally:
            for c in opened:
                c.close()
        out.close()
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            out.close()
        remove(temp)
        if isinstance(exc, av.FFmpegError):
            msg = f"{target}: stitching the segments failed ({type(exc).__name__}: {exc})"
            raise OutputError(msg) from exc
        raise
    return warn
