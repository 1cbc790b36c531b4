"""Region tone: the same skin is compared before and after, wherever a shape warp moved it."""

from __future__ import annotations

import numpy as np
import pytest

import training.teacher as teaching
from benchmarks.regions_tone import region_masks, region_means
from faceage_video.face.mesh import CanonicalMesh, MeshOptions


def _face(mesh: CanonicalMesh) -> np.ndarray:
    """(S, S) a textured luma with dark eyes and brows: what a warp moves."""
    s = mesh.size
    rng = np.random.default_rng(0)
    y = 150.0 + 20.0 * rng.standard_normal((s, s)).astype(np.float32)
    feats = teaching._features(mesh, (*teaching.EYES, *teaching.BROWS))
    return np.asarray(y * (1.0 - 0.7 * feats), np.float32)


def test_the_regions_are_disjoint_where_they_must_be_and_not_empty() -> None:
    masks = region_masks(CanonicalMesh(MeshOptions(size=128)))
    assert set(masks) == {"lid band", "brows", "under eyes", "forehead", "cheeks"}
    for name, m in masks.items():
        assert m.sum() > 50, name
    # The lid band lies between brows and eyes: no brow texel in it.
    assert (masks["lid band"] * masks["brows"]).sum() == 0


def test_a_uniform_lift_reads_its_size_and_a_pure_warp_reads_about_nothing() -> None:
    mesh = CanonicalMesh(MeshOptions(size=128))
    masks = region_masks(mesh)
    y = _face(mesh)[None]
    lifted = region_means(y, y + 7.0, masks, [masks])
    assert all(v == pytest.approx(7.0, abs=0.01) for v in lifted.values())
    # Move the brows and eyes down 2 texels: the pixels under the unmoved masks change a lot, the same skin
    # where it went does not.
    move = np.zeros((468, 2), np.float32)
    move[:, 1] = 2.0 * teaching.oval_fade(mesh)
    warped = teaching.warp_shape(y[0], mesh, move)[None]
    moved = {k: np.clip(teaching.warp_shape(m, mesh, move), 0.0, 1.0) for k, m in masks.items()}
    same_skin = region_means(y, warped, masks, [moved])
    same_place = region_means(y, warped, masks, [masks])
    assert abs(same_skin["brows"]) < 3.0
    assert abs(same_place["brows"]) > 3.0 * abs(same_skin["brows"])
