"""Media I/O on the real clips in ../shared/data/videos, each trimmed here to a second or two."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from faceage_video.media.reader import DecodedFrame, ReaderOptions, VideoReader, probe
from faceage_video.media.writer import VideoWriter, WriterOptions

pytestmark = pytest.mark.integration

OPTIONS = WriterOptions(preset="veryfast")
TAGS = ("color_range", "colorspace", "color_primaries", "color_trc")

# name: (width, height, fps, codec, has audio), from ../shared/data/README.md
CLIPS = {
    "liveportrait_d0.mp4": (512, 512, 25, "h264", False),
    "liveportrait_d3.mp4": (512, 512, 30, "h264", True),
    "liveportrait_d10.mp4": (512, 512, 30, "h264", True),
    "liveportrait_d11.mp4": (512, 512, 25, "h264", True),
    "liveportrait_d12.mp4": (512, 512, 25, "h264", True),
    "liveportrait_d13.mp4": (720, 1280, 30, "h264", False),
    "liveportrait_d18.mp4": (480, 480, 30, "h264", True),
    "liveportrait_d19.mp4": (480, 480, 30, "h264", True),
    "liveportrait_s18.mp4": (1280, 720, 30, "h264", True),
    "sadtalker_wda_aoc.mp4": (512, 512, 25, "mpeg4", True),
    "sadtalker_wda_katiehill.mp4": (512, 512, 25, "mpeg4", True),
}


def audio_packets(path: Path) -> list[tuple[int, Fraction, int, bytes]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        packets = c.demux(c.streams.audio[0])
        return [
            (p.pts, p.time_base, p.duration or 0, bytes(p)) for p in packets if p.size and p.pts is not None
        ]


def transcode(
    src: Path, dst: Path, options: WriterOptions = OPTIONS, start_s: float | None = None, end_s: float = 1.0
) -> tuple[list[DecodedFrame], list[str]]:
    with VideoReader(src, ReaderOptions(start_s=start_s, end_s=end_s)) as r:
        frames: list[DecodedFrame] = []
        with VideoWriter(dst, r.info, options, audio_source=str(src), start_s=start_s, end_s=end_s) as w:
            for f in r:
                frames.append(f)
                w.write(f.image, f.pts, f.time_base)
        return frames, r.warnings


def test_probe_matches_the_data_readme(videos_dir: Path) -> None:
    for name, (w, h, fps, codec, has_audio) in CLIPS.items():
        info = probe(videos_dir / name)
        assert (info.width, info.height, info.fps, info.codec) == (w, h, fps, codec), name
        assert bool(info.audio) == has_audio, name
        assert info.rotation == 0 and info.frame_count and info.duration_s, name


@pytest.mark.parametrize("name", ["liveportrait_d12.mp4", "sadtalker_wda_aoc.mp4", "liveportrait_d13.mp4"])
def test_first_second_round_trip(videos_dir: Path, tmp_path: Path, name: str) -> None:
    src, out = videos_dir / name, tmp_path / "out.mp4"
    frames, warnings = transcode(src, out, end_s=1.0)
    a, b = probe(src), probe(out)
    assert warnings == []
    assert len(frames) == a.fps  # one second of frames
    assert b.frame_count == len(frames)
    assert (b.width, b.height, b.fps, b.time_base) == (a.width, a.height, a.fps, a.time_base)
    assert {k: getattr(b, k) for k in TAGS} == {k: getattr(a, k) for k in TAGS}
    with VideoReader(out) as r:
        back = list(r)
    assert [f.pts for f in back] == [f.pts for f in frames]
    for f, g in zip(frames[::6], back[::6], strict=True):
        assert f.image.std() > 10  # a real picture, not a blank decode
        assert np.abs(f.image.astype(int) - g.image).mean() < 4

    # Audio: every input packet that starts in the first second, byte for byte, at the same timestamps.
    expected = [p for p in audio_packets(src) if p[0] * p[1] < 1]
    got = audio_packets(out)
    assert bool(expected) == bool(a.audio)
    assert [p[3] for p in got] == [p[3] for p in expected]
    assert [p[:2] for p in got] == [p[:2] for p in expected]


def test_trimmed_window_keeps_audio_in_step(videos_dir: Path, tmp_path: Path) -> None:
    src, out = videos_dir / "liveportrait_d10.mp4", tmp_path / "out.mp4"
    frames, _ = transcode(src, out, start_s=2.0, end_s=3.0)
    assert len(frames) == 30
    first = frames[0]
    assert first.time_s == pytest.approx(2.0, abs=1 / 60)
    t0 = first.pts * first.time_base  # type: ignore[operator]
    with VideoReader(out) as r:
        back = list(r)
    assert [f.pts for f in back] == [f.pts - first.pts for f in frames]  # type: ignore[operator]

    overlapping = [p for p in audio_packets(src) if t0 < (p[0] + p[2]) * p[1] and p[0] * p[1] < 3]
    got = audio_packets(out)
    assert len(got) > 40
    assert [p[3] for p in got] == [p[3] for p in overlapping]
    shift = round(t0 / overlapping[0][1])
    assert [p[0] for p in got] == [p[0] - shift for p in overlapping]


def test_ffv1_of_a_real_clip_is_bit_exact(videos_dir: Path, tmp_path: Path) -> None:
    src, out = videos_dir / "liveportrait_d18.mp4", tmp_path / "out.mkv"
    frames, _ = transcode(src, out, WriterOptions(codec="ffv1"), end_s=0.5)
    with VideoReader(out) as r:
        back = list(r)
    assert len(back) == len(frames) == 15
    for f, g in zip(frames, back, strict=True):
        np.testing.assert_array_equal(f.image, g.image)
    assert len(audio_packets(out)) > 15


def test_mpeg4_clip_decodes_threaded_without_warnings(videos_dir: Path) -> None:
    with VideoReader(videos_dir / "sadtalker_wda_katiehill.mp4", ReaderOptions(threads=2, end_s=2.0)) as r:
        frames = list(r)
        assert r.warnings == []
    assert len(frames) == 50
    assert [f.pts for f in frames] == [i * 512 for i in range(50)]
    assert all(f.image.shape == (512, 512, 3) for f in frames)
