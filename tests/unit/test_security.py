"""Reliability and security (issue 12): confined inputs and outputs, atomic side files, safe model loading.

Each test here failed on the code before the fix it covers; the README's bad-input table lists them.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceage_video.errors import InputError, OutputError
from faceage_video.media.reader import open_input
from tests.helpers import write_ffv1

# ----------------------------------------------------------------------------------------------------------
# Helpers


def blank_clip(path: Path, n: int = 4, size: int = 64) -> Path:
    """A face-free lossless clip: n grey frames with a moving bar."""
    frames = []
    for i in range(n):
        img = np.full((size, size, 3), 90, np.uint8)
        img[:, (i * 7) % size] = 200
        frames.append(img)
    return write_ffv1(path, frames)


def _fifo_watch(fifo: Path, seconds: float, opened: list[bool]) -> None:
    """Record whether anything opens `fifo` for reading within `seconds` (then let it read EOF)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader has it open
        except OSError:
            time.sleep(0.01)
            continue
        opened.append(True)
        os.close(fd)
        return


# ----------------------------------------------------------------------------------------------------------
# Playlists are refused before FFmpeg opens what they name


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.ffconcat", "ffconcat version 1.0\nfile target.mp4\n"),
        ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\ntarget.mp4\n#EXT-X-ENDLIST\n"),
    ],
    ids=["concat", "hls"],
)
def test_a_playlist_is_refused_before_the_files_it_names_are_opened(
    tmp_path: Path, name: str, text: str
) -> None:
    fifo = tmp_path / "target.mp4"
    os.mkfifo(fifo)  # a reader opening it shows up at once, and reading it never touches real data
    (tmp_path / name).write_text(text)
    opened: list[bool] = []
    watch = threading.Thread(target=_fifo_watch, args=(fifo, 3.0, opened))
    watch.start()
    try:
        with pytest.raises(InputError, match=r"playlist.*allow protocols"):
            open_input(tmp_path / name)
    finally:
        watch.join()
    assert not opened, "FFmpeg opened the file the playlist names before the playlist was refused"


def test_a_local_video_still_opens_with_the_demuxer_whitelist(tmp_path: Path) -> None:
    clip = blank_clip(tmp_path / "ok.mkv")
    c = open_input(clip)
    try:
        assert c.format.name.startswith("matroska")
    finally:
        c.close()


# ----------------------------------------------------------------------------------------------------------
# Time bases the codec cannot store are coarsened at once


def test_a_huge_prime_time_base_is_coarsened_in_milliseconds() -> None:
    from faceage_video.media.writer import encoder_time_base

    t = time.perf_counter()
    tb = encoder_time_base("mpeg4", Fraction(1, 2147483647))
    assert time.perf_counter() - t < 0.5
    assert tb.denominator <= 65535 and tb <= Fraction(1, 1000)
    # A divisible clock keeps exact timestamps: 1/90000 → 1/45000 (the smallest factor).
    assert encoder_time_base("mpeg4", Fraction(1, 90000)) == Fraction(1, 45000)
    assert encoder_time_base("h264", Fraction(1, 2147483647)) == Fraction(1, 2147483647)


def test_mpeg4_writes_a_clip_whose_time_base_is_a_huge_prime(tmp_path: Path) -> None:
    from faceage_video.media.reader import probe
    from faceage_video.media.writer import VideoWriter, WriterOptions
    from tests.helpers import decode_video

    info = probe(blank_clip(tmp_path / "in.mkv"))
    tb = Fraction(1, 2147483647)
    info = type(info)(**{**info.__dict__, "time_base": tb, "audio": ()})
    step = 2147483647 // 25
    t = time.perf_counter()
    with VideoWriter(tmp_path / "o.mp4", info, WriterOptions(codec="mpeg4")) as w:
        for i in range(3):
            w.write(np.full((64, 64, 3), 100, np.uint8), i * step, tb)
    assert time.perf_counter() - t < 10
    d = decode_video(tmp_path / "o.mp4")
    assert len(d.frames) == 3
    assert np.allclose(d.times, [0.0, 0.04, 0.08], atol=1e-3)


# ----------------------------------------------------------------------------------------------------------
# Matte patterns are checked before any work


@pytest.mark.parametrize("pattern", ["m_%d_%s.png", "m_%d_%d.png", "m_%5.2f_%d.png"])
def test_a_bad_png_pattern_is_an_output_error(tmp_path: Path, pattern: str) -> None:
    from faceage_video.media.matte import matte_format

    with pytest.raises(OutputError, match=r"exactly one frame-number field"):
        matte_format(tmp_path / pattern)


def test_a_good_png_pattern_with_a_literal_percent_passes(tmp_path: Path) -> None:
    from faceage_video.media.matte import matte_format

    assert matte_format(tmp_path / "m_%04d_100%%.png") == "png"


def test_age_refuses_a_bad_matte_pattern_before_opening_anything(tmp_path: Path) -> None:
    from faceage_video.pipeline import age_video
    from tests.helpers import age_options

    # The input does not exist: the pattern must be refused first, as an output error.
    with pytest.raises(OutputError, match=r"m_%d_%s\.png"):
        age_video(
            tmp_path / "missing.mkv", tmp_path / "o.mkv", age_options(matte=str(tmp_path / "m_%d_%s.png"))
        )


# ----------------------------------------------------------------------------------------------------------
# The pipeline: the no-face copy, the audio copy of a URL input, the report


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path):  # type: ignore[no-untyped-def]
    from faceage_video.engine.generator import AgingEngine, EngineOptions

    return AgingEngine(EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False))


def _opts(**kw):  # type: ignore[no-untyped-def]
    from faceage_video.media.writer import WriterOptions
    from tests.helpers import age_options

    kw.setdefault("writer", WriterOptions(codec="ffv1"))
    return age_options(**kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_no_face_copy_never_follows_a_planted_symlink(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    from faceage_video.pipeline import age_video

    src = blank_clip(tmp_path / "in.mkv")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # The name the copy step used to write to; a symlink there pointed the copy at any file.
    (out_dir / ".o.mkv.copy").symlink_to(victim)
    with pytest.warns(UserWarning, match="copy of the input"):
        rep = age_video(src, out_dir / "o.mkv", _opts(), engine=engine)
    assert victim.read_text() == "precious"
    assert (out_dir / "o.mkv").read_bytes() == src.read_bytes()
    assert rep.frames == 4
    assert _leftovers(out_dir) == [".o.mkv.copy"]  # the planted link only: nothing of ours is left


def test_a_full_disk_during_the_no_face_copy_is_an_output_error_that_leaves_nothing(
    tmp_path: Path,
    engine,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from faceage_video.pipeline import age_video

    src = blank_clip(tmp_path / "in.mkv")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OutputError, match=r"o\.mkv.*No space left"):
        age_video(src, out_dir / "o.mkv", _opts(report=str(out_dir / "r.json")), engine=engine)
    assert list(out_dir.iterdir()) == [], "a failed copy must leave no output, no report, no temporary file"


def test_age_with_allow_protocols_copies_the_audio_of_a_url_input(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    from faceage_video.pipeline import age_video

    src = blank_clip(tmp_path / "in.mkv")
    # file: is a protocol prefix: the audio copy must reopen it with the same permission as the reader.
    rep = age_video(f"file:{src}", tmp_path / "o.mkv", _opts(allow_protocols=True), engine=engine)
    assert rep.frames == 4 and (tmp_path / "o.mkv").is_file()


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs /sys, a folder nobody may create files in")
def test_a_report_in_a_read_only_folder_is_refused_before_any_work(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    from faceage_video.pipeline import age_video

    src = blank_clip(tmp_path / "in.mkv")
    # /sys refuses new files even to root, as a read-only mount does.
    with pytest.raises(OutputError, match=r"--report folder /sys is not writable"):
        age_video(src, tmp_path / "o.mkv", _opts(report="/sys/report.json"), engine=engine)
    assert not (tmp_path / "o.mkv").exists() and _leftovers(tmp_path) == []


def test_a_report_that_is_another_output_is_refused(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    from faceage_video.pipeline import age_video

    src = blank_clip(tmp_path / "in.mkv")
    sbs = tmp_path / "sbs.mkv"
    with pytest.raises(OutputError, match=r"--report.*--side-by-side"):
        age_video(src, tmp_path / "o.mkv", _opts(side_by_side=str(sbs), report=str(sbs)), engine=engine)
    link = tmp_path / "link.mkv"
    link.symlink_to(src)
    with pytest.raises(OutputError, match=r"input"):
        age_video(src, tmp_path / "o.mkv", _opts(report=str(link)), engine=engine)
    assert src.stat().st_size > 0


# ----------------------------------------------------------------------------------------------------------
# Model bundles: bundled names, confined weight files, sha256, bounded configs


def _edit_manifest(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    import json

    path = folder / "manifest.json"
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_a_bundled_name_is_never_shadowed_by_a_folder_in_the_current_directory(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.bundle import BUNDLED_DIR, DEFAULT_MODEL, resolve_bundle

    shutil.copytree(tiny_bundle, tmp_path / DEFAULT_MODEL)  # a look-alike with other weights
    monkeypatch.chdir(tmp_path)
    assert resolve_bundle(DEFAULT_MODEL) == BUNDLED_DIR / DEFAULT_MODEL
    assert resolve_bundle(None) == BUNDLED_DIR / DEFAULT_MODEL
    # The folder is still reachable, as a path.
    assert resolve_bundle(f"./{DEFAULT_MODEL}").resolve() == (tmp_path / DEFAULT_MODEL).resolve()
    assert resolve_bundle(tmp_path / DEFAULT_MODEL) == tmp_path / DEFAULT_MODEL


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/G.weights.h5", ".."])
def test_weight_files_outside_the_bundle_are_refused(bundle_copy: Path, name: str) -> None:
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.errors import ModelError

    _edit_manifest(bundle_copy, lambda d: d["files"].update(G=name))
    with pytest.raises(ModelError, match=r"leaves the bundle folder.*Fix"):
        AgingEngine(EngineOptions(model=str(bundle_copy), direction="older", xla=False))


def test_a_weight_symlink_out_of_the_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.errors import ModelError

    outside = tmp_path / "elsewhere.h5"
    shutil.move(bundle_copy / "G.weights.h5", outside)
    (bundle_copy / "G.weights.h5").symlink_to(outside)
    with pytest.raises(ModelError, match=r"outside bundle"):
        AgingEngine(EngineOptions(model=str(bundle_copy), direction="older", xla=False))


def test_export_records_a_sha256_per_weight_file(tiny_bundle: Path) -> None:
    import hashlib
    import json

    d = json.loads((tiny_bundle / "manifest.json").read_text())
    for key in ("G", "F"):
        assert (
            d["sha256"][key] == hashlib.sha256((tiny_bundle / f"{key}.weights.h5").read_bytes()).hexdigest()
        )


def test_the_bundled_model_records_the_sha256_of_its_weights() -> None:
    import hashlib
    import json

    from models.bundle import BUNDLED_DIR, DEFAULT_MODEL

    folder = BUNDLED_DIR / DEFAULT_MODEL
    d = json.loads((folder / "manifest.json").read_text())
    assert set(d["sha256"]) == {"G", "F"}
    for key, name in d["files"].items():
        assert d["sha256"][key] == hashlib.sha256((folder / name).read_bytes()).hexdigest()


def test_swapped_weights_fail_the_sha256_check_naming_the_file(bundle_copy: Path) -> None:
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.errors import ModelError

    g, f = bundle_copy / "G.weights.h5", bundle_copy / "F.weights.h5"
    g.rename(bundle_copy / "tmp.h5")
    f.rename(g)
    (bundle_copy / "tmp.h5").rename(f)  # same architecture, so only the digest tells them apart
    with pytest.raises(ModelError, match=r"G\.weights\.h5 are corrupt.*sha256.*Fix") as ei:
        AgingEngine(EngineOptions(model=str(bundle_copy), direction="older", xla=False))
    assert ei.value.exit_code == 5


@pytest.mark.parametrize(
    "change",
    [{"size": 1 << 20}, {"ngf": 1 << 16}, {"n_blocks": 10_000}, {"ngf": 16.5}],
    ids=["size", "ngf", "blocks", "float"],
)
def test_generator_configs_have_upper_bounds(bundle_copy: Path, change: dict) -> None:  # type: ignore[type-arg]
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.errors import ModelError
    from models.networks import GeneratorConfig

    # Checked on the config first: without bounds the engine below would try to allocate the network.
    with pytest.raises(ValueError, match=r"generator|ngf"):
        GeneratorConfig(**change)
    _edit_manifest(bundle_copy, lambda d: d["generator"].update(change))
    t = time.perf_counter()
    with pytest.raises(ModelError, match=r"generator|ngf"):
        AgingEngine(EngineOptions(model=str(bundle_copy), xla=False))
    assert time.perf_counter() - t < 5, "the config must be refused before anything is built"


# ----------------------------------------------------------------------------------------------------------
# Batch manifests: confinement, caller-only options, resume, lock


def _manifest(folder: Path, rows: list[str], header: str = "id,input,output") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "shots.csv"
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return p


def _refused(manifest: Path, **kw) -> str:  # type: ignore[no-untyped-def]
    from faceage_video.errors import OptionsError
    from faceage_video.scale.manifest import read_manifest

    with pytest.raises(OptionsError, match="manifest refused") as ei:
        read_manifest(manifest, **kw)
    return str(ei.value)


def test_a_shot_writing_another_shots_input_is_refused_before_any_shot_runs(tmp_path: Path) -> None:
    from faceage_video.scale.batch import run_batch

    m = _manifest(tmp_path / "job", ["a,plates/a.mp4,plates/blue.mp4", "b,plates/blue.mp4,aged/b.mp4"])
    calls: list[object] = []
    with pytest.raises(Exception, match=r"line 2 \(shot 'a'\): output .*blue\.mp4 is shot 'b''s input"):
        run_batch(m, lambda p: calls.append(p))  # type: ignore[arg-type, func-returns-value]
    assert calls == [], "no shot may be built or run from a refused manifest"


def test_written_paths_must_stay_inside_the_manifest_folder(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.mp4"
    m = _manifest(
        tmp_path / "job",
        [f"a,a.mp4,{outside}", "b,b.mp4,../b_out.mp4", "c,c.mp4,ok/c.mp4,/etc/passwd"],
        header="id,input,output,report",
    )
    msg = _refused(m)
    # Every bad row is named in the one message.
    assert "line 2 (shot 'a'): output" in msg and "line 3 (shot 'b'): output" in msg
    assert "line 4 (shot 'c'): report /etc/passwd is outside" in msg and "--allow-outside" in msg
    assert "line 4 (shot 'c'): output" not in msg


def test_allow_outside_and_output_root(tmp_path: Path) -> None:
    from faceage_video.scale.manifest import read_manifest

    m = _manifest(tmp_path / "job", ["a,a.mp4,../a_out.mp4"])
    shots = read_manifest(m, allow_outside=True)
    assert shots[0].output == str(tmp_path / "job" / "../a_out.mp4")
    root = tmp_path / "renders"
    root.mkdir()
    m2 = _manifest(tmp_path / "job2", ["a,a.mp4,sc/a.mp4"])
    shots = read_manifest(m2, output_root=root)
    assert shots[0].output == str(root.resolve() / "sc/a.mp4")
    assert shots[0].input == str((tmp_path / "job2").resolve() / "a.mp4")
    # With a root, the manifest's own folder is outside it.
    m3 = _manifest(tmp_path / "job3", [f"a,a.mp4,{tmp_path / 'job3' / 'x.mp4'}"])
    assert "outside" in _refused(m3, output_root=root)


def test_outputs_reaching_an_input_through_links_are_refused(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "plate.mp4").write_bytes(b"plate")
    (job / "sym.mp4").symlink_to(job / "plate.mp4")
    os.link(job / "plate.mp4", job / "hard.mp4")
    m = _manifest(
        job,
        ["a,plate.mp4,out_a.mp4,sym.mp4", "b,other.mp4,hard.mp4,", "c,c.mp4,out_c.mp4,out_a.mp4"],
        header="id,input,output,matte",
    )
    msg = _refused(m)
    assert "line 2 (shot 'a'): matte" in msg and "is shot 'a''s input" in msg
    assert "line 3 (shot 'b'): output" in msg and "hard.mp4 is shot 'a''s input" in msg
    assert "line 4 (shot 'c'): matte" in msg and "is also shot 'a''s output" in msg


def test_a_row_cannot_turn_on_allow_protocols(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "job", ["a,a.mp4,o.mp4,true"], header="id,input,output,allow_protocols")
    assert "allow_protocols cannot be set per shot" in _refused(m)


def test_a_bundled_model_name_in_a_manifest_is_not_a_folder_beside_it(tmp_path: Path) -> None:
    from faceage_video.scale.manifest import read_manifest
    from models.bundle import DEFAULT_MODEL

    m = _manifest(tmp_path / "job", [f"a,a.mp4,o.mp4,{DEFAULT_MODEL}"], header="id,input,output,model")
    (tmp_path / "job" / DEFAULT_MODEL).mkdir()
    assert read_manifest(m)[0].params["model"] == DEFAULT_MODEL


class _FakeEngine:
    def __init__(self, options: object) -> None:
        self.options = options


def _fake_age(calls: list[str]):  # type: ignore[no-untyped-def]
    from faceage_video.pipeline import Report

    def age(src: str, dst: str, opts: object, engine: object = None, progress: object = None) -> Report:
        calls.append(dst)
        blank_clip(Path(dst), n=6)
        return Report(input=src, output=dst, frames=6)

    return age


def test_resume_runs_a_truncated_output_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faceage_video.engine.generator as generator
    import faceage_video.pipeline as pipeline
    from faceage_video.pipeline import AgeOptions
    from faceage_video.scale.batch import run_batch

    calls: list[str] = []
    monkeypatch.setattr(pipeline, "age_video", _fake_age(calls))
    monkeypatch.setattr(generator, "AgingEngine", _FakeEngine)
    job = tmp_path / "job"
    m = _manifest(job, ["a,a.mkv,out/a.mkv"])
    blank_clip(job / "a.mkv")
    (job / "out").mkdir()

    def build(p: object) -> AgeOptions:
        return AgeOptions()

    assert [o.status for o in run_batch(m, build).outcomes] == ["done"]
    assert [o.status for o in run_batch(m, build).outcomes] == ["skipped"]
    out = job / "out" / "a.mkv"
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])  # a crash or a full disk left half a file
    assert [o.status for o in run_batch(m, build).outcomes] == ["done"]
    assert len(calls) == 2


def test_a_second_concurrent_run_of_a_manifest_is_refused(tmp_path: Path) -> None:
    import fcntl

    from faceage_video.scale.batch import run_batch, status_path

    m = _manifest(tmp_path / "job", ["a,a.mkv,o.mkv"])
    lock = status_path(m).with_name(status_path(m).name + ".lock")
    with open(lock, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the first run holds
        calls: list[object] = []
        with pytest.raises(OutputError, match="another batch run of this manifest is in progress"):
            run_batch(m, lambda p: calls.append(p))  # type: ignore[arg-type, func-returns-value]
        assert calls == []


# ----------------------------------------------------------------------------------------------------------
# The preview server: DNS rebinding, public binds, connection cap, malformed requests


@pytest.fixture
def preview():  # type: ignore[no-untyped-def]
    from faceage_video.preview import PreviewOptions, PreviewServer

    state = {"quit": False}

    def control(cmd: dict) -> dict:  # type: ignore[type-arg]
        if cmd.get("action") == "quit":
            state["quit"] = True
        return dict(state)

    srv = PreviewServer(
        PreviewOptions(port=0, max_clients=2, max_connections=4, timeout_s=1.0), control, lambda: {}
    )
    srv.start()
    srv.publish(np.zeros((16, 16, 3), np.uint8))
    try:
        yield srv, state
    finally:
        srv.close()


def _request(srv, raw: bytes, timeout: float = 5.0) -> bytes:  # type: ignore[no-untyped-def]
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(srv.url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except TimeoutError:
                break
            if not b:
                break
            chunks.append(b)
            if b"\r\n\r\n" in b"".join(chunks) and b"Content-Length" in b"".join(chunks):
                head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                n = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
        return b"".join(chunks)


def test_a_foreign_host_header_gets_no_frame(preview) -> None:  # type: ignore[no-untyped-def]
    srv, _ = preview
    port = srv.url.rsplit(":", 1)[1].strip("/")
    ok = _request(
        srv, f"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    assert ok.startswith(b"HTTP/1.1 200") and b"image/jpeg" in ok
    bad = _request(srv, b"GET /frame.jpg HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 403") and b"\xff\xd8" not in bad


def test_a_forged_origin_cannot_quit_the_run(preview) -> None:  # type: ignore[no-untyped-def]
    srv, state = preview
    port = srv.url.rsplit(":", 1)[1].strip("/")
    body = b'{"action": "quit"}'
    req = (
        f"POST /control HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    assert _request(srv, req).startswith(b"HTTP/1.1 403")
    assert state["quit"] is False
    same = req.replace(b"http://evil.example", f"http://127.0.0.1:{port}".encode())
    assert _request(srv, same).startswith(b"HTTP/1.1 200") and state["quit"] is True


def test_a_non_numeric_content_length_is_answered_400(preview) -> None:  # type: ignore[no-untyped-def]
    srv, _ = preview
    req = (
        b"POST /control HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: abc\r\nConnection: close\r\n\r\n{}"
    )
    assert _request(srv, req).startswith(b"HTTP/1.1 400")


def test_idle_connections_are_capped_and_answered_503() -> None:
    import socket
    from urllib.parse import urlsplit

    from faceage_video.preview import PreviewOptions, PreviewServer

    opts = PreviewOptions(port=0, max_clients=2, max_connections=4, timeout_s=3.0)
    with PreviewServer(opts, lambda c: c, dict) as srv:
        u = urlsplit(srv.url)
        before = threading.active_count()
        idle = [socket.create_connection((u.hostname, u.port), timeout=5) for _ in range(40)]
        try:
            time.sleep(0.5)
            assert threading.active_count() <= before + 4, "an idle connection beyond the cap holds a thread"
            answers = []
            for s in idle:
                s.settimeout(0.05)
                try:
                    answers.append(s.recv(64)[:12])
                except TimeoutError:
                    answers.append(b"")  # served, and idle
            assert answers.count(b"HTTP/1.1 503") == 36 and answers.count(b"") == 4
        finally:
            for s in idle:
                s.close()
        # The served idle connections time out (timeout_s), and the server answers again.
        time.sleep(3.5)
        ok = _request(srv, b"GET /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200")


def test_a_public_preview_needs_the_opt_in_and_warns() -> None:
    from faceage_video.errors import OptionsError
    from faceage_video.preview import PreviewOptions, PreviewServer

    with pytest.raises(OptionsError, match=r"--preview-public"):
        PreviewOptions(host="0.0.0.0", port=0)
    with pytest.warns(UserWarning, match="reachable from other machines"):
        srv = PreviewServer(PreviewOptions(host="0.0.0.0", port=0, allow_remote=True), lambda c: c, dict)
    srv.close()


def test_webcam_stats_pointed_at_the_source_is_refused_before_anything_opens(tmp_path: Path) -> None:
    from faceage_video.live import RealtimeOptions, RealtimeSession

    clip = blank_clip(tmp_path / "clip.mkv")
    data = clip.read_bytes()
    opts = RealtimeOptions(source=str(clip), outputs=(str(tmp_path / "o.mp4"),), stats=str(clip))
    with pytest.raises(OutputError, match=r"--stats is the same file as the source"), RealtimeSession(opts):
        pass
    assert clip.read_bytes() == data
    ro = RealtimeOptions(source=str(clip), outputs=(str(tmp_path / "o.mp4"),), stats="/sys/stats.json")
    with pytest.raises(OutputError, match=r"not writable"), RealtimeSession(ro):
        pass


# ----------------------------------------------------------------------------------------------------------
# Memory: queues bounded in bytes, frames too large for the machine refused


def test_queues_are_bounded_in_bytes_not_frames() -> None:
    from faceage_video.checks import FRAME_COST_PER_PX, QUEUE_BUDGET_BYTES, pending_cap, queue_frames

    # Frames waiting for one generator batch are held to a queue's share too.
    assert pending_cap(np.empty((4320, 7680, 3), np.uint8)) == 1
    assert pending_cap(np.empty((512, 512, 3), np.uint8)) >= 8
    assert queue_frames(512, 512, 8) == 8  # small frames: the frame count binds
    assert queue_frames(7680, 4320, 8) == 1  # 8K: the byte budget binds
    q = queue_frames(3840, 2160, 8)
    assert 1 <= q < 8 and 3 * q * 3840 * 2160 * FRAME_COST_PER_PX <= max(
        QUEUE_BUDGET_BYTES, 3 * 3840 * 2160 * FRAME_COST_PER_PX
    )


def test_frames_too_large_for_memory_are_refused_before_any_work(
    tmp_path: Path,
    engine,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import faceage_video.checks as checks
    import faceage_video.pipeline as pipeline

    src = blank_clip(tmp_path / "in.mkv")
    monkeypatch.setattr(checks, "available_memory", lambda: 256 * 1024)  # 256 KiB free
    with pytest.raises(InputError, match=r"64×64 frames need about .* GiB .* available; lower --batch-size"):
        pipeline.age_video(src, tmp_path / "o.mkv", _opts(), engine=engine)
    assert not (tmp_path / "o.mkv").exists() and _leftovers(tmp_path) == []
    # With the memory there, the same clip runs, and the queues were sized from the frame bytes.
    monkeypatch.setattr(checks, "available_memory", lambda: 8 * 2**30)
    seen: list[int] = []
    real = pipeline._run_stages

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        seen.append(a[3].queue_size)
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "_run_stages", spy)
    with pytest.warns(UserWarning):
        pipeline.age_video(src, tmp_path / "o.mkv", _opts(queue_size=4), engine=engine)
    assert seen == [4]
