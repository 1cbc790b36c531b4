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

import argparse
import importlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.measures.outline import LUMA
from benchmarks.teacher import load_prototypes
from benchmarks.teacher_sweep import parse_variant
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.mesh import CanonicalMesh, MeshOptions

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
    cfg = importlib.import_module("training.config").load_config(config)
    teaching = importlib.import_module("training.teacher")
    data = importlib.import_module("training.canonical").load_canonical(cfg.cache)
    mesh = CanonicalMesh(MeshOptions(size=cfg.size))
    idx = np.flatnonzero(data.val & (data.age >= 18) & (data.age <= 29))[:n]
    faces = np.asarray(data.faces[idx])
    before = faces.astype(np.float32) @ LUMA
    depth = mesh.oval_depth()
    protos = load_prototypes(config, mesh)
    rows = []
    for name, overrides in [("config", {}), *variants]:
        teacher = teaching.RegisteredTeacher(
            protos, mesh, replace(teaching.teacher_options(cfg), **overrides)
        )
        aged = np.stack(
            [
                teacher(f.astype(np.float32) / 255.0, float(a), target, int(g), str(p), s) * 255.0
                for f, a, g, p, s in zip(
                    faces, data.age[idx], data.gender[idx], data.paths[idx], data.shape[idx], strict=True
                )
            ]
        )
        rows.append({"name": name, "profile": depth_profile(aged @ LUMA - before, depth)})
    for model in models:
        engine = AgingEngine(EngineOptions(model=model))
        if engine.size != cfg.size:
            raise ValueError(f"{model} works at {engine.size} px, config {config} at {cfg.size} px")
        rows.append({"name": model, "profile": depth_profile(engine.generate(faces) @ LUMA - before, depth)})
    return {"config": config, "faces": len(idx), "target": target, "depths": list(DEPTHS), "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.oval_profile", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--config", required=True, help="mesh training config (its cache and teacher)")
    p.add_argument("--model", action="append", default=[], help="a bundle whose G is profiled too")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE")
    p.add_argument("--n", type=int, default=64, help="young validation faces (default 64)")
    p.add_argument("--target", type=float, default=60.0, help="target age (default 60)")
    p.add_argument("--json", type=Path, help="write the profiles here")
    args = p.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
        report = measure(args.config, args.model, variants, args.n, args.target)
    except (ValueError, OSError) as error:
        p.error(str(error))
    print("depth px  " + " ".join(f"{d:>6d}" for d in report["depths"]))
    for row in report["rows"]:
        cells = " ".join("     -" if v is None else f"{v:+6.1f}" for v in row["profile"])
        print(f"{row['name'][-40:]}\n          {cells}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
