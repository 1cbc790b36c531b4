"""Every judged model on one picture: judged age shift against realism, per direction.

    python -m benchmarks.frontier benchmarks/results/quality-*.json [--out benchmarks/results/frontier.png]
        [--goal-older 25] [--goal-younger -20]

Each quality report (`python -m benchmarks.quality … --out FILE.json`) gives its model's point and, where it
was judged with `--teacher`, its teacher's. Aging wants a point high and left: far up the judge's age, and
realism no worse than the unchanged input's (the gate, a vertical line; right of it fails), towards real
against real (a second line). De-aging mirrors it downwards. The picture shows what a table of shifts hides:
whether a model bought its age with realism.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.plots import _pyplot

DIRECTIONS = ("older", "younger")


@dataclass(frozen=True)
class Point:
    """One row of a report: `kind` is "model" or "teacher"; `shift` in years, `realism` an AUC."""

    label: str
    kind: str
    direction: str
    shift: float
    realism: float


@dataclass(frozen=True)
class Reference:
    """A report's realism references for one direction: the unchanged input's AUC and real against real."""

    direction: str
    unchanged: float
    real_vs_real: float


def label_of(path: Path, report: dict[str, Any]) -> str:
    """`quality-NAME.json` → NAME; otherwise the bundle's manifest name, then the file stem."""
    if path.stem.startswith("quality-"):
        return path.stem[len("quality-") :]
    manifest = report.get("model_manifest") or {}
    return str(manifest.get("name") or report.get("model") or path.stem)


def points_of(path: Path, report: dict[str, Any]) -> tuple[list[Point], list[Reference]]:
    """The model and teacher points and the realism references of one report.

    Raises:
        ValueError: not a quality report (no `rows`).
    """
    rows = report.get("rows")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: not a quality report (no rows)")
    label = label_of(path, report)
    # A teacher is its config's, which several students share: label it so, and `dedupe` keeps one.
    teacher = str((report.get("teacher") or {}).get("config") or label)
    pts = [
        Point(
            teacher if r["name"] == "teacher" else label,
            r["name"],
            r["direction"],
            float(r["shift_mean"]),
            float(r["realism_auc"]),
        )
        for r in rows
        if r.get("name") in ("model", "teacher")
        and r.get("direction") in DIRECTIONS
        and r.get("shift_mean") is not None
        and r.get("realism_auc") is not None
    ]
    refs = [
        Reference(d, float(v["unchanged"]), float(v["real_vs_real"]))
        for d, v in (report.get("references") or {}).items()
        if d in DIRECTIONS and v.get("unchanged") is not None and v.get("real_vs_real") is not None
    ]
    return pts, refs


def dedupe(points: Sequence[Point]) -> list[Point]:
    """One point per (kind, direction, value): reports that share a network or a teacher (the same numbers
    to the hundredth of a year and the thousandth of AUC) become one point, their labels joined by " = "."""
    merged: dict[tuple[str, str, float, float], Point] = {}
    for p in points:
        key = (p.kind, p.direction, round(p.shift, 2), round(p.realism, 3))
        have = merged.get(key)
        if have is None:
            merged[key] = p
        elif p.label not in have.label.split(" = "):
            merged[key] = Point(f"{have.label} = {p.label}", p.kind, p.direction, p.shift, p.realism)
    return list(merged.values())


def plot_frontier(
    points: Sequence[Point],
    refs: Sequence[Reference],
    path: Path,
    goals: dict[str, float],
    highlight: str = "",
) -> bool:
    """Two panels (aging, de-aging): shift against realism, one marker a model (filled; `highlight` a star)
    or teacher (open), the references' medians as vertical lines and the goals as horizontal ones. False when
    nothing to plot."""
    if not points:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 11), dpi=110)
    labels = sorted({p.label for p in points})
    colours = {lab: plt.cm.tab20(i % 20) for i, lab in enumerate(labels)}
    for ax, direction in zip(axes, DIRECTIONS, strict=True):
        mine = [p for p in points if p.direction == direction]
        for p in mine:
            teacher = p.kind == "teacher"
            names = p.label.split(" = ")
            more = len(names) - 1
            kind = ("config" if teacher else "bundle") + ("s" if more > 1 else "")
            short = names[0] + (f" and {more} more {kind}" if more else "")
            star = highlight in names and not teacher
            ax.scatter(
                p.realism,
                p.shift,
                s=160 if star else 60,
                marker="s" if teacher else "*" if star else "o",
                facecolors="none" if teacher else colours[p.label],
                edgecolors="black" if star else colours[p.label],
                zorder=4 if star else 3,
                label=(f"teacher of {short}" if teacher else short + (" (default)" if star else ""))
                + f": {p.shift:+.1f} y, {p.realism:.3f}",
            )
        ref = [r for r in refs if r.direction == direction]
        if ref:
            unchanged = sorted(r.unchanged for r in ref)[len(ref) // 2]
            real = sorted(r.real_vs_real for r in ref)[len(ref) // 2]
            ax.axvline(
                unchanged, color="crimson", linestyle="--", label=f"unchanged input {unchanged:.3f} (gate)"
            )
            ax.axvline(real, color="seagreen", linestyle=":", label=f"real against real {real:.3f}")
            ax.axvspan(unchanged, max(1.0, max(p.realism for p in mine) + 0.01), color="crimson", alpha=0.06)
        if direction in goals:
            ax.axhline(goals[direction], color="navy", linestyle="-.", label=f"goal {goals[direction]:+g} y")
        ax.axhline(0.0, color="grey", linewidth=0.6)
        ax.set_title("aging (young 18–29 → older)" if direction == "older" else "de-aging (50+ → younger)")
        ax.set_xlabel("realism AUC against real target-age faces (0.5 = indistinguishable)")
        ax.set_ylabel("judged age shift, years")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.suptitle(
        "Every judged model: age bought against realism (filled: model, open: its teacher; right of the red line fails)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Bad input: one line on stderr, exit 2."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.frontier", description=__doc__.split("\n")[0])
    p.add_argument("reports", nargs="+", type=Path, help="quality reports (JSON)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/frontier.png"))
    p.add_argument("--goal-older", type=float, default=25.0)
    p.add_argument("--goal-younger", type=float, default=-20.0)
    p.add_argument("--highlight", default="", help="the label drawn as a star; default: the default model")
    a = p.parse_args(argv)
    points: list[Point] = []
    refs: list[Reference] = []
    try:
        for path in a.reports:
            pts, rf = points_of(path, json.loads(path.read_text()))
            points += pts
            refs += rf
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    points = dedupe(points)
    goals = {"older": a.goal_older, "younger": a.goal_younger}
    if not a.highlight:
        from models.bundle import DEFAULT_MODEL  # here: it loads TensorFlow

        a.highlight = DEFAULT_MODEL
    if not plot_frontier(points, refs, a.out, goals, a.highlight):
        print("error: the reports hold no model or teacher row to plot", file=sys.stderr)
        return 2
    for pt in sorted(points, key=lambda q: (q.direction, q.label, q.kind)):
        print(f"{pt.direction:8} {pt.label:40} {pt.kind:8} {pt.shift:+6.1f} y  realism {pt.realism:.3f}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
