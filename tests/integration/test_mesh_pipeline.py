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
