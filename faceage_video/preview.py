"""The local preview page of the real-time mode: an MJPEG stream, live stats and the controls.

Routes, all on one stdlib `ThreadingHTTPServer` in a background thread:

    GET  /             the page: the video, the stats (polled twice a second) and the controls: on/off,
                       direction, hair, strength and target-age sliders, quit; the window's keys work on
                       the page too
    GET  /?video=only  the video alone on a black page (an OBS browser source)
    GET  /stream.mjpg  multipart/x-mixed-replace JPEG stream of the output frames
    GET  /frame.jpg    the latest output frame
    GET  /stats        the run's statistics as JSON
    POST /control      a JSON command, e.g. {"action": "toggle"} or {"strength": 0.5}; answers the new state

Drop policy (as everywhere in the real-time mode): the server holds only the latest frame. Each frame is
JPEG-encoded once, on the first request that wants it, in that request's thread; a slow client skips frames
instead of queueing them, and the processing loop never waits for a client.

A control must be POSTed as `application/json`: a page on another origin cannot send that without a CORS
preflight, which this server does not grant, so other web pages cannot drive the controls.

Hardening:
- DNS rebinding: every request's `Host` header, and its `Origin` when present, must name a loopback address
  (127.0.0.0/8, ::1, localhost) or the exact host bound; with a wildcard bind (0.0.0.0, ::) any IP literal
  is accepted too, since a rebinding attack needs a domain name. Anything else is answered 403.
- Binding a non-loopback address needs `allow_remote` (the CLI's --preview-public), and warns.
- Each connection has a socket timeout, and at most `max_connections` are served at once; more are
  answered 503 by the accepting thread and closed, so idle connections cannot pile up threads.
- A malformed request (a non-numeric Content-Length) is answered 400.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import socket
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from faceage_video.errors import FaceAgeError, OptionsError, OutputError
from faceage_video.types import Frame

ControlFn = Callable[[dict[str, Any]], dict[str, Any]]
StatsFn = Callable[[], dict[str, Any]]

_BOUNDARY = "faceageframe"
# Seconds a stream waits for a new frame before checking whether the server is closing.
_WAIT_S = 0.5
# Largest control body accepted, in bytes.
_MAX_BODY = 4096


@dataclass(frozen=True)
class PreviewOptions:
    """Options of `PreviewServer`.

    Attributes:
        host: address to bind; 127.0.0.1 keeps the page on this machine.
        port: TCP port, 1..65535 (0 picks a free one; see `PreviewServer.url`).
        jpeg_quality: JPEG quality of the stream, 10..100.
        max_clients: most simultaneous MJPEG streams; more are answered 503.
        max_connections: most connections served at once (streams, page, stats); more are answered 503.
        timeout_s: seconds a connection may stay silent (or a client not read) before it is closed.
        allow_remote: allow a non-loopback `host` (e.g. 0.0.0.0: every interface); off, such a host is
            refused, because the page shows the camera and its controls stop the run.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    jpeg_quality: int = 80
    max_clients: int = 8
    max_connections: int = 32
    timeout_s: float = 10.0
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.allow_remote:
            raise OptionsError(
                f"preview host {self.host} is reachable from other machines (the page shows the camera and "
                "can stop the run); use http://127.0.0.1:PORT, or pass --preview-public to serve it there"
            )
        if self.max_connections < self.max_clients:
            raise OptionsError(
                f"max_connections ({self.max_connections}) must be >= max_clients ({self.max_clients})"
            )
        if not 0 < self.timeout_s <= 3600:
            raise OptionsError(f"timeout_s must be in (0, 3600] seconds, got {self.timeout_s}")
        if not 0 <= self.port <= 65535:
            raise OptionsError(f"preview port must be in 0..65535 (0: any free port), got {self.port}")
        if not 10 <= self.jpeg_quality <= 100:
            raise OptionsError(f"jpeg_quality must be in 10..100, got {self.jpeg_quality}")
        if self.max_clients < 1:
            raise OptionsError(f"max_clients must be >= 1, got {self.max_clients}")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_allowed(header_host: str, bound: str) -> bool:
    """Whether a Host header value (or an Origin's host) may reach a server bound to `bound`."""
    h = header_host.strip().lower()
    if h.startswith("["):  # [v6]:port
        h = h[: h.find("]") + 1] if "]" in h else h
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    h = h.strip("[]")
    if not h:
        return False
    if is_loopback(h) or h == bound.strip("[]").lower():
        return True
    wildcard = bound.strip("[]") in ("0.0.0.0", "::", "")
    return wildcard and _is_ip(h)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `max_connections` at once and answers 503 beyond."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # connections the kernel holds until accepted (then served or answered 503)

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: Any) -> None:
        body = b'{"error": "too many connections to the preview"}'
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            request.settimeout(0.5)  # the accepting thread must never wait on a client
            request.sendall(head.encode() + body)
        self.shutdown_request(request)


class _LatestJpeg:
    """The latest frame, JPEG-encoded lazily once, with a sequence number streams wait on."""

    def __init__(self, quality: int) -> None:
        self._cond = threading.Condition()
        self._quality = quality
        self._image: Frame | None = None
        self._jpeg: bytes | None = None
        self.seq = 0
        self.closed = False

    def publish(self, image: Frame) -> None:
        with self._cond:
            self._image, self._jpeg = image, None
            self.seq += 1
            self._cond.notify_all()

    def wait(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """The newest frame numbered above `after`, waiting up to `timeout`; (seq, None) if there is none."""
        with self._cond:
            if self.seq <= after and not self.closed:
                self._cond.wait(timeout)
            if self.seq <= after or self._image is None:
                return self.seq, None
            if self._jpeg is None:
                bgr = cv2.cvtColor(self._image, cv2.COLOR_RGB2BGR)
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
                if not ok:
                    return self.seq, None
                self._jpeg = buf.tobytes()
            return self.seq, self._jpeg

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class PreviewServer:
    """Serves the preview page; `publish` hands it each output frame.

    Attributes:
        url: the page's address, e.g. "http://127.0.0.1:8080/".
        clients: MJPEG streams open now. frames_sent: JPEG frames sent over all streams.
    """

    def __init__(self, options: PreviewOptions, control: ControlFn, stats: StatsFn) -> None:
        """Bind the port (the server starts answering after `start`).

        Raises:
            OutputError: the port is in use, or the address cannot be bound.
        """
        self.options = options
        self._control = control
        self._stats = stats
        self._latest = _LatestJpeg(options.jpeg_quality)
        self._lock = threading.Lock()
        self.clients = 0
        self.frames_sent = 0
        handler = _make_handler(self)
        try:
            self._httpd = _Server((options.host, options.port), handler, options.max_connections)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OutputError(
                    f"port {options.port} on {options.host} is already in use (another preview or program). "
                    f"Fix: pick a free port, e.g. --output http://{options.host}:{options.port + 1}"
                ) from e
            raise OutputError(f"cannot serve the preview on {options.host}:{options.port}: {e}") from e
        if not is_loopback(options.host):
            warnings.warn(
                f"the preview on {options.host}:{options.port} is reachable from other machines: anyone who "
                "can reach it sees the camera and can stop the run",
                UserWarning,
                stacklevel=2,
            )
        bound, port = self._httpd.server_address[:2]
        host = bound.decode() if isinstance(bound, bytes) else str(bound)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="faceage-preview",
            daemon=True,
        )
        self._thread.start()

    def publish(self, image: Frame) -> None:
        """Make `image` ((H, W, 3) uint8 RGB) the latest frame; never blocks on clients."""
        self._latest.publish(image)

    def close(self) -> None:
        """End the streams, stop serving and release the port. Safe to call twice."""
        self._latest.close()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> PreviewServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        d = dict(self._stats())
        with self._lock:
            d["preview"] = {"clients": self.clients, "frames_sent": self.frames_sent, "url": self.url}
        return d


def _make_handler(server: PreviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "faceage-preview"
        timeout = server.options.timeout_s  # socket timeout: an idle or stalled client is dropped

        def _trusted(self) -> bool:
            """Host and Origin name this server (DNS rebinding defence); answers 403 when not."""
            bound = server.options.host
            host_ok = host_allowed(self.headers.get("Host", ""), bound)
            origin = self.headers.get("Origin")
            origin_ok = origin is None or (
                urlsplit(origin).scheme == "http" and host_allowed(urlsplit(origin).netloc, bound)
            )
            if host_ok and origin_ok:
                return True
            with contextlib.suppress(OSError):
                self._json(
                    HTTPStatus.FORBIDDEN, {"error": "unknown Host or Origin; open the page by its address"}
                )
            self.close_connection = True
            return False

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the HUD stats
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if not self._trusted():
                return
            parts = urlsplit(self.path)
            route = parts.path
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if route in ("/", "/index.html"):
                    video_only = parse_qs(parts.query).get("video", [""])[0] == "only"
                    self._send(HTTPStatus.OK, _page(video_only).encode(), "text/html; charset=utf-8")
                elif route == "/stats":
                    self._json(HTTPStatus.OK, server.stats())
                elif route == "/frame.jpg":
                    _, jpg = server._latest.wait(0, _WAIT_S * 4)
                    if jpg is None:
                        self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
                    else:
                        self._send(HTTPStatus.OK, jpg, "image/jpeg")
                elif route == "/stream.mjpg":
                    self._stream()
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {route}"})

        def _stream(self) -> None:
            with server._lock:
                if server.clients >= server.options.max_clients:
                    full = True
                else:
                    full = False
                    server.clients += 1
            if full:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many preview streams open"})
                return
            try:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                seq = 0
                latest = server._latest
                while not latest.closed:
                    seq, jpg = latest.wait(seq, _WAIT_S)
                    if jpg is None:
                        continue
                    head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpg + b"\r\n")
                    self.wfile.flush()
                    with server._lock:
                        server.frames_sent += 1
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the client went away
            finally:
                with server._lock:
                    server.clients -= 1

        def do_POST(self) -> None:
            if not self._trusted():
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if urlsplit(self.path).path != "/control":
                    self._json(HTTPStatus.NOT_FOUND, {"error": "POST /control only"})
                    return
                if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                    self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 < length <= _MAX_BODY:
                    self.close_connection = True  # the body's end is unknown: the connection cannot be reused
                    self._json(HTTPStatus.BAD_REQUEST, {"error": f"body must be 1..{_MAX_BODY} bytes"})
                    return
                try:
                    command = json.loads(self.rfile.read(length))
                    if not isinstance(command, dict):
                        raise OptionsError("the command must be a JSON object")
                    state = server._control(command)
                except (ValueError, FaceAgeError) as e:
                    self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
                    return
                self._json(HTTPStatus.OK, state)

    return Handler


def _page(video_only: bool) -> str:
    if video_only:
        return _VIDEO_ONLY
    return _PAGE


_VIDEO_ONLY = """<!doctype html>
<html><head><meta charset="utf-8"><title>faceage-video live</title>
<style>html,body{margin:0;background:#000;height:100%}img{width:100%;height:100%;object-fit:contain}</style>
</head><body><img id="video" src="/stream.mjpg" alt="live output"></body></html>
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>faceage-video live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px system-ui,sans-serif;margin:0;background:#111;color:#eee;display:flex;flex-wrap:wrap;gap:16px;
      padding:16px}
 #video{max-width:min(960px,100%);background:#000;border-radius:6px}
 aside{min-width:260px}
 button{font:inherit;padding:6px 12px;margin:2px;border-radius:4px;border:1px solid #555;background:#222;
        color:#eee;cursor:pointer}
 button.on{background:#2a6;border-color:#2a6}
 table{border-collapse:collapse;margin-top:12px}
 td{padding:2px 8px 2px 0}
 td:last-child{font-variant-numeric:tabular-nums;text-align:right}
 .keys{color:#999;font-size:12px;margin-top:12px}
</style></head>
<body>
<img id="video" src="/stream.mjpg" alt="live output">
<aside>
 <div>
  <button id="toggle" type="button">effect</button>
  <button id="direction" type="button">direction</button>
  <button id="hair" type="button">hair</button>
  <button id="quit" type="button">quit</button>
 </div>
 <label>strength <input id="strength" type="range" min="0" max="1" step="0.05">
  <span id="strength-value"></span></label>
 <label>target age <input id="target-age" type="range" min="18" max="85" step="1">
  <span id="target-age-value">off</span></label>
 <button id="target-off" type="button">target off</button>
 <table>
  <tr><td>effect</td><td id="stat-effect">-</td></tr>
  <tr><td>direction</td><td id="stat-direction">-</td></tr>
  <tr><td>hair</td><td id="stat-hair">-</td></tr>
  <tr><td>fps (now)</td><td id="stat-fps">-</td></tr>
  <tr><td>fps (sustained)</td><td id="stat-sustained">-</td></tr>
  <tr><td>latency p50 / p95 ms</td><td id="stat-latency">-</td></tr>
  <tr><td>dropped</td><td id="stat-drops">-</td></tr>
  <tr><td>frames out</td><td id="stat-frames">0</td></tr>
  <tr><td>faces</td><td id="stat-faces">-</td></tr>
  <tr><td>generator / s</td><td id="stat-gen">-</td></tr>
  <tr><td>status</td><td id="stat-status">connecting</td></tr>
 </table>
 <div class="keys">keys: space on/off · + / − strength · d direction · h hair · q quit</div>
</aside>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let state = null;
function fmt(v, d) { return (v === null || v === undefined) ? "-" : Number(v).toFixed(d); }
function show(s) {
  state = s;
  $("toggle").textContent = s.enabled ? "effect: on" : "effect: off";
  $("toggle").className = s.enabled ? "on" : "";
  $("direction").textContent = "direction: " + s.direction;
  if (document.activeElement !== $("strength")) { $("strength").value = s.strength; }
  $("strength-value").textContent = Number(s.strength).toFixed(2);
  if (document.activeElement !== $("target-age") && s.target_age !== null) { $("target-age").value = s.target_age; }
  $("target-age-value").textContent = s.target_age === null ? "off" : String(s.target_age);
  $("stat-effect").textContent = s.enabled ? "on" : "off";
  $("stat-direction").textContent = s.direction;
  $("hair").textContent = s.hair ? "hair: on" : "hair: off";
  $("hair").className = s.hair ? "on" : "";
  $("stat-hair").textContent = s.hair ? "on" : "off";
}
async function control(cmd) {
  const r = await fetch("/control", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify(cmd)});
  const s = await r.json();
  if (r.ok) { show(s); }
  return s;
}
async function poll() {
  try {
    const r = await fetch("/stats", {cache: "no-store"});
    const st = await r.json();
    show(st.controls);
    $("stat-fps").textContent = fmt(st.rolling.fps, 1);
    $("stat-sustained").textContent = fmt(st.fps.sustained, 1);
    $("stat-latency").textContent = fmt(st.latency_ms.p50, 0) + " / " + fmt(st.latency_ms.p95, 0);
    $("stat-drops").textContent = st.frames.dropped + " (" + fmt(100 * st.drop_rate, 1) + " %)";
    $("stat-frames").textContent = st.frames.processed;
    $("stat-faces").textContent = st.frames.faces_last;
    $("stat-gen").textContent = fmt(st.rolling.gen_fps, 1);
    $("stat-status").textContent = st.controls.quit ? "stopped" : "live";
  } catch (e) {
    $("stat-status").textContent = "disconnected";
  }
}
$("toggle").onclick = () => control({action: "toggle"});
$("direction").onclick = () => control({action: "direction"});
$("hair").onclick = () => control({action: "hair"});
$("quit").onclick = () => control({action: "quit"});
$("strength").oninput = (e) => control({strength: Number(e.target.value)});
$("target-age").oninput = (e) => control({target_age: Number(e.target.value)});
$("target-off").onclick = () => control({target_age: null});
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") { return; }
  const k = e.key;
  if (k === " ") { control({action: "toggle"}); e.preventDefault(); }
  else if (k === "+" || k === "=") { control({action: "stronger"}); }
  else if (k === "-" || k === "_") { control({action: "weaker"}); }
  else if (k === "d" || k === "D") { control({action: "direction"}); }
  else if (k === "h" || k === "H") { control({action: "hair"}); }
  else if (k === "q" || k === "Q") { control({action: "quit"}); }
});
poll();
setInterval(poll, 500);
</script>
</body></html>
"""


def frame_from_jpeg(data: bytes) -> Frame:
    """Decode a JPEG from the stream back to (H, W, 3) uint8 RGB (for tests and tools)."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a JPEG image")
    rgb: Frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # type: ignore[assignment]
    return rgb
