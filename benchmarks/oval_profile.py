"""Where a teacher or a bundle's `G` lights the outline: the mean luma change by depth inside the face oval.

    python -m benchmarks.oval_profile --config CONFIG [--model MODEL ...] [--variant NAME KEY=VALUE ...]...
        [--n 64] [--target 60] [--json FILE]

The faces are the config's canonical cache: the first `--n` validation faces labelled 18–29, aged to
`--target`. The rows are the config's registered teacher ("config"), each `--variant` of it (its
`TeacherOptions` with some fields replaced, as `benchmarks.teacher_sweep` takes them) and each `--model`'s `G`.
Each row is the mean luma change (levels of 0..255) in rings 1 canonical pixel deep. Depth counts from the
face oval, negative outside it. Only the lower half of the texture is measured: the jaw and the cheeks, where
the warp pushes the lower face against the fixed outline. A bump a few pixels inside the oval is a light line
along the jaw on paste-back. The script needs the config's canonical cache; it measures and asserts nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.measures.outline import LUMA
from benchmarks.teacher import age_faces, variant_setup
from benchmarks.teacher_sweep import variant_rows

# Depths reported, canonical pixels (at any texture size): a few outside the oval, the band the line lies in.
DEPTHS = tuple(range(-4, 14))
# The measured part of the texture starts at this fraction of its height: the lower face.
LOWER = 0.55


def depth_profile(
    change: NDArray[np.floating[Any]], depth: NDArray[np.float32], depths: Sequence[int] = DEPTHS
) -> list[float | None]:
    """Mean of an (N, S, S) luma change over faces and over each 1 px ring of the lower face, one per depth
    (None where the ring has no texel)."""
    mean = np.asarray(change, np.float64).mean(axis=0)
    lower = np.zeros(depth.shape, bool)
    lower[int(LOWER * depth.shape[0]) :] = True
    out: list[float | None] = []
    for d in depths:
        ring = lower & (depth >= d - 0.5) & (depth < d + 0.5)
        out.append(round(float(mean[ring].mean()), 2) if ring.any() else None)
    return out


def measure(
    config: str, models: Sequence[str], variants: Sequence[tuple[str, dict[str, Any]]], n: int, target: float
) -> dict[str, Any]:
    """`depths` and one row per teacher, variant and model: `name` and `profile` (levels per depth)."""
    setup = variant_setup(config, variants, models)
    data, mesh = setup.data, setup.mesh
    idx = np.flatnonzero(data.val & (data.age >= 18) & (data.age <= 29))[:n]
    faces = np.asarray(data.faces[idx])
    before = faces.astype(np.float32) @ LUMA
    depth = mesh.oval_depth()
    rows = []
    for name, teacher in setup.teachers:
        aged = age_faces(teacher, data, idx, target)
        rows.append({"name": name, "profile": depth_profile(aged @ LUMA - before, depth)})
    for model, engine in setup.engines:
        rows.append({"name": model, "profile": depth_profile(engine.generate(faces) @ LUMA - before, depth)})
    return {"config": config, "faces": len(idx), "target": target, "depths": list(DEPTHS), "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    report, out = variant_rows(
        argv,
        "python -m benchmarks.oval_profile",
        __doc__.split("\n\n")[0],
        measure,
        (64, "young validation faces"),
    )
    print("depth px  " + " ".join(f"{d:>6d}" for d in report["depths"]))
    for row in report["rows"]:
        cells = " ".join("     -" if v is None else f"{v:+6.1f}" for v in row["profile"])
        print(f"{row['name'][-40:]}\n          {cells}")
    if out:
        out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
