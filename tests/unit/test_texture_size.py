"""benchmarks.texture_size: the round trip through the canonical texture keeps more fine detail of a large face
at 256 px than at 128 px, its band ratios stay in range and depend on the sampling ratio alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.texture_size import (
    BANDS,
    Face,
    detail_row,
    photo_paths,
    picture,
    summarise,
    write_picture,
)
from faceage_video.face.mesh import CanonicalMesh, MeshOptions


@pytest.fixture(scope="module")
def meshes() -> dict[int, CanonicalMesh]:
    # The textures' sampling alone, without the runtime's anti-alias low-pass (tested in test_mesh.py).
    return {s: CanonicalMesh(MeshOptions(size=s, antialias=0.0)) for s in (128, 256)}


def synthetic_face(mesh: CanonicalMesh, scale: float, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame of random texture with detail at every scale (octaves of blurred noise, amplitude ∝ scale, as
    in skin) and (478, 2) landmarks: the canonical layout (at 128 px) turned by 11°, scaled by `scale` and
    centred in a side × side frame, irises at the eye centres."""
    rng = np.random.default_rng(1)
    luma = np.full((side, side), 120.0, np.float32)
    for sigma in (0.7, 1.5, 3.0, 6.0, 12.0):
        noise = rng.normal(0.0, 1.0, (side, side)).astype(np.float32)
        luma += np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma), np.float32) * np.float32(12.0 * sigma)
    frame = np.clip(np.stack([luma + 20.0, luma, luma - 15.0], -1), 0, 255).astype(np.uint8)
    m = np.asarray(cv2.getRotationMatrix2D((64.0, 64.0), 11.0, scale), np.float64)
    m[:, 2] += side / 2.0 - 64.0
    pts = mesh.landmark_vertices @ m[:, :2].T + m[:, 2]
    eyes = (pts[[33, 133]].mean(0), pts[[362, 263]].mean(0))
    iris = np.concatenate([np.repeat(eyes[0][None], 5, 0), np.repeat(eyes[1][None], 5, 0)])
    return frame, np.concatenate([pts, iris]).astype(np.float32)


def test_large_face_keeps_more_fine_detail_at_256(meshes: dict[int, CanonicalMesh]) -> None:
    frame, lm = synthetic_face(meshes[128], scale=3.3, side=540)  # face sampled 1:1 at S ≈ 420
    row = detail_row(frame, lm, meshes, meshes[256])
    assert row["native_size"] == pytest.approx(422.0, rel=0.02)
    assert row["region_px"] > 50_000  # the eroded face region, well inside the frame
    k128, k256 = row["sizes"]["128"]["kept"], row["sizes"]["256"]["kept"]
    assert len(k128) == len(BANDS)
    for kept in (k128, k256):
        assert all(0.0 <= k <= 1.2 for k in kept), kept
    # Fine bands: 128 px halves the sampling of 256 px, so it keeps clearly less of them.
    assert k256[0] > k128[0] + 0.1 and k256[1] > k128[1] + 0.1, (k128, k256)
    # Each band keeps less than the next coarser one, and the coarsest survives either texture.
    assert k128 == sorted(k128) and k256 == sorted(k256)
    assert k128[-1] > 0.85
    assert row["sizes"]["256"]["psnr_db"] > row["sizes"]["128"]["psnr_db"] + 2.0


def test_what_is_kept_depends_on_the_sampling_ratio(meshes: dict[int, CanonicalMesh]) -> None:
    """The bands are in frame pixels: a face twice as large in a texture twice as large keeps the same share."""
    small, lm_small = synthetic_face(meshes[128], scale=1.0, side=180)  # 1:1 at S = 128
    large, lm_large = synthetic_face(meshes[128], scale=2.0, side=340)  # 1:1 at S = 256
    k_small = detail_row(small, lm_small, meshes, meshes[256])["sizes"]["128"]["kept"]
    k_large = detail_row(large, lm_large, meshes, meshes[256])["sizes"]["256"]["kept"]
    assert all(abs(a - b) < 0.05 for a, b in zip(k_small, k_large, strict=True)), (k_small, k_large)
    # Even sampled 1:1, the two bilinear warps lose part of the finest band: it is not kept whole.
    assert k_small[0] < 0.8


def test_summary_picture_and_photo_choice(meshes: dict[int, CanonicalMesh], tmp_path: Path) -> None:
    frame, lm = synthetic_face(meshes[128], scale=2.0, side=320)
    rows = [{"source": "clips", "name": "x", **detail_row(frame, lm, meshes, meshes[256])}]
    summ = summarise(rows, [128, 256])
    assert summ["clips"]["faces"] == 1 and len(summ["clips"]["sizes"]["256"]["kept_median"]) == len(BANDS)
    grid = picture([Face("clips", "synthetic", frame, lm)], [128, 256])
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.shape[1] >= 3 * 288
    out = tmp_path / "grid.png"
    assert write_picture(out, grid) == out.stat().st_size
    back = cv2.imread(str(out))
    assert back is not None and back.shape == grid.shape
    # Photos: ages 50-80 only, every k-th of the sorted names, the same set each time.
    for age in (12, 49, 50, 63, 81, 75):
        (tmp_path / f"{age}_0_0_2017.jpg.chip.jpg").write_bytes(b"")
    chosen = [p.name.split("_")[0] for p in photo_paths(tmp_path, 3)]
    assert chosen == ["50", "63", "75"]
