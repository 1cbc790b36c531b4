"""The outline halo of several bundles on the same faces: how much lighter each turns the skin along the face
oval than the skin just inside it (`measures.outline`), through the runtime's paste-back.

    python -m benchmarks.outline MODEL [MODEL ...] [--direction older] [--limit 60] [--json FILE]

The faces are the quality benchmark's fixed validation sources of that direction (`stills.load_faces`, no
black-and-white copies), so the numbers match its `outline` row for the same model. Per model: the band's
own mean change, the ring's just inside it, and their difference (the halo), mean over faces, in levels of
0..255. It measures and asserts nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measures.outline import outline_change, summarize_outline
from benchmarks.quality import DEFAULT_DATA, write_json
from benchmarks.stills import DIRECTIONS, Direction, age_stills, load_faces, open_landmarker
from faceage_video.engine.generator import AgingEngine, EngineOptions


def measure(
    models: Sequence[str], direction: Direction, limit: int, data: Path = DEFAULT_DATA
) -> list[dict[str, Any]]:
    """One row per model: `model`, `faces`, `band_mean`, `ring_mean`, `halo_mean`, `halo_abs_mean`,
    `halo_abs_p90`."""
    with open_landmarker() as lm:
        sources = load_faces(data, direction, lm, limit=limit, bw=0).sources
    rows = []
    for model in models:
        engine = AgingEngine(EngineOptions(model=model, direction=direction))
        outputs = age_stills(
            [f.image for f in sources], [f.landmarks for f in sources], engine.generate, engine.template
        )
        changes = [outline_change(f.image, o, f.landmarks) for f, o in zip(sources, outputs, strict=True)]
        found = [c for c in changes if c is not None]
        row = {"model": model, **summarize_outline(changes)}
        row["ring_mean"] = round(float(np.mean([c.ring for c in found])), 2) if found else None
        rows.append(row)
        print(
            f"{model}: band {row['band_mean']:+.2f}, ring {row['ring_mean']:+.2f}, halo {row['halo_mean']:+.2f} "
            f"(|halo| {row['halo_abs_mean']:.2f}, p90 {row['halo_abs_p90']:.2f}) levels over {row['faces']} faces",
            flush=True,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.outline", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="bundled model names or bundle folders")
    p.add_argument("--direction", choices=DIRECTIONS, default="older")
    p.add_argument("--limit", type=int, default=60, help="source faces (default 60)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    a = p.parse_args(argv)
    direction: Direction = a.direction
    rows = measure(a.models, direction, a.limit, a.data)
    if a.json is not None:
        write_json(a.json, {"benchmark": "outline", "direction": a.direction, "limit": a.limit, "rows": rows})
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
