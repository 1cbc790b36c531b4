"""The ceiling of an inner-face change: a real face of the target group, registered into the source's head.

    python -m benchmarks.ceiling [--n 60] [--size 128] [--directions older younger] [--out FILE.json]
        [--pictures DIR]

Every model here changes the canonical face texture only: the skin inside the mesh's layout, from the hairline
to just past the jaw, never the hair, the ears, the neck or the outline. This asks what the judges read when
that texture is not made but *real*: each source face gets the registered texture of a real validation face
of the target group, of the same gender and race (the quality benchmark's balanced partner), pasted through
the runtime's own mesh path (`benchmarks.stills.age_stills`). Rows:
- `real_inner`: the partner's whole texture, its skin tone and its light included;
- `real_folds`: the partner's texture above the teacher's shading scale (σ 8 × 2 px at 128) replaced by the
  source's own, so the source keeps its light and skin tone and gets the partner's folds, lines and pores.

It is a different person's face, so identity fails by construction; the row is a bound, not an output. If a
real old face's whole inner face, pasted into a young head, moves the age judge by less than a goal, no model
of the inner face can reach that goal on these photos: the rest is hair, outline and neck.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.measures import colour
from benchmarks.quality import DEFAULT_DATA, write_json
from benchmarks.stills import (
    DIRECTIONS,
    Crops,
    Direction,
    FaceSets,
    Transform,
    cut_face,
    load_faces,
    open_landmarker,
)
from benchmarks.teacher import crop_key
from benchmarks.teacher_sweep import judge_transforms
from faceage_video.face.mesh import CanonicalMesh, MeshOptions

# The teacher's shading band ends at 8 × its 2 px σ (at 128 px): what lies above is light and skin tone.
TONE_SIGMA_128 = 16.0


def keep_tone(source: NDArray[np.float32], partner: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """(S, S, 3) `partner`'s detail below the Gaussian scale `sigma` on `source`'s low-pass above it."""

    def low(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101), np.float32)

    return np.asarray(partner - low(partner) + low(source), np.float32)


def partner_transforms(sets: FaceSets, template: CanonicalMesh) -> dict[str, Transform]:
    """Row name → transform giving each source (and b/w copy) its partner's registered texture.

    Source `i` and target `i` share a (gender, race) cell: both lists are balanced cell by cell and ordered
    round-robin over the same cells. A b/w copy gets its partner's texture in greyscale.
    """
    textures = [cut_face(t.image, t.landmarks, template)[0] for t in sets.targets]
    partners: dict[str, NDArray[np.float32]] = {}
    for faces, grey in ((sets.sources, False), (sets.bw, True)):
        for f, tex in zip(faces, textures, strict=False):
            partner = colour.greyscale(tex) if grey else tex
            partners[crop_key(cut_face(f.image, f.landmarks, template)[0])] = partner.astype(np.float32)
    sigma = TONE_SIGMA_128 * template.size / 128.0

    def whole(crops: Crops) -> NDArray[np.float32]:
        return np.stack([partners[crop_key(c)] for c in crops])

    def folds(crops: Crops) -> NDArray[np.float32]:
        return np.stack([keep_tone(c.astype(np.float32), partners[crop_key(c)], sigma) for c in crops])

    return {"real_inner": whole, "real_folds": folds}


def run(
    n: int, size: int, directions: Sequence[Direction], data: Path, pictures: Path | None
) -> dict[str, Any]:
    """Judge both rows on `n` faces a direction; {"n", "size", "unchanged": {direction: AUC}, "rows": [...]}."""
    template = CanonicalMesh(MeshOptions(size=size))
    with open_landmarker() as landmarker:
        sets = {d: load_faces(data, d, landmarker, n, 4) for d in directions}
    report: dict[str, Any] = {"n": n, "size": size}

    def rows_of(d: Direction, s: FaceSets) -> Iterator[tuple[str, Transform, dict[str, Any]]]:
        for name, transform in partner_transforms(s, template).items():
            yield name, transform, {}

    report["unchanged"], report["rows"] = judge_transforms(sets, template, rows_of, pictures, "ceiling")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=60, help="faces a direction (default 60)")
    p.add_argument("--size", type=int, default=128, help="canonical texture size (default 128)")
    p.add_argument("--directions", nargs="+", choices=DIRECTIONS, default=list(DIRECTIONS))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, help="JSON report")
    p.add_argument("--pictures", type=Path, help="folder for one before/after picture a row")
    a = p.parse_args(argv)
    try:
        report = run(a.n, a.size, a.directions, a.data, a.pictures)
    except FileNotFoundError as exc:
        print(f"error: {exc}")
        return 2
    if a.out:
        write_json(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
