"""Judge several training checkpoints on the validation split and say which one to export.

    python -m benchmarks.select_checkpoint runs/utkface-128/checkpoints/ckpt-1500.npz ckpt-3000.npz ...

Each checkpoint is exported to a temporary bundle and run through the same `AgingEngine` the video pipeline
uses; the independent judges score both directions on the same validation crops. The judges only measure:
nothing here feeds back into training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.judges import AgeJudge, IdentityJudge
from benchmarks.quality import DEFAULT_CACHE, compare, engine_factory, judge_images, load_split, run_transform

# Goals of the bundled model (issue: training): shift and identity bars.
GOAL_OLDER, GOAL_YOUNGER, GOAL_SAME, GOAL_DIST = 25.0, -20.0, 0.95, 0.45


def score(row: dict[str, Any]) -> float:
    """One number to rank checkpoints: age shift in the asked direction, discounted for lost identity.

    Each direction contributes its shift as a fraction of its goal, capped at 1.5, times a factor that is 1
    at or above the same-person goal and falls linearly to 0 ten points below it: aging someone into a
    stranger is failure, but one face in sixty on either side of the bar is noise.
    """
    total = 0.0
    for d, goal in (("older", GOAL_OLDER), ("younger", GOAL_YOUNGER)):
        r = row[d]
        shift, same = r.get("shift_mean"), r.get("same_rate")
        if shift is None or same is None:
            continue
        keep = min(1.0, max(0.0, 1.0 - (GOAL_SAME - same) * 10.0))
        total += min(shift / goal, 1.5) * keep
    return total


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.select_checkpoint", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--n", type=int, default=80, help="validation crops per direction")
    p.add_argument("--out", type=Path, default=None, help="JSON of all rows")
    a = p.parse_args(argv)

    from training.export import export_bundle

    young = load_split(a.cache, "young_val", a.n)
    old = load_split(a.cache, "old_val", a.n)
    age_j, id_j = AgeJudge(), IdentityJudge()
    j_young = judge_images(young, age_j, id_j)
    j_old = judge_images(old, age_j, id_j)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for ck in a.checkpoints:
            folder = export_bundle(ck, name=ck.stem, out_dir=Path(tmp))
            make = engine_factory(str(folder), 1.0, 8, False)
            row: dict[str, Any] = {"checkpoint": str(ck)}
            row["older"] = compare(j_young, judge_images(run_transform(make("older"), young), age_j, id_j))
            row["younger"] = compare(j_old, judge_images(run_transform(make("younger"), old), age_j, id_j))
            row["score"] = round(score(row), 3)
            rows.append(row)
            o, y = row["older"], row["younger"]
            print(
                f"{ck.name}: older {o['shift_mean']:+.1f} y (id {o['id_mean']:.3f}, same {o['same_rate']:.2f}) | "
                f"younger {y['shift_mean']:+.1f} y (id {y['id_mean']:.3f}, same {y['same_rate']:.2f}) | "
                f"score {row['score']}",
                flush=True,
            )
    best = max(rows, key=lambda r: r["score"])
    print(f"best: {best['checkpoint']} (score {best['score']})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"rows": rows, "best": best["checkpoint"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
