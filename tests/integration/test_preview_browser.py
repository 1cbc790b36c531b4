"""The preview page in a real headless Chromium (Debian's `chromium`), driven over the DevTools protocol.

Loads the page while a real clip plays at real-time pace, checks that MJPEG frames and stats arrive in the
browser, that the on/off button changes the picture the browser shows, that the slider and the direction
button reach the engine and the hair button turns the hair stage on, takes a screenshot, and quits from the
page. Skipped where Chromium is absent (`.ci/run` installs it with `apt-get install chromium`).

The DevTools client is a few lines of stdlib websocket code, so the test needs no browser-driver package.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.blend import BlendOptions
from faceage_video.live import LiveControls, LiveReport, RealtimeOptions, RealtimeSession
from tests.helpers import SHORT_CLIP as CLIP
from tests.helpers import make_live_bundle

pytestmark = pytest.mark.integration

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class DevTools:
    """The smallest DevTools-protocol client: one websocket (RFC 6455, client frames masked), calls by id."""

    def __init__(self, ws_url: str, timeout: float = 20.0) -> None:
        u = urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self._id = 0

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
        self.sock.sendall(head + mask + body.tobytes())

    def _message(self) -> dict[str, Any]:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping
                self._send(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            parts.append(payload)
            if b0 & 0x80:  # FIN
                return dict(json.loads(b"".join(parts)))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self._send(0x1, json.dumps({"id": self._id, "method": method, "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self) -> None:
        self.sock.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    t_end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "Chromium is absent: install Debian's `chromium` package (or set CHROMIUM) to run this test"
        )
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(
            lambda: port_file.is_file() and port_file.read_text().strip(), 30, "Chromium's DevTools port"
        )
        port = int(port_file.read_text().split()[0])

        def page_ws() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        cdp = DevTools(wait_for(page_ws, 20, "a page target"))
        try:
            yield cdp
        finally:
            cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def bright_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small untrained bundle whose G adds +32 levels: the effect is plain to see in the browser."""
    return str(make_live_bundle(tmp_path_factory.mktemp("preview") / "bundle", ngf=8, n_blocks=1, bias=0.25))


# Mean brightness of the centre of the picture the browser shows (the clip's face is there).
FACE_BRIGHTNESS = """(() => {
  const img = document.getElementById('video');
  if (!img.naturalWidth) { return null; }
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const w = c.width, h = c.height;
  const d = g.getImageData(Math.round(w * 0.38), Math.round(h * 0.35), Math.round(w * 0.24),
                           Math.round(h * 0.25)).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 4) { s += d[i] + d[i + 1] + d[i + 2]; }
  return s / (d.length / 4 * 3);
})()"""


def test_preview_page_in_headless_chromium(
    browser: DevTools, videos_dir: Path, bright_bundle: str, tmp_path: Path
) -> None:
    clip = videos_dir / CLIP
    if not clip.is_file():
        pytest.skip(f"{clip} absent")
    engine = AgingEngine(EngineOptions(model=bright_bundle, batch_size=1, xla=False))
    controls = LiveControls(strength=1.0)
    opts = RealtimeOptions(
        source=str(clip),
        realtime=True,
        loop=True,
        outputs=("http://127.0.0.1:0",),  # any free port
        engine=EngineOptions(model=bright_bundle, batch_size=1, xla=False),
        blend=BlendOptions(color_match=False),  # keep the whole +32 levels
        hud=True,
        max_seconds=60.0,  # a safety net; the test quits from the page
        stats=str(tmp_path / "stats.json"),
    )
    result: list[LiveReport] = []
    with RealtimeSession(opts, engine, controls) as session:
        url = session.outputs[0].name
        runner = threading.Thread(target=lambda: result.append(session.run()), daemon=True)
        runner.start()
        try:
            browser.call("Page.enable")
            browser.call("Runtime.enable")
            browser.call("Page.navigate", url=url)

            # Frames arrive in the browser, and so do the stats.
            wait_for(lambda: browser.js("document.getElementById('video') !== null"), 15, "the page")
            wait_for(
                lambda: browser.js("document.getElementById('video').naturalWidth") == 512, 20, "a frame"
            )

            def frames_on_page() -> int:
                return int(browser.js("Number(document.getElementById('stat-frames').textContent)"))

            n0 = wait_for(frames_on_page, 15, "stats on the page")
            wait_for(lambda: frames_on_page() > n0 + 10, 15, "more frames counted on the page")
            wait_for(lambda: session.report().frames.faces_last >= 1, 15, "the face to be aged")
            assert browser.js("document.getElementById('stat-effect').textContent") == "on"

            def brightness(n: int = 6) -> float:
                vals = []
                for _ in range(n):
                    v = browser.js(FACE_BRIGHTNESS)
                    assert v is not None
                    vals.append(float(v))
                    time.sleep(0.15)
                return float(np.median(vals))

            time.sleep(0.5)  # the residual smoother has settled
            on = brightness()
            shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
            (tmp_path / "preview_on.png").write_bytes(shot)

            # The on/off button changes the output the browser shows.
            browser.js("document.getElementById('toggle').click()")
            wait_for(lambda: not controls.snapshot().enabled, 5, "the effect to turn off")
            wait_for(
                lambda: browser.js("document.getElementById('stat-effect').textContent") == "off", 5, "'off'"
            )
            time.sleep(0.5)
            off = brightness()
            assert session.report().frames.faces_last == 0
            assert on - off > 10, (
                f"face brightness on {on:.1f} vs off {off:.1f}: the toggle did not change the output"
            )

            # The slider and the direction button reach the engine.
            browser.js(
                "(() => { const s = document.getElementById('strength'); s.value = '0.45';"
                " s.dispatchEvent(new Event('input')); })()"
            )
            wait_for(lambda: controls.snapshot().strength == 0.45, 5, "the strength to change")
            browser.js("document.getElementById('direction').click()")
            wait_for(lambda: controls.snapshot().direction == "younger", 5, "the direction to switch")
            browser.js("document.getElementById('hair').click()")
            wait_for(lambda: controls.snapshot().hair, 5, "the hair stage to turn on")
            wait_for(
                lambda: browser.js("document.getElementById('stat-hair').textContent") == "on", 5, "hair 'on'"
            )

            shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
            path = tmp_path / "preview.png"
            path.write_bytes(shot)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000

            # Quit from the page ends the run.
            browser.js("document.getElementById('quit').click()")
            runner.join(20)
            assert not runner.is_alive(), "quit from the page did not stop the run"
        finally:
            controls.request_quit()
            runner.join(20)

    assert result[0].ended == "quit"
    assert result[0].frames.processed > 20
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["ended"] == "quit" and stats["controls"]["direction"] == "younger"
