"""The brow measure: how dark the brows are against the skin around them, in canonical textures."""

from __future__ import annotations

import numpy as np

from benchmarks.brows import brow_regions, brow_stats
from faceage_video.face.mesh import CanonicalMesh, MeshOptions


def test_the_brows_and_the_skin_around_them_are_apart_and_above_the_eyes() -> None:
    mesh = CanonicalMesh(MeshOptions(size=128))
    brows, ring = brow_regions(mesh)
    assert brows.sum() > 100 and ring.sum() > brows.sum()
    assert not (brows & ring).any()
    eye_row = mesh.vertices[[33, 133, 362, 263], 1].mean()
    assert np.nonzero(brows)[0].mean() < eye_row  # image rows grow downwards


def test_dark_brows_read_their_contrast_and_lighter_brows_less() -> None:
    mesh = CanonicalMesh(MeshOptions(size=128))
    brows, ring = brow_regions(mesh)
    faces = np.full((2, 128, 128, 3), 200, np.uint8)
    faces[0][brows] = 100
    faces[1][brows] = 150
    stats = [brow_stats(faces[i : i + 1], brows, ring) for i in range(2)]
    assert stats[0]["contrast"] == 0.5
    assert stats[1]["contrast"] == 0.25
    assert stats[0]["chroma"] == 0.0  # grey brows carry no colour
    brown = faces[:1].copy()
    brown[0][brows] = (120, 90, 60)
    assert brow_stats(brown, brows, ring)["chroma"] > 0.2
