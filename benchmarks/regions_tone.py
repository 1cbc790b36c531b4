"""Whether aging darkens or lightens each part of the face as real aging does: mean luma change by region.

    python -m benchmarks.regions_tone --config CONFIG [--model MODEL ...] [--variant NAME KEY=VALUE ...]...
        [--n 40] [--target 60] [--json FILE]

The faces are the config's canonical cache: the first `--n` validation faces of each gender labelled 18–29,
aged to `--target`. The rows are the config's registered teacher ("config"), each `--variant` of it and each
`--model`'s `G`; the reference row ("real") is the mean luma of the validation faces labelled within 5 years of
the target minus that of the young ones, each face in its own registration.

A teacher's shape warp moves the features (brows, lids), so each region is measured on the same skin: its
mask moved by the face's own displacement (`G` with its config's teacher's), against the region where it was.
At the region's fixed place the texels hold other skin after aging, part brow where there was lid: such a
reading once put the band between brows and lids 15 levels lighter than real aging, where on the same skin it
is within a few levels. Levels of 0..255; the script measures and asserts nothing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.measures.outline import LUMA
from benchmarks.teacher import age_faces, variant_setup
from benchmarks.teacher_sweep import variant_rows
from faceage_video.face.mesh import CanonicalMesh

GENDERS = ("men", "women")
# Real faces within this many years of the target are the reference.
REAL_SPAN = 5.0


def region_masks(mesh: CanonicalMesh) -> dict[str, NDArray[np.float32]]:
    """Named (S, S) region weights in the canonical layout: the lid band (between each brow and its upper eye
    contour, brows and eyes left out), the brows, under the eyes, the forehead and the cheeks."""
    teaching = importlib.import_module("training.teacher")
    face = mesh.mask("face") > 0.5
    eyes = teaching.landmark_region(mesh, teaching.EYES[0]) | teaching.landmark_region(mesh, teaching.EYES[1])
    brows = teaching.landmark_region(mesh, teaching.BROWS[0]) | teaching.landmark_region(
        mesh, teaching.BROWS[1]
    )
    under = np.zeros_like(face)
    for eye, rim in zip(teaching.EYES, teaching.RIMS, strict=True):
        under |= teaching.landmark_region(mesh, eye[:9] + rim)  # the lower lid: `lid_band` says the order
    # At 128 px the lid band is only about 4 texels high: the features' grown masks would cover it.
    out = {
        "lid band": teaching.lid_band(mesh),
        "brows": brows,
        "under eyes": under & ~eyes,
        "forehead": teaching.landmark_region(mesh, teaching.FOREHEAD),
        "cheeks": teaching.landmark_region(mesh, teaching.CHEEKS[0])
        | teaching.landmark_region(mesh, teaching.CHEEKS[1]),
    }
    return {k: (v & face).astype(np.float32) for k, v in out.items()}


def moved(
    teacher: Any, masks: dict[str, NDArray[np.float32]], age: float, target: float, gender: int
) -> dict[str, NDArray[np.float32]]:
    """(S, S) each region's mask where `teacher`'s shape warp moves it for a face of `age` and `gender`."""
    teaching = importlib.import_module("training.teacher")
    o = teacher.options
    if not o.shape:
        return masks
    _, _, s_a = teacher.protos.at(gender, age)
    _, _, s_b = teacher.protos.at(gender, target)
    move = o.shape * (s_b - s_a) * teacher.shape_weight[:, None]
    return {
        k: np.asarray(np.clip(teaching.warp_shape(m, teacher.mesh, move), 0.0, 1.0), np.float32)
        for k, m in masks.items()
    }


def region_means(
    before: NDArray[np.floating[Any]],
    after: NDArray[np.floating[Any]],
    masks: dict[str, NDArray[np.float32]],
    moved_masks: Sequence[dict[str, NDArray[np.float32]]],
) -> dict[str, float]:
    """Per region name: the mean over faces of (N, S, S) luma `after` over each face's moved region minus
    `before` over the region where it was: the same skin, wherever the warp took it."""
    out = {}
    for name, mask in masks.items():
        was = (before * mask).sum(axis=(1, 2)) / mask.sum()
        now = [
            float((a * m[name]).sum() / max(m[name].sum(), 1e-6))
            for a, m in zip(after, moved_masks, strict=True)
        ]
        out[name] = round(float(np.mean(np.asarray(now) - was)), 2)
    return out


def measure(
    config: str, models: Sequence[str], variants: Sequence[tuple[str, dict[str, Any]]], n: int, target: float
) -> dict[str, Any]:
    """Per gender: the real row and one row per teacher, variant and model, each `name` and `regions`."""
    setup = variant_setup(config, variants, models)
    data = setup.data
    masks = region_masks(setup.mesh)
    report: dict[str, Any] = {"config": config, "target": target, "genders": {}}
    for g, gender in enumerate(GENDERS):
        young = np.flatnonzero(data.val & (data.gender == g) & (data.age >= 18) & (data.age <= 29))
        old = np.flatnonzero(data.val & (data.gender == g) & (np.abs(data.age - target) <= REAL_SPAN))
        idx = young[:n]
        faces = np.asarray(data.faces[idx])
        before = faces.astype(np.float32) @ LUMA
        real = np.asarray(data.faces[old]).astype(np.float32) @ LUMA
        young_y = np.asarray(data.faces[young]).astype(np.float32) @ LUMA
        real_row = {
            k: round(
                float((real * m).sum() / (len(old) * m.sum()) - (young_y * m).sum() / (len(young) * m.sum())),
                2,
            )
            for k, m in masks.items()
        }
        rows: list[dict[str, Any]] = [{"name": "real", "regions": real_row}]
        ages = data.age[idx].astype(float)
        wheres = []
        for name, teacher in setup.teachers:
            aged = age_faces(teacher, data, idx, target)
            wheres.append([moved(teacher, masks, a, target, g) for a in ages])
            rows.append({"name": name, "regions": region_means(before, aged @ LUMA, masks, wheres[-1])})
        for model, engine in setup.engines:
            # A bundle's G learned the config's teacher: its features moved as that teacher's did.
            pairs = np.stack([ages, np.full_like(ages, target)], axis=1).astype(np.float32)
            after = engine.generate(faces, pairs) @ LUMA
            rows.append({"name": model, "regions": region_means(before, after, masks, wheres[0])})
        report["genders"][gender] = {"young": len(idx), "real": len(old), "rows": rows}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    report, out = variant_rows(
        argv,
        "python -m benchmarks.regions_tone",
        __doc__.split("\n\n")[0],
        measure,
        (40, "young validation faces a gender"),
    )
    for gender, part in report["genders"].items():
        names = list(part["rows"][0]["regions"])
        print(f"{gender} ({part['young']} young, {part['real']} real near {report['target']:g})")
        print(f"{'':40s} " + " ".join(f"{k:>10s}" for k in names))
        for row in part["rows"]:
            print(f"{row['name'][-40:]:40s} " + " ".join(f"{row['regions'][k]:+10.1f}" for k in names))
    if out:
        out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
