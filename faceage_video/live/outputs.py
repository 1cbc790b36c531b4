"""Where live frames go: a file, a stream, a virtual camera, an OpenCV window, or the local preview page.

Every output takes each frame the loop finishes (`LiveOutput.write`) and is closed once at the end; file and
stream outputs stamp frames with their real timing (`Pts`), so a file keeps the pace the frames came at.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

import cv2
import numpy as np

from faceage_video.errors import OptionsError, OutputError
from faceage_video.live.controls import LiveControls
from faceage_video.live.options import STREAM_MUXERS, OutputKind, RealtimeOptions, output_kind
from faceage_video.live.sources import LiveFrame
from faceage_video.media.reader import VideoInfo
from faceage_video.media.writer import VideoWriter, WriterOptions
from faceage_video.types import Frame

# Time base of the pts written to file and stream outputs.
OUT_TIME_BASE = Fraction(1, 90_000)


class LiveOutput(Protocol):
    """One destination of the output frames."""

    kind: OutputKind
    name: str

    def write(self, image: Frame, frame: LiveFrame) -> None: ...

    def close(self) -> None: ...


def live_info(path: str, width: int, height: int, fps: float) -> VideoInfo:
    """The `VideoInfo` a writer needs for live frames: RGB, BT.601 tags, `OUT_TIME_BASE`, no audio."""
    return VideoInfo(
        path=path, width=width, height=height, rotation=0, fps=Fraction(fps).limit_denominator(1001),
        time_base=OUT_TIME_BASE, frame_count=None, duration_s=None, codec="rawvideo", pix_fmt="rgb24",
        color_range=1, colorspace=1, color_primaries=1, color_trc=1, audio=(),
    )  # fmt: skip


class Pts:
    """Strictly increasing pts in `OUT_TIME_BASE` from a frame's stream clock."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._last = -1

    def __call__(self, time_s: float) -> int:
        if self._t0 is None:
            self._t0 = time_s
        pts = max(round((time_s - self._t0) / OUT_TIME_BASE), self._last + 1)
        self._last = pts
        return int(pts)


class FileOutput:
    """The output frames encoded to a file (H.264, ultrafast) with their real timing; atomic like `age`'s."""

    kind: OutputKind = "file"

    def __init__(self, path: str, width: int, height: int, fps: float, crf: int, source: str) -> None:
        self.name = path
        info = live_info(source, width, height, fps)
        self._writer = VideoWriter(
            path, info, WriterOptions(codec="h264", crf=crf, preset="ultrafast", audio=False), start_s=0.0
        )
        self._pts = Pts()

    def write(self, image: Frame, frame: LiveFrame) -> None:
        self._writer.write(image, self._pts(frame.time_s), OUT_TIME_BASE)

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
            self._stream.time_base = OUT_TIME_BASE
            self._stream.codec_context.time_base = OUT_TIME_BASE
        except (av.FFmpegError, OSError, ValueError) as e:
            with contextlib.suppress(Exception):
                self._container.close()
            raise OutputError(
                f"{url}: cannot open the stream output ({type(e).__name__}: {e}). Fix: check the address "
                "and, for RTMP/TCP/SRT, that the receiving server is running"
            ) from e
        self._pts = Pts()

    def write(self, image: Frame, frame: LiveFrame) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format="yuv420p"
        )
        vf.pts = self._pts(frame.time_s)
        vf.time_base = OUT_TIME_BASE
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
        self, url: str, controls: LiveControls, stats: Callable[[], dict[str, Any]], quality: int
    ) -> None:
        from faceage_video.preview import PreviewOptions, PreviewServer

        m = re.fullmatch(r"http://([^/:]+|\[[^\]]+\]):(\d+)/?", url.strip())
        if not m:
            raise OptionsError(f"preview output must look like http://127.0.0.1:8080, got {url!r}")
        self.server = PreviewServer(
            PreviewOptions(host=m.group(1).strip("[]"), port=int(m.group(2)), jpeg_quality=quality),
            controls.apply,
            stats,
        )
        self.server.start()
        self.name = self.server.url

    def write(self, image: Frame, frame: LiveFrame) -> None:
        self.server.publish(image)

    def close(self) -> None:
        self.server.close()


def open_output(
    spec: str,
    options: RealtimeOptions,
    size: tuple[int, int],
    fps: float,
    controls: LiveControls,
    stats: Callable[[], dict[str, Any]],
    source_name: str,
) -> LiveOutput:
    """Open the output an `--output` value names, for frames of `size` (width, height) at `fps`.

    Args:
        stats: the run's statistics as JSON, for the preview page's /stats.
        source_name: the source, recorded as the path of a file output's input.

    Raises:
        OutputError: the output cannot be opened (no display, no virtualcam backend, port in use…).
        OptionsError: a preview URL that is not http://HOST:PORT.
    """
    kind = output_kind(spec)
    w, h = size
    if kind == "window":
        return WindowOutput(options.window_title, controls)
    if kind == "virtualcam":
        return VirtualCamOutput(w, h, fps)
    if kind == "preview":
        return PreviewOutput(spec, controls, stats, options.jpeg_quality)
    if kind == "stream":
        return StreamOutput(spec, w, h, fps, options.stream_crf, options.io_timeout_s)
    return FileOutput(spec, w, h, fps, options.file_crf, source_name)
