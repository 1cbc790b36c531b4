"""Export a training checkpoint to a model bundle that `faceage_video` loads: manifest, weights, card, samples."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import cv2

from faceage_video.face.align import AlignTemplate
from models.bundle import BUNDLED_DIR, Manifest, save_bundle
from training.config import TrainConfig, load_config
from training.errors import TrainingError

LICENCE = {
    "utkface": "UTKFace is available for non-commercial research purposes only; so are weights trained on it.",
    "cacd": "CACD is released for non-commercial research use; so are weights trained on it.",
    "folders": "Weights inherit the licence of the user's own images.",
}


def _resolve_checkpoint(path: Path) -> Path:
    from training.run import latest_checkpoint

    if path.is_dir():
        ck = latest_checkpoint(path)
        if ck is None:
            raise TrainingError(
                f"no checkpoints in {path}/checkpoints. Train first: `python -m training train`."
            )
        return ck
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} not found")
    return path


def _run_config(ckpt: Path, config: str | None) -> TrainConfig:
    if config is not None:
        return load_config(config)
    cj = ckpt.parent.parent / "config.json"
    if not cj.is_file():
        raise TrainingError(f"{cj} not found; pass --config with the run's configuration")
    raw = json.loads(cj.read_text())
    raw["young"], raw["old"] = tuple(raw["young"]), tuple(raw["old"])
    return TrainConfig(**raw)


_ROW_KEYS = (
    "name",
    "direction",
    "n",
    "age_in_mean",
    "age_out_mean",
    "shift_mean",
    "shift_median",
    "id_mean",
    "same_rate",
)
_CLIP_KEYS = ("clip", "direction", "smoothing", "shift_mean", "id_mean", "same_rate", "flicker_ratio")


def summarize_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `benchmarks.quality` report, for the manifest and the card."""
    out: dict[str, Any] = {k: report[k] for k in ("date", "command") if k in report}
    out["faces"] = [{k: r.get(k) for k in _ROW_KEYS} for r in report.get("rows", [])]
    clips = report.get("clips") or {}
    if isinstance(clips, dict) and clips.get("rows"):
        out["clips"] = [{k: r.get(k) for k in _CLIP_KEYS} for r in clips["rows"]]
    return out


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return [
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        *("| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows),
    ]


def _card(manifest: Manifest, cfg: TrainConfig, metrics: dict[str, Any]) -> str:
    g = manifest.generator
    steps = int(manifest.training.get("steps") or 0)
    lines = [
        f"# {manifest.name}",
        "",
        "A residual ResNet CycleGAN pair for faceage-video: `G` ages (young → old), `F` de-ages (old → young).",
        "",
        "## Model",
        "",
        f"- Crop: {g.size}×{g.size} px, aligned by the faceage_video five-point template (forehead and hair kept).",
        f"- Generator: ngf {g.ngf}, {g.n_blocks} residual blocks, residual output, instance norm, "
        "reflection padding, resize-then-conv upsampling.",
        f"- Training: {steps} steps, {min(steps, cfg.warm_steps)} of them warm-start steps (L1 to pseudo-pairs of "
        f"a classic prototype + texture transform: aging shape {cfg.teacher_shape}, texture {cfg.teacher_texture}; "
        f"de-aging shape {cfg.teacher_shape_younger}, texture {cfg.teacher_texture_younger}), "
        + (
            f"then {steps - cfg.warm_steps} adversarial steps: LSGAN (λ_adv {cfg.lambda_adv}), cycle "
            f"(λ {cfg.lambda_cycle}), identity ({cfg.lambda_identity}), teacher L1 ({cfg.lambda_teacher} → "
            f"{cfg.lambda_teacher_end})."
            if steps > cfg.warm_steps
            else "and no adversarial steps yet."
        ),
        "",
        "## Data",
        "",
        f"- Dataset: {cfg.dataset}, young {cfg.young[0]}–{cfg.young[1]} against old {cfg.old[0]}–{cfg.old[1]}.",
        f"- Counts: {manifest.data.get('counts', {})}.",
        f"- Licence: {LICENCE.get(cfg.dataset, '')}",
        "",
        "## Quality (independent judges, validation faces never trained on)",
        "",
    ]
    if metrics:
        lines += [f"Measured {metrics.get('date', '')} with `{metrics.get('command', '')}`.", ""]
        lines += [
            "Aligned validation faces (shift in judged years; identity: dlib distance, same = share < 0.6):",
            "",
        ]
        lines += _table(metrics.get("faces", []), _ROW_KEYS)
        if metrics.get("clips"):
            lines += ["", "Real clips, 2 s each (flicker ratio: output over input; 1.0 adds none):", ""]
            lines += _table(metrics["clips"], _CLIP_KEYS)
    else:
        lines.append("Not measured yet: run `python -m benchmarks.quality --model " + manifest.name + "`.")
    lines += ["", "![samples](samples.png)", ""]
    return "\n".join(lines)


def export_bundle(
    checkpoint: Path,
    name: str,
    config: str | None = None,
    out_dir: Path | None = None,
    metrics_path: Path | None = None,
) -> Path:
    """Write `out_dir/name/` from a checkpoint.

    Args:
        checkpoint: a `ckpt-N.npz` or a run folder.
        name: bundle name.
        config: the run's config; default: the run's saved config.json.
        out_dir: parent folder; default: the bundled models folder.
        metrics_path: JSON from `benchmarks.quality` to record in the manifest and card.

    Returns:
        The bundle folder.
    """
    from training.preprocess import load_index
    from training.train import CycleGAN, sample_grid

    ckpt = _resolve_checkpoint(Path(checkpoint))
    cfg = _run_config(ckpt, config)
    model = CycleGAN(cfg)
    model.restore(ckpt)
    metrics = summarize_metrics(json.loads(metrics_path.read_text())) if metrics_path else {}
    template: dict[str, Any]
    if cfg.space == "mesh":
        from faceage_video.face.mesh import CanonicalMesh, MeshOptions

        template = CanonicalMesh(MeshOptions(size=cfg.size)).to_dict()
        counts = {"faces": json.loads((Path(cfg.cache) / "index.json").read_text()).get("count", 0)}
    else:
        template = AlignTemplate(cfg.size).to_dict()
        try:
            counts = load_index(cfg.cache).get("counts", {})
        except TrainingError:
            counts = {}
    manifest = Manifest(
        name=name,
        generator=model.generator_config,
        template=template,
        data={
            "dataset": cfg.dataset,
            "young": list(cfg.young),
            "old": list(cfg.old),
            "counts": counts,
            "licence": LICENCE.get(cfg.dataset, ""),
        },
        training={
            "steps": int(model.step.numpy()),
            "config": cfg.name,
            "checkpoint": ckpt.name,
            "exported": dt.date.today().isoformat(),
        },
        metrics=metrics,
    )
    folder = save_bundle(
        (out_dir or BUNDLED_DIR) / name, manifest, {"G": model.G, "F": model.F}, _card(manifest, cfg, metrics)
    )
    try:
        from training.run import validation_faces

        vx, vy, ax, ay = validation_faces(cfg)
        grid = sample_grid(model, vx, vy, ax, ay)
        cv2.imwrite(str(folder / "samples.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    except TrainingError:
        pass  # no cache here: the bundle is complete without its sample grid
    return folder
