"""One error hierarchy and one translation into exit codes, for `faceage-video` and `python -m training`."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import typer

from faceage_video.entry import run_app
from faceage_video.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    FaceAgeError,
    InputError,
    ModelError,
    OptionsError,
)
from training.errors import ConfigError, DatasetError, TrainingError

ROOT = Path(__file__).resolve().parents[2]


def error_classes() -> set[type[FaceAgeError]]:
    """Every FaceAgeError subclass defined in faceage_video/ or training/ (modules that set an exit_code)."""
    for path in [*ROOT.glob("faceage_video/**/*.py"), *ROOT.glob("training/**/*.py")]:
        if re.search(r"^\s+exit_code = ", path.read_text(encoding="utf-8"), re.M):
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    found: set[type[FaceAgeError]] = set()
    todo: list[type[FaceAgeError]] = [FaceAgeError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| exit code | meaning |") :].split("\n\n", 1)[0]
    return {int(m[1]): m[2].strip() for m in re.finditer(r"^\| (\d+) \|(.*)\|$", table, re.M)}


def test_every_exit_code_is_declared_and_in_the_readme() -> None:
    codes = {cls.exit_code for cls in error_classes()}
    assert 7 in codes, "DistributedError's code was not found"
    assert codes | {EXIT_INTERRUPTED} <= set(EXIT_CODES)
    assert set(readme_exit_codes()) == set(EXIT_CODES)


def test_training_errors_are_faceage_errors_with_their_codes() -> None:
    assert issubclass(TrainingError, FaceAgeError)
    assert issubclass(DatasetError, InputError) and DatasetError.exit_code == InputError.exit_code == 3
    assert issubclass(ConfigError, OptionsError) and ConfigError.exit_code == OptionsError.exit_code == 2
    assert TrainingError.exit_code == 1


def test_run_app_turns_errors_into_one_line_and_a_code(capsys: pytest.CaptureFixture[str]) -> None:
    app = typer.Typer(add_completion=False)

    @app.command()
    def fail(kind: str) -> None:
        if kind == "model":
            raise ModelError("no bundle at /x. Fix: pass --model NAME")
        raise KeyboardInterrupt

    @app.command()
    def other() -> None:
        pass

    assert run_app(app, ["fail", "model"], interrupted="stopped") == 5
    err = capsys.readouterr().err
    assert err.strip() == "error: no bundle at /x. Fix: pass --model NAME"
    assert run_app(app, ["fail", "ctrl-c"], interrupted="stopped") == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "stopped"
    assert run_app(app, ["fail"], interrupted="stopped") == 2  # usage error: missing argument
    assert "Traceback" not in capsys.readouterr().err


def test_training_main_catches_any_faceage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import training.config
    from training.cli import main

    def broken(*args: object, **kwargs: object) -> None:
        raise ModelError("landmarker missing. Fix: pass --landmarker PATH")

    monkeypatch.setattr(training.config, "load_config", broken)
    assert main(["cache"]) == ModelError.exit_code
    err = capsys.readouterr().err
    assert "error: landmarker missing" in err and "Traceback" not in err
