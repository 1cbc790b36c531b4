"""The outline's depth profile: a change in a thin ring just inside the face oval reads at those depths only."""

from __future__ import annotations

import numpy as np

from benchmarks.oval_profile import DEPTHS, LOWER, depth_profile
from faceage_video.face.mesh import CanonicalMesh, MeshOptions

NOSE_TIP = 1


def test_a_lit_ring_reads_at_its_depth_and_nothing_elsewhere() -> None:
    mesh = CanonicalMesh(MeshOptions(size=64))
    depth = mesh.oval_depth()
    assert depth.shape == (64, 64)
    nose = tuple(np.round(mesh.vertices[NOSE_TIP][::-1]).astype(int))
    assert depth[nose] > 5  # the middle of the face is deep inside the oval
    assert depth[0, 0] < 0 and depth[63, 0] < 0  # the corners are outside it
    change = np.zeros((3, 64, 64), np.float32)
    ring = (depth >= 1.5) & (depth < 3.5)
    change[:, ring] = 10.0
    # The upper half does not count: a change there moves nothing.
    change[:, : int(LOWER * 64) - 1] += 50.0
    profile = dict(zip(DEPTHS, depth_profile(change, depth), strict=True))
    assert profile[2] == profile[3] == 10.0
    assert profile[6] == 0.0 and profile[-2] == 0.0
    # One face lit, one dark: the profile is their mean.
    change[1, ring] = -10.0
    change[2, ring] = 0.0
    assert depth_profile(change, depth, depths=(2,)) == [0.0]
