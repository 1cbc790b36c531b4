"""Atomic outputs: hidden temporary names beside the target, commit by rename, abort by delete.

Every output of the project is written under a temporary name in the target's own folder and renamed onto
the target only when complete, so nothing ever appears under the final name half-written; an abort (any
exception, Ctrl-C included) deletes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import av

from faceage_video.errors import OutputError


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same inode when both exist, else the same resolved path."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_target(path: str | os.PathLike[str], protected: list[str]) -> Path:
    """Refuse a target that would overwrite an input or cannot be created.

    Raises:
        OutputError: `path` is one of `protected`, a folder, or in a missing or unwritable folder.
    """
    target = Path(os.fspath(path))
    for src in protected:
        if same_file(target, src):
            raise OutputError(f"{target}: is the input file; choose a different output path")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name such as {target / 'out.mp4'}")
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{target}: output folder {parent} is not writable; pick another folder")
    return target


def check_writable_file(path: str | os.PathLike[str], what: str, protected: list[tuple[str, str]]) -> Path:
    """Refuse, before any work, a small output file (a report, stats) that could not be written at the end.

    Args:
        path: the file to be written later (atomically, beside itself).
        what: how the user named it, e.g. "--report".
        protected: (name, path) pairs it must not be: the input and every other output.

    Raises:
        OutputError: it is one of `protected`, a folder, in a missing folder, or in a folder that refuses a
            new file (read-only, full, no permission); the message names the fix.
    """
    target = Path(os.fspath(path))
    for name, other in protected:
        if other and same_file(target, other):
            raise OutputError(f"{target}: {what} is the same file as the {name}; give it its own path")
    if target.is_dir():
        raise OutputError(f"{target}: {what} is a folder; give a file name such as {target / 'out.json'}")
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"{target}: {what} folder {folder} does not exist; create it first")
    # os.access says yes to root on a read-only mount: creating a file is the only sure test.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=folder)
    except OSError as e:
        raise OutputError(
            f"{target}: {what} folder {folder} is not writable ({e.strerror}); pick another folder"
        ) from None
    os.close(fd)
    remove(Path(probe))
    return target


def _replace_atomic(
    path: str | os.PathLike[str], suffix: str, fill: Callable[[int, Path], None], what: str
) -> None:
    """Create a random, exclusive temporary file beside `path`, `fill` it (its fd, its path), rename it onto
    `path`; on an OS error remove it and raise `OutputError` saying `what` failed."""
    target = Path(os.fspath(path))
    temp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
        temp = Path(name)
        fill(fd, temp)
        os.replace(temp, target)
    except OSError as e:
        if temp is not None:
            remove(temp)
        raise OutputError(
            f"{target}: {what} ({type(e).__name__}: {e}); free space or pick another folder"
        ) from e


def write_file_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to a randomly named, exclusively created file beside `path`, then rename it onto `path`.

    Raises:
        OutputError: the write or the rename failed (full disk, read-only folder); `path` is untouched.
    """

    def fill(fd: int, temp: Path) -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    _replace_atomic(path, ".partial", fill, "cannot be written")


def copy_file_atomic(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Copy `source` to a randomly named, exclusively created file beside `path`, then rename it onto `path`.

    The temporary name is unpredictable and created with O_EXCL (`tempfile.mkstemp`), so a symlink planted
    beside the output is never followed.

    Raises:
        OutputError: the copy or the rename failed (full disk, read-only folder); `path` is untouched.
    """

    def fill(fd: int, temp: Path) -> None:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        shutil.copymode(source, temp)

    _replace_atomic(path, ".copy", fill, "copying the input failed")


def temp_path(target: Path) -> Path:
    """Hidden sibling of `target` with the same extension, so FFmpeg picks the same muxer."""
    return target.with_name(f".{target.stem}.{secrets.token_hex(4)}.partial{target.suffix}")


def remove(path: Path) -> None:
    """Delete `path` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def commit(path: Path, temp: Path, finish: Callable[[], None], abort: Callable[[], None]) -> None:
    """Run `finish` (flush and close the file at `temp`), then rename `temp` onto `path`.

    Any failure, Ctrl-C included, calls `abort` first, so nothing is ever left under `path`.

    Raises:
        OutputError: finishing (FFmpeg or OS error) or renaming failed.
    """
    try:
        finish()
        os.replace(temp, path)
    except (av.FFmpegError, OSError) as e:
        abort()
        raise OutputError(f"{path}: could not be finished ({type(e).__name__}: {e})") from e
    except BaseException:
        abort()
        raise


class AtomicOutput:
    """Context-manager behaviour of the writers: a normal exit commits (`close`), any exception aborts."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
