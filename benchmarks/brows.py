"""How dark the brows are against the skin around them, in real faces by age and in aged ones.

    python -m benchmarks.brows --config CONFIG [--model MODEL ...] [--n 60] [--targets 50 60 70] [--json FILE]

Brows thin and lighten with age. Whether a change of the brows belongs to the generator or to the hair stage
(`face.hair`) depends on what the generator already does to them, so this measures it. On the canonical
textures of a mesh config's cache:

- real faces of every age band, per gender (the cache's labelled faces, training and validation alike);
- the first `--n` validation faces labelled 18–29 of each gender, aged to each target by the config's
  registered teacher and by each `--model`'s `G`, from their labelled ages.

The brow contrast of a texture is (skin − brow) / skin: the brow its 30th luma percentile inside both brows'
landmark hulls (`training.teacher.BROWS`, the teacher's brows), the skin the 70th percentile of a ring 1–4 px
around them at 128 px (so the lids' crease and the lashes stay below it). Brow chroma is the mean |RGB − luma| inside the brows over
their mean luma. It measures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.measures.outline import LUMA
from benchmarks.teacher import age_faces, variant_setup
from faceage_video.face.mesh import CanonicalMesh
from training.teacher import BROWS, landmark_region

# Age bands of the real rows (years, inclusive).
BANDS = ((18, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 120))
# Most real faces measured per gender and band.
REAL_PER_BAND = 300


def brow_regions(mesh: CanonicalMesh) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(S, S) the brows, and (S, S) the skin ring around them, in the canonical texture."""
    inside = np.zeros((mesh.size, mesh.size), np.uint8)
    for brow in BROWS:
        inside |= landmark_region(mesh, brow).astype(np.uint8)
    k = max(round(mesh.size / 128), 1)
    near = cv2.dilate(inside, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    far = cv2.dilate(inside, np.ones((8 * k + 1, 8 * k + 1), np.uint8))
    return inside > 0, (far > 0) & (near == 0)


def brow_stats(
    faces: NDArray[np.floating[Any]] | NDArray[np.uint8], brows: NDArray[np.bool_], ring: NDArray[np.bool_]
) -> dict[str, float]:
    """Mean brow contrast and brow chroma (module docstring) over (N, S, S, 3) textures in 0..255."""
    f = np.asarray(faces, np.float32)
    luma = f @ LUMA
    brow_l = np.percentile(luma[:, brows], 30, axis=1)
    skin_l = np.percentile(luma[:, ring], 70, axis=1)
    contrast = (skin_l - brow_l) / np.maximum(skin_l, 1.0)
    chroma = np.abs(f[:, brows] - luma[:, brows][..., None]).mean(axis=(1, 2))
    return {
        "contrast": round(float(contrast.mean()), 3),
        "chroma": round(float((chroma / np.maximum(luma[:, brows].mean(axis=1), 1.0)).mean()), 3),
    }


def measure(config: str, models: Sequence[str], n: int, targets: Sequence[float]) -> dict[str, Any]:
    """Real rows per gender and band, and aged rows per gender, target and transform (module docstring)."""
    setup = variant_setup(config, [], models)
    data, mesh = setup.data, setup.mesh
    brows, ring = brow_regions(mesh)
    real, aged = [], []
    for gender in (0, 1):
        for lo, hi in BANDS:
            idx = np.flatnonzero((data.gender == gender) & (data.age >= lo) & (data.age <= hi))
            idx = (
                idx[np.linspace(0, len(idx) - 1, min(REAL_PER_BAND, len(idx))).astype(int)]
                if len(idx)
                else idx
            )
            if len(idx):
                stats = brow_stats(np.asarray(data.faces[idx]), brows, ring)
                real.append({"gender": gender, "band": f"{lo}-{hi}", "faces": len(idx), **stats})
        young = np.flatnonzero(data.val & (data.gender == gender) & (data.age >= 18) & (data.age <= 29))[:n]
        faces = np.asarray(data.faces[young])
        aged.append({"gender": gender, "name": "input", "target": None, **brow_stats(faces, brows, ring)})
        for target in targets:
            for name, teacher in setup.teachers:
                out = age_faces(teacher, data, young, target)
                aged.append(
                    {
                        "gender": gender,
                        "name": f"teacher:{name}",
                        "target": target,
                        **brow_stats(out, brows, ring),
                    }
                )
            for model, engine in setup.engines:
                ages = np.array([[data.age[i], target] for i in young], np.float32)
                out = engine.generate(faces, ages) if engine.conditioned else engine.generate(faces)
                aged.append(
                    {"gender": gender, "name": model, "target": target, **brow_stats(out, brows, ring)}
                )
    return {"config": config, "faces_per_gender": n, "real": real, "aged": aged}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.brows", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a mesh training config (its cache and teacher)")
    p.add_argument(
        "--model", action="append", default=[], help="a bundle whose G ages the faces (repeatable)"
    )
    p.add_argument("--n", type=int, default=60, help="young validation faces per gender")
    p.add_argument("--targets", type=float, nargs="+", default=[50.0, 60.0, 70.0])
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    report = measure(a.config, a.model, a.n, a.targets)
    report["command"] = "python -m benchmarks.brows " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:]
    )
    for row in report["real"]:
        g = "M" if row["gender"] == 0 else "F"
        print(
            f"real {g} {row['band']:>7s} n={row['faces']:3d}  contrast {row['contrast']:.3f}  chroma {row['chroma']:.3f}"
        )
    for row in report["aged"]:
        g = "M" if row["gender"] == 0 else "F"
        t = "" if row["target"] is None else f"→{row['target']:.0f}"
        print(
            f"{g} {row['name'][-40:]:>40s} {t:>4s}  contrast {row['contrast']:.3f}  chroma {row['chroma']:.3f}"
        )
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
