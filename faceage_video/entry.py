"""Running a Typer app as a command line: the one translation of exceptions into exit codes.

Both `faceage-video` (`faceage_video.cli.main`) and `python -m training` (`training.cli.main`) end here, so a
`FaceAgeError` raised anywhere (a training error is one) prints one line and exits with its code, whichever
command line it came through. The codes are listed in `faceage_video.errors.EXIT_CODES`.
"""

from __future__ import annotations

import typer
import typer.exceptions

from faceage_video.errors import EXIT_INTERRUPTED, FaceAgeError

# Typer >= 0.23 vendors click and raises its own exception types (usage errors derive from
# `typer.exceptions.TyperException`); older Typer raises click's. Catch both, and need click only if present.
try:
    import click

    _CLICK_USAGE: tuple[type[BaseException], ...] = (click.ClickException,)
    _CLICK_ABORT: tuple[type[BaseException], ...] = (click.exceptions.Abort,)
    _CLICK_EXIT: tuple[type[BaseException], ...] = (click.exceptions.Exit,)
except ImportError:  # pragma: no cover - click is optional with a vendoring Typer
    _CLICK_USAGE = _CLICK_ABORT = _CLICK_EXIT = ()
_USAGE_ERRORS: tuple[type[BaseException], ...] = (*_CLICK_USAGE, typer.exceptions.TyperException)
_ABORTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, *_CLICK_ABORT, typer.Abort)
_EXITS: tuple[type[BaseException], ...] = (*_CLICK_EXIT, typer.Exit)


def run_app(app: typer.Typer, argv: list[str] | None, interrupted: str) -> int:
    """Run `app` on `argv` (None: `sys.argv[1:]`) and return its exit code; never prints a traceback.

    A `FaceAgeError` prints "error: <message>" and returns its `exit_code`; a usage error prints click's
    message and returns its code (2); Ctrl-C prints `interrupted` and returns `EXIT_INTERRUPTED`. Any other
    exception is a bug and propagates.
    """
    try:
        rv = app(args=argv, standalone_mode=False)
    except FaceAgeError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return exc.exit_code
    except _ABORTS:
        typer.secho(interrupted, fg="yellow", err=True)
        return EXIT_INTERRUPTED
    except _USAGE_ERRORS as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:  # pragma: no cover - every usage error of click and Typer has show()
            typer.secho(f"error: {exc}", fg="red", err=True)
        return int(getattr(exc, "exit_code", 2))
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    # Without standalone mode Typer returns an Exit's code instead of raising it; Ctrl-C arrives as Exit(130).
    code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    if code == EXIT_INTERRUPTED:
        typer.secho(interrupted, fg="yellow", err=True)
    return code
