"""Judge several training checkpoints on the validation faces and say which one to export.

    python -m benchmarks.select_checkpoint runs/utkface-128/checkpoints/ckpt-1500.npz ckpt-3000.npz ... \
        [--n 60] [--limit 200] [--out checkpoints.json]

Each checkpoint is exported to a temporary bundle and run through the same `AgingEngine` and still-face path
as `benchmarks.quality`, on the same fixed faces. A checkpoint must pass every gate (`benchmarks.gates`:
colour cast, blotches, black-and-white tint, same person, realism against the unchanged input), whatever its
age shift; only among those that pass does the age shift rank them. The age judge never picks on its own,
and nothing here feeds back into training. Exit code 1 when no checkpoint passes, with each one's failures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.gates import direction_gates, failed
from benchmarks.judges import AgeJudge, IdentityJudge
from benchmarks.quality import DIRECTIONS, engine_factory, judge_images, judge_row, template_of
from benchmarks.stills import DEFAULT_DATA, features_of, load_faces, open_landmarker, realism_references

# Goals of the bundled model (issue: training): shift and identity bars.
GOAL_OLDER, GOAL_YOUNGER, GOAL_SAME, GOAL_DIST = 25.0, -20.0, 0.95, 0.45


def score(row: dict[str, Any]) -> float:
    """Age shift in the asked direction, as a fraction of its goal (capped at 1.5), summed over directions.

    Only used to rank checkpoints that already pass every gate (identity included), so the identity discount
    of earlier versions is a gate now, not a factor.
    """
    total = 0.0
    for d, goal in (("older", GOAL_OLDER), ("younger", GOAL_YOUNGER)):
        shift = row[d].get("shift_mean")
        if shift is not None:
            total += min(shift / goal, 1.5)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.select_checkpoint", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UTKFace folder")
    p.add_argument("--n", type=int, default=60, help="faces per direction judged for age and identity")
    p.add_argument("--limit", type=int, default=200, help="faces a side for colour and realism")
    p.add_argument("--bw", type=int, default=12, help="black-and-white copies per direction")
    p.add_argument("--out", type=Path, default=None, help="JSON of all rows")
    a = p.parse_args(argv)

    from training.errors import TrainingError
    from training.export import export_bundle

    try:
        with open_landmarker() as landmarker:
            sets = {d: load_faces(a.data, d, landmarker, a.limit, a.bw) for d in DIRECTIONS}
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    age_j, id_j = AgeJudge(), IdentityJudge()
    refs = {d: realism_references(sets[d]) for d in DIRECTIONS}
    targets = {
        d: features_of([f.image for f in sets[d].targets], [f.frame for f in sets[d].targets])
        for d in DIRECTIONS
    }
    judged = {d: judge_images([f.image for f in sets[d].sources[: a.n]], age_j, id_j) for d in DIRECTIONS}
    print(
        "realism references: "
        + ", ".join(f"{d} real/real {r['real_vs_real']}, unchanged {r['unchanged']}" for d, r in refs.items())
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, ck in enumerate(a.checkpoints):
            try:
                # Numbered: checkpoints of two runs share their file names (ckpt-3400.npz).
                folder = export_bundle(ck, name=f"{i:03d}-{ck.stem}", out_dir=Path(tmp))
            except TrainingError as error:
                print(f"error: {ck}: {error}", file=sys.stderr)
                return error.exit_code
            make = engine_factory(str(folder), 1.0, 8, None)
            row: dict[str, Any] = {"checkpoint": str(ck), "gates": []}
            for d in DIRECTIONS:
                transform = make(d)
                r, _, _ = judge_row(
                    "model", d, transform, template_of(transform), sets[d], judged[d], targets[d], age_j, id_j
                )
                row[d] = r
                row["gates"] += direction_gates(r, refs[d]["unchanged"])
            row["failed"] = failed(row["gates"])
            row["score"] = round(score(row), 3)
            rows.append(row)
            o, y = row["older"], row["younger"]
            verdict = "passes every gate" if not row["failed"] else "FAILS " + "; ".join(row["failed"])
            print(
                f"{ck}: older {o['shift_mean']:+.1f} y (same {o['same_rate']:.0%}, cast {o['colour']['cast_mean']:.2f}, "
                f"AUC {o['realism_auc']}) | younger {y['shift_mean']:+.1f} y (same {y['same_rate']:.0%}, cast "
                f"{y['colour']['cast_mean']:.2f}, AUC {y['realism_auc']}) | {verdict}",
                flush=True,
            )
    passing = [r for r in rows if not r["failed"]]
    best = max(passing, key=lambda r: r["score"]) if passing else None
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = a.out.with_name(f".{a.out.name}.tmp")
        tmp_out.write_text(
            json.dumps({"references": refs, "rows": rows, "best": best and best["checkpoint"]}, indent=2)
        )
        tmp_out.replace(a.out)
    if best is None:
        print("no checkpoint passes every gate: none to export (see the failures above)", file=sys.stderr)
        return 1
    print(f"best: {best['checkpoint']} (score {best['score']}, every gate passed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
