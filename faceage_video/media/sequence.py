"""Image sequences in and out (EXR, DPX, TIFF, PNG) at their own bit depth, with OpenImageIO.

A sequence is named (see `patterns`) by a printf pattern (`plate.%04d.exr`), a `#` pattern (`plate.####.dpx`, one `#` per
digit) or a folder holding one run of numbered frames. `SequenceReader` checks every frame's header before
anything is written, and refuses a missing frame (unless `allow_gaps`, which holds the previous frame and
reports it), mixed sizes, mixed formats and channel layouts other than RGB / RGBA.

Each frame comes as a `PlateFrame`: the full-precision plate (uint8, uint16, half or float, channels as
stored) plus the 8-bit sRGB picture the face stages and the model need. The change computed on that
picture is applied back to the plate by `plates.apply_plate_change` at the plate's precision, in its own
space:
- integer plates (PNG, TIFF, DPX) are display-referred: the change is scaled to the plate's range;
- float plates (EXR) are scene-linear: converted to display-referred with OpenColorIO when a config is
  given (`SequenceOptions.ocio`, `colorspace`), else with the sRGB transfer function (IEC 61966-2-1, on
  linear Rec.709 primaries), and the change goes back through the inverse, so it lands in linear light.
Pixels the mask does not reach are copied, not recomputed, so they stay bit-identical in every format.

`SequenceWriter` writes each frame under its input frame number, in the input's format, bit depth,
channels and metadata (the input's ImageSpec is reused: compression, DPX/EXR attributes and so on where
OpenImageIO keeps them). Frames go to hidden temporary files and are renamed onto their names only by
`close()`, so an error leaves nothing under the output names.

OpenImageIO reads 10-bit DPX/TIFF as uint16 (codes scaled to 0..65535) and writes them back to the same
10-bit codes, so a 10-bit frame round-trips exactly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import InputError, OptionsError, OutputError
from faceage_video.media.atomic import AtomicOutput
from faceage_video.media.patterns import SequencePattern, oiio_format_name, scan_sequence
from faceage_video.media.plates import (
    IntegerTransfer,
    OCIOTransfer,
    Plate,
    PlateTransfer,
    SRGBTransfer,
    display_u8,
)
from faceage_video.media.reader import DecodedFrame, VideoInfo

# OpenImageIO pixel types a plate may have.
_PLATE_FORMATS: dict[str, type[np.generic]] = {
    "uint8": np.uint8,
    "uint16": np.uint16,
    "half": np.float16,
    "float": np.float32,
}
_LAYOUTS = (("R", "G", "B"), ("R", "G", "B", "A"))


def _oiio() -> Any:
    import OpenImageIO as oiio  # imported on use: most runs read videos

    return oiio


# ----------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class SequenceOptions:
    """Options of `SequenceReader`.

    Attributes:
        fps: frames per second of the clip (a sequence does not store one); frame n is at (n − first) / fps.
        allow_gaps: fill a missing frame with the previous one (and report it) instead of refusing.
        ocio: OpenColorIO config (path or `ocio://` URI) for float plates; None uses the sRGB transfer.
        colorspace: the plates' colour space in `ocio`; None is the config's scene_linear role.
        display_colorspace: the display-referred sRGB space the model sees; None picks a known sRGB name.
    """

    fps: Fraction = Fraction(24)
    allow_gaps: bool = False
    ocio: str | None = None
    colorspace: str | None = None
    display_colorspace: str | None = None

    def __post_init__(self) -> None:
        if not self.fps > 0 or Fraction(self.fps).denominator > 1001:
            raise OptionsError(f"--fps must be a positive rate such as 24, 25 or 24000/1001; got {self.fps}")
        if self.ocio is None and (self.colorspace or self.display_colorspace):
            raise OptionsError("--colorspace needs --ocio CONFIG (the config that defines it)")


@dataclass(frozen=True)
class SequenceInfo:
    """Facts of a checked sequence.

    Attributes:
        pattern: how its frames are named.
        numbers: the frame numbers present, ascending. missing: numbers absent between the first and last.
        width, height: pixels. channels: channel names, ("R", "G", "B") or with "A".
        format: OpenImageIO pixel type: "uint8", "uint16", "half" or "float".
        bits: bits per sample as stored (10 for a 10-bit DPX read as uint16).
        file_format: OpenImageIO format name ("openexr", "dpx", "tiff", "png").
        linear: float plates are scene-linear; integer ones display-referred.
        video: the same facts as a `VideoInfo`, for the stages and a video writer.
    """

    pattern: SequencePattern
    numbers: tuple[int, ...]
    missing: tuple[int, ...]
    width: int
    height: int
    channels: tuple[str, ...]
    format: str
    bits: int
    file_format: str
    linear: bool
    video: VideoInfo


@dataclass(frozen=True)
class PlateFrame(DecodedFrame):
    """A `DecodedFrame` from a sequence: `image` is the 8-bit sRGB picture, `plate` the stored pixels.

    Attributes:
        plate: (H, W, C) full precision, as `Plate`.
        number: the frame number in the file name.
        transfer: how `plate` maps to `image` (and a change back).
        spec: the frame's OpenImageIO ImageSpec (format, channels, metadata), reused when writing.
        filled: the frame was missing and holds the previous frame (`allow_gaps`).
    """

    plate: Plate = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8))
    number: int = 0
    transfer: Any = None
    spec: Any = None
    filled: bool = False


def _open_image(path: Path) -> Any:
    oiio = _oiio()
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)  # keep straight alpha as stored, no (un)premultiply
    inp = oiio.ImageInput.open(str(path), config)
    if inp is None:
        raise InputError(
            f"{path}: cannot be read as an image ({oiio.geterror()}); check that it is not truncated"
        )
    return inp


def read_spec(path: Path) -> Any:
    """The ImageSpec of one frame (header only)."""
    inp = _open_image(path)
    try:
        return inp.spec()
    finally:
        inp.close()


def read_plate(path: Path) -> tuple[Plate, Any]:
    """The pixels of one frame in their stored type, (H, W, C), and its ImageSpec."""
    inp = _open_image(path)
    try:
        spec = inp.spec()
        data = inp.read_image(0, 0, 0, spec.nchannels, str(spec.format))
        if data is None:
            raise InputError(f"{path}: pixels cannot be read ({inp.geterror()}); the file may be truncated")
        return np.ascontiguousarray(np.asarray(data).reshape(spec.height, spec.width, spec.nchannels)), spec
    finally:
        inp.close()


class SequenceReader:
    """Reads a checked image sequence as `PlateFrame`s; a context manager like `VideoReader`.

    Every frame's header is checked when the reader is made, so a bad frame fails before any output exists.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: SequenceOptions = SequenceOptions(),
        start_s: float | None = None,
        end_s: float | None = None,
    ) -> None:
        """Find and check the frames.

        Raises:
            InputError: no frames, a missing frame (without `allow_gaps`), mixed sizes, formats or channels,
                an unsupported channel layout or pixel type, or an unreadable header.
            OptionsError: a bad OpenColorIO config or colour space.
        """
        self.path = os.fspath(path)
        self.options = options
        self.warnings: list[str] = []
        self._start_s, self._end_s = start_s, end_s
        pattern, files = scan_sequence(self.path)
        self._files = files
        numbers = tuple(files)
        missing = tuple(sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers)))
        if missing and not options.allow_gaps:
            shown = ", ".join(str(n) for n in missing[:8]) + (" …" if len(missing) > 8 else "")
            raise InputError(
                f"{pattern}: {len(missing)} frame(s) missing in {numbers[0]}–{numbers[-1]} ({shown}); restore "
                "them, or pass --allow-gaps to hold the previous frame"
            )
        first = read_spec(files[numbers[0]])
        ref = self._describe(files[numbers[0]], first)
        for n in numbers[1:]:
            got = self._describe(files[n], read_spec(files[n]))
            for what, a, b in zip(("size", "channels", "pixel type", "file format"), ref, got, strict=True):
                if a != b:
                    raise InputError(
                        f"{files[n]}: {what} {b} differs from frame {numbers[0]}'s {a}; every frame of a "
                        "sequence must match (re-export the odd frames)"
                    )
        (width, height), channels, fmt, file_format = ref
        if channels not in _LAYOUTS:
            raise InputError(
                f"{files[numbers[0]]}: channels {', '.join(channels)} are not supported; convert the plate to "
                "RGB or RGBA"
            )
        if fmt not in _PLATE_FORMATS:
            raise InputError(
                f"{files[numbers[0]]}: pixel type {fmt} is not supported; use 8/10/16-bit integer, half or float"
            )
        linear = fmt in ("half", "float")
        if options.ocio is not None and not linear:
            raise OptionsError(
                "--ocio converts float (EXR) plates; integer plates are display-referred already"
            )
        self.transfer: PlateTransfer
        if linear:
            self.transfer = (
                OCIOTransfer(options.ocio, options.colorspace, options.display_colorspace)
                if options.ocio
                else SRGBTransfer()
            )
        else:
            self.transfer = IntegerTransfer(float(np.iinfo(np.dtype(_PLATE_FORMATS[fmt])).max))
        bits = int(
            first.get_int_attribute("oiio:BitsPerSample", 0) or np.dtype(_PLATE_FORMATS[fmt]).itemsize * 8
        )
        fps = Fraction(options.fps)
        count = numbers[-1] - numbers[0] + 1
        video = VideoInfo(
            path=str(pattern),
            width=width,
            height=height,
            rotation=0,
            fps=fps,
            time_base=1 / fps,
            frame_count=count,
            duration_s=float(count / fps),
            codec=file_format,
            pix_fmt=f"{''.join(channels).lower()}{bits}",
            color_range=None,
            colorspace=None,
            color_primaries=None,
            color_trc=None,
            audio=(),
        )
        self.info = SequenceInfo(
            pattern, numbers, missing, width, height, channels, fmt, bits, file_format, linear, video
        )
        if missing:
            self.warnings.append(
                f"{pattern}: {len(missing)} missing frame(s) filled with the previous frame: "
                + ", ".join(str(n) for n in missing[:20])
            )

    @staticmethod
    def _describe(path: Path, spec: Any) -> tuple[Any, ...]:
        if (spec.x, spec.y, spec.full_width, spec.full_height) != (0, 0, spec.width, spec.height):
            raise InputError(
                f"{path}: data window differs from the display window; flatten it to the full frame first"
            )
        fmt = str(spec.format)
        return (spec.width, spec.height), tuple(spec.channelnames), fmt, oiio_format_name(path)

    def __enter__(self) -> SequenceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between frames; kept for symmetry with `VideoReader`."""

    def __iter__(self) -> Iterator[PlateFrame]:
        """Yield every frame from the first number to the last (filled ones included), in order."""
        info = self.info
        first = info.numbers[0]
        tb = info.video.time_base
        prev: tuple[Plate, Any] | None = None
        index = 0
        for n in range(first, info.numbers[-1] + 1):
            t = float((n - first) * tb)
            if self._start_s is not None and t < self._start_s - 1e-9:
                continue
            if self._end_s is not None and t >= self._end_s - 1e-9:
                return
            filled = n not in self._files
            if filled:
                if prev is None:  # a gap before start_s: read the frame before it
                    before = max(k for k in self._files if k < n)
                    prev = read_plate(self._files[before])
                plate, spec = prev
            else:
                plate, spec = read_plate(self._files[n])
                prev = (plate, spec)
            yield PlateFrame(
                index=index,
                image=display_u8(plate, self.transfer),
                pts=n - first,
                time_base=tb,
                time_s=t,
                plate=plate,
                number=n,
                transfer=self.transfer,
                spec=spec,
                filled=filled,
            )
            index += 1


# ----------------------------------------------------------------------------------------------------------
# Writing


class SequenceWriter(AtomicOutput):
    """Writes frames under their own numbers, as `pattern`, each with the ImageSpec it is given.

    Atomic as a whole: frames go to hidden temporary files beside their names, renamed by `close()`;
    `abort()` (or an exception in the `with` block) deletes them and leaves nothing under the output names.
    """

    def __init__(self, pattern: SequencePattern) -> None:
        self.pattern = pattern
        self.path = str(pattern)
        self.warnings: list[str] = []
        self._temps: dict[int, Path] = {}
        self._done = False

    @property
    def frames_written(self) -> int:
        return len(self._temps)

    def write_plate(self, number: int, plate: Plate, spec: Any) -> None:
        """Write one frame (hidden until `close()`).

        Args:
            number: the frame number in the file name.
            plate: (H, W, C) pixels in `spec`'s format.
            spec: the OpenImageIO ImageSpec to write with (size, channels, format, metadata).

        Raises:
            OutputError: the writer is closed, the frame number repeats, or the file cannot be written.
        """
        oiio = _oiio()
        if self._done:
            raise OutputError(f"{self.path}: writer is closed; open a new SequenceWriter")
        if number in self._temps:
            raise OutputError(f"{self.pattern.path(number)}: frame {number} written twice")
        final = self.pattern.path(number)
        temp = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.partial{final.suffix}")
        spec = oiio.ImageSpec(spec)
        spec.attribute("oiio:UnassociatedAlpha", 1)
        out = oiio.ImageOutput.create(str(temp))
        if out is None or not out.open(str(temp), spec):
            raise OutputError(f"{final}: cannot be created ({oiio.geterror()})")
        self._temps[number] = temp
        ok = out.write_image(np.ascontiguousarray(plate))
        err = out.geterror()
        out.close()
        if not ok:
            raise OutputError(f"{final}: writing failed ({err})")

    def close(self) -> None:
        """Rename every frame onto its name.

        Raises:
            OutputError: a rename failed; the frames not yet renamed are removed.
        """
        if self._done:
            return
        try:
            for number, temp in sorted(self._temps.items()):
                os.replace(temp, self.pattern.path(number))
        except OSError as e:
            self.abort()
            raise OutputError(f"{self.path}: could not be finished ({e})") from e
        self._done = True

    def abort(self) -> None:
        """Delete the frames not yet renamed; safe to call twice."""
        self._done = True
        for temp in self._temps.values():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def matte_spec(frame: PlateFrame) -> Any:
    """An ImageSpec for a matte frame beside `frame`: one grey channel "Y", the plate's size and type."""
    oiio = _oiio()
    spec = oiio.ImageSpec(frame.spec)
    spec.nchannels = 1
    spec.channelnames = ("Y",)
    spec.alpha_channel = -1
    return spec


def matte_plate(matte: NDArray[np.float32], dtype: Any) -> Plate:
    """A (H, W) float matte in [0, 1] as a plate channel of `dtype`: (H, W, 1)."""
    m = np.clip(np.nan_to_num(matte.astype(np.float32), nan=0.0), 0.0, 1.0)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.rint(m * top).astype(dtype)[..., None]
    return m.astype(dtype)[..., None]


def with_matte_alpha(frame: PlateFrame, plate: Plate, matte: NDArray[np.float32]) -> tuple[Plate, Any]:
    """The RGB plate with the matte appended as its alpha channel, and the matching ImageSpec.

    Raises:
        OptionsError: the plate already has an alpha channel (write the matte as its own sequence).
    """
    if plate.shape[2] != 3:
        raise OptionsError(
            "the input has an alpha channel already; write the matte as its own sequence (--matte PATTERN)"
        )
    oiio = _oiio()
    spec = oiio.ImageSpec(frame.spec)
    spec.nchannels = 4
    spec.channelnames = ("R", "G", "B", "A")
    spec.alpha_channel = 3
    return np.concatenate([plate, matte_plate(matte, plate.dtype)], axis=2), spec
