"""Errors the library raises on bad input. Only the CLI turns them into exit codes."""

from __future__ import annotations


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
