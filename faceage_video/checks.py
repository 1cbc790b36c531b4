"""Checks made before any work: outputs that would collide or fail late, the input/output forms, memory.

Each refuses with an error naming the cause and the fix, so a run that would fail fails at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from faceage_video.errors import InputError, OutputError
from faceage_video.media.atomic import check_writable_file, same_file
from faceage_video.media.matte import matte_format
from faceage_video.media.patterns import is_sequence_path
from faceage_video.media.reader import VideoInfo
from faceage_video.types import Frame

if TYPE_CHECKING:
    from faceage_video.options import AgeOptions

# Bytes all three inter-stage queues may hold together (see the module docstring).
QUEUE_BUDGET_BYTES = 384 * 2**20
# Bytes one in-flight frame costs per pixel: the RGB input (3), the RGB output (3), the float32 matte (4).
FRAME_COST_PER_PX = 10
# Frames alive beyond the queues: one in each worker's hands and one being pasted (see the docstring).
_FRAMES_IN_HAND = 3


def check_outputs(src: str, dst: str, opts: AgeOptions) -> None:
    """Refuse, before any work, extra outputs that would overwrite the input or another output, a report that
    could not be written (missing or read-only folder: it is written last, so it would fail only after the
    whole run), and a malformed matte pattern."""
    ex = opts.extras
    extra = (("--matte", ex.matte), ("--side-by-side", ex.side_by_side), ("--report", ex.report))
    named = [("output", dst)] + [(what, path) for what, path in extra if path]
    for i, (what, path) in enumerate(named):
        if same_file(path, src):
            raise OutputError(f"{path}: {what} is the input file; choose a different output path")
        for other, other_path in named[:i]:
            if same_file(path, other_path):
                raise OutputError(f"{path}: {what} and {other} are the same file; give each its own path")
    if ex.report:
        check_writable_file(ex.report, "--report", [("input", src), *named[:-1]])
    # A bad PNG pattern fails now, not at the first frame; a sequence input's matte may be a sequence pattern
    # of any image format (written by the sequence writer, checked there).
    if ex.matte and not (is_sequence_path(src) and is_sequence_path(ex.matte)):
        matte_format(ex.matte)


def check_sequence_io(src: str, dst: str, opts: AgeOptions) -> bool:
    """Whether the input is an image sequence; refuses output forms that do not fit the input.

    Raises:
        OutputError: a sequence output (or `matte_alpha`) without a sequence input.
    """
    seq_in, seq_out = is_sequence_path(src), is_sequence_path(dst)
    if seq_out and not seq_in:
        raise OutputError(
            f"{dst}: an image-sequence output needs an image-sequence input; write a video file instead"
        )
    if opts.extras.matte_alpha and not seq_out:
        raise OutputError(f"{dst}: --matte-alpha needs an image-sequence output, e.g. out.%04d.exr")
    return seq_in


def can_copy_input(src: str, dst: str, opts: AgeOptions) -> bool:
    """Whether a clip without faces may be handed back as a byte copy: whole clip, same container, audio
    kept, and a local file."""
    return (
        opts.reader.start_s is None
        and opts.reader.end_s is None
        and Path(src).suffix.lower() == Path(dst).suffix.lower()
        and opts.writer.audio
        and os.path.isfile(src)
    )


def queue_frames(width: int, height: int, queue_size: int) -> int:
    """Frames each inter-stage queue may hold for frames of this size: `queue_size`, capped by the byte
    budget, at least 1."""
    per_queue = QUEUE_BUDGET_BYTES // 3
    return max(1, min(queue_size, per_queue // max(1, width * height * FRAME_COST_PER_PX)))


def pending_cap(image: Frame) -> int:
    """Most frames that may wait for one generator batch: a queue's share of the byte budget, at least 1."""
    h, w = image.shape[:2]
    return queue_frames(w, h, 1 << 30)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else physical memory); None if
    unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_frame_memory(info: VideoInfo, batch_size: int, queue_size: int) -> int:
    """Refuse frames too large for this machine; return the frames each queue may hold.

    Raises:
        InputError: even one frame a queue (plus the generator batch and the frames in hand) needs more than
            the available memory; the message names the size, the need and the fix.
    """
    q = queue_frames(info.width, info.height, queue_size)
    waiting = min(batch_size, queue_frames(info.width, info.height, 1 << 30))  # see pending_cap
    frame = info.width * info.height * FRAME_COST_PER_PX
    need = (3 * q + waiting + _FRAMES_IN_HAND) * frame
    have = available_memory()
    if have is not None and need > have:
        raise InputError(
            f"{info.path}: {info.width}×{info.height} frames need about {need / 2**30:.1f} GiB here "
            f"({3 * q + waiting + _FRAMES_IN_HAND} frames in flight) but {have / 2**30:.1f} GiB is "
            "available; lower --batch-size, free memory, or downscale the clip first"
        )
    return q
