"""The whole pipeline on real clips (trimmed to 1–2 s) with the tiny untrained bundle.

Checks what a user relies on: every frame and timestamp kept, audio bytes untouched, pixels outside the face
unchanged (lossless FFV1 isolates the pipeline from codec noise) and a real change inside it, face-free frames
passed through bit for bit, time ranges, face selection, the side-by-side preview, bounded memory on a long
clip, temporal smoothing, and a clean error (no traceback, no output file) for every kind of bad input.

Skipped with a reason where ../shared/data is absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

import faceage_video.pipeline as pipeline
from faceage_video.cli import main as cli_main
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.temporal import TemporalOptions
from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions
from faceage_video.media.reader import VideoReader
from faceage_video.media.writer import WriterOptions
from faceage_video.metrics import flicker, psnr
from faceage_video.pipeline import AgeOptions, Report, age_video
from tests.helpers import (
    age_options,
    audio_packets,
    decode_video,
    faststart_copy,
    write_audio_only,
    write_ffv1,
)

pytestmark = pytest.mark.integration

BATCH = 4


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path) -> AgingEngine:
    return AgingEngine(EngineOptions(model=str(tiny_bundle), batch_size=BATCH, xla=False))


def options(**kw: Any) -> AgeOptions:
    """AgeOptions for tests: no progress bar, lossless output unless a writer is given."""
    kw.setdefault("writer", WriterOptions(codec="ffv1"))
    return age_options(**kw)


def face_boxes(mattes: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
    boxes = []
    for m in mattes:
        ys, xs = np.nonzero(m > 0)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes


def remux(src: Path, dst: Path) -> Path:
    """Plain packet copy of every stream (what FFmpeg itself makes of the timing in that container)."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        smap = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is not None:
                p.stream = smap[p.stream.index]
                o.mux(p)
    return dst


def stream_starts(path: Path) -> tuple[float, float]:
    """(first video time, first audio time) in seconds, from the container's packets."""
    out = []
    for kind in ("video", "audio"):
        with av.open(str(path)) as c:
            s = next(x for x in c.streams if x.type == kind)
            out.append(min(float(p.pts * p.time_base) for p in c.demux(s) if p.pts is not None))
    return out[0], out[1]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".copy")]


# ---------------------------------------------------------------------------------------------------------
# One full run on the short clip, checked several ways


@dataclass
class Run:
    src: Path
    out: Path
    matte: Path
    sbs: Path
    report_path: Path
    report: Report
    inp: Any = None
    outp: Any = None
    mattes: list[np.ndarray] = field(default_factory=list)


@pytest.fixture(scope="module")
def aged(short_clip: Path, engine: AgingEngine, tmp_path_factory: pytest.TempPathFactory) -> Run:
    d = tmp_path_factory.mktemp("aged")
    run = Run(short_clip, d / "out.mkv", d / "matte.mkv", d / "sbs.mkv", d / "report.json", Report("", ""))
    run.report = age_video(
        short_clip,
        run.out,
        options(matte=str(run.matte), side_by_side=str(run.sbs), report=str(run.report_path)),
        engine=engine,
    )
    run.inp, run.outp = decode_video(short_clip), decode_video(run.out)
    run.mattes = [f[..., 0] if f.ndim == 3 else f for f in decode_video(run.matte, fmt="gray").frames]
    return run


def test_every_frame_and_timestamp_is_kept(aged: Run) -> None:
    n = len(aged.inp.frames)
    assert n == 38
    assert len(aged.outp.frames) == n == aged.report.frames
    # Matroska counts milliseconds, and its muxer delays every stream by the AAC priming (it cannot store
    # the audio's negative start): each frame keeps its place, to the millisecond, relative to the first...
    t_in, t_out = np.array(aged.inp.times), np.array(aged.outp.times)
    np.testing.assert_allclose(t_out - t_out[0], t_in - t_in[0], atol=0.0005)
    # ...and the audio keeps its place relative to the video exactly as a plain packet remux does.
    assert stream_starts(aged.out) == pytest.approx(
        stream_starts(remux(aged.src, aged.out.parent / "r.mkv")), abs=0.0011
    )
    assert aged.report.frames_with_faces == n and aged.report.faces == n
    assert aged.report.tracks == {0: n}


def test_audio_packets_are_byte_identical(aged: Run) -> None:
    a_in, a_out = audio_packets(aged.src), audio_packets(aged.out)
    assert len(a_in) > 50
    assert a_out == a_in


def test_unchanged_outside_the_mask_changed_inside(aged: Run) -> None:
    assert len(aged.mattes) == len(aged.inp.frames)
    inside_diffs = []
    for fin, fout, m in zip(aged.inp.frames, aged.outp.frames, aged.mattes, strict=True):
        outside = m == 0
        assert outside.mean() > 0.5  # the face is a part of the frame
        assert psnr(fin, fout, outside) > 40.0
        # Lossless codec: outside the mask the pipeline must not touch a single pixel.
        assert np.array_equal(fin[outside], fout[outside])
        core = m >= 250
        assert core.sum() > 2000
        inside_diffs.append(np.abs(fin[core].astype(np.float64) - fout[core].astype(np.float64)).mean())
    # The untrained generator shifts the face by +32 levels; colour match keeps 8 of it, plus texture.
    assert min(inside_diffs) > 4.0


def test_side_by_side_is_input_then_output(aged: Run) -> None:
    sbs = decode_video(aged.sbs)
    w = aged.inp.width
    assert (sbs.width, sbs.height) == (2 * w, aged.inp.height)
    assert len(sbs.frames) == len(aged.inp.frames)
    for i in (0, len(sbs.frames) // 2, len(sbs.frames) - 1):
        assert np.array_equal(sbs.frames[i][:, :w], aged.inp.frames[i])
        assert np.array_equal(sbs.frames[i][:, w:], aged.outp.frames[i])
    assert audio_packets(aged.sbs) == []  # the preview has no sound


def test_report_file_is_well_formed(aged: Run) -> None:
    d = json.loads(aged.report_path.read_text())
    assert d["frames"] == len(aged.inp.frames) == d["frames_with_faces"]
    assert d["tracks"] == {"0": len(aged.inp.frames)}
    assert d["input"] == str(aged.src) and d["output"] == str(aged.out)
    assert d["model"]["name"] == "tiny-untrained" and d["model"]["direction"] == "older"
    assert d["options"]["codec"] == "ffv1" and d["options"]["batch_size"] == BATCH
    assert d["warnings"] == []
    assert d["fps"] > 0 and d["wall_s"] > 0
    assert set(d["stage_s"]) >= {"decode", "landmarks_track_align", "generate_smooth_blend", "encode"}


def test_temporal_smoothing_does_not_add_flicker(aged: Run, engine: AgingEngine, tmp_path: Path) -> None:
    out0 = tmp_path / "unsmoothed.mkv"
    age_video(aged.src, out0, options(temporal=TemporalOptions(strength=0.0)), engine=engine)
    frames0 = decode_video(out0).frames
    boxes = face_boxes(aged.mattes)
    _, f_smooth, r_smooth = flicker(aged.inp.frames, aged.outp.frames, boxes)
    _, f_raw, r_raw = flicker(aged.inp.frames, frames0, boxes)
    assert any(not np.array_equal(a, b) for a, b in zip(frames0, aged.outp.frames, strict=True))
    # The untrained generator flickers (its change follows the texture); the EMA must take some of it away.
    assert f_smooth < f_raw and r_smooth < r_raw, (r_smooth, r_raw)


# ---------------------------------------------------------------------------------------------------------
# Other clips and options


def test_mpeg4_clip_to_h264_mp4_keeps_every_pts(
    mpeg4_clip: Path, engine: AgingEngine, tmp_path: Path
) -> None:
    out = tmp_path / "aoc.mp4"
    rep = age_video(
        mpeg4_clip, out, options(writer=WriterOptions(codec="h264", preset="ultrafast")), engine=engine
    )
    a, b = decode_video(mpeg4_clip), decode_video(out)
    assert a.codec == "mpeg4" and b.codec == "h264"
    assert len(a.frames) == 36 == len(b.frames) == rep.frames
    assert b.time_base == a.time_base
    assert b.pts == a.pts
    assert stream_starts(out) == stream_starts(mpeg4_clip)  # audio in sync, to the tick
    assert audio_packets(out) == audio_packets(mpeg4_clip)
    assert rep.frames_with_faces >= 0.9 * rep.frames
    assert (
        np.mean(
            [np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a.frames, b.frames, strict=True)]
        )
        > 0.3
    )


def test_start_end_processes_just_that_range(aged: Run, engine: AgingEngine, tmp_path: Path) -> None:
    out, matte = tmp_path / "range.mkv", tmp_path / "range_matte.mkv"
    start, end = 0.4, 1.0
    rep = age_video(aged.src, out, options(start_s=start, end_s=end, matte=str(matte)), engine=engine)
    wanted = [i for i, t in enumerate(aged.inp.times) if start - 1e-9 <= t < end - 1e-9]
    assert len(wanted) == 15
    got = decode_video(out)
    assert len(got.frames) == len(wanted) == rep.frames
    # Rebased (Matroska then delays every stream by the audio packet straddling the cut), spaced as the input.
    t_in = np.array(aged.inp.times)[wanted]
    t_out = np.array(got.times)
    assert 0.0 <= t_out[0] < 0.05
    np.testing.assert_allclose(t_out - t_out[0], t_in - t_in[0], atol=5e-4)
    # The right frames: outside the face each output frame is its input frame exactly.
    mattes = decode_video(matte, fmt="gray").frames
    for k, i in enumerate(wanted):
        outside = mattes[k].reshape(got.frames[k].shape[:2]) == 0
        assert np.array_equal(got.frames[k][outside], aged.inp.frames[i][outside])
    # The audio is a contiguous run of the input's packets, covering the range.
    a_in, a_out = audio_packets(aged.src), audio_packets(out)
    assert a_out, "the audio was dropped"
    k = a_in.index(a_out[0])
    assert a_in[k : k + len(a_out)] == a_out
    assert len(a_out) * 1024 / 44100 == pytest.approx(end - start, abs=0.1)


@pytest.fixture(scope="module")
def two_faces(videos_dir: Path, aged: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640×360 lossless clip: 6 face-free frames (flat colour and smooth noise), then 12 frames with a large
    face on the left (d12) and a small one on the right (d18)."""
    right = []
    with av.open(str(videos_dir / "liveportrait_d18.mp4")) as c:
        for vf in c.decode(video=0):
            right.append(vf.to_ndarray(format="rgb24"))
            if len(right) == 12:
                break
    rng = np.random.default_rng(0)
    frames = []
    for i in range(6):
        if i % 2:
            noise = cv2.GaussianBlur(rng.uniform(0, 255, (360, 640, 3)).astype(np.float32), (0, 0), 4)
            frames.append(np.clip(noise, 0, 255).astype(np.uint8))
        else:
            frames.append(np.full((360, 640, 3), (40 + 30 * i, 90, 160), np.uint8))
    for i in range(12):
        f = np.full((360, 640, 3), 128, np.uint8)
        f[20:340, 10:330] = cv2.resize(aged.inp.frames[i], (320, 320), interpolation=cv2.INTER_AREA)
        f[80:272, 420:612] = cv2.resize(right[i], (192, 192), interpolation=cv2.INTER_AREA)
        frames.append(f)
    return write_ffv1(tmp_path_factory.mktemp("two") / "two_faces.mkv", frames)


def test_face_free_frames_pass_through_and_all_faces_are_aged(
    two_faces: Path, engine: AgingEngine, tmp_path: Path
) -> None:
    out, matte = tmp_path / "all.mkv", tmp_path / "all_matte.mkv"
    rep = age_video(two_faces, out, options(matte=str(matte)), engine=engine)
    a, b = decode_video(two_faces), decode_video(out)
    mattes = [m.reshape(360, 640) for m in decode_video(matte, fmt="gray").frames]
    assert len(b.frames) == 18 == rep.frames
    for i in range(6):  # no face: bit for bit
        assert np.array_equal(a.frames[i], b.frames[i]), f"face-free frame {i} was changed"
        assert not mattes[i].any()
    assert rep.frames_with_faces == 12
    assert len(rep.tracks) == 2
    for i in range(6, 18):
        assert mattes[i][:, :330].max() == 255 and mattes[i][:, 400:].max() == 255  # both faces
        assert not np.array_equal(a.frames[i], b.frames[i])


def test_faces_largest_ages_only_the_largest(two_faces: Path, engine: AgingEngine, tmp_path: Path) -> None:
    out, matte = tmp_path / "largest.mkv", tmp_path / "largest_matte.mkv"
    rep = age_video(two_faces, out, options(faces="largest", matte=str(matte)), engine=engine)
    a, b = decode_video(two_faces), decode_video(out)
    mattes = [m.reshape(360, 640) for m in decode_video(matte, fmt="gray").frames]
    assert rep.frames_with_faces == 12 and rep.faces == 12 and len(rep.tracks) == 1
    for i in range(6, 18):
        assert mattes[i][:, :330].max() == 255  # the large face, on the left
        assert not mattes[i][:, 380:].any()  # the small one untouched
        assert np.array_equal(a.frames[i][:, 380:], b.frames[i][:, 380:])


def test_zero_faces_pipeline_path_is_bit_exact(tmp_path: Path, engine: AgingEngine) -> None:
    """Without audio the output is re-encoded (not copied): every frame must still equal the input."""
    rng = np.random.default_rng(3)
    frames = [
        np.clip(
            cv2.GaussianBlur(rng.uniform(0, 255, (96, 128, 3)).astype(np.float32), (0, 0), 3), 0, 255
        ).astype(np.uint8)
        for _ in range(10)
    ]
    src = write_ffv1(tmp_path / "noface.mkv", frames)
    with pytest.warns(UserWarning, match="no face"):
        rep = age_video(
            src, tmp_path / "out.mkv", options(writer=WriterOptions(codec="ffv1", audio=False)), engine=engine
        )
    assert rep.frames == 10 and rep.frames_with_faces == 0
    got = decode_video(tmp_path / "out.mkv").frames
    assert len(got) == 10
    assert all(np.array_equal(x, y) for x, y in zip(frames, got, strict=True))


def test_detect_width_gives_full_frame_landmarks_from_an_area_filtered_image(aged: Run) -> None:
    frame = aged.inp.frames[0]
    with (
        FaceLandmarker(LandmarkerOptions(mode="image")) as full,
        FaceLandmarker(LandmarkerOptions(mode="image", detect_width=200)) as small,
    ):
        a, b = full.detect(frame), small.detect(frame)
        assert len(a) == len(b) == 1
        # Landmarks found on the smaller picture come back in full-frame pixels.
        assert np.linalg.norm(a[0] - b[0], axis=1).mean() < 4.0
        seen: list[np.ndarray] = []
        real = small._lm

        class Spy:
            def detect(self, img: Any) -> Any:
                seen.append(np.array(img.numpy_view()))
                return real.detect(img)

        small._lm = Spy()
        try:
            small.detect(frame)
        finally:
            small._lm = real
    # The model sees an anti-aliased (area-averaged) downscale, not a bilinear one that aliases fine detail.
    np.testing.assert_array_equal(seen[0], cv2.resize(frame, (200, 200), interpolation=cv2.INTER_AREA))


# ---------------------------------------------------------------------------------------------------------
# Memory stays bounded on a long clip


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.slow
def test_memory_is_bounded_on_a_long_clip(
    aged: Run, engine: AgingEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fps, seconds, side = 15, 40.0, 320
    n = int(fps * seconds)
    small = [cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in aged.inp.frames]
    src = tmp_path / "long.mp4"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "ultrafast"})
        vs.width = vs.height = side
        vs.pix_fmt = "yuv420p"
        period = 2 * len(small) - 2
        for i in range(n):
            k = i % period
            k = k if k < len(small) else period - k  # ping-pong: no jump for the scene-cut detector
            vf = av.VideoFrame.from_ndarray(small[k], format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))

    decoded = [0]
    samples: list[tuple[int, float]] = []

    class CountingReader(VideoReader):
        def __iter__(self):  # type: ignore[no-untyped-def]
            for fr in super().__iter__():
                decoded[0] = fr.index
                yield fr

    monkeypatch.setattr(pipeline, "VideoReader", CountingReader)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((decoded[0], _rss_mb()))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        rep = age_video(
            src,
            tmp_path / "long_out.mp4",
            options(writer=WriterOptions(codec="h264", preset="ultrafast")),
            engine=engine,
        )
    finally:
        stop.set()
        th.join()
    samples.append((n, _rss_mb()))
    assert rep.frames == n and rep.frames_with_faces > 0.9 * n
    mark = int(10 * fps)  # after 10 s of video
    at_mark = next(r for i, r in samples if i >= mark)
    peak_after = max(r for i, r in samples if i >= mark)
    growth = peak_after - at_mark
    # Keeping only the decoded frames of the last 30 s would cost this much; the limit is half of it.
    leak_mb = (n - mark) * side * side * 3 / 2**20
    assert growth < min(150.0, 0.5 * leak_mb), f"RSS grew {growth:.0f} MB from 10 s to 40 s"


# ---------------------------------------------------------------------------------------------------------
# Bad input through the CLI, in-process: exit code, message, no traceback, no output left behind


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path, pytest.FixtureRequest], tuple[list[str], Path]]  # → (argv, output path)
    code: int
    message: str  # regex searched in stderr
    output: bool = False  # an output file is expected


def _tiny(req: pytest.FixtureRequest) -> str:
    return str(req.getfixturevalue("tiny_bundle"))


def _clip(req: pytest.FixtureRequest) -> Path:
    return Path(req.getfixturevalue("short_clip"))


def _age(src: Path | str, out: Path, req: pytest.FixtureRequest, *extra: str) -> tuple[list[str], Path]:
    argv = ["age", str(src), "-o", str(out), "--no-xla", "--batch-size", "4", "--preset", "ultrafast"]
    if "--model" not in extra:
        argv += ["--model", _tiny(req)]
    return [*argv, *extra], out


def _text_as_mp4(tmp: Path, req: pytest.FixtureRequest) -> tuple[list[str], Path]:
    src = tmp / "notes.mp4"
    src.write_text("this is not a video\n" * 20)
    return _age(src, tmp / "out.mp4", req)


def _audio_only(tmp: Path, req: pytest.FixtureRequest) -> tuple[list[str], Path]:
    return _age(write_audio_only(tmp / "sound.mp4"), tmp / "out.mp4", req)


def _truncated(tmp: Path, req: pytest.FixtureRequest) -> tuple[list[str], Path]:
    full = faststart_copy(_clip(req), tmp / "full.mp4")  # index first, as web videos are
    data = full.read_bytes()
    src = tmp / "cut.mp4"
    src.write_bytes(data[: len(data) // 2])
    return _age(src, tmp / "out.mp4", req, "--report", str(tmp / "report.json"))


def _truncated_no_index(tmp: Path, req: pytest.FixtureRequest) -> tuple[list[str], Path]:
    data = _clip(req).read_bytes()  # index (moov) at the end: cutting it off leaves nothing readable
    src = tmp / "cut.mp4"
    src.write_bytes(data[: len(data) // 2])
    return _age(src, tmp / "out.mp4", req)


def _no_faces(tmp: Path, req: pytest.FixtureRequest) -> tuple[list[str], Path]:
    frames = [np.full((64, 96, 3), (20 * i, 100, 200), np.uint8) for i in range(8)]
    return _age(write_ffv1(tmp / "flat.mkv", frames), tmp / "out.mkv", req, "--codec", "ffv1")


def _same_path(tmp: Path, req: pytest.FixtureRequest) -> tuple[list[str], Path]:
    src = Path(shutil.copy(_clip(req), tmp / "clip.mp4"))
    return _age(src, src, req)


def _bundle_with_truncated_weights(tmp: Path, req: pytest.FixtureRequest) -> str:
    b = Path(shutil.copytree(_tiny(req), tmp / "bundle"))
    w = b / "G.weights.h5"
    w.write_bytes(w.read_bytes()[:1000])
    return str(b)


CASES = [
    Case("missing-file", lambda t, r: _age(t / "nope.mp4", t / "out.mp4", r), 3, r"nope\.mp4: no such file"),
    Case("text-named-mp4", _text_as_mp4, 3, r"notes\.mp4: cannot be opened as a video"),
    Case("audio-only", _audio_only, 3, r"sound\.mp4: has no video stream \(found: audio\)"),
    Case("truncated", _truncated, 0, r"warning: .*cut\.mp4", output=True),
    Case("truncated-no-index", _truncated_no_index, 3, r"cut\.mp4: cannot be opened.*truncated"),
    Case("zero-faces", _no_faces, 0, r"warning: no face found in the whole clip", output=True),
    Case("output-is-input", _same_path, 4, r"is the input file; choose a different output path"),
    Case(
        "missing-output-dir",
        lambda t, r: _age(_clip(r), t / "nodir" / "out.mp4", r),
        4,
        r"output folder .*nodir does not exist",
    ),
    Case(
        "unknown-codec",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--codec", "vp9"),
        2,
        r"Invalid value for '--codec'",
    ),
    Case(
        "ffv1-into-mp4",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--codec", "ffv1"),
        4,
        r"ffv1 cannot be written into '\.mp4'; use \.mkv",
    ),
    Case(
        "missing-bundle",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--model", str(t / "nobundle")),
        5,
        r"nobundle.*not found.*Fix",
    ),
    Case(
        "corrupt-bundle",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--model", _bundle_with_truncated_weights(t, r)),
        5,
        r"bundle/G\.weights\.h5 are corrupt.*Fix",
    ),
    Case(
        "strength-2",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--strength", "2"),
        2,
        r"Invalid value for '--strength'",
    ),
    Case(
        "batch-size-0",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--batch-size", "0"),
        2,
        r"Invalid value for '--batch-size'",
    ),
    Case(
        "temporal-1.5",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--temporal", "1.5"),
        2,
        r"Invalid value for '--temporal'",
    ),
    Case(
        "end-before-start",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--start", "1", "--end", "0.5"),
        2,
        r"end_s \(0\.5\) must be after start_s \(1\.0\)",
    ),
    Case(
        "report-is-input",
        lambda t, r: _age(
            Path(shutil.copy(_clip(r), t / "clip.mp4")), t / "out.mp4", r, "--report", str(t / "clip.mp4")
        ),
        4,
        r"clip\.mp4: --report is the input file",
    ),
    Case(
        "matte-is-output",
        lambda t, r: _age(_clip(r), t / "out.mkv", r, "--codec", "ffv1", "--matte", str(t / "out.mkv")),
        4,
        r"out\.mkv: --matte and output are the same file",
    ),
    Case(
        "missing-report-dir",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--report", str(t / "nodir" / "r.json")),
        4,
        r"report folder .*nodir does not exist",
    ),
    Case(
        "start-past-end",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--start", "5"),
        2,
        r"start \(5\.0 s\) is at or past the end of .*\(1\.\d+ s\)",
    ),
    Case(
        "bad-faces",
        lambda t, r: _age(_clip(r), t / "out.mp4", r, "--faces", "biggest"),
        2,
        r"--faces must be all, largest or track ids",
    ),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest, capfd: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv, out = case.make(work, request)
    src = Path(argv[1])
    src_hash = _sha(src) if src.is_file() else None
    with pytest.warns(UserWarning) if case.id == "zero-faces" else contextlib.nullcontext():
        code = cli_main(argv)
    err = capfd.readouterr().err
    assert code == case.code, err
    assert re.search(case.message, err, re.S), err
    assert "Traceback" not in err
    if case.code != 0:
        assert "rror" in err  # "error:" from the CLI, "Error:" from click's usage errors
    if src_hash is not None:
        assert _sha(src) == src_hash, "the input was modified"
    if case.output:
        assert out.is_file()
    elif out != src:
        assert not out.exists(), "an output was left behind after an error"
    if out.parent.is_dir():
        assert no_temp_files(out.parent)

    if case.id == "truncated":
        rep = json.loads((work / "report.json").read_text())
        assert 0 < rep["frames"] < 38, "should process what decodes, and only that"
        assert rep["frames"] == len(decode_video(out).frames)
        assert rep["warnings"] and any("cut.mp4" in w for w in rep["warnings"])
    if case.id == "zero-faces":
        assert out.read_bytes() == src.read_bytes()
