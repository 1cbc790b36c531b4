"""Build the canonical layout of `faceage_video.face.mesh` from a landmark cache.

The layout is the generalised-Procrustes mean of the 468 non-iris MediaPipe landmarks over adult faces,
a ring grown out of the face oval (to the hairline above, a margin beyond the jaw), and a Delaunay
triangulation of both. It is built once and shipped as data, with its provenance.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import Delaunay

from faceage_video.face.align import apply_affine, estimate_similarity
from faceage_video.face.landmarks import FACE_OVAL
from faceage_video.face.mesh import LAYOUT_PATH, N_LANDMARKS, Layout

# Growth of the ring out of the face oval, as a fraction of each oval vertex's distance from the oval's
# centre: the forehead ring reaches past MediaPipe's top row (mid-forehead) to the hairline, the jaw ring
# gives the mask room to fade on the neck and the cheeks' edge, not on the face.
FOREHEAD_GROWTH = 0.42
JAW_GROWTH = 0.14
# Room left around the ring inside the square texture, per side, as a fraction of its side.
BORDER = 0.02


def procrustes_mean(shapes: NDArray[np.float64], iterations: int = 5) -> NDArray[np.float64]:
    """Generalised Procrustes mean of (N, P, 2) shapes under similarity transforms."""
    ref = shapes[0]
    for _ in range(iterations):
        aligned = np.stack([apply_affine(estimate_similarity(s, ref), s) for s in shapes])
        mean = aligned.mean(axis=0)
        # Fix scale and position so the iteration cannot drift or shrink.
        mean = (mean - mean.mean(0)) / np.sqrt(((mean - mean.mean(0)) ** 2).sum(1).mean())
        ref = mean
    return ref


def ring_offsets(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """(36, 2) ring vertex minus oval vertex, growing more above the oval's centre than below it."""
    oval = points[list(FACE_OVAL)]
    c = oval.mean(axis=0)
    top, bottom = oval[:, 1].min(), oval[:, 1].max()
    # 1 at the top of the oval, 0 at its centre and below: the forehead grows, the jaw gets a margin.
    up = np.clip((c[1] - oval[:, 1]) / (c[1] - top), 0.0, 1.0)
    del bottom
    growth = JAW_GROWTH + (FOREHEAD_GROWTH - JAW_GROWTH) * up**1.5
    return (oval - c) * growth[:, None]


def build_layout(landmarks: NDArray[np.float32], source: str, limit: int = 2000) -> Layout:
    """The layout from (N, 478, 2) landmarks of adult faces (NaN rows skipped).

    Args:
        landmarks: pixel landmarks of many faces.
        source: what they came from, for the provenance.
        limit: at most this many faces, taken evenly, enter the mean.
    """
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    lms = np.asarray(landmarks[ok][:, :N_LANDMARKS], np.float64)
    if len(lms) > limit:
        lms = lms[np.linspace(0, len(lms) - 1, limit).round().astype(int)]
    mean = procrustes_mean(lms)
    ring = ring_offsets(mean)
    verts = np.concatenate([mean, mean[list(FACE_OVAL)] + ring])
    lo, hi = verts.min(0), verts.max(0)
    scale = (1.0 - 2 * BORDER) / float((hi - lo).max())
    centre = 0.5 * (lo + hi)
    unit = (mean - centre) * scale + 0.5
    ring_unit = ring * scale
    all_unit = np.concatenate([unit, unit[list(FACE_OVAL)] + ring_unit])
    tri = Delaunay(all_unit).simplices.astype(np.int32)
    # Drop slivers along the hull that span outside the ring (Delaunay triangulates the convex hull).
    a, b, c = all_unit[tri[:, 0]], all_unit[tri[:, 1]], all_unit[tri[:, 2]]
    area = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))
    tri = tri[area > 1e-7]
    provenance = {
        "what": "generalised-Procrustes mean of MediaPipe FaceLandmarker's 468 non-iris landmarks",
        "faces": len(lms),
        "source": source,
        "ring": {"forehead_growth": FOREHEAD_GROWTH, "jaw_growth": JAW_GROWTH},
        "triangulation": "scipy.spatial.Delaunay over landmarks and ring, unit coordinates",
        "built": dt.date.today().isoformat(),
        "command": "python -m training layout --config utkface-mesh-128",
    }
    return Layout(unit, ring_unit, tri, provenance)


def write_layout(layout: Layout, out: str | Path = LAYOUT_PATH) -> Path:
    """Write the layout JSON atomically."""
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(layout.to_json())
    tmp.replace(p)
    return p
