"""Media I/O on synthetic clips made here with PyAV: timing, colour, rotation, audio, errors, atomicity."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from faceage_video.errors import InputError, OptionsError, OutputError
from faceage_video.media.matte import MatteWriter
from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoInfo, VideoReader, probe
from faceage_video.media.writer import (
    CODECS,
    CONTAINERS,
    VideoWriter,
    WriterOptions,
)

FAST = WriterOptions(preset="ultrafast")
# AVColorSpace -> swscale constant, to make test clips whose pixels match their matrix tag.
SWS = {1: 1, 5: 5, 6: 5, 9: 9}


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """A smooth coloured frame with a moving square; smooth so lossy codecs stay close."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), np.full_like(x, 90)], -1)
    s = max(2, min(h, w) // 4)
    x0 = (i * 3) % max(1, w - s)
    img[h // 3 : h // 3 + s, x0 : x0 + s] = (230, 40, 160)
    return img.astype(np.uint8)


def make_clip(
    path: Path,
    *,
    size: tuple[int, int] = (64, 48),
    n: int = 8,
    fps: int = 25,
    time_base: Fraction = Fraction(1, 12800),
    pts: list[int] | None = None,
    rotation: int | None = None,
    colour: dict[str, int] | None = None,
    audio_s: float = 0.0,
) -> list[np.ndarray]:
    """Write an H.264 clip (optionally with AAC audio) and return the RGB frames fed to the encoder."""
    w, h = size
    pts = pts if pts is not None else [round(i / (fps * time_base)) for i in range(n)]
    frames = [pattern(i, h, w) for i in range(len(pts))]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "10"})
        v.width, v.height = w, h
        v.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        v.time_base = time_base
        v.codec_context.time_base = time_base
        for k, val in (colour or {}).items():
            setattr(v.codec_context, k, val)
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = None
        if audio_s:
            a = out.add_stream("aac", rate=48000)
            a.layout = "stereo"
        for img, p in zip(frames, pts, strict=True):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if colour:
                f = f.reformat(
                    format=v.pix_fmt,
                    dst_colorspace=SWS.get(colour.get("colorspace", 2)),
                    dst_color_range=colour.get("color_range"),
                )
                for k, val in colour.items():
                    setattr(f, k, val)
            f.pts = p
            f.time_base = time_base
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        if a is not None:
            t = np.arange(int(48000 * audio_s)) / 48000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for i in range(0, len(wave) - 1023, 1024):
                chunk = np.stack([wave[i : i + 1024]] * 2)
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                af.sample_rate = 48000
                af.pts = i
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return frames


def read_all(path: Path, **kw: object) -> tuple[VideoInfo, list[DecodedFrame], list[str]]:
    with VideoReader(path, ReaderOptions(**kw)) as r:  # type: ignore[arg-type]
        return r.info, list(r), r.warnings


def transcode(src: Path, dst: Path, options: WriterOptions = FAST, **kw: float | None) -> list[DecodedFrame]:
    """Read `src` (optionally a [start_s, end_s) window) and write every frame to `dst` with its audio."""
    opts = ReaderOptions(start_s=kw.get("start_s"), end_s=kw.get("end_s"))
    with VideoReader(src, opts) as r:
        frames = list(r)
        with VideoWriter(
            dst, r.info, options, audio_source=str(src), start_s=opts.start_s, end_s=opts.end_s
        ) as w:
            for f in frames:
                w.write(f.image, f.pts, f.time_base)
    return frames


def audio_packets(path: Path) -> list[tuple[int, Fraction, bytes]]:
    """(pts, time base, bytes) of every audio packet of the first audio stream."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        s = c.streams.audio[0]
        return [(p.pts, p.time_base, bytes(p)) for p in c.demux(s) if p.size and p.pts is not None]


def hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kw",
    [{"threads": -1}, {"start_s": -1.0}, {"end_s": 0.0}, {"start_s": 2.0, "end_s": 1.0}],
)
def test_reader_options_reject_bad_values(kw: dict[str, float]) -> None:
    with pytest.raises(OptionsError):
        ReaderOptions(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [{"codec": "vp9"}, {"crf": -1}, {"crf": 52}, {"crf": 1.5}, {"preset": "turbo"}, {"threads": -2}],
)
def test_writer_options_reject_bad_values(kw: dict[str, object]) -> None:
    with pytest.raises(OptionsError):
        WriterOptions(**kw)  # type: ignore[arg-type]


def test_writer_options_accept_every_codec() -> None:
    for codec in CODECS:
        assert WriterOptions(codec=codec).codec == codec


# ----------------------------------------------------------------------------------------------- reader


def test_probe_reports_stream_facts(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, size=(64, 48), n=10, audio_s=0.5)
    info = probe(clip)
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert info.fps == 25
    assert info.time_base == Fraction(1, 12800)
    assert info.frame_count == 10
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.duration_s == pytest.approx(0.4, abs=0.05)
    assert len(info.audio) == 1
    assert (info.audio[0].codec, info.audio[0].sample_rate, info.audio[0].channels) == ("aac", 48000, 2)


def test_reader_yields_every_frame_with_its_pts(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    src = make_clip(clip, n=10)
    info, frames, warnings = read_all(clip)
    assert warnings == []
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts for f in frames] == [i * 512 for i in range(10)]
    assert all(f.time_base == info.time_base for f in frames)
    assert [f.time_s for f in frames] == pytest.approx([i / 25 for i in range(10)])
    for f, s in zip(frames, src, strict=True):
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        assert np.abs(f.image.astype(int) - s).mean() < 4


def test_reader_window_yields_only_frames_in_range(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=25)
    _, frames, _ = read_all(clip, start_s=0.3, end_s=0.6)
    # Frames at 0.32, 0.36, ..., 0.56 s.
    assert [round(f.time_s, 2) for f in frames] == [0.32, 0.36, 0.40, 0.44, 0.48, 0.52, 0.56]
    assert [f.index for f in frames] == list(range(7))


def test_reader_can_iterate_twice(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=6)
    with VideoReader(clip, ReaderOptions(threads=1)) as r:
        first, second = list(r), list(r)
    assert [f.pts for f in second] == [f.pts for f in first] == [i * 512 for i in range(6)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.image, b.image)


def test_times_count_from_the_stream_start(tmp_path: Path) -> None:
    clip = tmp_path / "in.ts"  # MPEG-TS streams often start well after 0
    make_clip(clip, pts=[126000 + i * 3600 for i in range(20)], time_base=Fraction(1, 90000))
    info, frames, _ = read_all(clip)
    assert info.start_time_s == pytest.approx(1.4, abs=0.01)
    assert frames[0].time_s == 0.0
    _, window, _ = read_all(clip, start_s=0.2, end_s=0.4)
    assert [round(f.time_s, 2) for f in window] == [0.2, 0.24, 0.28, 0.32, 0.36]
    assert [f.pts for f in window] == [f.pts for f in frames[5:10]]


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_is_applied_and_not_written_back(tmp_path: Path, degrees: int) -> None:
    clip = tmp_path / "rot.mp4"
    w, h = 64, 32
    with av.open(str(clip), "w") as out:
        v = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.set_display_rotation(degrees)
        for i in range(3):
            img = np.zeros((h, w, 3), np.uint8)
            img[: h // 2, : w // 2] = 255  # stored top-left quadrant white
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    info, frames, _ = read_all(clip)
    assert info.rotation == degrees
    expected = np.rot90(np.pad(np.ones((h // 2, w // 2)), ((0, h // 2), (0, w // 2))), degrees // 90)
    assert (info.height, info.width) == expected.shape
    white = frames[0].image[..., 0] > 128
    assert white.shape == expected.shape
    assert (white == expected.astype(bool)).mean() > 0.97

    out_path = tmp_path / "out.mp4"
    transcode(clip, out_path)
    out_info, out_frames, _ = read_all(out_path)
    assert out_info.rotation == 0
    assert (out_info.height, out_info.width) == expected.shape
    assert ((out_frames[0].image[..., 0] > 128) == expected.astype(bool)).mean() > 0.97


def test_corrupt_packets_are_skipped_with_warnings(tmp_path: Path) -> None:
    clip = tmp_path / "in.ts"
    rng = np.random.default_rng(0)
    with av.open(str(clip), "w") as out:
        v = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(40):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    data = bytearray(clip.read_bytes())
    for off in range(len(data) // 3, len(data) // 3 + 3000, 7):
        data[off] = (data[off] * 7 + 13) % 256
    broken = tmp_path / "broken.ts"
    broken.write_bytes(bytes(data))
    _, frames, warnings = read_all(broken)
    assert len(frames) >= 30
    assert warnings, "corruption must be reported"

    truncated = tmp_path / "truncated.ts"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    _, frames, _ = read_all(truncated)
    assert 5 <= len(frames) < 40


def test_input_errors_name_the_path(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as out:
        a = out.add_stream("aac", rate=48000)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 48000, 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    cases = {
        tmp_path / "missing.mp4": "no such file",
        tmp_path: "folder",
        text: "cannot be opened",
        empty: "cannot be opened",
        audio_only: "no video stream",
    }
    for path, words in cases.items():
        with pytest.raises(InputError, match=words) as e:
            probe(path)
        assert str(path) in str(e.value)
        with pytest.raises(InputError):
            VideoReader(path)


def test_urls_and_playlists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="URL"):
        probe("http://example.com/video.mp4")
    with pytest.raises(InputError, match="URL"):
        VideoReader("concat:a.mp4|b.mp4")
    seg = tmp_path / "seg.ts"
    make_clip(seg, n=3)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.2,\nseg.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(InputError, match="playlist"):
        probe(playlist)


# ----------------------------------------------------------------------------------------------- writer


@pytest.mark.parametrize(
    "colour",
    [
        {"color_range": 1, "colorspace": 1, "color_primaries": 1, "color_trc": 1},  # BT.709 limited
        {"color_range": 1, "colorspace": 6, "color_primaries": 6, "color_trc": 6},  # SMPTE 170M limited
        {"color_range": 2, "colorspace": 1, "color_primaries": 1, "color_trc": 13},  # BT.709 full, sRGB
        {},  # nothing tagged stays untagged
    ],
)
def test_h264_keeps_count_pts_rate_size_and_colour(tmp_path: Path, colour: dict[str, int]) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=12, time_base=Fraction(1, 90000), colour=colour)
    frames = transcode(clip, out)
    a, b = probe(clip), probe(out)
    assert b.frame_count == a.frame_count == 12
    assert (b.width, b.height, b.fps, b.time_base) == (a.width, a.height, a.fps, a.time_base)
    tags = ("color_range", "colorspace", "color_primaries", "color_trc")
    assert {k: getattr(b, k) for k in tags} == {k: getattr(a, k) for k in tags}
    if colour:
        assert {k: getattr(b, k) for k in tags} == colour
    _, back, _ = read_all(out)
    assert [f.pts for f in back] == [f.pts for f in frames]
    # The RGB -> YUV conversion used the tagged matrix and range: colours survive the round trip
    # (about 1.7 here; a wrong matrix gives about 7).
    for f, g in zip(back, frames, strict=True):
        assert np.abs(f.image.astype(int) - g.image).mean() < 3


def test_vfr_timestamps_survive(tmp_path: Path) -> None:
    clip, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    pts = [0, 3000, 9000, 10500, 18000, 19500, 30000, 31000, 45000]  # irregular, in 1/90000
    make_clip(clip, pts=pts, time_base=Fraction(1, 90000))
    transcode(clip, out)
    _, back, _ = read_all(out)
    assert [f.pts for f in back] == pts
    assert probe(out).time_base == Fraction(1, 90000)


def test_mpeg4_coarsens_a_90k_time_base_without_moving_frames(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=6, fps=30, time_base=Fraction(1, 90000))
    frames = transcode(clip, out, WriterOptions(codec="mpeg4"))
    _, back, _ = read_all(out)
    assert [f.pts for f in back] == [f.pts for f in frames] == [i * 3000 for i in range(6)]


def test_ffv1_round_trip_is_bit_exact(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(clip, size=(33, 25), n=6)
    frames = transcode(clip, out, WriterOptions(codec="ffv1"))
    _, back, _ = read_all(out)
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    # Matroska counts milliseconds: times agree to the millisecond.
    assert [round(f.time_s, 3) for f in back] == [round(f.time_s, 3) for f in frames]


@pytest.mark.parametrize("codec", CODECS)
def test_odd_sizes_work_with_every_codec(tmp_path: Path, codec: str) -> None:
    clip = tmp_path / "in.mp4"
    w, h = (65, 49) if codec == "hevc" else (35, 27)  # libx265 refuses frames under 64 px wide
    src = make_clip(clip, size=(w, h), n=5)
    out = tmp_path / f"out{CONTAINERS[codec][0]}"  # type: ignore[index]
    transcode(clip, out, WriterOptions(codec=codec, preset="ultrafast"))  # type: ignore[arg-type]
    info, back, _ = read_all(out)
    assert (info.width, info.height) == (w, h)
    assert len(back) == 5
    for f, s in zip(back, src, strict=True):
        assert f.image.shape == (h, w, 3)
        assert np.abs(f.image.astype(int) - s).mean() < 8


def test_audio_is_copied_packet_for_packet(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=12, audio_s=0.5)
    transcode(clip, out)
    a, b = audio_packets(clip), audio_packets(out)
    assert len(a) > 10
    assert [p[2] for p in b] == [p[2] for p in a]  # bytes identical
    assert [(p[0], p[1]) for p in b] == [(p[0], p[1]) for p in a]  # timestamps identical


def test_audio_is_pulled_in_step_with_the_video(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=50, audio_s=2.0)
    total = len(audio_packets(clip))
    with VideoReader(clip) as r, VideoWriter(out, r.info, FAST, audio_source=str(clip)) as w:
        for f in r:
            w.write(f.image, f.pts, f.time_base)
            # Packets of 1024 samples at 48 kHz presented up to this frame (plus the priming packet):
            # the writer reads audio as it goes, not the whole track at once.
            due = int(f.time_s * 48000 // 1024) + 2
            assert abs(w.audio_packets_written - due) <= 1, (f.time_s, w.audio_packets_written)
    assert w.audio_packets_written == total


def test_audio_follows_a_trimmed_video(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=50, audio_s=2.0)
    frames = transcode(clip, out, start_s=0.5, end_s=1.5)
    assert len(frames) == 25
    t0 = frames[0].pts * frames[0].time_base  # type: ignore[operator]
    _, back, _ = read_all(out)
    assert back[0].pts == 0
    assert [f.pts for f in back] == [f.pts - frames[0].pts for f in frames]  # type: ignore[operator]
    # Kept: every packet that overlaps [t0, 1.5 s); AAC packets here are 1024 samples long.
    a = [p for p in audio_packets(clip) if t0 < (p[0] + 1024) * p[1] and p[0] * p[1] < Fraction(3, 2)]
    b = audio_packets(out)
    assert len(a) > 30
    assert [p[2] for p in b] == [p[2] for p in a]
    shift = round(t0 / a[0][1])
    assert [p[0] for p in b] == [p[0] - shift for p in a]
    assert -1024 < b[0][0] <= 0  # the straddling packet starts just before the first frame


def test_audio_false_writes_video_only(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=5, audio_s=0.3)
    transcode(clip, out, WriterOptions(preset="ultrafast", audio=False))
    assert probe(out).audio == ()
    assert audio_packets(out) == []


def test_missing_pts_are_spaced_at_the_frame_rate(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=4)
    info = probe(clip)
    with VideoWriter(out, info, FAST) as w:
        for i in range(4):
            w.write(pattern(i, 48, 64), None, info.time_base)
    _, back, _ = read_all(out)
    assert [f.pts for f in back] == [0, 512, 1024, 1536]


def test_write_rejects_bad_frames_and_backwards_pts(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=2)
    info = probe(clip)
    with VideoWriter(tmp_path / "out.mp4", info, FAST) as w:
        with pytest.raises(ValueError, match="uint8 RGB"):
            w.write(np.zeros((48, 64), np.uint8), 0, info.time_base)
        with pytest.raises(ValueError, match="uint8 RGB"):
            w.write(np.zeros((48, 64, 3), np.float32), 0, info.time_base)
        w.write(pattern(0, 48, 64), 512, info.time_base)
        with pytest.raises(ValueError, match="pts must increase"):
            w.write(pattern(1, 48, 64), 512, info.time_base)


def test_writer_refuses_bad_targets(tmp_path: Path) -> None:
    clip, small = tmp_path / "in.mp4", tmp_path / "small.mp4"
    make_clip(clip, n=2)
    make_clip(small, size=(40, 40), n=1)
    info = probe(clip)
    with pytest.raises(OutputError, match="is the input"):
        VideoWriter(clip, info, FAST)
    with pytest.raises(OutputError, match="is the input"):
        VideoWriter(tmp_path / "." / "in.mp4", info, FAST)
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "nope" / "out.mp4", info, FAST)
    with pytest.raises(OutputError, match="folder"):
        VideoWriter(tmp_path, info, FAST)
    with pytest.raises(OutputError, match=r"\.mkv"):
        VideoWriter(tmp_path / "out.mp4", info, WriterOptions(codec="ffv1"))
    with pytest.raises(OutputError, match=r"\.mov"):
        VideoWriter(tmp_path / "out.mp4", info, WriterOptions(codec="prores"))
    with pytest.raises(OutputError, match="cannot be written"):
        VideoWriter(tmp_path / "out.xyz", info, FAST)
    with pytest.raises(OutputError, match="at least 64x16"):
        VideoWriter(tmp_path / "out.mp4", probe(small), WriterOptions(codec="hevc"))
    assert sorted(tmp_path.iterdir()) == [clip, small]


def test_abort_removes_the_temporary_file_and_keeps_an_old_output(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=3)
    out.write_bytes(b"previous result")
    info = probe(clip)
    w = VideoWriter(out, info, FAST, audio_source=str(clip))
    for i in range(30):  # until the encoder has emitted a packet and the muxer created the file
        w.write(pattern(i, 48, 64), i * 512, info.time_base)
        if hidden_leftovers(tmp_path):
            break
    assert len(hidden_leftovers(tmp_path)) == 1  # the hidden temporary file
    w.abort()
    assert hidden_leftovers(tmp_path) == []
    assert out.read_bytes() == b"previous result"


def test_ctrl_c_while_writing_leaves_nothing(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=6, audio_s=0.3)
    with (
        pytest.raises(KeyboardInterrupt),
        VideoReader(clip) as r,
        VideoWriter(out, r.info, FAST, audio_source=str(clip)) as w,
    ):
        for f in r:
            w.write(f.image, f.pts, f.time_base)
            if f.index == 3:
                raise KeyboardInterrupt
    assert not out.exists()
    assert hidden_leftovers(tmp_path) == []


def test_close_renames_and_leaves_no_temporary(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, n=3)
    transcode(clip, out)
    assert out.is_file() and hidden_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------- mattes


def masks(n: int, h: int, w: int) -> list[np.ndarray]:
    y, x = np.mgrid[0:h, 0:w]
    return [
        ((np.hypot(x - w / 2 - i, y - h / 2) < min(h, w) / 3) * 0.8 + 0.1).astype(np.float32)
        for i in range(n)
    ]


def read_grey(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def test_matte_ffv1_video_is_lossless(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, size=(33, 25), n=4)
    info = probe(clip)
    ms = masks(4, 25, 33)
    with MatteWriter(tmp_path / "matte.mkv", info) as mw:
        for i, m in enumerate(ms):
            mw.write(m if i % 2 else (m * 255).round().astype(np.uint8), i * 512, info.time_base)
    back = read_grey(tmp_path / "matte.mkv")
    assert len(back) == 4
    for b, m in zip(back, ms, strict=True):
        np.testing.assert_array_equal(b, np.rint(m * 255).astype(np.uint8))
    assert hidden_leftovers(tmp_path) == []


def test_matte_h264_video_is_close(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=4)
    info = probe(clip)
    ms = masks(4, 48, 64)
    with MatteWriter(tmp_path / "matte.mp4", info) as mw:
        for i, m in enumerate(ms):
            mw.write(m, i * 512, info.time_base)
    back = read_grey(tmp_path / "matte.mp4")
    assert probe(tmp_path / "matte.mp4").frame_count == 4
    for b, m in zip(back, ms, strict=True):
        assert np.abs(b.astype(int) - np.rint(m * 255)).mean() < 3


@pytest.mark.parametrize("target", ["folder", "pattern"])
def test_matte_png_sequence(tmp_path: Path, target: str) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=3)
    info = probe(clip)
    folder = tmp_path / "mattes"
    folder.mkdir()
    path = str(folder) + "/" if target == "folder" else str(folder / "m_%03d.png")
    names = ["matte_000000.png", "matte_000001.png", "matte_000002.png"]
    if target == "pattern":
        names = ["m_000.png", "m_001.png", "m_002.png"]
    ms = masks(3, 48, 64)
    with MatteWriter(path, info) as mw:
        for i, m in enumerate(ms):
            mw.write(m, i, info.time_base)
    assert sorted(p.name for p in folder.iterdir()) == names
    for name, m in zip(names, ms, strict=True):
        img = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(img, np.rint(m * 255).astype(np.uint8))

    with pytest.raises(RuntimeError), MatteWriter(folder / "x_%02d.png", info) as mw:
        mw.write(ms[0], 0, info.time_base)
        raise RuntimeError("stop")
    assert sorted(p.name for p in folder.iterdir()) == names  # the aborted writer's file is gone


def test_matte_errors(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=2)
    info = probe(clip)
    with pytest.raises(OutputError, match="matte path"):
        MatteWriter(tmp_path / "matte.gif", info)
    with pytest.raises(OutputError, match="does not exist"):
        MatteWriter(tmp_path / "nope" / "m_%04d.png", info)
    with MatteWriter(tmp_path / "m.mkv", info) as mw, pytest.raises(ValueError, match="matte"):
        mw.write(np.zeros((48, 64, 3), np.float32), 0, info.time_base)
    assert (tmp_path / "m.mkv").is_file()  # closed with no frames: an empty but valid file
    with pytest.raises(KeyboardInterrupt), MatteWriter(tmp_path / "k.mkv", info) as mw:
        mw.write(np.zeros((48, 64), np.float32), 0, info.time_base)
        raise KeyboardInterrupt
    assert not (tmp_path / "k.mkv").exists() and hidden_leftovers(tmp_path) == []
