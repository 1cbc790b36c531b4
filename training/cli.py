"""Thin command line of the training package: parse, build a config, call the library.

Errors become exit codes in `faceage_video.entry.run_app`, the translation `faceage-video` uses too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from faceage_video.entry import run_app
from faceage_video.quiet import quiet_native_logs, wants_verbose

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Train and export faceage-video CycleGAN models."
)


@app.command()
def cache(
    config: Annotated[
        str, typer.Option(help="config name in training/configs or a TOML path")
    ] = "utkface-mesh-128",
    data: Annotated[str | None, typer.Option(help="dataset root, overrides the config")] = None,
) -> None:
    """Align every face once and store the crops (resumes where it stopped).

    In mesh space: detect landmarks once (the landmark cache), then warp every face into canonical space.
    """
    from training.config import load_config
    from training.run import ensure_cache, ensure_mesh_cache

    cfg = load_config(config, data=data)
    if cfg.space == "mesh":
        index = ensure_mesh_cache(cfg)
        typer.echo(f"canonical cache {cfg.cache}: {index['count']} faces, {index['val']} of them validation")
        return
    index = ensure_cache(cfg)
    typer.echo(f"cache {cfg.cache}: {index['counts']}")
    typer.echo("faces not found: " + ", ".join(f"{k}={len(v)}" for k, v in index["not_found"].items()))


@app.command()
def layout(
    config: Annotated[
        str, typer.Option(help="a mesh-space config (its dataset and landmark cache)")
    ] = "utkface-mesh-128",
    out: Annotated[
        Path | None, typer.Option(help="layout JSON to write; default: the packaged faceage_video one")
    ] = None,
) -> None:
    """Rebuild the canonical mesh layout: the mean registered shape of the dataset's adult faces."""
    import re

    import numpy as np

    from faceage_video.face.mesh import LAYOUT_PATH
    from training.config import load_config
    from training.landmarks import detect_landmarks
    from training.layout import build_layout, write_layout
    from training.run import load_records

    cfg = load_config(config)
    records = [r for r in load_records(cfg) if r.age >= 15]
    lms = detect_landmarks(records, cfg.landmarks)
    ages = np.array(
        [int(m[1]) if (m := re.match(r"(\d+)_", Path(str(p)).name)) else -1 for p in lms["paths"]]
    )
    adult = (ages >= 18) & np.asarray(lms["found"], bool)
    lay = build_layout(lms["landmarks"][adult], f"{cfg.dataset} ages 18+ ({cfg.data})")
    path = write_layout(lay, out or LAYOUT_PATH)
    typer.echo(f"layout written: {path} ({lay.provenance['faces']} faces, {len(lay.triangles)} triangles)")


@app.command()
def train(
    config: Annotated[
        str, typer.Option(help="config name in training/configs or a TOML path")
    ] = "utkface-mesh-128",
    data: Annotated[str | None, typer.Option(help="dataset root, overrides the config")] = None,
    run_dir: Annotated[str | None, typer.Option(help="run folder, overrides the config")] = None,
    steps: Annotated[int | None, typer.Option(help="total steps, overrides the config")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many more steps")] = None,
    fresh: Annotated[bool, typer.Option(help="ignore existing checkpoints")] = False,
) -> None:
    """Train or resume from the latest checkpoint. Ctrl-C saves a checkpoint."""
    from training.config import load_config
    from training.run import train as run_train

    cfg = load_config(config, data=data, run_dir=run_dir, steps=steps)
    ckpt = run_train(cfg, resume=not fresh, max_steps=max_steps)
    typer.echo(f"last checkpoint: {ckpt}")


@app.command()
def estimator(
    cache: Annotated[Path, typer.Option(help="a canonical-mesh cache")] = Path("cache/utkface-mesh-128"),
    out: Annotated[Path, typer.Option(help="estimator folder to write")] = Path("models/utkface-age-64"),
    steps: Annotated[int, typer.Option(help="optimiser steps")] = 4000,
    batch_size: Annotated[int, typer.Option(help="faces a step")] = 64,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Train the input-age estimator on a canonical cache's training split; report its validation error."""
    from training.estimator import EstimatorTrainOptions, train_estimator

    options = EstimatorTrainOptions(
        cache=cache, out=out, name=out.name, steps=steps, batch_size=batch_size, seed=seed
    )
    folder, metrics = train_estimator(options, progress=typer.echo)
    typer.echo(
        f"estimator written: {folder}  validation MAE {metrics['mae']:.2f} y ({metrics['mae_18_plus']:.2f} y from 18)"
    )


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="ckpt-N.npz, or a run folder (its latest checkpoint)")],
    name: Annotated[str, typer.Option(help="bundle name: writes models/NAME/")] = "utkface-mesh-128",
    config: Annotated[
        str | None, typer.Option(help="config of the run; default: the run's config.json")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="parent folder of the bundle; default: models/")
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="quality JSON from benchmarks.quality: its gates must pass")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="export despite failed or missing quality gates; the card says so")
    ] = False,
    g_from: Annotated[
        Path | None,
        typer.Option(help="take G from this bundle instead of the checkpoint (the manifest and card say so)"),
    ] = None,
    f_from: Annotated[
        Path | None,
        typer.Option(help="take F from this bundle instead of the checkpoint (the manifest and card say so)"),
    ] = None,
    ema: Annotated[
        bool,
        typer.Option(
            help="ship the weights' moving average where the run kept one (ema_decay); --no-ema: the last step's"
        ),
    ] = True,
) -> None:
    """Write a model bundle (manifest, G/F weights, card, samples) from a checkpoint.

    Refuses a model whose quality report (--metrics) fails a gate, and a model not judged at all, unless --force.
    """
    from training.errors import GateError
    from training.export import export_bundle, resolve_checkpoint

    resolve_checkpoint(checkpoint)  # a missing checkpoint is named before anything else
    if metrics is None and not force:
        raise GateError(
            "not exported: no --metrics. Judge the model first (python -m benchmarks.quality --model FOLDER "
            "--out quality.json, then --metrics quality.json), or pass --force"
        )
    folder = export_bundle(
        checkpoint,
        name=name,
        config=config,
        out_dir=out_dir,
        metrics_path=metrics,
        force=force,
        g_from=g_from,
        f_from=f_from,
        ema=ema,
    )
    if force:
        typer.secho("exported with --force: the card lists the gates it failed", fg="yellow", err=True)
    typer.echo(f"bundle written: {folder}")


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show TensorFlow's and MediaPipe's native log lines")
    ] = False,
) -> None:
    """Train and export faceage-video CycleGAN models."""
    # `main` takes -v/--verbose off the command line before Typer parses it; declared here for --help.


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app on `argv` (None: `sys.argv[1:]`) and return the exit code.

    Native log lines are hidden (`faceage_video.quiet`) unless -v/--verbose is given. Any `FaceAgeError`
    (training errors are ones) prints one line and returns its code; Ctrl-C returns 130 after the train loop
    has saved a checkpoint.
    """
    verbose, args = wants_verbose(list(sys.argv[1:] if argv is None else argv))
    if not verbose:
        quiet_native_logs()
    return run_app(app, args, interrupted="interrupted (checkpoint saved)")
