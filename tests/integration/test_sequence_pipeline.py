"""Image sequences through the whole pipeline (MediaPipe, the tiny bundle): frame numbers, bit depth, channels
and metadata kept, pixels outside the face bit-identical. The face is scikit-image's public-domain
`astronaut`, so no ../shared/data is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceage_video.engine.generator import EngineOptions
from faceage_video.media.sequence import read_plate
from faceage_video.pipeline import age_video
from tests.helpers import age_options

oiio = pytest.importorskip("OpenImageIO")
NUMBERS = (1001, 1002, 1003)


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())  # (512, 512, 3) uint8, one face


def _write(path: Path, px: np.ndarray, fmt: str) -> None:
    h, w, c = px.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    spec.attribute("Artist", "faceage-video test")
    if c == 4:
        spec.alpha_channel = 3
        spec.attribute("oiio:UnassociatedAlpha", 1)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(px))
    out.close()


def _plates(kind: str) -> list[np.ndarray]:
    """Three plates with detail below 8 bits, so an 8-bit round trip anywhere would show."""
    img = _astronaut()
    rng = np.random.default_rng(11)
    out = []
    for _ in NUMBERS:
        if kind == "half":
            # Scene-linear: decode the sRGB picture, add sub-8-bit noise, an alpha ramp.
            lin = np.where(
                img / 255.0 <= 0.04045, img / 255.0 / 12.92, ((img / 255.0 + 0.055) / 1.055) ** 2.4
            )
            lin = lin + rng.normal(0, 1e-3, img.shape)
            alpha = np.tile(np.linspace(0.2, 1.0, img.shape[1]), (img.shape[0], 1))[..., None]
            out.append(np.concatenate([lin, alpha], axis=2).astype(np.float16))
        else:
            p16 = img.astype(np.uint16) * 257 + rng.integers(0, 257, img.shape).astype(np.uint16)
            if kind == "png-rgba":
                a = rng.integers(0, 65536, (*img.shape[:2], 1), dtype=np.uint16)
                p16 = np.concatenate([p16, a], axis=2)
            out.append(p16)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "fmt", "ext"),
    [("tiff16", "uint16", "tif"), ("png-rgba", "uint16", "png"), ("half", "half", "exr")],
)
def test_sequence_round_trip_keeps_everything_outside_the_face(
    tmp_path: Path, tiny_bundle: Path, kind: str, fmt: str, ext: str
) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    plates = _plates(kind)
    for n, px in zip(NUMBERS, plates, strict=True):
        _write(src / f"plate.{n}.{ext}", px, fmt)
    opts = age_options(
        engine=EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False),
        matte=str(dst / f"matte.####.{ext}"),
    )
    rep = age_video(src / f"plate.#.{ext}", dst / f"aged.#.{ext}", opts)
    assert rep.frames == 3 and rep.frames_with_faces == 3
    assert rep.startup_s > 0 and rep.processing_fps > 0 and "landmarker" in rep.startup
    names = sorted(p.name for p in dst.iterdir())
    assert names == sorted([f"aged.{n}.{ext}" for n in NUMBERS] + [f"matte.{n}.{ext}" for n in NUMBERS])
    for n, px in zip(NUMBERS, plates, strict=True):
        out, spec = read_plate(dst / f"aged.{n}.{ext}")
        matte, _ = read_plate(dst / f"matte.{n}.{ext}")
        assert out.dtype == px.dtype and out.shape == px.shape
        assert len(tuple(spec.channelnames)) == px.shape[2]
        assert spec.getattribute("Artist") == "faceage-video test"  # metadata travels with the spec
        outside = matte[..., 0] == 0
        assert 0.5 < outside.mean() < 0.99  # the face is a part of the frame
        assert out[outside].tobytes() == px[outside].tobytes()  # bit-identical outside the face
        if px.shape[2] == 4:
            assert out[..., 3].tobytes() == px[..., 3].tobytes()  # alpha passed through
        changed = np.any(out[..., :3] != px[..., :3], axis=2)
        assert changed[~outside].mean() > 0.5  # the tiny model brightens the face


@pytest.mark.slow
def test_matte_as_alpha_of_an_rgb_sequence(tmp_path: Path, tiny_bundle: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    px = _plates("tiff16")[0]
    for n in (1, 2):
        _write(src / f"p.{n:03d}.tif", px, "uint16")
    opts = age_options(
        engine=EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False),
        matte_alpha=True,
    )
    age_video(src, dst, opts)
    out, spec = read_plate(dst / "p.001.tif")
    assert tuple(spec.channelnames) == ("R", "G", "B", "A") and out.dtype == np.uint16
    outside = out[..., 3] == 0
    assert 0.5 < outside.mean() < 0.99
    assert out[outside][:, :3].tobytes() == px[outside].tobytes()


def _ten_bit_clip(path: Path, codec: str, pix_fmt: str, frames: int = 3) -> np.ndarray:
    """A 10-bit clip: the astronaut over a fine horizontal ramp (1024 levels across), as 16-bit RGB."""
    import av

    img = _astronaut().astype(np.uint16) * 257
    ramp = (np.linspace(0, 1023, img.shape[1]).round().astype(np.uint16) * 64)[None, :, None]
    plate = img.copy()
    plate[:40] = ramp  # the top rows, far from the face
    with av.open(str(path), "w") as out:
        s: Any = out.add_stream(codec, rate=25, options={"profile": "hq"} if codec == "prores_ks" else {})
        s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], pix_fmt
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(plate, format="rgb48le").reformat(format=pix_fmt)
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return plate


def _decode16(path: Path) -> tuple[str, list[np.ndarray]]:
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb48le") for f in c.decode(video=0)]
        return c.streams.video[0].codec_context.pix_fmt, frames


@pytest.mark.slow
def test_ten_bit_prores_keeps_ten_bits(tmp_path: Path, tiny_bundle: Path) -> None:
    from faceage_video.media.writer import WriterOptions

    src, dst = tmp_path / "in.mov", tmp_path / "out.mov"
    _ten_bit_clip(src, "prores_ks", "yuv422p10le")
    opts = age_options(
        engine=EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False),
        writer=WriterOptions(codec="prores"),
    )
    rep = age_video(src, dst, opts)
    assert rep.frames_with_faces == 3  # the face was changed, so this is not the no-face copy of the input
    pix_fmt, frames = _decode16(dst)
    assert pix_fmt == "yuv422p10le"
    _, inp = _decode16(src)
    top = frames[0][5:35, :, 1] >> 6  # 10-bit codes of the ramp rows
    # Through 8 bits the ramp keeps at most 256 levels; at 10 bits nearly all 512 columns are distinct.
    assert len(np.unique(top[10])) > 400
    assert np.abs(frames[0][5:35].astype(int) - inp[0][5:35].astype(int)).max() <= 64 * 4  # ProRes is lossy


@pytest.mark.slow
def test_ten_bit_ffv1_is_bit_identical_outside_the_face(tmp_path: Path, tiny_bundle: Path) -> None:
    from faceage_video.media.writer import WriterOptions

    src, dst, matte = tmp_path / "in.mkv", tmp_path / "out.mkv", tmp_path / "matte.mkv"
    _ten_bit_clip(src, "ffv1", "gbrp10le")
    opts = age_options(
        engine=EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False),
        writer=WriterOptions(codec="ffv1"),
        matte=str(matte),
    )
    age_video(src, dst, opts)
    pix_fmt, out = _decode16(dst)
    _, inp = _decode16(src)
    _, mattes = _decode16(matte)
    assert pix_fmt == "gbrp10le" and len(out) == len(inp) == 3
    for o, i, m in zip(out, inp, mattes, strict=True):
        outside = m[..., 0] == 0
        assert 0.5 < outside.mean() < 0.99
        assert o[outside].tobytes() == i[outside].tobytes()
        assert np.any(o[~outside] != i[~outside])
