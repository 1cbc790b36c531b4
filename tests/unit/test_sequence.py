"""Image sequences (faceage_video.media.sequence): naming, checks before anything is written, precision of the
change on the plate, and the writer's round trip. Synthetic frames of a few pixels; no model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceage_video import cli
from faceage_video.errors import InputError, OptionsError, OutputError
from faceage_video.face.blend import WarpedChange
from faceage_video.media.patterns import is_sequence_path, output_pattern, parse_pattern, scan_sequence
from faceage_video.media.plates import IntegerTransfer, OCIOTransfer, SRGBTransfer, apply_plate_change
from faceage_video.media.sequence import (
    SequenceOptions,
    SequenceReader,
    SequenceWriter,
    read_plate,
)

oiio = pytest.importorskip("OpenImageIO")


def write_image(
    path: Path, pixels: np.ndarray, fmt: str, channels: tuple[str, ...] | None = None, **attrs: Any
) -> None:
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    if channels:
        spec.channelnames = channels
    if c == 4:
        spec.alpha_channel = 3
        spec.attribute("oiio:UnassociatedAlpha", 1)
    for k, v in attrs.items():
        spec.attribute(k, v)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(pixels))
    out.close()


def make_sequence(
    folder: Path,
    numbers: list[int],
    fmt: str = "uint16",
    ext: str = "tif",
    c: int = 3,
    size: tuple[int, int] = (6, 8),
) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    frames = []
    for n in numbers:
        if fmt == "uint16":
            px = rng.integers(0, 65536, (*size, c), dtype=np.uint16)
        elif fmt == "uint8":
            px = rng.integers(0, 256, (*size, c), dtype=np.uint8)
        else:
            px = (rng.random((*size, c)) * 3).astype(np.float16 if fmt == "half" else np.float32)
        write_image(folder / f"plate.{n:04d}.{ext}", px, fmt)
        frames.append(px)
    return frames


# ---------------------------------------------------------------------------------------------------------
# Naming


def test_patterns_and_folders_name_the_same_frames(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [1001, 1002, 1003])
    for spec in ("s/plate.%04d.tif", "s/plate.####.tif", "s"):
        pattern, files = scan_sequence(tmp_path / spec)
        assert list(files) == [1001, 1002, 1003], spec
        assert pattern.path(1002) == tmp_path / "s" / "plate.1002.tif"
    assert parse_pattern("a/plate.%06d.exr").name(7) == "plate.000007.exr"
    assert parse_pattern("a/plate.#.exr").name(7) == "plate.7.exr"
    assert is_sequence_path("x/plate.%04d.exr") and is_sequence_path(tmp_path)
    assert not is_sequence_path("clip.mp4")


def test_folder_with_two_runs_is_refused(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [1, 2])
    write_image(tmp_path / "s" / "other.0001.tif", np.zeros((6, 8, 3), np.uint16), "uint16")
    with pytest.raises(InputError, match="several sequences"):
        scan_sequence(tmp_path / "s")


# ---------------------------------------------------------------------------------------------------------
# Checks before anything is written


def test_a_gap_is_refused_naming_the_missing_frame(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [10, 11, 13])
    with pytest.raises(InputError, match=r"1 frame\(s\) missing in 10–13 \(12\).*--allow-gaps"):
        SequenceReader(tmp_path / "s/plate.%04d.tif")


def test_allow_gaps_holds_the_previous_frame_and_reports_it(tmp_path: Path) -> None:
    frames = make_sequence(tmp_path / "s", [10, 11, 13])
    r = SequenceReader(tmp_path / "s/plate.%04d.tif", SequenceOptions(allow_gaps=True))
    got = list(r)
    assert [f.number for f in got] == [10, 11, 12, 13]
    assert [f.filled for f in got] == [False, False, True, False]
    assert np.array_equal(got[2].plate, frames[1]) and np.array_equal(got[3].plate, frames[2])
    assert [f.pts for f in got] == [0, 1, 2, 3]
    assert any("12" in w and "missing" in w for w in r.warnings)


def test_mixed_sizes_are_refused(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [1, 2])
    write_image(tmp_path / "s" / "plate.0003.tif", np.zeros((6, 9, 3), np.uint16), "uint16")
    with pytest.raises(InputError, match=r"plate.0003.tif: size \(9, 6\) differs from frame 1's \(8, 6\)"):
        SequenceReader(tmp_path / "s")


@pytest.mark.parametrize("channels", [("Y",), ("R", "G", "B", "A", "Z")])
def test_unsupported_channel_layouts_are_refused(tmp_path: Path, channels: tuple[str, ...]) -> None:
    (tmp_path / "s").mkdir()
    for n in (1, 2):
        px = np.zeros((4, 4, len(channels)), np.float16)
        write_image(tmp_path / "s" / f"plate.{n}.exr", px, "half", channels)
    with pytest.raises(InputError, match="not supported; convert the plate to RGB or RGBA"):
        SequenceReader(tmp_path / "s/plate.#.exr")


def test_bad_sequence_through_the_cli_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [1, 2, 4])
    (tmp_path / "out").mkdir()
    code = cli.main(["age", str(tmp_path / "s/plate.%04d.tif"), "-o", str(tmp_path / "out/aged.%04d.tif")])
    assert code == InputError.exit_code
    assert list((tmp_path / "out").iterdir()) == []


def test_sequence_output_needs_a_sequence_input_and_the_same_format(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [1, 2])
    pattern, _ = scan_sequence(tmp_path / "s")
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="keeps the input's format"):
        output_pattern(tmp_path / "out/aged.%04d.png", pattern)
    with pytest.raises(OutputError, match="overwrite the input frames"):
        output_pattern(tmp_path / "s", pattern)
    assert output_pattern(tmp_path / "out", pattern).path(1) == tmp_path / "out" / "plate.0001.tif"
    with pytest.raises(OptionsError, match="--colorspace needs --ocio"):
        SequenceOptions(colorspace="ACEScg")


# ---------------------------------------------------------------------------------------------------------
# Precision of the change on the plate


def _warped(h: int, w: int, levels: float) -> WarpedChange:
    """A change of `levels` (0..255 scale) on the left half, alpha 1 there, 0 on the right."""
    alpha = np.zeros((h, w), np.float32)
    alpha[:, : w // 2] = 1.0
    return WarpedChange((0, 0, w, h), alpha, np.full((h, w, 3), levels, np.float32))


@pytest.mark.parametrize("dtype", [np.uint16, np.float16, np.float32])
def test_change_leaves_pixels_outside_the_mask_bit_identical(dtype: Any) -> None:
    rng = np.random.default_rng(3)
    if dtype == np.uint16:
        plate = rng.integers(0, 65536, (6, 8, 4), dtype=np.uint16)
        transfer: Any = IntegerTransfer(65535.0)
    else:
        plate = (rng.random((6, 8, 4)) * 2).astype(dtype)
        transfer = SRGBTransfer()
    out = apply_plate_change(plate, _warped(6, 8, 10.0), transfer)
    assert out.dtype == plate.dtype and out.shape == plate.shape
    assert out[:, 4:].tobytes() == plate[:, 4:].tobytes()  # outside: the same bytes
    assert np.array_equal(out[..., 3], plate[..., 3])  # alpha passes through
    assert np.any(out[:, :4, :3] != plate[:, :4, :3])


def test_integer_change_scales_to_the_plate_range() -> None:
    plate = np.full((2, 4, 3), 20000, np.uint16)
    out = apply_plate_change(plate, _warped(2, 4, 10.0), IntegerTransfer(65535.0))
    assert int(out[0, 0, 0]) == 20000 + round(10 * 65535 / 255)


def test_linear_change_goes_through_the_srgb_transfer() -> None:
    t = SRGBTransfer()
    lin = np.array([0.0, 0.001, 0.18, 0.5, 1.0, 4.0], np.float32)
    assert np.allclose(t.from_display(t.to_display(lin)), lin, rtol=1e-5, atol=1e-7)
    assert abs(float(t.to_display(np.float32([0.18]))[0]) - 0.4613) < 1e-3  # mid grey encodes to 46 %
    plate = np.full((2, 4, 3), 0.18, np.float32)
    out = apply_plate_change(plate, _warped(2, 4, 25.5), t)
    # +25.5 of 255 in display terms: 0.4613 → 0.5613, which is 0.2751 linear.
    assert abs(float(out[0, 0, 0]) - float(t.from_display(t.to_display(np.float32([0.18])) + 0.1)[0])) < 1e-6
    assert 0.27 < float(out[0, 0, 0]) < 0.28


def test_ocio_transfer_uses_the_config() -> None:
    pytest.importorskip("PyOpenColorIO")
    t = OCIOTransfer("ocio://default", "Linear Rec.709 (sRGB)", None)
    assert t.display == "sRGB Encoded Rec.709 (sRGB)"
    lin = np.array([[[0.18, 0.5, 1.0]]], np.float32)
    assert np.allclose(t.to_display(lin), SRGBTransfer().to_display(lin), atol=1e-3)
    assert np.allclose(t.from_display(t.to_display(lin)), lin, atol=1e-3)
    with pytest.raises(OptionsError, match="is not in ocio://default"):
        OCIOTransfer("ocio://default", "No Such Space", None)


# ---------------------------------------------------------------------------------------------------------
# Writer


@pytest.mark.parametrize(
    ("fmt", "ext", "c"),
    [("uint16", "tif", 3), ("uint16", "png", 4), ("half", "exr", 4), ("uint16", "dpx", 3)],
)
def test_writer_round_trips_numbers_depth_channels(tmp_path: Path, fmt: str, ext: str, c: int) -> None:
    make_sequence(tmp_path / "s", [7, 8], fmt=fmt, ext=ext, c=c)
    r = SequenceReader(tmp_path / f"s/plate.%04d.{ext}")
    (tmp_path / "out").mkdir()
    with SequenceWriter(output_pattern(tmp_path / f"out/aged.%04d.{ext}", r.info.pattern)) as w:
        for f in r:
            w.write_plate(f.number, f.plate, f.spec)
        assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == []
    for n in (7, 8):
        a, sa = read_plate(tmp_path / f"s/plate.{n:04d}.{ext}")
        b, sb = read_plate(tmp_path / f"out/aged.{n:04d}.{ext}")
        assert b.dtype == a.dtype and b.shape == a.shape and tuple(sb.channelnames) == tuple(sa.channelnames)
        assert a.tobytes() == b.tobytes()


def test_ten_bit_dpx_keeps_ten_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 1024, (4, 6, 3))
    (tmp_path / "s").mkdir()
    for n in (1, 2):
        write_image(
            tmp_path / f"s/p.{n}.dpx",
            (codes * 65535 // 1023).astype(np.uint16),
            "uint16",
            **{"oiio:BitsPerSample": 10},
        )
    r = SequenceReader(tmp_path / "s/p.#.dpx")
    assert r.info.bits == 10 and r.info.format == "uint16"
    (tmp_path / "o").mkdir()
    with SequenceWriter(output_pattern(tmp_path / "o", r.info.pattern)) as w:
        for f in r:
            w.write_plate(f.number, f.plate, f.spec)
    _, spec = read_plate(tmp_path / "o/p.1.dpx")
    assert spec.get_int_attribute("oiio:BitsPerSample") == 10
    assert read_plate(tmp_path / "o/p.1.dpx")[0].tobytes() == read_plate(tmp_path / "s/p.1.dpx")[0].tobytes()


def test_writer_abort_leaves_nothing(tmp_path: Path) -> None:
    make_sequence(tmp_path / "s", [1, 2])
    r = SequenceReader(tmp_path / "s")
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError), SequenceWriter(output_pattern(tmp_path / "out", r.info.pattern)) as w:
        for f in r:
            w.write_plate(f.number, f.plate, f.spec)
        raise RuntimeError("stop")
    assert list((tmp_path / "out").iterdir()) == []
