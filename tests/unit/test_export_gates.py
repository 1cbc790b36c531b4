"""Export refuses a model that fails a quality gate (or was never judged), unless --force; the card shows all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gates import direction_gates, failed
from training.errors import GateError
from training.export import _card, export_bundle, gate_failures, summarize_metrics

ROOT = Path(__file__).resolve().parents[2]


def _row(
    direction: str, cast: float = 0.5, tinted: int = 0, same: float = 1.0, auc: float = 0.7
) -> dict[str, Any]:
    return {
        "name": "model",
        "direction": direction,
        "same_rate": same,
        "realism_auc": auc,
        "colour": {"cast_mean": cast, "blotches_mean": 1.0, "bw_tinted": tinted, "bw_faces": 4},
    }


def test_gates_pass_a_clean_model_and_name_each_failure() -> None:
    clean = direction_gates(_row("older"), unchanged_auc=0.8)
    assert len(clean) == 5 and all(g["passed"] for g in clean)
    bad = direction_gates(_row("older", cast=3.7, tinted=2, same=0.95, auc=0.9), unchanged_auc=0.88)
    assert {g["gate"] for g in bad if not g["passed"]} == {"cast", "b/w tinted", "same person", "realism AUC"}
    assert any("cast (3.7" in line for line in failed(bad))
    # Missing numbers fail rather than pass.
    assert not direction_gates({"direction": "older"}, None)[0]["passed"]


def _report(tmp_path: Path, **row: Any) -> Path:
    gates = direction_gates(_row("older", **row), 0.88) + direction_gates(_row("younger"), 0.88)
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({"date": "d", "command": "c", "rows": [], "gates": gates}))
    return path


def test_export_refuses_a_failed_gate_before_touching_the_checkpoint(tmp_path: Path) -> None:
    metrics = _report(tmp_path, cast=3.7)
    # The checkpoint does not exist: the gate must refuse first, naming the gate and the way out.
    with pytest.raises(GateError, match=r"older cast: 3.7 .*--force"):
        export_bundle(tmp_path / "no-such-run", name="x", out_dir=tmp_path / "b", metrics_path=metrics)
    assert not (tmp_path / "b").exists()


def test_a_report_without_gates_is_refused() -> None:
    assert gate_failures({"rows": []}) and gate_failures({"gates": []})
    assert gate_failures({"gates": direction_gates(_row("older"), 0.9)}) == []


def test_the_card_shows_every_gate_and_a_forced_export() -> None:
    from faceage_video.face.align import AlignTemplate
    from models.bundle import Manifest
    from models.networks import GeneratorConfig
    from training.config import TrainConfig

    report = json.loads(json.dumps({"date": "d", "command": "c", "rows": [_row("older", cast=3.7)]}))
    report["gates"] = direction_gates(report["rows"][0], 0.88)
    metrics = summarize_metrics(report)
    manifest = Manifest(
        name="m",
        generator=GeneratorConfig(size=128, ngf=8, n_blocks=1),
        template=AlignTemplate(128).to_dict(),
    )
    card = _card(manifest, TrainConfig(), metrics, forced=gate_failures(report))
    for gate in ("cast", "blotches", "b/w tinted", "same person", "realism AUC"):
        assert f"| older | {gate} |" in card
    assert "**FAIL**" in card and "| pass |" in card
    assert "Exported with `--force` despite: older cast: 3.7" in card


def test_cli_export_without_metrics_is_refused_with_one_line(tmp_path: Path) -> None:
    # A run with a checkpoint (its content never read): what is missing is only the quality report.
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "ckpt-1.npz").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "training", "export", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 5, proc.stderr  # GateError is a ModelError
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--metrics" in lines[0] and "--force" in lines[0]
    assert "Traceback" not in proc.stderr
