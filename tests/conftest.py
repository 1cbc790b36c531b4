"""Shared fixtures: paths to ../shared/data, skipping with a reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
VIDEOS = SHARED_DATA / "videos"
UTKFACE = SHARED_DATA / "utkface"


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    """../shared/data/videos, or skip."""
    if not VIDEOS.is_dir():
        pytest.skip(f"real clips absent: {VIDEOS} not found (tests with real data need ../shared beside the repo)")
    return VIDEOS


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    """../shared/data/utkface, or skip."""
    if not UTKFACE.is_dir():
        pytest.skip(f"UTKFace absent: {UTKFACE} not found (tests with real data need ../shared beside the repo)")
    return UTKFACE
