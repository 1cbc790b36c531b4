"""Errors of the training package. The entry point turns them into a message and an exit code."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: a message a user can act on."""

    exit_code = 1


class DatasetError(TrainingError):
    """A dataset path is missing, in the wrong layout, or yields an empty domain."""

    exit_code = 3


class ConfigError(TrainingError):
    """A config file is missing, malformed, or holds an out-of-range value."""

    exit_code = 2


class GateError(TrainingError):
    """A model fails a quality gate of `benchmarks.quality` (or was not judged by it); `--force` overrides."""

    exit_code = 4
