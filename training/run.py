"""A resumable training run: cache → teacher pseudo-pairs → steps with checkpoints, samples and TensorBoard."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from faceage_video.engine.generator import F_TARGETS, G_TARGETS, TRAINED_GAP
from faceage_video.face.align import AlignTemplate
from training.config import TrainConfig
from training.datasets import AgeRanges, FaceRecord, load_folders, load_utkface, split_domains
from training.errors import DatasetError
from training.preprocess import build_cache, load_index, load_part
from training.prototype import AgePrototypes, TeacherOptions, age_transform_batch


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


CKPT_RE = re.compile(r"^ckpt-(\d+)\.npz$")


def load_records(cfg: TrainConfig) -> list[FaceRecord]:
    """The dataset's records, by layout."""
    if cfg.dataset == "utkface":
        return load_utkface(cfg.data)
    if cfg.dataset == "folders":
        return load_folders(cfg.data)
    from training.cacd import load_cacd

    return load_cacd(cfg.data)


def ensure_cache(cfg: TrainConfig, landmarker: str | None = None) -> dict[str, Any]:
    """Build the aligned-crop cache if it is not there yet; return its index."""
    ranges = AgeRanges(tuple(cfg.young), tuple(cfg.old))  # type: ignore[arg-type]
    try:
        return load_index(cfg.cache)
    except DatasetError:
        pass
    split = split_domains(load_records(cfg), ranges, cfg.val_fraction)
    return build_cache(split, cfg.cache, AlignTemplate(cfg.size), ranges, cfg.dataset, landmarker)


def ensure_mesh_cache(cfg: TrainConfig, landmarker: str | None = None) -> dict[str, Any]:
    """Build the canonical-texture cache (and the landmark cache it needs) if missing; return its index."""
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions
    from training.canonical import build_canonical_cache
    from training.landmarks import detect_landmarks

    index = Path(cfg.cache) / "index.json"
    if index.exists():
        data: dict[str, Any] = json.loads(index.read_text())
        return data
    # Everyone from 15 up: the age bands of the teacher's prototypes start at 18.
    records = [r for r in load_records(cfg) if r.age >= 15]
    lms = detect_landmarks(records, cfg.landmarks, landmarker)
    return build_canonical_cache(lms, CanonicalMesh(MeshOptions(size=cfg.size)), cfg.cache)


def _teacher_targets(age: float, older: bool, rng: np.random.Generator) -> float:
    """A target age for one teacher pair: at least `TRAINED_GAP` years away, within `G_TARGETS` (older) or
    `F_TARGETS` (younger). The runtime runs a bundle within these (`trained_condition`)."""
    if older:
        return float(rng.uniform(max(age + TRAINED_GAP, G_TARGETS[0]), G_TARGETS[1]))
    return float(rng.uniform(F_TARGETS[0], max(min(age - TRAINED_GAP, F_TARGETS[1]), F_TARGETS[0] + 1.0)))


def teacher_pairs_name(targets_per_face: int, opts: Any) -> str:
    """File name of a run's cached teacher pairs: the teacher version and every option that changes them, so
    pairs of another teacher are never reused. Options at their old defaults keep their old names."""
    from training.teacher import OVAL_FADE, TEACHER_VERSION

    name = (
        f"teacher-mesh-v{TEACHER_VERSION}-{targets_per_face}-s{opts.shape:g}-h{opts.shading:g}"
        f"-t{opts.texture:g}-d{opts.detail:g}"
    )
    name += "" if opts.amplify else "-exemplar"
    name += f"-b{opts.brows:g}" if opts.brows else ""
    name += "" if opts.shading_younger is None else f"-hy{opts.shading_younger:g}"
    name += f"-tp{opts.transplant:g}" if opts.transplant else ""
    name += f"-tc{opts.transplant_coarse:g}" if opts.transplant_coarse else ""
    name += "-sm" if opts.shading_masked else ""
    name += "-em" if opts.exemplar_mean else ""
    name += "" if opts.warp_fine else "-wl"
    name += f"-es{opts.eyes_still:g}" if opts.eyes_still else ""
    name += f"-rim{opts.shading_rim:g}" if opts.shading_rim else ""
    name += "" if opts.oval_fade == OVAL_FADE else f"-of{opts.oval_fade:g}"
    name += f"-ol{opts.outline_rim:g}" if opts.outline_rim else ""
    name += "-lids" if opts.lids else ""
    return name + ".npz"


def prepare_mesh_data(cfg: TrainConfig) -> Any:
    """Conditioned training arrays in canonical space: registered-teacher pairs for sampled target ages,
    and with `texture_single_exemplar` or `texture_transplant` a second teacher's pairs (one exemplar a face,
    that transplant share) as the band envelopes' targets."""
    from dataclasses import replace

    from faceage_video.face.mesh import CanonicalMesh, MeshOptions
    from training.canonical import load_canonical
    from training.teacher import Prototypes, cached_prototypes, teacher_options
    from training.train import TrainData

    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    data = load_canonical(cfg.cache)
    if data.faces.shape[1] != cfg.size:
        raise DatasetError(f"cache {cfg.cache} holds {data.faces.shape[1]} px faces, config wants {cfg.size}")
    mesh = CanonicalMesh(MeshOptions(size=cfg.size))
    protos = cached_prototypes(run / "registered-prototypes.npz", lambda: Prototypes.build(data, mesh))
    opts = teacher_options(cfg)
    out = _teacher_pairs(cfg, data, protos, mesh, opts)
    if cfg.texture_single_exemplar or cfg.texture_transplant >= 0:
        share = opts.transplant if cfg.texture_transplant < 0 else cfg.texture_transplant
        single = _teacher_pairs(cfg, data, protos, mesh, replace(opts, exemplar_mean=False, transplant=share))
        # The same seed draws the same faces and target ages: only the teacher's output differs.
        for k in ("x", "y", "x_age", "x_target", "y_age", "y_target"):
            if not np.array_equal(out[k], single[k]):
                raise DatasetError(
                    f"the envelopes' teacher pairs differ from the L1's in {k!r}: rebuild them"
                )
        out = {**out, "e_y": single["t_y"], "e_x": single["t_x"]}
    return TrainData(**out)


def _teacher_pairs(cfg: TrainConfig, data: Any, protos: Any, mesh: Any, opts: Any) -> dict[str, Any]:
    """One teacher's pairs, cached in the run folder under `teacher_pairs_name`: arrays x, t_y, y, t_x
    (N, S, S, 3) uint8 and x_age, x_target, y_age, y_target (N,) years. The target ages are drawn from
    `cfg.seed` alone, so two teachers' pairs of one config share their faces and targets."""
    from training.teacher import RegisteredTeacher

    tpath = Path(cfg.run_dir) / teacher_pairs_name(cfg.targets_per_face, opts)
    if tpath.exists():
        with np.load(tpath) as d:
            return {k: d[k] for k in d.files}
    teacher = RegisteredTeacher(protos, mesh, opts)
    rng = np.random.default_rng(cfg.seed)
    out: dict[str, Any] = {}
    for side, older, (lo, hi) in (("x", True, cfg.young), ("y", False, cfg.old)):
        idx = np.flatnonzero(~data.val & (data.age >= lo) & (data.age <= hi) & (data.gender >= 0))
        idx = np.repeat(idx, cfg.targets_per_face)
        src = np.empty((len(idx), cfg.size, cfg.size, 3), np.uint8)
        tgt = np.empty_like(src)
        ages = data.age[idx].astype(np.float32)
        targets = np.empty(len(idx), np.float32)
        t0 = time.perf_counter()
        for n, i in enumerate(idx):
            targets[n] = _teacher_targets(float(ages[n]), older, rng)
            face = np.asarray(data.faces[i])
            f = teacher(
                face.astype(np.float32) / 255.0,
                float(ages[n]),
                float(targets[n]),
                int(data.gender[i]),
                str(data.paths[i]),
                data.shape[i],
            )
            src[n] = face
            tgt[n] = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if (n + 1) % 1000 == 0:
                print(
                    f"teacher pairs {side}: {n + 1}/{len(idx)}, {(n + 1) / (time.perf_counter() - t0):.0f}/s",
                    flush=True,
                )
        other = "y" if side == "x" else "x"
        out[side], out[f"t_{other}"] = src, tgt
        out[f"{side}_age"], out[f"{side}_target"] = ages, targets
    tmp = tpath.with_name(f".{tpath.name}.tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(tpath)
    return out


def change_magnitudes(model: Any, young: Any, old: Any, young_age: Any, old_age: Any) -> dict[str, float]:
    """Mean absolute change, in levels of 0..255, that G makes to the young and F to the old sample faces
    (conditioned: G to 70, F to 22)."""
    import tensorflow as tf

    def run(net: Any, faces: Any, ages: Any, target: float) -> float:
        x = tf.constant(faces.astype(np.float32) / 127.5 - 1.0)
        if model.generator_config.cond:
            x = model.generator_input(x, ages, np.full_like(ages, target))
        y = np.asarray(net(x, training=False))
        return float(np.abs(y - x[..., :3].numpy()).mean() * 127.5)

    return {
        "change_G": round(run(model.G, young, young_age, 70.0), 3),
        "change_F": round(run(model.F, old, old_age, 22.0), 3),
    }


def validation_faces(cfg: TrainConfig, n: int = 6) -> tuple[Any, Any, Any, Any]:
    """A few validation faces of each domain for the sample grids: (young, old, young ages, old ages)."""
    if cfg.space == "mesh":
        from training.canonical import load_canonical

        data = load_canonical(cfg.cache)
        iy = np.flatnonzero(data.val & (data.age >= cfg.young[0]) & (data.age <= cfg.young[1]))[:n]
        io = np.flatnonzero(data.val & (data.age >= cfg.old[0]) & (data.age <= cfg.old[1]))[:n]
        return (
            np.asarray(data.faces[iy]),
            np.asarray(data.faces[io]),
            data.age[iy].astype(np.float32),
            data.age[io].astype(np.float32),
        )
    return (
        np.asarray(load_part(cfg.cache, "young_val").crops[:n]),
        np.asarray(load_part(cfg.cache, "old_val").crops[:n]),
        None,
        None,
    )


def prepare_data(cfg: TrainConfig) -> tuple[Any, AgePrototypes]:
    """Training arrays with the teacher's pseudo-pairs, cached in the run folder."""
    from training.train import TrainData

    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    x = np.asarray(load_part(cfg.cache, "young_train").crops)
    y = np.asarray(load_part(cfg.cache, "old_train").crops)
    if x.shape[1] != cfg.size:
        raise DatasetError(
            f"cache {cfg.cache} holds {x.shape[1]} px crops, config wants {cfg.size}; rebuild it"
        )
    proto_path = run / "prototypes.npz"
    if proto_path.exists():
        protos = AgePrototypes.load(proto_path)
    else:
        protos = AgePrototypes.from_crops(x, y)
        protos.save(proto_path)
    old_opts = TeacherOptions(shape=cfg.teacher_shape, texture=cfg.teacher_texture)
    young_opts = TeacherOptions(shape=cfg.teacher_shape_younger, texture=cfg.teacher_texture_younger)
    key = (
        f"teacher-s{cfg.teacher_shape:g}-t{cfg.teacher_texture:g}"
        f"-ys{cfg.teacher_shape_younger:g}-yt{cfg.teacher_texture_younger:g}.npz"
    )
    tpath = run / key
    if tpath.exists():
        with np.load(tpath) as d:
            t_y, t_x = d["t_y"], d["t_x"]
    else:
        t_y = age_transform_batch(x, protos, "older", old_opts)
        t_x = age_transform_batch(y, protos, "younger", young_opts)
        np.savez(tpath, t_y=t_y, t_x=t_x)
    return TrainData(x, t_y, y, t_x), protos


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in `run_dir/checkpoints`, or None."""
    d = Path(run_dir) / "checkpoints"
    best: tuple[int, Path] | None = None
    for p in d.glob("ckpt-*.npz"):
        m = CKPT_RE.match(p.name)
        if m and (best is None or int(m[1]) > best[0]):
            best = (int(m[1]), p)
    return best[1] if best else None


def _prune(run_dir: Path, keep: int) -> None:
    ckpts = sorted(
        (
            (int(m[1]), p)
            for p in (run_dir / "checkpoints").glob("ckpt-*.npz")
            if (m := CKPT_RE.match(p.name))
        ),
    )
    for _, p in ckpts[:-keep] if keep > 0 else []:
        p.unlink(missing_ok=True)


def train(cfg: TrainConfig, resume: bool = True, max_steps: int | None = None) -> Path:
    """Train (or resume) a run until `cfg.steps`, or `max_steps` more steps.

    Checkpoints every `checkpoint_every` steps and on Ctrl-C. Returns the last checkpoint written.
    """
    import tensorflow as tf

    from training.train import CycleGAN, sample_grid

    if cfg.space == "mesh":
        ensure_mesh_cache(cfg)
        data = prepare_mesh_data(cfg)
    else:
        ensure_cache(cfg)
        data, _ = prepare_data(cfg)
    run = Path(cfg.run_dir)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "samples").mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    # Seeds the initial weights, so a fresh run of one config starts from the same point everywhere.
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = CycleGAN(cfg)
    ckpt = latest_checkpoint(run) if resume else None
    if ckpt is not None:
        model.restore(ckpt)
    elif cfg.init_from:
        skipped = model.start_from_bundle(cfg.init_from)
        if skipped:
            print(f"note: {skipped}", flush=True)
    start = int(model.step.numpy())
    stop = cfg.steps if max_steps is None else min(cfg.steps, start + max_steps)
    val_x, val_y, age_x, age_y = validation_faces(cfg)
    writer = tf.summary.create_file_writer(str(run / "tb"))
    last_ckpt = ckpt or run / "checkpoints" / "ckpt-0.npz"
    running: dict[str, float] = {}

    def checkpoint(step: int) -> Path:
        p = run / "checkpoints" / f"ckpt-{step}.npz"
        model.save(p)
        _prune(run, cfg.keep_checkpoints)
        return p

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    t_last = [time.perf_counter()]
    with Progress(*columns, refresh_per_second=2) as progress:
        task = progress.add_task(cfg.name, total=cfg.steps, completed=start, rate="", losses="")

        def on_step(step: int, losses: dict[str, float]) -> None:
            nonlocal last_ckpt
            for k, v in losses.items():
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            t = time.perf_counter()
            dt, t_last[0] = t - t_last[0], t
            progress.update(
                task,
                completed=step,
                rate=f"{1.0 / max(dt, 1e-9):.2f} it/s",
                losses=" ".join(f"{k}={v:.3f}" for k, v in running.items()),
            )
            if step % cfg.sample_every == 0 or step == stop:
                grid = sample_grid(model, val_x, val_y, age_x, age_y)
                cv2.imwrite(
                    str(run / "samples" / f"step-{step:06d}.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)
                )
                with writer.as_default(step=step):
                    for k, v in running.items():
                        tf.summary.scalar(f"loss/{k}", v)
                    tf.summary.scalar("lr", float(model.opt_gen.learning_rate.numpy()))
                    tf.summary.image("samples", grid[None], max_outputs=1)
                # How much G and F still change a validation face, in levels: the adversarial phases of the
                # first model fell to "change nothing" within 250 steps, and this is where that shows.
                change = change_magnitudes(model, val_x, val_y, age_x, age_y)
                with writer.as_default(step=step):
                    for k, v in change.items():
                        tf.summary.scalar(f"change/{k}", v)
                writer.flush()
                with (run / "log.jsonl").open("a") as log:
                    log.write(json.dumps({"step": step, "time": time.time(), **running, **change}) + "\n")
            if step % cfg.checkpoint_every == 0 or step == stop:
                last_ckpt = checkpoint(step)

        # A background run (nohup … &) ignores SIGINT, so `kill` (SIGTERM) also saves and stops.
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            model.train_steps(data, stop, on_step)
        except KeyboardInterrupt:
            step = int(model.step.numpy())
            last_ckpt = checkpoint(step)
            progress.console.print(f"interrupted: saved {last_ckpt}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    return last_ckpt
