"""Frame-number patterns of image sequences: printf (`plate.%04d.exr`), `#` (`plate.####.dpx`) and folders.

A `SequencePattern` names the frames `folder / (prefix + number + suffix)`. `parse_pattern` reads a printf or
`#` name, `scan_sequence` finds the frames a pattern or a folder holds, `output_pattern` names the frames a
sequence is written to, and `is_sequence_path` tells a sequence name from a video file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from faceage_video.errors import InputError, OptionsError, OutputError

# Extensions read and written as sequences; .tif and .tiff are the same format.
SEQUENCE_EXTENSIONS = (".exr", ".dpx", ".tif", ".tiff", ".png")
_PRINTF = re.compile(r"%0?(\d*)d")
_HASHES = re.compile(r"#+")
# Folder scan: name = prefix + digits + extension (the frame number is the last digit run).
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class SequencePattern:
    """How the frames of a sequence are named: `folder / (prefix + number + suffix)`.

    Attributes:
        folder: where the frames are.
        prefix: the name before the number, e.g. "plate.".
        suffix: the name after it, the extension included, e.g. ".exr".
        padding: digits the number is zero-padded to; 0 = not padded.
    """

    folder: Path
    prefix: str
    suffix: str
    padding: int

    def name(self, number: int) -> str:
        return (
            f"{self.prefix}{number:0{self.padding}d}{self.suffix}"
            if self.padding
            else (f"{self.prefix}{number}{self.suffix}")
        )

    def path(self, number: int) -> Path:
        return self.folder / self.name(number)

    def __str__(self) -> str:
        return str(self.folder / f"{self.prefix}{'#' * max(self.padding, 1)}{self.suffix}")


def is_sequence_path(path: str | os.PathLike[str]) -> bool:
    """True when `path` names an image sequence: a printf or `#` pattern with an image extension, or a folder."""
    name = os.fspath(path)
    p = Path(name)
    if p.suffix.lower() in SEQUENCE_EXTENSIONS and (_PRINTF.search(p.name) or _HASHES.search(p.name)):
        return True
    return p.is_dir() or name.endswith(("/", os.sep))


def parse_pattern(path: str | os.PathLike[str]) -> SequencePattern:
    """The pattern of a printf (`%04d`) or `#` (`####`) name.

    Raises:
        OptionsError: the name has no frame-number field, or more than one.
    """
    p = Path(os.fspath(path))
    fields = list(_PRINTF.finditer(p.name)) + list(_HASHES.finditer(p.name))
    if len(fields) != 1:
        raise OptionsError(
            f"{p}: a sequence name needs exactly one frame-number field such as %04d or ####; "
            f"found {len(fields)}"
        )
    f = fields[0]
    padding = int(f.group(1) or 0) if f.group(0).startswith("%") else len(f.group(0))
    if f.group(0) == "#":
        padding = 0  # a single # means "the number, unpadded"
    return SequencePattern(p.parent, p.name[: f.start()], p.name[f.end() :], padding)


def scan_sequence(path: str | os.PathLike[str]) -> tuple[SequencePattern, dict[int, Path]]:
    """Find the frames of a sequence.

    Args:
        path: a printf or `#` pattern, or a folder holding one run of numbered frames.

    Returns:
        The pattern and the frame files by frame number (sorted by number).

    Raises:
        InputError: nothing matches, the folder holds several runs, or the extension is not supported.
    """
    name = os.fspath(path)
    p = Path(name)
    if p.is_dir():
        runs: dict[tuple[str, str], dict[int, tuple[str, Path]]] = {}
        for f in sorted(p.iterdir()):
            m = _NUMBERED.match(f.name)
            if f.name.startswith(".") or not f.is_file() or m is None:
                continue
            if m.group(3).lower() in SEQUENCE_EXTENSIONS:
                runs.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = (m.group(2), f)
        if not runs:
            exts = "/".join(SEQUENCE_EXTENSIONS)
            raise InputError(f"{name}: folder holds no numbered {exts} frames; pass a folder of frames")
        if len(runs) > 1:
            listed = ", ".join(f"{a}#{b}" for a, b in sorted(runs))
            raise InputError(
                f"{name}: folder holds several sequences ({listed}); pass one as a pattern, e.g. {p}/plate.%04d.exr"
            )
        (prefix, suffix), frames = next(iter(runs.items()))
        digits = {len(d) for d, _ in frames.values()}
        padded = len(digits) == 1 and any(d.startswith("0") for d, _ in frames.values())
        padding = digits.pop() if padded or len(digits) == 1 else 0
        pattern = SequencePattern(p, prefix, suffix, padding)
        return pattern, {n: f for n, (_, f) in sorted(frames.items())}
    pattern = parse_pattern(p)
    if pattern.suffix.lower().rsplit(".", 1)[-1] not in {e[1:] for e in SEQUENCE_EXTENSIONS}:
        raise InputError(f"{name}: unsupported image type; sequences are {', '.join(SEQUENCE_EXTENSIONS)}")
    if not pattern.folder.is_dir():
        raise InputError(f"{name}: folder {pattern.folder} does not exist; check the path")
    rx = re.compile(re.escape(pattern.prefix) + r"(\d+)" + re.escape(pattern.suffix) + "$")
    found: dict[int, Path] = {}
    for f in pattern.folder.iterdir():
        m = rx.match(f.name)
        if m is None or (pattern.padding and len(m.group(1)) < pattern.padding):
            continue
        found[int(m.group(1))] = f
    if not found:
        raise InputError(f"{name}: no frame matches the pattern; check the name and the padding")
    return pattern, dict(sorted(found.items()))


def oiio_format_name(path: Path) -> str:
    """OpenImageIO's format name for a sequence file, by its extension (KeyError for any other)."""
    ext = path.suffix.lower()
    return {".exr": "openexr", ".dpx": "dpx", ".tif": "tiff", ".tiff": "tiff", ".png": "png"}[ext]


def output_pattern(path: str | os.PathLike[str], source: SequencePattern) -> SequencePattern:
    """Where a sequence is written: a printf/`#` pattern, or a folder (frames named as the input's).

    Raises:
        OutputError: the folder is missing, the extension differs from the input's format, or the output
            names are the input's own files.
    """
    name = os.fspath(path)
    p = Path(name)
    if p.is_dir() or name.endswith(("/", os.sep)):
        out = SequencePattern(p, source.prefix, source.suffix, source.padding)
    else:
        try:
            out = parse_pattern(p)
        except OptionsError as e:
            raise OutputError(str(e)) from None
    if not out.folder.is_dir():
        raise OutputError(f"{name}: output folder {out.folder} does not exist; create it first")
    src_fmt = oiio_format_name(Path("x" + source.suffix))
    ext = Path("x" + out.suffix).suffix.lower()
    if ext not in SEQUENCE_EXTENSIONS or oiio_format_name(Path("x" + ext)) != src_fmt:
        raise OutputError(
            f"{name}: the output keeps the input's format ({source.suffix}); name it with {source.suffix}"
        )
    if out.folder.resolve() == source.folder.resolve() and (out.prefix, out.suffix) == (
        source.prefix,
        source.suffix,
    ):
        raise OutputError(f"{name}: would overwrite the input frames; choose another folder or name")
    return out
