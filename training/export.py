"""Export a training checkpoint to a model bundle that `faceage_video` loads: manifest, weights, card, samples."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceage_video.face.align import AlignTemplate
from models.bundle import BUNDLED_DIR, Manifest, save_bundle
from models.networks import without_zero_head
from training.config import TrainConfig, load_config
from training.errors import GateError, TrainingError

LICENCE = {
    "utkface": "UTKFace is available for non-commercial research purposes only; so are weights trained on it.",
    "cacd": "CACD is released for non-commercial research use; so are weights trained on it.",
    "folders": "Weights inherit the licence of the user's own images.",
}


def resolve_checkpoint(path: Path) -> Path:
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
    "id_mean",
    "same_rate",
    "cast_mean",
    "cast_p90",
    "blotches_mean",
    "blotches_p90",
    "bw_tinted",
    "realism_auc",
)
_CLIP_KEYS = ("clip", "direction", "smoothing", "shift_mean", "age_sd_out", "id_drift", "flicker_ratio")
_MOTION_KEYS = ("name", "direction", "added_change", "change_size", "added_pct", "in_change", "out_minus_in")
_GATE_KEYS = ("direction", "gate", "value", "limit", "passed")


def gate_failures(metrics: dict[str, Any]) -> list[str]:
    """Why a judged model may not be exported: each failed gate, or that the report has no gates at all.

    Args:
        metrics: a `benchmarks.quality` report, or its `summarize_metrics` form.

    Returns:
        One line per failure; empty when every gate passed.
    """
    gates = metrics.get("gates")
    if not gates:
        return ["the quality report has no gates (judged by an older benchmark, or the model did not load)"]
    return [
        f"{g['direction']} {g['gate']}: {g['value']} (needs {g['limit']})"
        for g in gates
        if not g.get("passed")
    ]


def summarize_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `benchmarks.quality` report, for the manifest and the card."""
    out: dict[str, Any] = {k: report[k] for k in ("date", "command", "references") if k in report}
    faces = []
    for r in report.get("rows", []):
        flat = {**r, **(r.get("colour") or {})}
        faces.append({k: flat.get(k) for k in _ROW_KEYS})
    out["faces"] = faces
    out["gates"] = [{k: g.get(k) for k in _GATE_KEYS} for g in report.get("gates", [])]
    motion = report.get("motion") or {}
    if motion.get("rows"):
        out["motion"] = [{k: r.get(k) for k in _MOTION_KEYS} for r in motion["rows"]]
    clips = report.get("clips") or {}
    if isinstance(clips, dict) and clips.get("rows"):
        out["clips"] = [{k: r.get(k) for k in _CLIP_KEYS} for r in clips["rows"]]
    return out


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    def cell(k: str, v: Any) -> str:
        if k == "passed":
            return "pass" if v else "**FAIL**"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return [
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        *("| " + " | ".join(cell(k, r.get(k)) for k in keys) + " |" for r in rows),
    ]


def quality_lines(name: str, metrics: dict[str, Any], forced: list[str] | None = None) -> list[str]:
    """The card's quality section (markdown lines): every gate, pass or fail, then the judged numbers.

    Args:
        name: the bundle's name, for the command that measures it.
        metrics: `summarize_metrics` of a quality report; empty when not measured.
        forced: the gate failures a `--force` export overrode, said in bold.
    """
    lines: list[str] = []
    if metrics:
        lines += [f"Measured {metrics.get('date', '')} with `{metrics.get('command', '')}`.", ""]
        lines += ["Gates (`benchmarks.gates`), every one, pass or fail:", ""]
        lines += (
            _table(metrics.get("gates", []), _GATE_KEYS) if metrics.get("gates") else ["No gates measured."]
        )
        if forced:
            lines += ["", f"**Exported with `--force` despite: {'; '.join(forced)}.**"]
        refs = metrics.get("references") or {}
        lines += [
            "",
            "Validation faces at native resolution (shift in judged years; identity: dlib distance, same = share "
            "< 0.6; cast and blotches: CIELAB ΔE in the inner face; realism: 5-fold CV AUC against real faces of "
            "the target group, 0.5 = indistinguishable"
            + "".join(
                f"; {d}: real vs real {r.get('real_vs_real')}, unchanged input {r.get('unchanged')}"
                for d, r in refs.items()
            )
            + "):",
            "",
        ]
        lines += _table(metrics.get("faces", []), _ROW_KEYS)
        if metrics.get("motion"):
            lines += ["", "Known motion (levels of 0..255 per frame added inside the face; AGING.md):", ""]
            lines += _table(metrics["motion"], _MOTION_KEYS)
        if metrics.get("clips"):
            lines += ["", "Real clips, 2 s each (flicker ratio: flow-warped, biased up by added detail):", ""]
            lines += _table(metrics["clips"], _CLIP_KEYS)
    else:
        lines.append("Not measured yet: run `python -m benchmarks.quality --model " + name + "`.")
        if forced:
            lines += ["", f"**Exported with `--force` despite: {'; '.join(forced)}.**"]
    return lines


def _card(
    manifest: Manifest, cfg: TrainConfig, metrics: dict[str, Any], forced: list[str] | None = None
) -> str:
    g = manifest.generator
    steps = int(manifest.training.get("steps") or 0)
    if cfg.space == "mesh":
        return _mesh_card(manifest, cfg, metrics, forced)
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
    ]
    return "\n".join(lines + _card_tail(manifest, cfg, metrics, forced))


def _card_tail(
    manifest: Manifest, cfg: TrainConfig, metrics: dict[str, Any], forced: list[str] | None
) -> list[str]:
    """The card's counts, licence, quality section and samples, the same for every face space."""
    own_g = [
        f"- `{which}` is not this run's: it is the bundle `{taken['bundle']}`'s"
        + (f" (first shipped in `{taken['origin']}`)" if "origin" in taken else "")
        + f" (config `{taken['training'].get('config')}`, checkpoint "
        f"`{taken['training'].get('checkpoint')}`), unchanged; this run's `{other}` ships beside it "
        f"(`--{which.lower()}-from`)."
        for which, other in (("G", "F"), ("F", "G"))
        if (taken := manifest.training.get(f"{which}_from"))
    ]
    return [
        f"- Counts: {manifest.data.get('counts', {})}.",
        f"- Licence: {LICENCE.get(cfg.dataset, '')}",
        *own_g,
        "",
        "## Quality (independent judges, validation faces never trained on)",
        "",
        *quality_lines(manifest.name, metrics, forced),
        "",
        "![samples](samples.png)",
        "",
    ]


def _taken_from(model: Any, which: str, bundle: Path) -> tuple[dict[str, Any], bool]:
    """Set the model's `which` generator to a bundle's. Returns its manifest record (`G_from`/`F_from`: the
    bundle, and the training record of the run that trained that generator) and whether it brought the detail
    head this run's generators lack (it then ships as the bundle's network, head and all)."""
    from models.bundle import BundleError, load_generator, load_manifest

    key = f"{which}_from"
    mine = model.generator_config
    try:
        theirs = load_manifest(bundle)[1].config(which)
    except BundleError as exc:
        raise TrainingError(f"--{which.lower()}-from = {str(bundle)!r}: {exc}") from exc
    head = theirs.detail_head and not mine.detail_head and replace(theirs, detail_head=False) == mine
    if head:
        net, source = load_generator(bundle, which)
        setattr(model, which, net)
    else:
        source = model.init_from_bundle(bundle, (which,), option=f"--{which.lower()}-from")
    own = {k: v for k, v in source.training.items() if k not in ("G_from", "F_from")}
    record: dict[str, Any] = {"bundle": Path(bundle).name, "training": own}
    if key in source.training:
        # That bundle's generator was itself another bundle's: record where it was trained, not the run
        # that trained the bundle's other generator.
        first = source.training[key]
        record.update(training=first["training"], origin=first.get("origin", first["bundle"]))
    return {key: record}, head


def _teacher_pairs(cfg: TrainConfig) -> str:
    """The cached teacher-pair files of the run (their names carry the teacher version), or "not on disk"."""
    names = sorted(p.name for p in Path(cfg.run_dir).glob("teacher-mesh-*.npz"))
    return ", ".join(f"`{n}`" for n in names) if names else "not on disk at export"


def _start(cfg: TrainConfig) -> str:
    """The Training line's start: which generators a fine-tune started from its bundle, and which learned."""
    if not cfg.init_from:
        return ""
    if cfg.train_generators == "both":
        return f", G and F started from the bundle `{cfg.init_from}` (a fine-tune)"
    other = "F" if cfg.train_generators == "G" else "G"
    return (
        f", only {cfg.train_generators} learned, started from the bundle `{cfg.init_from}` (a fine-tune; {other} "
        "stayed that bundle's, unless the Data section names another)"
    )


def _mesh_card(
    manifest: Manifest, cfg: TrainConfig, metrics: dict[str, Any], forced: list[str] | None
) -> str:
    """The card of a canonical-mesh, age-conditioned bundle."""
    g = manifest.generator
    steps = int(manifest.training.get("steps") or 0)
    adv = steps - min(steps, cfg.warm_steps)
    lines = [
        f"# {manifest.name}",
        "",
        "A residual ResNet CycleGAN pair for faceage-video: `G` ages, `F` de-ages, both conditioned on the "
        "face's age and the target age, working on canonical face textures.",
        "",
        "## Model",
        "",
        f"- Face space: {g.size}×{g.size} px canonical textures, every face registered on the dense MediaPipe "
        f"mesh (`{manifest.template.get('version')}`, layout {manifest.template.get('layout_sha')}): a "
        "piecewise-affine warp onto the mean UTKFace face, so a texture pixel is the same point of skin on "
        "every face and in every frame.",
        f"- Generator: ngf {g.ngf}, {g.n_blocks} residual blocks, residual output, instance norm, reflection "
        "padding, resize-then-conv upsampling; input RGB plus two constant maps, input age / 100 and target "
        "age / 100 (FRAN-style)"
        + (", which also scale and shift the features after every normalisation (FiLM)" if g.film else "")
        + (
            "; a full-resolution detail head (two 3×3 convolutions over the decoder's features and the input "
            "RGB) adds to the change, so it can take a face's own finest detail away"
            + "".join(
                f" (`{w}` ships without one: it was trained without it, or its head stayed zero)"
                for w in ("G", "F")
                if not manifest.config(w).detail_head
            )
            + "."
            if g.detail_head
            else "."
        ),
        f"- Training: {steps} steps"
        + _start(cfg)
        + f". {min(steps, cfg.warm_steps)} warm-start steps, L1 to pairs of the registered "
        f"teacher (`training/teacher.py`: per gender and age band 20s–70+, interpolated to any target age; "
        f"landmark displacement {cfg.teacher_shape}"
        + (
            ""
            if cfg.teacher_warp_fine
            else " (moving the low-pass shape and features, not the skin's fine detail)"
        )
        + f", low-pass shading {cfg.teacher_shading}"
        + (" blurred over the skin only" if cfg.teacher_shading_masked else "")
        + (
            f", faded to 0 towards the face oval over {cfg.teacher_shading_rim:g} of the texture"
            if cfg.teacher_shading_rim
            else ""
        )
        + (
            f", the whole change faded to 0 towards the face oval over {cfg.teacher_outline_rim:g} of the texture"
            if cfg.teacher_outline_rim
            else ""
        )
        + (", the skin reaching the eye and brow contours (the lids)" if cfg.teacher_lids else "")
        + ", band-amplitude "
        f"ratio exponent {cfg.teacher_texture}, exemplar detail {cfg.teacher_detail}"
        + (f", shading on the brows {cfg.teacher_brows}" if cfg.teacher_brows else "")
        + (
            f", shading {cfg.teacher_shading_younger} when de-aging"
            if cfg.teacher_shading_younger >= 0
            else ""
        )
        + (
            f", {cfg.teacher_transplant:g} of the skin's fine bands from a real exemplar of the target age"
            if cfg.teacher_transplant
            else ""
        )
        + "; "
        + (
            "aging scales the face's own detail bands by the prototypes' amplitude ratio; "
            if cfg.teacher_amplify
            else "aging keeps the face's own detail bands and makes the extra detail from real exemplars; "
        )
        + f"teacher pairs {_teacher_pairs(cfg)}; luminance and geometry "
        f"only, so a black-and-white face stays neutral), {cfg.targets_per_face} target ages per face, "
        f"batch {cfg.warm_batch_size}. "
        + (
            f"Then {adv} adversarial steps: LSGAN (λ_adv {cfg.lambda_adv}), cycle (λ {cfg.lambda_cycle}) and "
            f"identity ({cfg.lambda_identity}) with the ages swapped or equal, teacher L1 "
            f"({cfg.lambda_teacher} → {cfg.lambda_teacher_end})"
            + (
                f", on the skin only its low-pass (σ {cfg.teacher_lowpass} px at 128) and the chroma of the "
                "rest, the finer luminance detail left to the discriminators"
                if cfg.teacher_lowpass > 0
                else ""
            )
            + (f", band-envelope L1 (λ {cfg.lambda_texture})" if cfg.lambda_texture > 0 else "")
            + (
                f", the other domain's real faces among each discriminator's negatives (weight "
                f"{cfg.disc_age_negatives})"
                if cfg.disc_age_negatives > 0
                else ""
            )
            + "."
            if adv > 0
            else "No adversarial steps."
        )
        + (
            f" The learning generators ship as their weights' moving average (decay {cfg.ema_decay})."
            if str(manifest.training.get("weights", "")).startswith("moving average")
            else ""
        ),
        "",
        "## Data",
        "",
        f"- Dataset: {cfg.dataset}; G learns from ages {cfg.young[0]}–{cfg.young[1]}, F from "
        f"{cfg.old[0]}–{cfg.old[1]}; the teacher's prototypes from every age band 18+ of the training split.",
    ]
    return "\n".join(lines + _card_tail(manifest, cfg, metrics, forced))


def _target_age_record(cfg: TrainConfig) -> dict[str, Any]:
    """How the runtime reaches a target age with this run's generators, for the manifest.

    FiLM generators read the ages after every normalisation, so the runtime passes the ages and nothing else
    (`target_age` "maps"). Without FiLM the constant age maps are removed by the first instance
    normalisation, so the generators learn one average change; the engine scales it by the gap asked for
    over the mean gap of the teacher pairs (`target_age` "strength", `age_gap` in years per generator).
    """
    if cfg.film:
        return {"target_age": "maps"}
    pairs = sorted(Path(cfg.run_dir).glob("teacher-mesh-*.npz"))
    if not pairs:
        return {"target_age": "strength"}
    with np.load(pairs[0]) as d:
        gap_g = float(np.mean(d["x_target"] - d["x_age"]))
        gap_f = float(np.mean(d["y_age"] - d["y_target"]))
    return {"target_age": "strength", "age_gap": {"G": round(gap_g, 2), "F": round(gap_f, 2)}}


def export_bundle(
    checkpoint: Path,
    name: str,
    config: str | None = None,
    out_dir: Path | None = None,
    metrics_path: Path | None = None,
    force: bool = False,
    g_from: Path | None = None,
    f_from: Path | None = None,
    ema: bool = True,
) -> Path:
    """Write `out_dir/name/` from a checkpoint.

    Args:
        checkpoint: a `ckpt-N.npz` or a run folder.
        name: bundle name.
        config: the run's config; default: the run's saved config.json.
        out_dir: parent folder; default: the bundled models folder.
        metrics_path: JSON from `benchmarks.quality` to record in the manifest and card. When given, the
            export refuses a model that failed any of its gates (or a report without gates).
        force: export despite failed gates; the card says so and lists them.
        g_from: a bundle whose `G` the new bundle takes instead of the checkpoint's (G and F train apart,
            with no cycle term, so an `F` that improved can ship beside a `G` that did not); the manifest
            and card name it. A run that trained only F (`train_generators = "F"`) takes its `init_from`.
        f_from: the same for `F`: a run that trained only G ships beside an `F` judged in another bundle,
            or else its `init_from`'s.
        ema: ship the learning generators' moving average where the run kept one (`ema_decay`);
            False ships the last step's weights (to judge the two against each other).

    Returns:
        The bundle folder.

    Raises:
        GateError: the metrics show a failed gate and `force` is False.
        TrainingError: no checkpoint, or no config.
    """
    from training.preprocess import load_index
    from training.train import CycleGAN, sample_grid

    report = json.loads(Path(metrics_path).read_text()) if metrics_path else None
    if report is not None:
        failures = gate_failures(report)
    else:  # a plain library export (select_checkpoint's temporary bundles) is not gated; --force says so
        failures = ["not judged: no quality report"] if force else []
    if failures and not force:
        raise GateError(
            f"not exported: {'; '.join(failures)}. Fix the model, or pass --force to export anyway (the card "
            "will say so)"
        )
    ckpt = resolve_checkpoint(Path(checkpoint))
    cfg = _run_config(ckpt, config)
    model = CycleGAN(cfg)
    model.restore(ckpt)
    g_record: dict[str, Any] = {}
    if cfg.ema_decay > 0:
        averaged = ema and model.use_ema()
        g_record["weights"] = f"moving average, decay {cfg.ema_decay}" if averaged else "last step"
    if g_from is None and cfg.train_generators == "F" and cfg.init_from:
        # Only F learned: G is the start bundle's, unchanged, and the manifest says where it was trained.
        g_from = Path(cfg.init_from)
    if f_from is None and cfg.train_generators == "G" and cfg.init_from:
        f_from = Path(cfg.init_from)  # the same for a run that trained only G
    headed: list[str] = []
    for which, bundle in (("G", g_from), ("F", f_from)):
        if bundle is not None:
            record, head = _taken_from(model, which, bundle)
            g_record.update(record)
            headed += [which] if head else []
    # A detail head whose last convolution is zero adds nothing (a G started from a head-less bundle and
    # never trained): that generator ships without it and runs without its cost.
    generators: dict[str, Any] = {"G": model.G, "F": model.F}
    overrides: dict[str, dict[str, Any]] = {}
    for which, net in generators.items():
        if which in headed:
            overrides[which] = {"detail_head": True}
            continue
        lean = without_zero_head(net, model.generator_config)
        if lean is not None:
            generators[which], overrides[which] = lean, {"detail_head": False}
    metrics = summarize_metrics(report) if report is not None else {}
    if force and failures:
        metrics["forced"] = failures
    template: dict[str, Any]
    extra: dict[str, Any] = {}
    if cfg.conditioned:
        extra = _target_age_record(cfg)
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
            **extra,
            **g_record,
        },
        metrics=metrics,
        overrides=overrides,
    )
    folder = save_bundle(
        (out_dir or BUNDLED_DIR) / name,
        manifest,
        generators,
        _card(manifest, cfg, metrics, failures if force else None),
    )
    try:
        from training.run import validation_faces

        vx, vy, ax, ay = validation_faces(cfg)
        grid = sample_grid(model, vx, vy, ax, ay)
        cv2.imwrite(str(folder / "samples.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    except TrainingError:
        pass  # no cache here: the bundle is complete without its sample grid
    return folder
