"""A first run prints only what the tool says: native TensorFlow/MediaPipe log lines are hidden unless
-v/--verbose is given (faceage_video.quiet)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceage_video.quiet import is_native_log_line, wants_verbose
from tests.conftest import ROOT

NATIVE_SAMPLES = [
    b"I0000 00:00:1796193491.359574    8044 port.cc:153] oneDNN custom operations are on.\n",
    b"I0000 00:00:1796193491.360938    8044 cudart_stub.cc:31] Could not find cuda drivers on your machine\n",
    b"E0000 00:00:1796193491.1  8044 cuda_executor.cc:1228] failed call to cuInit: INTERNAL: CUDA error\n",
    b"W0000 00:00:1796193496.503060    8156 inference_feedback_manager.cc:121] Feedback manager requires a "
    b"model with a single signature inference. Disabling support for feedback tensors.\n",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"WARNING: Logging before InitGoogle() is written to STDERR\n",
]
OUR_LINES = [
    b"error: in.mp4: no such file; check the path\n",
    b"warning: no face found in the whole clip\n",
    b"Invalid value for '--strength': 2.0 is not in the range 0<=x<=1.\n",
    b"F0000 00:00:1796193491.1  8044 check.cc:1] Check failed: fatal lines still show\n",
]


@pytest.mark.parametrize("line", NATIVE_SAMPLES)
def test_native_log_lines_are_recognised(line: bytes) -> None:
    assert is_native_log_line(line)


@pytest.mark.parametrize("line", OUR_LINES)
def test_the_tools_own_lines_and_fatal_ones_pass(line: bytes) -> None:
    assert not is_native_log_line(line)


def test_verbose_flag_is_taken_off_the_command_line() -> None:
    assert wants_verbose(["-v", "age", "a.mp4"]) == (True, ["age", "a.mp4"])
    assert wants_verbose(["age", "a.mp4", "--verbose"]) == (True, ["age", "a.mp4"])
    assert wants_verbose(["bench", "--", "-v"]) == (False, ["bench", "--", "-v"])
    assert wants_verbose(["age", "a.mp4"]) == (False, ["age", "a.mp4"])


def test_importing_the_library_changes_no_log_switch() -> None:
    code = (
        "import os, faceage_video, faceage_video.pipeline, faceage_video.cli; "
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('GLOG_minloglevel'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["None", "None"]


def _demo(tmp: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    args = [*extra, "demo", "--seconds", "0.5", "--out-dir", str(tmp)]
    return subprocess.run(
        [sys.executable, "-m", "faceage_video", *args], capture_output=True, timeout=300, cwd=ROOT, env=env
    )


@pytest.mark.slow
def test_cli_run_prints_no_native_log_line_unless_verbose(tmp_path: Path) -> None:
    # `demo` imports TensorFlow, builds the model and runs MediaPipe: every source of start-up chatter.
    quiet = _demo(tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    leaked = [ln for ln in quiet.stderr.splitlines(keepends=True) if is_native_log_line(ln)]
    assert leaked == []
    assert b"oneDNN" not in quiet.stderr and b"cuda" not in quiet.stderr.lower()
    assert b"output:" in quiet.stdout  # the tool's own lines still arrive
    loud = _demo(tmp_path / "loud", "--verbose")
    assert loud.returncode == 0, loud.stderr[-3000:]
    # The same run with --verbose does show them, so the check above can fail.
    assert any(is_native_log_line(ln) for ln in loud.stderr.splitlines(keepends=True))


def test_errors_still_reach_stderr_when_quiet(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    missing = tmp_path / "missing.mp4"
    p = subprocess.run(
        [sys.executable, "-m", "faceage_video", "age", str(missing), "-o", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert p.returncode == 3
    assert p.stderr.strip() == f"error: {missing}: no such file; check the path"


def test_training_cli_is_quiet_too(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # export imports TensorFlow before it finds the checkpoint missing.
    cmd = [sys.executable, "-m", "training", "export", str(tmp_path / "none")]
    quiet = subprocess.run(cmd, capture_output=True, timeout=180, cwd=ROOT, env=env)
    assert quiet.returncode == 1
    assert [ln for ln in quiet.stderr.splitlines(keepends=True) if is_native_log_line(ln)] == []
    assert b"not found" in quiet.stderr
    loud = subprocess.run([*cmd, "-v"], capture_output=True, timeout=180, cwd=ROOT, env=env)
    assert any(is_native_log_line(ln) for ln in loud.stderr.splitlines(keepends=True))
