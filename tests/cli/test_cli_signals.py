"""SIGTERM (kill, timeout, Slurm, Kubernetes, docker stop) stops `age` and `batch` like Ctrl-C: outputs
aborted, temporary files removed, exit 143, one line saying so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, write_ffv1


def _clip(path: Path, n: int = 2400, size: int = 128) -> Path:
    # Long enough that the run is still going when the signal comes: a faceless 400-frame clip finished
    # inside the wait on a quiet machine, and the signal then hit the exiting interpreter (rc -15).
    frames = [np.full((size, size, 3), (i * 3) % 256, np.uint8) for i in range(n)]
    return write_ffv1(path, frames)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def _terminate_mid_run(argv: list[str], watch: Path) -> subprocess.CompletedProcess[str]:
    """Start the CLI, wait for its first hidden temporary file under `watch`, then send SIGTERM."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceage_video", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 180
    while not any(".partial" in n for n in _hidden(watch)):
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            pytest.fail(
                f"the run ended (rc {proc.returncode}) before writing a temporary file: {err[-2000:]}"
            )
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the run: the output is open and the model loads or frames flow
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _stderr_lines(err: str) -> list[str]:
    # TensorFlow and MediaPipe log to stderr from C++; keep the tool's own lines.
    return [
        ln for ln in err.splitlines() if ln.startswith(("terminated", "error", "interrupted", "Traceback"))
    ]


def test_sigterm_during_age_aborts_the_outputs_and_exits_143(tiny_bundle: Path, tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mkv")
    out = tmp_path / "out"
    out.mkdir()
    res = _terminate_mid_run(
        ["age", str(src), "-o", str(out / "o.mkv"), "--codec", "ffv1", "--model", str(tiny_bundle), "--no-xla",
         "--matte", str(out / "m.mkv"), "--report", str(out / "r.json")],
        out,
    )  # fmt: skip
    assert res.returncode == 143, res.stderr[-2000:]
    assert _stderr_lines(res.stderr) == ["terminated (SIGTERM): outputs aborted, no output was written"]
    assert list(out.iterdir()) == [], "no output, matte, report or hidden temporary file may be left"


def test_sigterm_during_batch_removes_the_temporaries_and_exits_143(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    job = tmp_path / "job"
    job.mkdir()
    _clip(job / "a.mkv")
    (job / "aged").mkdir()
    (job / "shots.csv").write_text("id,input,output\na,a.mkv,aged/a.mkv\n")
    res = _terminate_mid_run(
        ["batch", str(job / "shots.csv"), "--codec", "ffv1", "--model", str(tiny_bundle), "--no-xla"], job
    )
    assert res.returncode == 143, res.stderr[-2000:]
    assert _stderr_lines(res.stderr) == ["terminated (SIGTERM): outputs aborted, no output was written"]
    assert _hidden(job) == [] and list((job / "aged").iterdir()) == []
