"""Errors the library (and `training`) raise on bad input, and the exit code of each.

Only the command lines turn them into exit codes, all through `faceage_video.entry.run_app`. `EXIT_CODES`
lists every code either command line can return; the README's table is written from it.
"""

from __future__ import annotations

# Exit code of an interrupted run (128 + SIGINT), as shells report Ctrl-C.
EXIT_INTERRUPTED = 130
# Exit code of a run stopped by SIGTERM (128 + 15): kill, timeout, Slurm, Kubernetes, docker stop.
EXIT_TERMINATED = 143

# Every exit code of `faceage-video` and `python -m training`, and what it means.
EXIT_CODES: dict[int, str] = {
    1: "failure: some batch shots failed, or a checkpoint does not match its run",
    2: "options: a bad flag, option or training config",
    3: "input: a missing or unreadable video, or a dataset in the wrong layout",
    4: "output: an output that cannot be written or opened",
    5: "model: a missing or corrupt model bundle or landmarker",
    6: "live source: a camera or stream that cannot be opened or dropped for good",
    7: "cluster: Ray missing or unreachable, or a segment that failed on every retry",
    EXIT_INTERRUPTED: "Ctrl-C (or SIGTERM for a live run)",
    EXIT_TERMINATED: "SIGTERM (kill, timeout, Slurm, Kubernetes, docker stop): handled like Ctrl-C",
}


class FaceAgeError(Exception):
    """Base class: a message a user can act on, and the exit code the CLI uses for it."""

    exit_code = 1


class InputError(FaceAgeError):
    """The input is missing, unreadable, not a video, or has no video stream."""

    exit_code = 3


class OutputError(FaceAgeError):
    """The output path cannot be written: same as the input, missing folder, unknown codec."""

    exit_code = 4


class ModelError(FaceAgeError):
    """A model bundle or the landmarker model is missing or corrupt."""

    exit_code = 5


class OptionsError(FaceAgeError):
    """An option is out of range or inconsistent with another."""

    exit_code = 2


class SourceError(FaceAgeError):
    """A live source (camera, URL) cannot be opened or ended unexpectedly."""

    exit_code = 6
