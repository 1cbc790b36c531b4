"""Mattes: one single-channel mask per frame, stored as a grey video or as a PNG sequence.

Mattes are (H, W) float32 in [0, 1] (values outside are clipped) or uint8, stored as 0..255. `MatteWriter`
picks the writer for a path (`matte_format`): `MatteVideoWriter` for .mkv/.avi (lossless FFV1 `gray`) and
.mp4/.mov (H.264, CRF 12, the matte in full-range luma, neutral chroma); `MattePngWriter` for a folder or a
printf pattern such as matte_%06d.png. Both are atomic the way `VideoWriter` is.
"""

from __future__ import annotations

import os
import re
import secrets
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OutputError
from faceage_video.media.atomic import AtomicOutput, check_target, remove
from faceage_video.media.reader import VideoInfo
from faceage_video.media.sink import AVCOL_RANGE_JPEG, EncodedOutput, SinkSpec, VideoSink

# Constant rate factor of grey H.264 mattes: visually lossless edges.
_MATTE_H264_CRF = 12

Mask8 = NDArray[np.uint8]  # (H, W) 0..255

MatteFormat = Literal["ffv1", "h264", "png"]
_PNG_PATTERN_RE = re.compile(r"%0?\d*d")
DEFAULT_MATTE_PATTERN = "matte_%06d.png"


def check_png_pattern(pattern: str) -> None:
    """Refuse a PNG file-name pattern that is not exactly one integer field (`%d`, `%06d`) plus `%%`.

    Raises:
        OutputError: another conversion (`%s`), two fields, or a malformed one, naming the fix.
    """
    fields = re.findall(r"%(%|[^%]*?[a-zA-Z])", pattern)
    ints = [f for f in fields if _PNG_PATTERN_RE.fullmatch("%" + f)]
    others = [f for f in fields if f != "%" and f not in ints]
    if len(ints) != 1 or others:
        raise OutputError(
            f"{pattern}: a PNG pattern needs exactly one frame-number field such as %06d (write % as %%), "
            f"found {', '.join('%' + f for f in fields if f != '%') or 'none'}; e.g. matte_%06d.png"
        )
    try:
        pattern % 0
    except (TypeError, ValueError) as e:
        raise OutputError(f"{pattern}: not a valid PNG pattern ({e}); use one like matte_%06d.png") from None


def matte_format(path: str | os.PathLike[str]) -> MatteFormat:
    """How `MatteWriter` stores mattes at `path`.

    A folder (existing, or named with a trailing slash) or a printf pattern ending in .png ("matte_%05d.png")
    is a PNG sequence; .mkv and .avi are lossless FFV1 grey video; .mp4 and .mov are H.264.

    Raises:
        OutputError: any other extension.
    """
    name = os.fspath(path)
    p = Path(name)
    if p.is_dir() or name.endswith(("/", os.sep)):
        return "png"
    if _PNG_PATTERN_RE.search(p.name) and p.suffix.lower() == ".png":
        check_png_pattern(p.name)
        return "png"
    suffix = p.suffix.lower()
    if suffix in (".mkv", ".avi"):
        return "ffv1"
    if suffix in (".mp4", ".mov"):
        return "h264"
    raise OutputError(
        f"{name}: matte path must be a folder, a PNG pattern like matte_%05d.png, or end in .mkv/.avi "
        "(lossless) or .mp4/.mov (H.264)"
    )


def mask_to_u8(mask: NDArray[Any], height: int, width: int) -> Mask8:
    """A matte as contiguous (H, W) uint8 0..255.

    Raises:
        ValueError: not (height, width), or neither float nor uint8.
    """
    if mask.shape != (height, width):
        raise ValueError(f"expected a ({height}, {width}) matte, got shape {mask.shape}")
    if mask.dtype == np.uint8:
        return np.ascontiguousarray(mask)
    if np.issubdtype(mask.dtype, np.floating):
        m = np.nan_to_num(mask.astype(np.float32, copy=False), nan=0.0)
        return np.ascontiguousarray(np.rint(np.clip(m, 0.0, 1.0) * 255.0).astype(np.uint8))
    raise ValueError(f"matte must be float in [0, 1] or uint8, got {mask.dtype}")


class MatteVideoWriter(EncodedOutput):
    """Writes mattes as a grey video: .mkv/.avi lossless FFV1 `gray`, .mp4/.mov H.264 (CRF 12).

    Timing follows `VideoWriter`: each frame keeps its pts, and with `start_s` set the first frame starts at
    0. Atomic: written to a hidden temporary file, renamed onto `path` by `close()`.
    """

    def __init__(self, path: str | os.PathLike[str], info: VideoInfo, start_s: float | None = None) -> None:
        """Check the target and open it.

        Raises:
            OutputError: `path` is the input, its folder is missing, or its extension is not a video matte.
        """
        self.info = info
        self.format: MatteFormat = matte_format(path)
        if self.format == "png":
            raise OutputError(f"{path}: is a PNG sequence; use MattePngWriter (or MatteWriter)")
        self._open(check_target(path, [info.path]))
        if self.format == "ffv1":
            encoder, pix_fmt, opts = "ffv1", "gray", {"level": "3"}
        else:
            odd = info.width % 2 == 1 or info.height % 2 == 1
            encoder, pix_fmt = "libx264", ("yuv444p" if odd else "yuv420p")
            opts = {"crf": str(_MATTE_H264_CRF), "preset": "medium"}
        colour = {"color_range": AVCOL_RANGE_JPEG}
        spec = SinkSpec.of(info, encoder, pix_fmt, opts, colour, rebase=start_s is not None)
        try:
            self._sink = VideoSink(self._container, self.path, spec)
        except BaseException:
            self.abort()
            raise

    def write(self, mask: NDArray[Any], pts: int | None, time_base: Fraction) -> None:
        """Store one matte.

        Args:
            mask: (H, W) float in [0, 1] or uint8, H, W = `info.height`, `info.width`.
            pts: as `VideoWriter.write`.
            time_base: seconds per pts tick.

        Raises:
            ValueError: wrong shape or dtype, or a pts that does not increase.
            OutputError: writing failed, or the writer is closed.
        """
        if self._done:
            raise OutputError(f"{self.path}: matte writer is closed; open a new MatteWriter")
        m8 = mask_to_u8(mask, self.info.height, self.info.width)
        sink = self._sink
        out_pts = sink.next_pts(pts, time_base)
        grey = av.VideoFrame.from_ndarray(m8, format="gray")
        if sink.pix_fmt != "gray":
            # Full range in and out keeps luma equal to the matte; chroma is neutral (128).
            grey = grey.reformat(
                format=sink.pix_fmt, src_color_range=AVCOL_RANGE_JPEG, dst_color_range=AVCOL_RANGE_JPEG
            )
        sink.encode(grey, out_pts)


class MattePngWriter(AtomicOutput):
    """Writes mattes as a PNG sequence: frame i (0-based count of written mattes) goes to `pattern % i`.

    Each file appears complete (written hidden, then renamed); `abort()` deletes the files this writer made.
    """

    def __init__(self, path: str | os.PathLike[str], info: VideoInfo) -> None:
        """Check the folder.

        Args:
            path: a folder (existing, or named with a trailing slash; files `DEFAULT_MATTE_PATTERN`) or a
                printf pattern ending in .png.

        Raises:
            OutputError: the folder is missing or the pattern is malformed.
        """
        self.info = info
        self.format: MatteFormat = "png"
        self._done = False
        self._count = 0
        name = os.fspath(path)
        if Path(name).is_dir() or name.endswith(("/", os.sep)):
            folder, pattern = Path(name), DEFAULT_MATTE_PATTERN
        else:
            folder, pattern = Path(name).parent, Path(name).name
            check_png_pattern(pattern)
        if not folder.is_dir():
            raise OutputError(f"{name}: matte folder {folder} does not exist; create it first")
        self.folder, self.pattern = folder, pattern
        self.path = folder / pattern

    def write(self, mask: NDArray[Any], pts: int | None, time_base: Fraction) -> None:
        """Store one matte as the next PNG; `pts` and `time_base` are ignored (the file number counts).

        Raises:
            ValueError: wrong shape or dtype.
            OutputError: writing failed, or the writer is closed.
        """
        if self._done:
            raise OutputError(f"{self.path}: matte writer is closed; open a new MatteWriter")
        m8 = mask_to_u8(mask, self.info.height, self.info.width)
        final = self.folder / (self.pattern % self._count)
        ok, buf = cv2.imencode(".png", m8)
        if not ok:
            raise OutputError(f"{final}: PNG encoding failed")
        temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        try:
            temp.write_bytes(buf.tobytes())
            os.replace(temp, final)
        except OSError as e:
            remove(temp)
            raise OutputError(f"{final}: cannot be written ({e})") from e
        self._count += 1

    def close(self) -> None:
        """Finish; every PNG is already under its final name."""
        self._done = True

    def abort(self) -> None:
        """Delete the PNGs written so far. Safe to call twice."""
        if self._done:
            return
        self._done = True
        for i in range(self._count):
            remove(self.folder / (self.pattern % i))


def MatteWriter(
    path: str | os.PathLike[str], info: VideoInfo, start_s: float | None = None
) -> MatteVideoWriter | MattePngWriter:
    """The matte writer for `path` (see `matte_format`); `start_s` as `VideoWriter`'s.

    Raises:
        OutputError: `path` is the input, its folder is missing, or its extension is not a matte format.
    """
    if matte_format(path) == "png":
        return MattePngWriter(path, info)
    return MatteVideoWriter(path, info, start_s)
