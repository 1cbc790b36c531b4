"""The canonical-mesh path end to end on a real clip, with a tiny untrained age-conditioned mesh bundle.

Frames and timestamps kept, pixels outside the matte bit-identical (FFV1), a real change inside, the matte
confined to the face, a five-point bundle still running, and the target age choosing the generator.
Skipped with a reason where ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.mesh import CanonicalMesh
from faceage_video.media.writer import WriterOptions
from faceage_video.pipeline import age_video
from tests.helpers import age_options, decode_video, make_bundle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mesh_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("mesh") / "tiny-mesh", "tiny-mesh", mesh=True, cond=2)


def test_mesh_bundle_runs_in_canonical_space_and_keeps_every_frame(
    mesh_bundle: Path, short_clip: Path, tmp_path: Path
) -> None:
    engine = AgingEngine(EngineOptions(model=str(mesh_bundle), batch_size=4, xla=False, target_age=70))
    assert isinstance(engine.template, CanonicalMesh) and engine.conditioned
    out, matte = tmp_path / "out.mkv", tmp_path / "matte.mkv"
    report = age_video(
        short_clip,
        out,
        age_options(writer=WriterOptions(codec="ffv1"), matte=str(matte)),
        engine=engine,
    )
    src, dst = decode_video(short_clip), decode_video(out)
    mattes = [f[..., 0] if f.ndim == 3 else f for f in decode_video(matte, fmt="gray").frames]
    assert len(dst.frames) == len(src.frames) == report.frames
    t_in, t_out = np.array(src.times), np.array(dst.times)
    np.testing.assert_allclose(t_out - t_out[0], t_in - t_in[0], atol=0.0005)  # Matroska: milliseconds
    assert report.frames_with_faces == report.frames
    changed = 0
    for a, b, m in zip(src.frames, dst.frames, mattes, strict=True):
        outside = m == 0
        assert np.array_equal(a[outside], b[outside])
        inside = m > 200
        assert inside.sum() > 2000  # the face, not the whole frame
        assert outside.mean() > 0.4
        changed += np.abs(a[inside].astype(int) - b[inside]).mean() > 2.0
    assert changed == len(dst.frames)


def test_target_age_picks_the_generator(mesh_bundle: Path) -> None:
    older = AgingEngine(EngineOptions(model=str(mesh_bundle), target_age=70, input_age=30, xla=False))
    younger = AgingEngine(EngineOptions(model=str(mesh_bundle), target_age=25, input_age=60, xla=False))
    crops = np.full((2, 128, 128, 3), 128, np.uint8)
    # The tiny bundle's G adds a bias and its F subtracts it.
    assert older.residual(crops).mean() > 1.0
    assert younger.residual(crops).mean() < -1.0


def _fixed_age_estimator(folder: Path, age: int) -> Path:
    """An estimator that reads every face as `age` (its last layer is a bias alone)."""
    from faceage_video.face.mesh import MeshOptions
    from models.estimator import EstimatorConfig, EstimatorManifest, build_age_estimator, save_age_estimator

    cfg = EstimatorConfig(size=32, width=4)
    model = build_age_estimator(cfg)
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    bias[:] = -50.0
    bias[age] = 50.0
    dense.set_weights([np.zeros_like(kernel), bias])
    mesh = CanonicalMesh(MeshOptions(size=128)).to_dict()
    manifest = EstimatorManifest(
        name="fixed", network=cfg, template={k: mesh[k] for k in ("kind", "version", "layout_sha")}
    )
    return save_age_estimator(folder, manifest, model, "# fixed\n")


def test_target_age_without_input_age_uses_each_face_own_age(
    mesh_bundle: Path, short_clip: Path, tmp_path: Path
) -> None:
    from faceage_video.engine.input_age import InputAgeOptions

    engine = AgingEngine(EngineOptions(model=str(mesh_bundle), batch_size=4, xla=False, target_age=70))
    out = tmp_path / "out.mkv"
    src = decode_video(short_clip).frames

    def run(read_as: int, eng: AgingEngine = engine) -> tuple[dict[int, float], float]:
        est = InputAgeOptions(model=str(_fixed_age_estimator(tmp_path / f"est{read_as}", read_as)))
        options = age_options(writer=WriterOptions(codec="ffv1"), input_age=est, end_s=0.4)
        report = age_video(short_clip, out, options, engine=eng)
        dst = decode_video(out).frames
        assert report.frames_with_faces == report.frames == len(dst) > 0
        change = float(np.mean([np.abs(b.astype(int) - a) for a, b in zip(src, dst, strict=False)]))
        return report.input_ages, change

    # Read as 70, the face is at the target: nothing changes, and the report says what it was read as.
    ages, change = run(70)
    assert ages == {0: pytest.approx(70.0, abs=0.01)} and change < 0.01
    # Read as 30 it is aged, read as 80 de-aged (which generator runs is tested in test_input_age.py; the
    # paste-back's colour match caps the tiny generators' mean shift, so its sign says nothing here).
    assert run(30)[1] > 0.05
    ages, change = run(80)
    assert ages == {0: pytest.approx(80.0, abs=0.01)} and change > 0.05
    # Given --input-age, nothing is estimated.
    given = AgingEngine(
        EngineOptions(model=str(mesh_bundle), batch_size=4, xla=False, target_age=70, input_age=30)
    )
    report = age_video(
        short_clip, out, age_options(writer=WriterOptions(codec="ffv1"), end_s=0.4), engine=given
    )
    assert report.input_ages == {}


def test_estimated_input_age_is_probed_first_and_held_from_the_first_frame(
    videos_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a real talking head whose estimated age moves with its expression, the run probes the clip's first
    seconds and asks the generator for one age from the first frame to the last; the same stages without the
    probe (a stream) ask for a running median that moves over those seconds."""
    from faceage_video.engine.input_age import OwnAges
    from faceage_video.media.reader import VideoReader
    from faceage_video.media.writer import VideoWriter
    from faceage_video.pipeline import run_stages
    from faceage_video.report import Report

    clip = videos_dir / "liveportrait_d3.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} absent")
    asked: list[float] = []
    residual = OwnAges.residual

    def record(self: OwnAges, crops: np.ndarray, own: np.ndarray) -> np.ndarray:
        asked.extend(float(a) for a in own)
        return residual(self, crops, own)

    monkeypatch.setattr(OwnAges, "residual", record)
    engine = AgingEngine(EngineOptions(batch_size=4, xla=False, target_age=60))
    opts = age_options(writer=WriterOptions(codec="ffv1"), end_s=3.0)
    report = age_video(clip, tmp_path / "out.mkv", opts, engine=engine)
    n = report.frames
    assert n >= 75 and len(asked) == n == report.frames_with_faces
    assert asked == [pytest.approx(report.input_ages[0])] * n  # one age, from the first frame on
    assert "input_age_probe" in report.stage_s

    asked.clear()
    out = tmp_path / "stream.mkv"
    with VideoReader(str(clip)) as r, VideoWriter(out, r.info, WriterOptions(codec="ffv1", audio=False)) as w:
        frames = (f for f, _ in zip(r, range(n), strict=False))
        run_stages(frames, w, engine, opts.stages, Report(input=str(clip), output=str(out)))
    assert len(asked) == n and len(set(asked)) > 1  # a stream's running median moves


def test_aged_hair_changes_the_hair_in_the_matte_and_nothing_outside_it(
    mesh_bundle: Path, short_clip: Path, tmp_path: Path
) -> None:
    """With the hair stage on and aging, the matte grows by the hair around the face, the hair turns lighter
    and less colourful there, and every pixel outside the matte stays bit-identical (FFV1). De-aging the same
    young man, whose brown hair has no grey, leaves his hair's highlights as they were."""
    from faceage_video.face.hair import HairOptions

    engine = AgingEngine(
        EngineOptions(model=str(mesh_bundle), batch_size=4, xla=False, target_age=70, input_age=30)
    )
    src = decode_video(short_clip).frames
    runs = {}
    for name, hair in (("face", HairOptions()), ("hair", HairOptions(enabled=True))):
        out, matte = tmp_path / f"{name}.mkv", tmp_path / f"{name}-matte.mkv"
        opts = age_options(writer=WriterOptions(codec="ffv1"), matte=str(matte), hair=hair, end_s=0.6)
        report = age_video(short_clip, out, opts, engine=engine)
        mattes = [f[..., 0] if f.ndim == 3 else f for f in decode_video(matte, fmt="gray").frames]
        runs[name] = (decode_video(out).frames, mattes)
        assert len(runs[name][0]) == report.frames == len(mattes) > 5
    (face_out, face_m), (hair_out, hair_m) = runs["face"], runs["hair"]
    for a, f, b, mf, mh in zip(src, face_out, hair_out, face_m, hair_m, strict=False):
        assert np.array_equal(a[mh == 0], b[mh == 0])
        hair = (mh > 200) & (mf == 0)  # the matte's new part: the hair, not the face
        assert hair.sum() > 3000
        assert hair.sum() < 0.35 * hair.size  # not the background
        lighter = b[hair].astype(float).mean() - a[hair].astype(float).mean()
        assert lighter > 15.0
        assert np.ptp(b[hair].astype(float), axis=1).mean() < np.ptp(a[hair].astype(float), axis=1).mean()
        assert np.array_equal(f[hair], a[hair])  # without the stage the hair is left as it was
    younger = AgingEngine(
        EngineOptions(model=str(mesh_bundle), batch_size=4, xla=False, target_age=25, input_age=60)
    )
    out = tmp_path / "younger.mkv"
    opts = age_options(writer=WriterOptions(codec="ffv1"), hair=HairOptions(enabled=True), end_s=0.6)
    age_video(short_clip, out, opts, engine=younger)
    for a, b, mf, mh in zip(src, decode_video(out).frames, face_m, hair_m, strict=False):
        hair = (mh > 200) & (mf == 0)
        assert np.abs(b[hair].astype(float) - a[hair]).mean() < 3.0
