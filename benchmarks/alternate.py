"""Two bundles' generators timed in turn in one process: the fair comparison on a host whose speed drifts.

    python -m benchmarks.alternate MODEL_A MODEL_B [--direction older] [--crops 64] [--batch 8] [--rounds 5]
        [--xla | --no-xla] [--out FILE.json]

Separate benchmark runs a minute apart on these machines differ by up to 1.4× in every stage, so a change to
a generator's cost is measured here: each round times `AgingEngine.generate` on the same random crops for A,
then for B. It prints each one's median crops/s, B's over A's, and the largest difference of their outputs
(0 where B computes what A does, as a bundle re-exported without a zero head must).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import machine, write_json
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.errors import FaceAgeError


def alternate(
    models: Sequence[str],
    direction: str = "older",
    crops: int = 64,
    batch: int = 8,
    rounds: int = 5,
    xla: bool | None = True,
) -> dict[str, Any]:
    """Time each model's generator in turn, `rounds` times, on the same (crops, S, S, 3) random crops.

    Returns:
        {"models": [{"model", "crops_per_s": [...], "median"}...], "ratio": median of the second over the
        first, "max_difference": largest |output A − output B| in 0..255 levels}.
    """
    engines = [
        AgingEngine(EngineOptions(model=m, direction=direction, batch_size=batch, xla=xla))  # type: ignore[arg-type]
        for m in models
    ]
    sizes = sorted({e.size for e in engines})
    if len(sizes) != 1:
        raise ValueError(f"the models' texture sizes differ ({sizes}): they cannot take the same crops")
    x = np.random.default_rng(0).integers(0, 256, (crops, sizes[0], sizes[0], 3)).astype(np.uint8)
    outs = [e.generate(x) for e in engines]  # also compiles each, outside the timing
    rates: list[list[float]] = [[] for _ in engines]
    for _ in range(rounds):
        for e, r in zip(engines, rates, strict=True):
            t = time.perf_counter()
            e.generate(x)
            r.append(crops / (time.perf_counter() - t))
    medians = [statistics.median(r) for r in rates]
    rows = [
        {"model": str(m), "crops_per_s": [round(v, 2) for v in r], "median": round(med, 2)}
        for m, r, med in zip(models, rates, medians, strict=True)
    ]
    return {
        "models": rows,
        "ratio": round(medians[-1] / medians[0], 3),
        "max_difference": float(np.abs(outs[0] - outs[-1]).max()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.alternate", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs=2, help="two bundle names or folders, A then B")
    p.add_argument("--direction", choices=("older", "younger"), default="older")
    p.add_argument("--crops", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, help="JSON report")
    a = p.parse_args(argv)
    if min(a.crops, a.batch, a.rounds) < 1:
        print("error: --crops, --batch and --rounds must be at least 1", file=sys.stderr)
        return 2
    try:
        res = alternate(a.models, a.direction, a.crops, a.batch, a.rounds, a.xla)
    except (FaceAgeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in res["models"]:
        print(f"{row['model']}: median {row['median']:.1f} crops/s  {row['crops_per_s']}")
    print(f"B / A: {res['ratio']:.3f}; largest output difference {res['max_difference']:.3g} levels")
    if a.out:
        write_json(
            a.out,
            {
                "benchmark": "alternate",
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": "python -m benchmarks.alternate "
                + " ".join(sys.argv[1:] if argv is None else argv),
                "machine": machine(),
                "direction": a.direction,
                "batch": a.batch,
                "xla": a.xla,
                **res,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
