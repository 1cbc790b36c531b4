"""Test helpers, written once: paths to ../shared/data, small untrained model bundles, clip makers, readers
of what the pipeline wrote, and a subprocess runner. Plain functions, so any test module imports them
(`from tests.helpers import decode_video`); the fixtures built on them are in `tests/conftest.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

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


# ----------------------------------------------------------------------------------------------------------
# Model bundles


def make_bundle(
    folder: Path,
    name: str,
    *,
    size: int = 128,
    ngf: int = 8,
    n_blocks: int = 1,
    bias: float = TINY_G_BIAS,
    kernel_std: float = TINY_KERNEL_STD,
    zero_sum: bool = False,
    seed: int = 7,
    data: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    mesh: bool = False,
    cond: int = 0,
) -> Path:
    """Write an untrained bundle whose G adds `bias` and F subtracts it (network range: ±32 levels at 0.25).

    `mesh` makes it a canonical-mesh-space bundle, `cond` an age-conditioned one (2 extra input channels).

    The output convolution's kernel is drawn from N(0, `kernel_std`) with `seed` (zero-sum per output
    channel with `zero_sum`, so the mean change is exactly the bias); the rest keeps Keras' initialisation.
    """
    from faceage_video.face.align import AlignTemplate
    from models.bundle import Manifest, save_bundle
    from models.networks import GeneratorConfig, build_generator

    cfg = GeneratorConfig(size=size, ngf=ngf, n_blocks=n_blocks, cond=cond)
    rng = np.random.default_rng(seed)
    gens = {}
    for key, b_key in (("G", bias), ("F", -bias)):
        model = build_generator(cfg, name=key)
        conv = model.get_layer("out_conv")
        kernel, b = conv.get_weights()
        k = rng.normal(0.0, kernel_std, kernel.shape)
        if zero_sum:
            k -= k.mean(axis=(0, 1, 2), keepdims=True)
        conv.set_weights([k.astype(np.float32), np.full_like(b, b_key)])
        gens[key] = model
    manifest = Manifest(
        name=name,
        generator=cfg,
        template=_mesh_template(size) if mesh else AlignTemplate(size).to_dict(),
        data=data or {},
        training=training or {},
    )
    return save_bundle(folder, manifest, gens, f"# {name}\n\nUntrained test bundle; not a model.\n")


def make_tiny_bundle(folder: Path, size: int = 128) -> Path:
    """The tiny bundle (ngf 8, one residual block) whose generators really change a face.

    G adds `TINY_G_BIAS` and F adds `TINY_F_BIAS` (network range, so ±32 levels of 0..255) plus a small
    picture-dependent change.
    """
    return make_bundle(
        folder,
        "tiny-untrained",
        size=size,
        zero_sum=True,
        seed=1234,
        data={"dataset": "none (untrained test bundle)"},
        training={"steps": 0},
    )


def make_live_bundle(folder: Path, ngf: int = 16, n_blocks: int = 6, bias: float = 0.25) -> Path:
    """An untrained bundle of the default model's shape (so it costs what the default model costs) whose G
    brightens and F darkens the face by `bias` (network range: ±32 levels), so the effect is visible."""
    return make_bundle(
        folder, "live-test", ngf=ngf, n_blocks=n_blocks, bias=bias, kernel_std=0.002, training={"steps": 0}
    )


# ----------------------------------------------------------------------------------------------------------
# Geometry


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    """(2, 3) frame → crop transform: crop = scale · R(angle) · frame + t."""
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, [[tx], [ty]]])


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


# ----------------------------------------------------------------------------------------------------------
# Command lines


def run_module(
    module: str, *args: str, cwd: Path = ROOT, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS…` in a subprocess with this checkout first on the path; output captured."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def _mesh_template(size: int) -> dict[str, Any]:
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions

    return CanonicalMesh(MeshOptions(size=size)).to_dict()


_STAGE_FIELDS = (
    "engine",
    "landmarks",
    "tracker",
    "temporal",
    "blend",
    "faces",
    "input_age",
    "hair",
    "queue_size",
)
_READER_FIELDS = ("start_s", "end_s", "allow_protocols")
_EXTRA_FIELDS = ("matte", "side_by_side", "report", "matte_alpha")


def age_options(**kw: Any) -> Any:
    """`AgeOptions` from the options' own names, each put in its group (`engine=` in `stages`, `start_s=` in
    `reader`, `matte=` in `extras`; `writer=` and `sequence=` as they are)."""
    from faceage_video.media.reader import ReaderOptions
    from faceage_video.pipeline import AgeOptions, ExtraOutputs, StageOptions

    def take(names: tuple[str, ...]) -> dict[str, Any]:
        return {n: kw.pop(n) for n in names if n in kw}

    stages, reader, extras = take(_STAGE_FIELDS), take(_READER_FIELDS), take(_EXTRA_FIELDS)
    return AgeOptions(
        stages=StageOptions(**stages), reader=ReaderOptions(**reader), extras=ExtraOutputs(**extras), **kw
    )
