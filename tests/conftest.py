"""Shared fixtures: paths to ../shared/data (skipping with a reason where it is absent), a tiny untrained
model bundle, and real clips trimmed to a second or two. The plain helpers they use are in `tests/helpers.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import (
    MPEG4_CLIP,
    SHORT_CLIP,
    SHORT_SECONDS,
    UTKFACE,
    VIDEOS,
    make_tiny_bundle,
    trim_copy,
    trim_reencode,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    """../shared/data/videos, or skip."""
    if not VIDEOS.is_dir():
        pytest.skip(
            f"real clips absent: {VIDEOS} not found (tests with real data need ../shared beside the repo)"
        )
    return VIDEOS


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    """../shared/data/utkface, or skip."""
    if not UTKFACE.is_dir():
        pytest.skip(
            f"UTKFace absent: {UTKFACE} not found (tests with real data need ../shared beside the repo)"
        )
    return UTKFACE


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny untrained bundle (session-wide; copy it before damaging it)."""
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def short_clip(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """liveportrait_d12 (512², H.264 + AAC, one face) trimmed to 1.5 s: 38 frames, audio kept."""
    return trim_reencode(
        videos_dir / SHORT_CLIP, tmp_path_factory.mktemp("clips") / "d12_short.mp4", SHORT_SECONDS
    )


@pytest.fixture(scope="session")
def mpeg4_clip(videos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sadtalker_wda_aoc (512², MPEG-4 Part 2 + AAC), packet-copied up to its keyframe at 1.44 s."""
    return trim_copy(videos_dir / MPEG4_CLIP, tmp_path_factory.mktemp("clips") / "aoc_short.mp4", 1.4)
