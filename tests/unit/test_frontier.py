"""`benchmarks.frontier`: quality reports read into points, shared networks merged, the picture written, and
bad input refused with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.frontier import Point, dedupe, main, points_of


def report(shift_older: float, auc_older: float, teacher: str | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        {"name": "model", "direction": "older", "shift_mean": shift_older, "realism_auc": auc_older},
        {"name": "model", "direction": "younger", "shift_mean": -8.0, "realism_auc": 0.72},
        {"name": "unchanged", "direction": "older", "shift_mean": 0.0, "realism_auc": 0.748},
    ]
    if teacher:
        rows.append({"name": "teacher", "direction": "older", "shift_mean": 12.1, "realism_auc": 0.787})
    out: dict[str, Any] = {
        "model_manifest": {"name": "exported-name"},
        "rows": rows,
        "references": {"older": {"unchanged": 0.748, "real_vs_real": 0.56}},
    }
    if teacher:
        out["teacher"] = {"config": teacher}
    return out


def test_points_take_the_file_name_and_the_teacher_its_config() -> None:
    pts, refs = points_of(Path("quality-utkface-x-128.json"), report(9.6, 0.736, "cfg-a"))
    assert [(p.label, p.kind, p.direction, p.shift) for p in pts] == [
        ("utkface-x-128", "model", "older", 9.6),
        ("utkface-x-128", "model", "younger", -8.0),
        ("cfg-a", "teacher", "older", 12.1),
    ]  # the unchanged row is a reference, not a point
    assert refs[0].unchanged == 0.748 and refs[0].real_vs_real == 0.56
    assert points_of(Path("run.json"), report(1.0, 0.7))[0][0].label == "exported-name"
    with pytest.raises(ValueError, match="not a quality report"):
        points_of(Path("x.json"), {"benchmark": "throughput"})


def test_reports_sharing_a_network_become_one_point() -> None:
    same = [Point("a", "model", "older", 5.897, 0.745), Point("b", "model", "older", 5.897, 0.745)]
    other = Point("c", "model", "older", 9.6, 0.736)
    teacher = Point("a", "teacher", "older", 5.897, 0.745)  # same numbers, another kind: kept apart
    out = dedupe([*same, other, teacher, same[0]])
    assert [p.label for p in out] == ["a = b", "c", "a"]


def test_main_writes_the_picture_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "quality-one.json", tmp_path / "quality-two.json"
    a.write_text(json.dumps(report(9.6, 0.736, "cfg")))
    b.write_text(json.dumps(report(10.3, 0.731, "cfg")))
    png = tmp_path / "frontier.png"
    assert main([str(a), str(b), "--out", str(png), "--highlight", "one"]) == 0
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 500 and img.shape[1] > 500
    assert np.std(img) > 10  # a picture, not a blank page
    lines = capsys.readouterr().out.splitlines()
    assert sum("teacher" in line for line in lines) == 1  # the shared teacher is drawn once
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "error" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
