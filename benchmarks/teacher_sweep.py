"""Teacher ablations: variants of a config's registered teacher, each judged by every still measure.

    python -m benchmarks.teacher_sweep --config utkface-shade-128 [--n 60] [--directions older younger]
        [--variant NAME KEY=VALUE ...]... [--out FILE.json] [--pictures DIR]

A student follows its teacher, so a teacher that does not look like aging cannot train one that does. Each
variant is the config's `TeacherOptions` with some fields replaced (`--variant shade3 shading=3`); the
config's own teacher is always the first row, "config". Every row goes through the runtime's cut → transform
→ paste-back path (`benchmarks.quality.judge_row`) on the quality benchmark's fixed validation faces: judged
age shift, identity, colour, realism AUC against the real target faces and its breakdown by region. The
unchanged input's realism is printed beside them. The judges measure; a variant is chosen by looking at its
pictures and by realism, not by the age judge alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from benchmarks.judges import AgeJudge, IdentityJudge
from benchmarks.quality import DEFAULT_DATA, judge_images, judge_row, picture, write_json
from benchmarks.stills import (
    DIRECTIONS,
    Direction,
    FaceSets,
    Space,
    Transform,
    features_of,
    load_faces,
    open_landmarker,
    safe_auc,
)
from benchmarks.teacher import load_prototypes, teacher_transforms
from faceage_video.face.mesh import CanonicalMesh, MeshOptions

Variant = tuple[str, dict[str, Any]]


def parse_variant(words: Sequence[str]) -> Variant:
    """`NAME KEY=VALUE ...` → (name, overrides); values are numbers, or true / false.

    Raises:
        ValueError: an unknown `TeacherOptions` field or a value that is not a number or boolean.
    """
    from training.teacher import TeacherOptions

    if not words:
        raise ValueError("--variant needs a name, then KEY=VALUE pairs")
    known = {f.name for f in fields(TeacherOptions)}
    name = words[0]
    out: dict[str, Any] = {}
    for word in words[1:]:
        key, sep, raw = word.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--variant {name}: {word!r} is not KEY=VALUE with KEY one of {sorted(known)}")
        if raw.lower() in ("true", "false"):
            out[key] = raw.lower() == "true"
            continue
        try:
            out[key] = float(raw)
        except ValueError as exc:
            raise ValueError(f"--variant {name}: {key} must be a number or true/false, got {raw!r}") from exc
    return name, out


def variant_rows(
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    measure: Callable[[str, Sequence[str], Sequence[Variant], int, float], dict[str, Any]],
    n: tuple[int, str],
) -> tuple[dict[str, Any], Path | None]:
    """The command line of a measure over a config's teacher, its `--variant`s and bundles' `G`
    (`benchmarks.oval_profile`, `benchmarks.regions_tone`): `measure(config, models, variants, n, target)`'s
    report and the `--json` path. `n` is the default face count and its help text; a bad option or a
    `measure` that raises ValueError or OSError exits 2 with the message."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help="mesh training config (its cache and teacher)")
    p.add_argument("--model", action="append", default=[], help="a bundle whose G is measured too")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE")
    p.add_argument("--n", type=int, default=n[0], help=f"{n[1]} (default {n[0]})")
    p.add_argument("--target", type=float, default=60.0, help="target age (default 60)")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
        return measure(args.config, args.model, variants, args.n, args.target), args.json
    except (ValueError, OSError) as error:
        p.error(str(error))


def sweep(
    config: str,
    variants: Sequence[Variant],
    n: int,
    directions: Sequence[Direction] = DIRECTIONS,
    data: Path = DEFAULT_DATA,
    pictures: Path | None = None,
) -> dict[str, Any]:
    """Judge the config's teacher and each variant on `n` faces a direction.

    Returns:
        {"config", "n", "unchanged": {direction: realism AUC}, "rows": [judge_row's row + "overrides"]}.

    Raises:
        RuntimeError: the config has no registered teacher (the reason is in the message).
    """
    from training.config import load_config

    cfg = load_config(config)
    template = CanonicalMesh(MeshOptions(size=cfg.size))
    with open_landmarker() as landmarker:
        sets = {d: load_faces(data, d, landmarker, n, 4) for d in directions}
    protos = load_prototypes(config, template)
    report: dict[str, Any] = {"config": config, "n": n}

    def variants_of(d: Direction, s: FaceSets) -> Iterator[tuple[str, Transform, dict[str, Any]]]:
        for name, overrides in [("config", {}), *variants]:
            transforms = teacher_transforms(config, {d: s}, template, overrides, protos)
            if isinstance(transforms, str):
                raise RuntimeError(transforms)
            yield name, transforms[d], {"overrides": overrides}

    report["unchanged"], report["rows"] = judge_transforms(sets, template, variants_of, pictures, "teacher")
    return report


def judge_transforms(
    sets: dict[Direction, FaceSets],
    template: Space,
    transforms_of: Callable[[Direction, FaceSets], Iterable[tuple[str, Transform, dict[str, Any]]]],
    pictures: Path | None = None,
    prefix: str = "row",
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Every still measure (`judge_row`) of each named transform of each direction.

    Args:
        sets: the faces of each direction.
        template: the face space the transforms work in.
        transforms_of: (direction, its faces) → (name, transform, extra fields of the row) for each row.
        pictures: a folder for one before/after picture a row, `{prefix}_{name}_{direction}.jpg`.

    Returns:
        (the unchanged input's realism AUC by direction, the rows), each row printed as it is judged.
    """
    age_judge, id_judge = AgeJudge(), IdentityJudge()
    unchanged: dict[str, float | None] = {}
    rows: list[dict[str, Any]] = []
    for d, s in sets.items():
        target = features_of([f.image for f in s.targets], [f.frame for f in s.targets])
        source = features_of([f.image for f in s.sources], [f.frame for f in s.sources])
        unchanged[d] = safe_auc(target, source, 0)
        judged_in = judge_images([f.image for f in s.sources], age_judge, id_judge)
        for name, transform, extra in transforms_of(d, s):
            row, outs, bw = judge_row(name, d, transform, template, s, judged_in, target, age_judge, id_judge)
            row.update(extra)
            rows.append(row)
            if pictures is not None:
                pictures.mkdir(parents=True, exist_ok=True)
                k = min(10, len(s.sources))
                faces, images = [*s.sources[:k], *s.bw[:4]], [*outs[:k], *bw[:4]]
                picture(pictures / f"{prefix}_{name}_{d}.jpg", faces, images)
            print(_line(row, unchanged[d]), flush=True)
    return unchanged, rows


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _line(row: dict[str, Any], unchanged: float | None) -> str:
    """One printed row: shift, identity, cast, blotches, realism (and the unchanged input's), by region."""
    by = (row.get("realism_by") or {}).get("region", {})
    regions = " ".join(f"{k} {_f(v, '.2f')}" for k, v in by.items())
    colour = row.get("colour") or {}
    return (
        f"{row['direction']:7s} {row['name']:12s} shift {_f(row['shift_mean'], '+.1f')} y  identity "
        f"{_f(row['id_mean'], '.3f')}  cast / blotches {_f(colour.get('cast_mean'), '.2f')} / "
        f"{_f(colour.get('blotches_mean'), '.2f')}  realism {_f(row['realism_auc'], '.3f')} "
        f"(unchanged {_f(unchanged, '.3f')})  {regions}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.teacher_sweep", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a mesh training config (name or path)")
    p.add_argument("--n", type=int, default=60, help="faces a direction (default 60)")
    p.add_argument("--directions", nargs="+", choices=DIRECTIONS, default=list(DIRECTIONS))
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, help="JSON report")
    p.add_argument("--pictures", type=Path, help="folder for one before/after picture a row")
    a = p.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in a.variant]
    except ValueError as exc:
        p.error(str(exc))
    try:
        report = sweep(a.config, variants, a.n, a.directions, a.data, a.pictures)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    if a.out:
        write_json(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
