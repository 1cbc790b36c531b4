"""Live sources and the capture thread: camera (OpenCV), network stream (PyAV), or a file played at its pace.

Each frame carries its capture time (`time.perf_counter()` when the source delivered it; for a file played at
real-time pace, when it was released at its timestamp), from which the loop measures capture → output latency.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from faceage_video.errors import SourceError
from faceage_video.live.handoff import LatestSlot
from faceage_video.live.options import RealtimeOptions
from faceage_video.live.stats import LiveStats
from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoReader
from faceage_video.types import Frame

# A camera that fails this many reads in a row has gone away.
_CAMERA_MAX_FAILURES = 10


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
                    self.stats.frame_rate_skipped()
                    continue
                last_delivered, last_time = now, t
                frame = LiveFrame(index, fit(image, self.size), now, t)
                index += 1
                if self.lossless:
                    if not self.slot.put_wait(frame, self.stop):
                        break
                    self.stats.frame_captured()
                else:
                    self.stats.frame_captured()
                    self.slot.put(frame)
        except BaseException as exc:  # re-raised by the processing loop
            self.error = exc
        finally:
            self.ended.set()
            self.slot.close()

    def join(self, timeout: float = 5.0) -> None:
        """Stop the thread (if it was started) and wake whoever waits on the slot."""
        self.stop.set()
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
