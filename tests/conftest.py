"""Shared fixtures: paths to ../shared/data (skipping with a reason where it is absent), a tiny untrained
model bundle, real clips trimmed to a second or two, and helpers to decode what the pipeline wrote.

The helpers are plain functions so test modules can import them (`from tests.conftest import decode_video`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
VIDEOS = SHARED_DATA / "videos"
UTKFACE = SHARED_DATA / "utkface"

# The tiny untrained bundle: a constant change (in the network's [-1, 1] range) set on the output
# convolution's bias, so "older" visibly brightens the face and "younger" darkens it, plus a small random
# kernel so the change also depends on the picture (it then flickers a little, as a real model does).
TINY_G_BIAS = 0.25
TINY_F_BIAS = -0.25
TINY_KERNEL_STD = 0.02
# Clips used by the integration tests and how long they are trimmed to.
SHORT_CLIP = "liveportrait_d12.mp4"  # 512×512, 25 fps, H.264 + AAC, man with glasses
MPEG4_CLIP = "sadtalker_wda_aoc.mp4"  # 512×512, 25 fps, MPEG-4 Part 2 + AAC
SHORT_SECONDS = 1.5


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    """../shared/data/videos, or skip."""
    if not VIDEOS.is_dir():
        pytest.skip(
            f"real clips absent: {VIDEOS} not found (tests with real data need ../shared beside the repo)"
        )
    return VIDEOS


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    """../shared/data/utkface, or skip."""
    if not UTKFACE.is_dir():
        pytest.skip(
            f"UTKFace absent: {UTKFACE} not found (tests with real data need ../shared beside the repo)"
        )
    return UTKFACE


# ----------------------------------------------------------------------------------------------------------
# Model bundle


def make_tiny_bundle(folder: Path, size: int = 128) -> Path:
    """Write a small untrained bundle (ngf 8, one residual block) whose generators really change a face.

    G adds `TINY_G_BIAS` and F adds `TINY_F_BIAS` (network range, so ±32 levels of 0..255) plus a small
    picture-dependent change.
    """
    from faceage_video.face.align import AlignTemplate
    from models.bundle import Manifest, save_bundle
    from models.networks import GeneratorConfig, build_generator

    cfg = GeneratorConfig(size=size, ngf=8, n_blocks=1)
    rng = np.random.default_rng(1234)
    gens = {}
    for key, bias in (("G", TINY_G_BIAS), ("F", TINY_F_BIAS)):
        model = build_generator(cfg, name=key)
        conv = model.get_layer("out_conv")
        kernel, b = conv.get_weights()
        k = rng.normal(0.0, TINY_KERNEL_STD, kernel.shape)
        k -= k.mean(axis=(0, 1, 2), keepdims=True)  # zero-sum per output channel: the mean change is the bias
        conv.set_weights([k.astype(np.float32), np.full_like(b, bias)])
        gens[key] = model
    manifest = Manifest(
        name="tiny-untrained",
        generator=cfg,
        template=AlignTemplate(size).to_dict(),
        data={"dataset": "none (untrained test bundle)"},
        training={"steps": 0},
    )
    return save_bundle(folder, manifest, gens, "# tiny-untrained\n\nUntrained test bundle; not a model.\n")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny untrained bundle (session-wide; copy it before damaging it)."""
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


# ----------------------------------------------------------------------------------------------------------
# Clips


def trim_reencode(src: Path, dst: Path, seconds: float, crf: int = 12) -> Path:
    """First `seconds` of `src`: video re-encoded with libx264 keeping every frame's pts and the time base,
    audio packets copied untouched (so the clip needs no keyframe at the cut)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin: Any = inp.streams.video[0]
        ains = list(inp.streams.audio)
        vout: Any = out.add_stream(
            "libx264", rate=vin.average_rate, options={"crf": str(crf), "preset": "ultrafast"}
        )
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        amap = {a.index: out.add_stream_from_template(a) for a in ains}
        for pkt in inp.demux([vin, *ains]):
            if pkt.dts is None:
                continue
            if pkt.stream.type == "video":
                for fr in vin.decode(pkt):
                    if fr.pts is not None and fr.pts * vin.time_base < seconds:
                        img = fr.to_ndarray(format="yuv420p")
                        f2 = av.VideoFrame.from_ndarray(img, format="yuv420p")
                        f2.pts, f2.time_base = fr.pts, vin.time_base
                        out.mux(vout.encode(f2))
            elif pkt.pts is not None and pkt.pts * pkt.time_base < seconds:
                pkt.stream = amap[pkt.stream.index]
                out.mux(pkt)
        out.mux(vout.encode(None))
    return dst


def trim_copy(src: Path, dst: Path, seconds: float) -> Path:
    """Packet copy of `src` up to the first video keyframe at or after `seconds` (no re-encoding)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        smap = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        cut: float | None = None
        for pkt in inp.demux(list(inp.streams.video) + list(inp.streams.audio)):
            if pkt.dts is None:
                continue
            t = float((pkt.pts if pkt.pts is not None else pkt.dts) * pkt.time_base)
            if pkt.stream.type == "video":
                if cut is None and pkt.is_keyframe and t >= seconds:
                    cut = t
                if cut is not None:
                    continue
            elif t >= seconds:
                continue
            pkt.stream = smap[pkt.stream.index]
            out.mux(pkt)
    return dst


def faststart_copy(src: Path, dst: Path) -> Path:
    """Packet copy of an MP4 with the index (moov) moved to the front, as web videos are."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        smap = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for pkt in inp.demux():
            if pkt.dts is None:
                continue
            pkt.stream = smap[pkt.stream.index]
            out.mux(pkt)
    return dst


def write_ffv1(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """Lossless FFV1 (bgr0) .mkv of RGB frames, pts 0, 1, 2… at 1/fps; decodes back bit-exactly."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=fps, options={"level": "3"})
        vs.width, vs.height, vs.pix_fmt = w, h, "bgr0"
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="bgr0")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return path


def write_audio_only(path: Path, seconds: float = 1.0, rate: int = 44100) -> Path:
    """An AAC file with no video stream."""
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("aac", rate=rate)
        st.layout = "mono"
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            af = av.AudioFrame.from_ndarray(tone[None, k : k + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, k, Fraction(1, rate)
            out.mux(st.encode(af))
        out.mux(st.encode(None))
    return path


@pytest.fixture(scope="session")
def short_clip(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """liveportrait_d12 (512², H.264 + AAC, one face) trimmed to 1.5 s: 38 frames, audio kept."""
    return trim_reencode(
        videos_dir / SHORT_CLIP, tmp_path_factory.mktemp("clips") / "d12_short.mp4", SHORT_SECONDS
    )


@pytest.fixture(scope="session")
def mpeg4_clip(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sadtalker_wda_aoc (512², MPEG-4 Part 2 + AAC), packet-copied up to its keyframe at 1.44 s."""
    return trim_copy(videos_dir / MPEG4_CLIP, tmp_path_factory.mktemp("clips") / "aoc_short.mp4", 1.4)


# ----------------------------------------------------------------------------------------------------------
# Reading back


@dataclass
class Decoded:
    """Every frame of a file's first video stream, decoded to RGB."""

    frames: list[np.ndarray]
    pts: list[int]
    time_base: Fraction
    width: int
    height: int
    codec: str

    @property
    def times(self) -> list[float]:
        return [float(p * self.time_base) for p in self.pts]


def decode_video(path: Path | str, fmt: str = "rgb24") -> Decoded:
    """Decode all frames (in presentation order) of the first video stream."""
    import av

    with av.open(str(path)) as c:
        vs: Any = c.streams.video[0]
        frames, pts = [], []
        for f in c.decode(vs):
            frames.append(f.to_ndarray(format=fmt))
            pts.append(int(f.pts))
        return Decoded(
            frames,
            pts,
            Fraction(vs.time_base),
            vs.codec_context.width,
            vs.codec_context.height,
            vs.codec_context.name,
        )


def audio_packets(path: Path | str) -> list[bytes]:
    """The payload bytes of every audio packet, in file order (flush packets left out)."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size > 0]


def iter_frames(path: Path | str) -> Iterator[np.ndarray]:
    """RGB frames of a file one by one (for long files)."""
    import av

    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="rgb24")
