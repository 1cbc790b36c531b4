"""The gates every exported model must pass, whatever its age shift.

Per direction, on the validation faces:
- mean colour cast ≤ `colour.CAST_GATE` (1.5) and mean blotches ≤ `colour.BLOTCH_GATE` (3.0);
- no black-and-white face tinted;
- same person (dlib distance < 0.6) for at least `SAME_PERSON_GATE` (98 %) of the faces;
- realism AUC against the real target faces no worse (no higher) than the unchanged input's, measured in the
  same run.

The age judge is not a gate and never picks a checkpoint on its own: `select_checkpoint` ranks by the age shift
only among checkpoints that pass every gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.measures.colour import BLOTCH_GATE, CAST_GATE

SAME_PERSON_GATE = 0.98


def direction_gates(row: dict[str, Any], unchanged_auc: float | None) -> list[dict[str, Any]]:
    """The gates of one direction of one model.

    Args:
        row: a judged row (`benchmarks.quality.judge_row`): `colour`, `same_rate`, `realism_auc`.
        unchanged_auc: the realism AUC of the unchanged input in the same run.

    Returns:
        One dict per gate: `gate`, `direction`, `value`, `limit`, `passed` (False where the value is missing).
    """
    c = row.get("colour") or {}
    d = row.get("direction")
    checks = (
        ("cast", c.get("cast_mean"), f"≤ {CAST_GATE}", lambda v: v <= CAST_GATE),
        ("blotches", c.get("blotches_mean"), f"≤ {BLOTCH_GATE}", lambda v: v <= BLOTCH_GATE),
        ("b/w tinted", c.get("bw_tinted"), "0", lambda v: v == 0),
        ("same person", row.get("same_rate"), f"≥ {SAME_PERSON_GATE:.0%}", lambda v: v >= SAME_PERSON_GATE),
        (
            "realism AUC",
            row.get("realism_auc"),
            f"≤ unchanged {unchanged_auc}",
            lambda v: unchanged_auc is not None and v <= unchanged_auc,
        ),
    )
    return [
        {
            "gate": name,
            "direction": d,
            "value": value,
            "limit": limit,
            "passed": value is not None and ok(value),
        }
        for name, value, limit, ok in checks
    ]


def failed(gates: Iterable[dict[str, Any]]) -> list[str]:
    """'direction gate (value, limit)' for every gate that did not pass."""
    return [
        f"{g['direction']} {g['gate']} ({g['value']}, needs {g['limit']})" for g in gates if not g["passed"]
    ]
