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
    start = int(model.step.numpy())
    stop = cfg.steps if max_steps is None else min(cfg.steps, start + max_steps)
    val_x = np.asarray(load_part(cfg.cache, "young_val").crops[:6])
    val_y = np.asarray(load_part(cfg.cache, "old_val").crops[:6])
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
                grid = sample_grid(model, val_x, val_y)
                cv2.imwrite(
                    str(run / "samples" / f"step-{step:06d}.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)
                )
                with writer.as_default(step=step):
                    for k, v in running.items():
                        tf.summary.scalar(f"loss/{k}", v)
                    tf.summary.scalar("lr", float(model.opt_gen.learning_rate.numpy()))
                    tf.summary.image("samples", grid[None], max_outputs=1)
                writer.flush()
                with (run / "log.jsonl").open("a") as log:
                    log.write(json.dumps({"step": step, "time": time.time(), **running}) + "\n")
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
