"""The `faceage-video` command line: a thin adapter that parses, builds options and calls the library.

Only this module turns exceptions into exit codes: a `FaceAgeError` prints its message (no traceback) and
exits with its code; Ctrl-C exits 130 and SIGTERM 143, with nothing left under the output name.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceage_video.entry import run_app
from faceage_video.errors import EXIT_TERMINATED, FaceAgeError, OptionsError
from faceage_video.flags import (
    AgeFlags,
    AgeHairFlag,
    AllowProtocolsFlag,
    DetectWidthFlag,
    DirectionFlag,
    FacesFlag,
    GreyShareFlag,
    InputAgeFlag,
    LandmarkerFlag,
    MaskFlag,
    MaxFacesFlag,
    ModelFlag,
    StrengthFlag,
    TargetAgeFlag,
    TemporalFlag,
    parse_faces,
    with_age_flags,
)
from faceage_video.quiet import quiet_native_logs, wants_verbose

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

    from faceage_video.options import AgeOptions


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so every `with` block aborts its outputs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


class ProgressBar:
    """The terminal progress bar of a run (frames, fps, elapsed, ETA), drawn with rich; a library `Progress`.

    Use as a context manager around the run and pass it as `progress=`. A total that changes, or a count that
    goes back (the next shot of a local batch), starts a new bar line.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._prog: RichProgress | None = None
        self._task: TaskID | None = None
        self._last: tuple[int, int | None] = (0, None)

    def __enter__(self) -> ProgressBar:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._prog = RichProgress(
            TextColumn("[bold]aging"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]} fps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not self.enabled,
            transient=False,
        )
        self._prog.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._prog is not None:
            self._prog.__exit__(None, None, None)
            self._prog = None

    def __call__(self, done: int, total: int | None, fps: float) -> None:
        if self._prog is None:
            return
        if self._task is None or done < self._last[0] or total != self._last[1]:
            self._task = self._prog.add_task("aging", total=total, fps="-")
        self._last = (done, total)
        self._prog.update(self._task, completed=done, fps=f"{fps:.1f}")


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Age or de-age the faces in a video, offline or live.",
)


def parse_fps(value: str) -> Fraction:
    """A frame rate such as 24, 23.976 or 24000/1001."""
    try:
        fps = Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        raise OptionsError(
            f"--fps must be a rate such as 24, 25, 23.976 or 24000/1001; got {value!r}"
        ) from None
    if fps <= 0:
        raise OptionsError(f"--fps must be positive; got {value!r}")
    return fps.limit_denominator(1001)


@app.command()
@with_age_flags()
def age(
    input: Annotated[str, typer.Argument(help="input video, or image sequence: pattern or folder")],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="output video (extension picks the container), or sequence pattern/folder"
        ),
    ],
    flags: AgeFlags,
    ray: Annotated[
        str | None,
        typer.Option(help="run on a Ray cluster: address, or 'local' to start one", show_default=False),
    ] = None,
    segment_seconds: Annotated[float, typer.Option(help="segment length for --ray")] = 4.0,
    fps: Annotated[
        str, typer.Option(help="frame rate of an image-sequence input, e.g. 24 or 24000/1001")
    ] = "24",
    allow_gaps: Annotated[
        bool, typer.Option(help="fill missing sequence frames with the previous one (reported)")
    ] = False,
    ocio: Annotated[
        str | None, typer.Option(help="OpenColorIO config for float (EXR) plates; default: sRGB transfer")
    ] = None,
    colorspace: Annotated[
        str | None, typer.Option(help="the plates' colour space in --ocio (default: its scene_linear)")
    ] = None,
    matte_alpha: Annotated[
        bool, typer.Option(help="write the matte as the alpha channel of an RGB sequence output")
    ] = False,
) -> None:
    """Age or de-age the faces of one video or image sequence (plate.%04d.exr, plate.####.dpx, a folder)."""
    from faceage_video.media.sequence import SequenceOptions

    sequence = SequenceOptions(
        fps=parse_fps(fps or "24"), allow_gaps=allow_gaps, ocio=ocio, colorspace=colorspace
    )
    opts = flags.to_options(sequence, matte_alpha)
    if ray is not None:
        from faceage_video.media.patterns import is_sequence_path

        if is_sequence_path(input):
            raise OptionsError(f"{input}: --ray splits videos only; run image sequences without --ray")
        from faceage_video.scale.pool import age_video_ray

        with ProgressBar() as bar:
            rep = age_video_ray(
                input, output, opts, address=ray, segment_seconds=segment_seconds, progress=bar
            )
    else:
        from faceage_video.pipeline import age_video

        with ProgressBar() as bar:
            rep = age_video(input, output, opts, progress=bar)
    for w in rep.warnings:
        typer.secho(f"warning: {w}", fg="yellow", err=True)
    typer.echo(
        f"{rep.output}: {rep.frames} frames, {rep.faces} faces in {len(rep.tracks)} tracks, "
        f"{rep.processing_fps:.1f} fps processing, {rep.startup_s:.1f} s start-up"
    )
    if rep.input_ages:
        held = ", ".join(f"track {t}: {a:.0f} y" for t, a in sorted(rep.input_ages.items()))
        typer.echo(f"input ages estimated (pass --input-age to set them): {held}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option(help="folder for the demo files")] = Path("faceage-demo"),
    direction: DirectionFlag = "older",
    strength: StrengthFlag = 1.0,
    model: ModelFlag = None,
    seconds: Annotated[float, typer.Option(min=0.5, max=20.0, help="length of the demo clip")] = 2.0,
) -> None:
    """Make a short clip from scikit-image's public-domain `astronaut` and age it with the bundled model."""
    from faceage_video.demo import run_demo

    with ProgressBar() as bar:
        paths = run_demo(
            out_dir, direction=direction, strength=strength, model=model, seconds=seconds, progress=bar
        )
    for k, p in paths.items():
        typer.echo(f"{k}: {p}")


@app.command()
def info(
    input: Annotated[str, typer.Argument(help="input video")],
    max_faces: MaxFacesFlag = 4,
    seconds: Annotated[float | None, typer.Option(help="scan only the first N seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    allow_protocols: AllowProtocolsFlag = False,
) -> None:
    """List the streams, the faces found and their track ids."""
    from faceage_video.face.landmarks import LandmarkerOptions
    from faceage_video.face.tracker import TrackerOptions
    from faceage_video.pipeline import inspect_video

    res = inspect_video(
        input,
        LandmarkerOptions(max_faces=max_faces),
        TrackerOptions(max_faces=max_faces),
        seconds,
        allow_protocols,
    )
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
        return
    i = res["info"]
    typer.echo(
        f"{input}: {i['width']}×{i['height']} {i['codec']} {i['pix_fmt']}, {i['fps']:.3f} fps, "
        f"{i['duration_s'] or 0:.2f} s, rotation {i['rotation']}°"
    )
    for a in i["audio"]:
        typer.echo(f"  audio #{a['index']}: {a['codec']} {a['sample_rate']} Hz, {a['channels']} ch")
    typer.echo(f"faces in {res['frames_scanned']} frames:")
    for tid, t in sorted(res["tracks"].items()):
        typer.echo(
            f"  track {tid}: {t['frames']} frames, {t['first_s']:.2f}–{t['last_s']:.2f} s, box {t['box']}"
        )
    if not res["tracks"]:
        typer.echo("  none")
    for w in res["warnings"]:
        typer.secho(f"warning: {w}", fg="yellow", err=True)


@app.command()
def webcam(
    source: Annotated[
        str,
        typer.Option(
            "--source", "-s", help="camera index or /dev/videoN, a URL (with --allow-protocols), a file"
        ),
    ] = "0",
    output: Annotated[
        list[str] | None,
        typer.Option(
            "--output",
            "-o",
            help="window, virtualcam, a stream URL (udp://127.0.0.1:5000, rtmp://…), http://127.0.0.1:PORT "
            "(preview page), or a file; repeat for several (default: window)",
        ),
    ] = None,
    realtime: Annotated[
        bool, typer.Option(help="play a file source at its own pace, dropping frames like a camera")
    ] = False,
    loop: Annotated[bool, typer.Option(help="restart a file source at its end")] = False,
    size: Annotated[str | None, typer.Option(help="frame size asked of the camera, e.g. 640x480")] = None,
    fps: Annotated[float | None, typer.Option(help="frame rate asked of the camera")] = None,
    direction: DirectionFlag = "older",
    strength: StrengthFlag = 1.0,
    target_age: TargetAgeFlag = None,
    input_age: InputAgeFlag = None,
    model: ModelFlag = None,
    xla: Annotated[bool, typer.Option("--xla/--no-xla", help="XLA-compile the generator (GPU)")] = False,
    generator: Annotated[
        str,
        typer.Option(
            help="async: the model runs beside the video, its last result reused; sync: frames wait"
        ),
    ] = "async",
    generate_every: Annotated[int, typer.Option(min=0, help="run the model every k-th frame (0: adapt)")] = 0,
    generator_threads: Annotated[int, typer.Option(min=0, help="TensorFlow threads (0: its default)")] = 0,
    temporal: TemporalFlag = 0.3,
    mask: MaskFlag = "face",
    age_hair: AgeHairFlag = False,
    grey_share: GreyShareFlag = None,
    max_faces: MaxFacesFlag = 2,
    faces: FacesFlag = "all",
    landmarker: LandmarkerFlag = None,
    detect_width: DetectWidthFlag = 640,
    hud: Annotated[bool, typer.Option(help="overlay fps, latency, drops and the controls' state")] = False,
    stats: Annotated[str | None, typer.Option(help="write latency percentiles, fps, drops (JSON)")] = None,
    seconds: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    effect: Annotated[bool, typer.Option("--effect/--no-effect", help="start with the effect on")] = True,
    allow_protocols: AllowProtocolsFlag = False,
    reconnect: Annotated[int, typer.Option(min=0, help="reconnect tries when a URL source drops")] = 5,
    preview_public: Annotated[
        bool,
        typer.Option("--preview-public", help="let an http:// preview listen on a non-loopback address"),
    ] = False,
) -> None:
    """Age or de-age faces live: camera, stream or real-time file to a window, virtual camera, stream, file
    or preview page. Keys (window and page): space on/off, +/- strength, d direction, h hair, q quit."""
    from faceage_video.engine.generator import EngineOptions
    from faceage_video.engine.temporal import TemporalOptions
    from faceage_video.face.blend import BlendOptions
    from faceage_video.face.hair import HairOptions
    from faceage_video.face.landmarks import LandmarkerOptions
    from faceage_video.face.tracker import TrackerOptions
    from faceage_video.live import (
        GENERATOR_MODES,
        LIVE_HAIR_EVERY,
        LIVE_ONE_EURO,
        RealtimeOptions,
        parse_size,
        run_realtime,
    )

    if generator not in GENERATOR_MODES:
        raise OptionsError(f"--generator must be one of {', '.join(GENERATOR_MODES)}, got {generator!r}")
    opts = RealtimeOptions(
        source=source,
        outputs=tuple(output or ["window"]),
        realtime=realtime,
        loop=loop,
        size=parse_size(size),
        fps=fps,
        allow_protocols=allow_protocols,
        reconnect_tries=reconnect,
        engine=EngineOptions(
            model=model,
            direction=direction,
            strength=strength,
            batch_size=1,
            xla=xla,
            target_age=target_age,
            input_age=input_age,
        ),
        landmarks=LandmarkerOptions(max_faces=max_faces, model_path=landmarker, detect_width=detect_width),
        tracker=TrackerOptions(max_faces=max_faces, max_missed=3, one_euro=LIVE_ONE_EURO),
        temporal=TemporalOptions(strength=temporal),
        blend=BlendOptions(mask=mask),
        hair=HairOptions(
            enabled=age_hair or grey_share is not None, amount=grey_share, every=LIVE_HAIR_EVERY
        ),
        faces=parse_faces(faces),  # type: ignore[arg-type]
        generator=generator,  # type: ignore[arg-type]  # checked against GENERATOR_MODES above
        generate_every=generate_every,
        generator_threads=generator_threads,
        hud=hud,
        stats=stats,
        max_seconds=seconds,
        enabled=effect,
        preview_public=preview_public,
    )
    res = run_realtime(opts)
    lat, fr = res.latency_ms, res.frames
    typer.echo(
        f"{res.ended}: {fr.processed} frames out, {fr.dropped} dropped "
        f"({100 * res.drop_rate:.1f} %), sustained {res.fps.sustained} fps, "
        f"latency p50 {lat.p50} / p95 {lat.p95} / p99 {lat.p99} ms"
    )
    if res.ended == "interrupted":  # Ctrl-C is how a live run is normally stopped: not an error
        typer.secho("stopped by Ctrl-C: devices and outputs closed", fg="yellow", err=True)


@app.command()
def models() -> None:
    """List the bundled models with their cards."""
    from models.bundle import bundled_names, load_manifest, resolve_bundle

    names = bundled_names()
    if not names:
        typer.echo("no bundled models")
    for n in names:
        folder, man = load_manifest(n)
        g = man.generator
        typer.secho(f"{n}  ({folder})", bold=True)
        typer.echo(
            f"  {g.size} px, ngf {g.ngf}, {g.n_blocks} blocks; steps {man.training.get('steps')}; "
            f"data {man.data.get('dataset')}"
        )
        if man.metrics:
            typer.echo("  metrics: " + json.dumps(man.metrics)[:400])
        card = resolve_bundle(n) / "CARD.md"
        if card.is_file():
            typer.echo("  card: " + str(card))
    from models.bundle import BUNDLED_DIR
    from models.estimator import MANIFEST, EstimatorManifest

    for path in sorted(BUNDLED_DIR.glob(f"*/{MANIFEST}")):
        est = EstimatorManifest.from_json(path.read_text(encoding="utf-8"), str(path))
        typer.secho(f"{est.name}  ({path.parent})  input-age estimator", bold=True)
        typer.echo(
            f"  {est.network.size} px, width {est.network.width}; validation MAE "
            f"{est.metrics.get('mae', float('nan')):.1f} y on {est.metrics.get('n')} faces; card: {path.parent / 'CARD.md'}"
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Measure throughput (source checkout only); `bench --help` lists the options of benchmarks.throughput.

    Every argument is passed through unchanged, e.g. `faceage-video bench --quick --out /tmp/t.json`.
    """
    # benchmarks/ lives beside the package in a checkout, not in a wheel: importable from the checkout's root.
    try:
        from benchmarks.throughput import main as throughput_main
    except ModuleNotFoundError as exc:
        raise OptionsError(
            f"the bench command needs the source checkout ({exc}); run it from the root of a clone of "
            "faceage-video (or run `python -m benchmarks.throughput` there)"
        ) from None
    code = throughput_main(list(ctx.args))
    if code:
        raise typer.Exit(code)


@app.command()
@with_age_flags(exclude=("start", "end", "matte", "side_by_side", "report"))
def batch(
    manifest: Annotated[str, typer.Argument(help="CSV or JSONL of shots: input, output, per-shot options")],
    flags: AgeFlags,
    ray: Annotated[
        str | None,
        typer.Option(help="run on a Ray cluster: address, or 'local' to start one", show_default=False),
    ] = None,
    segment_seconds: Annotated[float, typer.Option(help="segment length for --ray")] = 4.0,
    actors: Annotated[int | None, typer.Option(min=1, help="Ray actors (default: per GPU / 2 CPUs)")] = None,
    force: Annotated[bool, typer.Option("--force", help="run shots already done too")] = False,
    output_root: Annotated[
        str | None, typer.Option(help="written paths resolve against this folder and stay inside it")
    ] = None,
    allow_outside: Annotated[
        bool,
        typer.Option("--allow-outside", help="let written paths leave the manifest's folder/--output-root"),
    ] = False,
) -> None:
    """Age every shot of a manifest, locally or on Ray; a re-run skips shots already done.

    The options here are the defaults; a manifest column of the same name overrides them per shot. Status is
    kept in MANIFEST.status.json. Exits 1 when a shot failed (the others still ran).
    """
    from faceage_video.scale.batch import run_batch

    ray_options = None
    if ray is not None:
        from faceage_video.scale.plan import RayOptions

        ray_options = RayOptions(address=ray, segment_seconds=segment_seconds, actors=actors)

    def shot_line(o: Any) -> None:
        colour = {"done": "green", "skipped": "blue", "failed": "red"}[o.status]
        extra = f": {o.error}" if o.error else ""
        if o.report is not None:
            extra = f": {o.report.frames} frames, {o.report.fps:.1f} fps"
        line = f"{o.status:7s} {o.shot.id} → {o.shot.output}{extra}"
        typer.secho(line, fg=colour, err=o.status == "failed")

    def build(p: Mapping[str, Any]) -> AgeOptions:
        return replace(flags, **p).to_options()

    with ProgressBar() as bar:
        res = run_batch(
            manifest,
            build,
            ray_options,
            force=force,
            on_shot=shot_line,
            output_root=output_root,
            allow_outside=allow_outside,
            progress=bar,
        )
    counts = f"{len(res.done)} done, {len(res.skipped)} skipped, {len(res.failed)} failed"
    typer.echo(f"{counts}; status in {res.status_file}")
    if res.failed:
        raise FaceAgeError(f"{len(res.failed)} of {len(res.outcomes)} shots failed (see above); the rest ran")


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show TensorFlow's and MediaPipe's native log lines")
    ] = False,
) -> None:
    """Age or de-age the faces in a video, offline or live."""
    # `main` takes -v/--verbose off the command line before Typer parses it; declared here for --help.


def _install_sigterm() -> Any:
    """Handle SIGTERM like Ctrl-C (only the main thread may set handlers); returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def main(argv: list[str] | None = None, quiet: bool | None = None) -> int:
    """Run the CLI; return the exit code.

    A `FaceAgeError` prints "error: <message>" and returns its code; a usage error prints click's message and
    returns 2; Ctrl-C prints a note and returns 130, SIGTERM 143. None of them prints a traceback.

    Args:
        argv: the arguments; None reads `sys.argv`.
        quiet: hide the native libraries' log lines (`faceage_video.quiet`) unless -v/--verbose is given.
            None: only for a real process start (`argv` None), so an in-process caller's stderr is left alone.
    """
    verbose, args = wants_verbose(list(sys.argv[1:] if argv is None else argv))
    if (argv is None if quiet is None else quiet) and not verbose:
        quiet_native_logs()
    previous = _install_sigterm()
    try:
        return run_app(app, args, interrupted="interrupted: no output was written")
    except Terminated:
        typer.secho("terminated (SIGTERM): outputs aborted, no output was written", fg="yellow", err=True)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
