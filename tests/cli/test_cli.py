"""The `faceage-video` command line: end to end as a subprocess, as a user runs it, plus in-process checks of
how the adapter turns errors and Ctrl-C into exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from faceage_video import cli
from tests.helpers import decode_video, run_module


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_module("faceage_video", *args, timeout=timeout)


@pytest.mark.integration
def test_age_end_to_end_subprocess(short_clip: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out.mp4", tmp_path / "r.json"
    p = run_cli(
        "age",
        str(short_clip),
        "-o",
        str(out),
        "--model",
        str(tiny_bundle),
        "--no-xla",
        "--batch-size",
        "4",
        "--preset",
        "ultrafast",
        "--report",
        str(report),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert out.is_file()
    n_in = len(decode_video(short_clip).pts)
    rep = json.loads(report.read_text())
    assert rep["frames"] == n_in == len(decode_video(out).pts)
    assert rep["frames_with_faces"] == n_in and rep["tracks"] == {"0": n_in}
    assert rep["model"]["name"] == "tiny-untrained" and rep["options"]["xla"] is False
    assert rep["output"] == str(out)
    assert f"{n_in} frames" in p.stdout
    assert [f for f in tmp_path.iterdir() if ".partial" in f.name] == []


@pytest.mark.integration
def test_info_json_lists_a_track(short_clip: Path) -> None:
    p = run_cli("info", str(short_clip), "--json", "--seconds", "0.5")
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads(p.stdout)
    assert d["info"]["width"] == 512 and d["info"]["codec"] == "h264"
    assert d["info"]["audio"] and d["info"]["audio"][0]["codec"] == "aac"
    assert 10 <= d["frames_scanned"] <= 14  # half a second at 25 fps
    assert list(d["tracks"]) == ["0"]
    t = d["tracks"]["0"]
    assert t["frames"] == d["frames_scanned"]
    x0, y0, x1, y1 = t["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512


def test_models_lists_the_bundled_models() -> None:
    p = run_cli("models", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    from models.bundle import bundled_names

    names = bundled_names()
    if names:
        for n in names:
            assert n in p.stdout
    else:
        assert "no bundled models" in p.stdout
    assert "utkface-age-64" in p.stdout and "input-age estimator" in p.stdout


def test_bad_input_subprocess_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    p = run_cli("age", str(missing), "-o", str(tmp_path / "out.mp4"), timeout=120)
    assert p.returncode == 3
    assert f"error: {missing}: no such file" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_usage_error_subprocess_exits_2_without_traceback(tmp_path: Path) -> None:
    p = run_cli("age", "x.mp4", "-o", str(tmp_path / "o.mp4"), "--codec", "vp9", timeout=120)
    assert p.returncode == 2
    assert "Invalid value for '--codec'" in p.stderr
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------------------------------------------------
# In-process: the adapter's exit codes


def test_ctrl_c_exits_130_with_a_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import faceage_video.pipeline as pipeline

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "age_video", interrupted)
    code = cli.main(["age", "in.mp4", "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted: no output was written" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["--help"], 0, "Usage"),
        (["age", "--help"], 0, "--output"),
        ([], 2, "Usage"),
        (["age"], 2, "Missing"),
        (["age", "in.mp4", "-o", "o.mp4", "--bogus"], 2, "No such option"),
        (["age", "in.mp4", "-o", "o.mp4", "--direction", "sideways"], 2, "Invalid value for '--direction'"),
        (["age", "in.mp4", "-o", "o.mp4", "--mask", "circle"], 2, "Invalid value for '--mask'"),
        (["age", "in.mp4", "-o", "o.mp4", "--preset", "warp"], 2, "Invalid value for '--preset'"),
        (["age", "in.mp4", "-o", "o.mp4", "--strength", "-1"], 2, "Invalid value for '--strength'"),
        (["age", "in.mp4", "-o", "o.mp4", "--faces", "0,x"], 2, "--faces must be"),
        (["age", "in.mp4", "-o", "o.mp4", "--feather", "0"], 2, "feather must be in"),
        (["age", "in.mp4", "-o", "o.mp4", "--crf", "99"], 2, "crf must be an integer"),
        (["frobnicate"], 2, "No such command"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_usage_errors_in_process(
    argv: list[str], code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got = cli.main(argv)
    out, err = capsys.readouterr()
    assert got == code, out + err
    assert text in out + err
    assert "Traceback" not in out + err


def test_shared_options_are_declared_once() -> None:
    """`age`, `batch` and `webcam` give each shared option the same help text, the manifest's columns are the
    `AgeFlags` fields, and the flags build the same `AgeOptions` an `age` run gets."""
    from dataclasses import fields

    import typer

    from faceage_video.flags import CALLER_ONLY, AgeFlags
    from faceage_video.scale.manifest import SHOT_FIELDS

    group = typer.main.get_command(cli.app)
    helps = {
        name: {p.name: getattr(p, "help", None) for p in group.commands[name].params}  # type: ignore[attr-defined]
        for name in ("age", "batch", "webcam")
    }
    names = [f.name for f in fields(AgeFlags)]
    for name in names:
        assert helps["age"][name], name
        for other in ("batch", "webcam"):
            if name in helps[other] and name != "xla":  # webcam's --xla is a plain on/off, off by default
                assert helps[other][name] == helps["age"][name], (other, name)
    assert set(helps["batch"]) >= set(names) - {"start", "end", "matte", "side_by_side", "report"}
    assert list(SHOT_FIELDS) == [n for n in names if n not in CALLER_ONLY]
    opts = AgeFlags(strength=0.5, faces="0,2", max_faces=3, start=1.0).to_options()
    st = opts.stages
    assert (st.engine.strength, st.faces, st.tracker.max_faces, opts.reader.start_s) == (0.5, (0, 2), 3, 1.0)
    assert st.landmarks.max_faces == 3 and opts.sequence.fps == 24
    assert not st.hair.enabled  # grey hair is asked for, never assumed
    hair = AgeFlags(grey_share=0.3).to_options().stages.hair
    assert hair.enabled and hair.amount == 0.3  # a share implies --age-hair
    assert AgeFlags(age_hair=True).to_options().stages.hair.amount is None  # from the ages
