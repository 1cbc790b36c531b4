"""Keep the native libraries' start-up chatter off a command-line user's terminal.

TensorFlow 2.21, XLA, absl and MediaPipe write log lines straight to file descriptor 2 from C++, before and
outside Python's control ("oneDNN custom operations are on", "Could not find cuda drivers", "E0000 ... failed
call to cuInit", "Feedback manager requires a model with a single signature inference"). TF 2.21 logs
through absl before `absl::InitializeLog()`, and that path ignores `TF_CPP_MIN_LOG_LEVEL`, so environment
variables alone do not silence it.

`quiet_native_logs()` therefore does two things, once, before TensorFlow or MediaPipe is imported:
1. sets the libraries' own switches (`TF_CPP_MIN_LOG_LEVEL`, `GLOG_minloglevel`, absl's Python verbosity,
   the `tensorflow` Python logger), for whatever still honours them;
2. points fd 2 at a pipe whose reader thread drops the lines in the native log format (glog/absl
   `I0000 00:00:… file.cc:12] …`, their "before absl::InitializeLog()" banner, TF's CPU-feature note) and
   forwards every other byte to the real stderr, in order. Fatal (`F…`) lines still pass.

Only the CLI entry points call it (`faceage-video`, `python -m training`); `-v/--verbose` skips it. Importing
`faceage_video` as a library changes nothing unless the caller asks for it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import threading

# The glog/absl prefix: severity letter (Info, Warning, Error), MMDD, time, thread id, file:line].
# Before logging is initialised the clock reads 00:00:<seconds since the epoch>.
_NATIVE_LINE = re.compile(rb"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]*\] ")
# Lines the native libraries print without that prefix.
_NATIVE_EXTRA = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"WARNING: Logging before InitGoogle() is written to STDERR",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"To enable the following instructions:",
)
# First bytes of those lines: a partial line starting so is held back until its end shows what it is.
_NATIVE_FIRST = frozenset({b"I", b"W", b"E", b"T"})
# Environment switches and the values that mute everything below an error (and errors for TF's C++ side,
# whose only start-up errors on a CPU machine are the CUDA probes).
ENV_SWITCHES = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "GRPC_VERBOSITY": "ERROR"}

_installed = False
_lock = threading.Lock()


def is_native_log_line(line: bytes) -> bool:
    """True for a line a native library logged (glog/absl format, or one of its unprefixed notes)."""
    return bool(_NATIVE_LINE.match(line)) or line.rstrip(b"\r\n").startswith(_NATIVE_EXTRA)


def wants_verbose(argv: list[str]) -> tuple[bool, list[str]]:
    """Split `-v`/`--verbose` off a command line (anywhere before a `--`).

    Returns:
        (verbose, the remaining arguments in order).
    """
    rest: list[str] = []
    verbose = False
    for i, a in enumerate(argv):
        if a == "--":
            rest.extend(argv[i:])
            break
        if a in ("-v", "--verbose"):
            verbose = True
        else:
            rest.append(a)
    return verbose, rest


def _pump(read_fd: int, out_fd: int) -> None:
    """Forward `read_fd` to `out_fd` line by line, dropping native log lines, until the pipe closes."""
    buf = b""
    with os.fdopen(read_fd, "rb", buffering=0) as src:
        while True:
            chunk = src.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not is_native_log_line(line + b"\n"))
            # A partial line (a prompt, a bar redrawn with \r) is forwarded at once, unless it starts like a
            # native log line and may still turn out to be one.
            if buf and not (buf[:1] in _NATIVE_FIRST and len(buf) < 4096):
                out += buf
                buf = b""
            if out:
                os.write(out_fd, out)
        if buf and not is_native_log_line(buf):
            os.write(out_fd, buf)


def quiet_native_logs() -> None:
    """Silence native library logging for the rest of the process (idempotent; see the module docstring).

    Call before TensorFlow or MediaPipe is imported. Python's own `sys.stderr` still reaches the terminal
    (through the filter, so ordering is kept).
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    for name, value in ENV_SWITCHES.items():
        os.environ.setdefault(name, value)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow and MediaPipe; without it there is nothing to set
        pass
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:  # no fd 2 (a detached process): nothing reaches a terminal anyway
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_pump, args=(read_fd, real), name="faceage-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        # Closing our end of the pipe lets the reader drain what is left and stop.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(real, 2)
        thread.join(timeout=2.0)

    atexit.register(restore)
