"""Errors of the training package: `faceage_video.errors`' hierarchy, so one entry point maps them all.

`TrainingError` is a `FaceAgeError`; a dataset error is also an `InputError` (exit 3) and a config error an
`OptionsError` (exit 2), so `except InputError` catches a bad dataset as it catches a bad video.
"""

from __future__ import annotations

from faceage_video.errors import FaceAgeError, InputError, ModelError, OptionsError


class TrainingError(FaceAgeError):
    """A training step that cannot go on: a checkpoint that does not match its run, none to export."""

    exit_code = 1


class DatasetError(InputError, TrainingError):
    """A dataset path is missing, in the wrong layout, or yields an empty domain."""


class ConfigError(OptionsError, TrainingError):
    """A config file is missing, malformed, or holds an out-of-range value."""


class GateError(ModelError, TrainingError):
    """A model fails a quality gate of `benchmarks.quality`, or was not judged by it (exit 5, as a bad model);
    `--force` exports anyway."""
