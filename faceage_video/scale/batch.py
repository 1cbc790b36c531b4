"""Many shots from one manifest, locally or on Ray, with a per-shot status file so a re-run resumes.

The manifest, its per-shot options and its confinement are in `faceage_video.scale.manifest`.

Status. `<manifest>.status.json` beside the manifest records, per shot id, "running", "done" or "failed"
(with the error), the frame count and a fingerprint of the input file, the output path and the options. A
re-run skips every shot that is "done" with the same fingerprint and whose output still opens as a video
with the recorded frame count (a truncated output runs again), and runs the rest (failed, interrupted, new
or changed shots). A shot that fails is recorded and the others still run. The status file is locked for the
whole run (`<manifest>.status.json.lock`), so a second run of the same manifest is refused at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from faceage_video.errors import FaceAgeError, OptionsError, OutputError
from faceage_video.options import AgeOptions
from faceage_video.report import Progress, Report
from faceage_video.scale.manifest import Shot, read_manifest, shot_params
from faceage_video.scale.plan import RayOptions

ShotStatus = Literal["running", "done", "failed", "skipped"]
STATUS_SUFFIX = ".status.json"
# Makes AgeOptions from one shot's option values (the batch defaults already merged in); the CLI passes its
# own builder, so a manifest column means exactly what the `age` option of the same name means.
BuildOptions = Callable[[Mapping[str, Any]], AgeOptions]


@dataclass
class ShotOutcome:
    """What happened to one shot in this run.

    Attributes:
        status: "done", "skipped" (already done before) or "failed".
        error: why it failed.
        report: the pipeline's report when it ran.
    """

    shot: Shot
    status: ShotStatus
    error: str | None = None
    report: Report | None = None


@dataclass
class BatchReport:
    """Every shot's outcome, in manifest order, and where the status was recorded."""

    outcomes: list[ShotOutcome]
    status_file: Path

    def _with(self, status: ShotStatus) -> list[ShotOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[ShotOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[ShotOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ShotOutcome]:
        return self._with("failed")


# ----------------------------------------------------------------------------------------------------------
# Status file


def status_path(manifest: str | os.PathLike[str]) -> Path:
    """The status file beside a manifest: `<manifest>.status.json`."""
    p = Path(manifest)
    return p.with_name(p.name + STATUS_SUFFIX)


class StatusFile:
    """Per-shot status beside the manifest, rewritten atomically after every change."""

    def __init__(self, path: Path, manifest: Path, lock: bool = False) -> None:
        """Read the status (after taking the run's lock when `lock`; see `lock()`)."""
        self.path = path
        self.manifest = manifest
        self.shots: dict[str, dict[str, Any]] = {}
        self._lock: Any = None
        if lock:
            self.lock()
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.shots = dict(data.get("shots", {}))
            except (json.JSONDecodeError, AttributeError, TypeError):
                # An unreadable status means nothing is known to be done: keep it aside and start over.
                path.replace(path.with_name(path.name + ".corrupt"))
                self.shots = {}

    def lock(self) -> None:
        """Hold an exclusive lock for this run, so a second run of the same manifest is refused.

        Raises:
            OutputError: another run holds it (or the folder refuses the lock file).
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self._lock = open(lock_path, "a+")  # noqa: SIM115 - held until unlock()
        except OSError as e:
            raise OutputError(
                f"{lock_path}: cannot create the status lock ({e.strerror}); check the folder"
            ) from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise OutputError(
                f"{self.path}: another batch run of this manifest is in progress (it holds {lock_path}); "
                "wait for it to end, or stop it first"
            ) from None

    def unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def get(self, shot_id: str) -> dict[str, Any] | None:
        return self.shots.get(shot_id)

    def set(self, shot_id: str, **fields: Any) -> None:
        entry = self.shots.setdefault(shot_id, {})
        entry.update(fields)
        entry["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._write()

    def mark(self, shot: Shot, fp: str | None, status: str, **fields: Any) -> None:
        """Record a shot's status with its identity (input, output, options fingerprint)."""
        self.set(shot.id, status=status, input=shot.input, output=shot.output, fingerprint=fp, **fields)

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {"manifest": self.manifest.name, "shots": self.shots}
        tmp.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def fingerprint(shot: Shot, options: AgeOptions) -> str:
    """What makes a finished shot still valid: the input file (size, mtime), the output path, the options."""
    try:
        st = os.stat(shot.input)
        src: Any = [st.st_size, st.st_mtime_ns]
    except OSError:
        src = None
    key = {
        "input": shot.input,
        "input_stat": src,
        "output": os.path.abspath(shot.output),
        "options": repr(options),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def output_intact(path: str, frames: Any) -> bool:
    """Whether a finished shot's output still opens as a video holding `frames` video packets.

    Counting packets (no decoding) is cheap, and a truncated file either fails to open (an MP4 without its
    index) or holds fewer packets than were written.
    """
    from faceage_video.media.reader import open_input

    if not isinstance(frames, int) or not os.path.isfile(path):
        return False
    try:
        container = open_input(path)
    except FaceAgeError:
        return False
    try:
        if not container.streams.video:
            return False
        n = sum(1 for pkt in container.demux(container.streams.video[0]) if pkt.size > 0)
    except Exception:  # any demux error means the file is damaged: run the shot again
        return False
    finally:
        container.close()
    return n == frames


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FaceAgeError) else f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------------------------
# Running


def run_batch(
    manifest: str | os.PathLike[str],
    build_options: BuildOptions,
    ray_options: RayOptions | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_shot: Callable[[ShotOutcome], None] | None = None,
    output_root: str | os.PathLike[str] | None = None,
    allow_outside: bool = False,
) -> BatchReport:
    """Age every shot of a manifest that is not already done; record each shot's status as it ends.

    Args:
        manifest: a .csv or .jsonl manifest.
        build_options: makes a shot's `AgeOptions` from its option values (see `BuildOptions`).
        ray_options: run on Ray with these settings (segments of all shots share the
            warm actors); None runs the shots one after another in this process, reusing loaded models.
        force: run shots already done too.
        progress: told how the run goes: on Ray, over all shots at once; locally, over each shot in turn.
        on_shot: called as each shot ends (done, skipped or failed).
        output_root, allow_outside: where written paths may go (see `read_manifest`).

    Returns:
        Every shot's outcome. A failed shot does not raise: see `BatchReport.failed`.

    Raises:
        InputError, OptionsError: the manifest is missing, malformed or refused (nothing is run).
        OutputError: another run of the same manifest holds the status file.
        DistributedError: Ray is missing or the cluster cannot be reached.
    """
    mpath = Path(manifest)
    shots = read_manifest(mpath, output_root, allow_outside)
    status = StatusFile(status_path(mpath), mpath, lock=True)
    try:
        return _run_batch(shots, status, build_options, ray_options, force, progress, on_shot)
    finally:
        status.unlock()


def _run_batch(
    shots: list[Shot],
    status: StatusFile,
    build_options: BuildOptions,
    ray_options: RayOptions | None,
    force: bool,
    progress: Progress | None,
    on_shot: Callable[[ShotOutcome], None] | None,
) -> BatchReport:
    outcomes: dict[str, ShotOutcome] = {}
    todo: list[tuple[Shot, AgeOptions | None, str | None, BaseException | None]] = []

    def finish(outcome: ShotOutcome) -> None:
        outcomes[outcome.shot.id] = outcome
        if on_shot is not None:
            on_shot(outcome)

    for shot in shots:
        try:
            opts: AgeOptions | None = build_options(shot_params(shot))
            err: BaseException | None = None
        except Exception as exc:  # a bad value fails its own shot only
            opts, err = None, exc
        fp = fingerprint(shot, opts) if opts is not None else None
        prev = status.get(shot.id)
        if (
            not force
            and opts is not None
            and prev is not None
            and prev.get("status") == "done"
            and prev.get("fingerprint") == fp
            and output_intact(shot.output, prev.get("frames"))
        ):
            finish(ShotOutcome(shot, "skipped"))
            continue
        todo.append((shot, opts, fp, err))

    def record(shot: Shot, fp: str | None, report: Report | None, exc: BaseException | None) -> None:
        if exc is not None:
            status.mark(shot, fp, "failed", error=_message(exc))
            finish(ShotOutcome(shot, "failed", error=_message(exc)))
        else:
            assert report is not None
            status.mark(
                shot,
                fp,
                "done",
                error=None,
                frames=report.frames,
                faces=report.faces,
                wall_s=round(report.wall_s, 2),
                warnings=report.warnings,
            )
            finish(ShotOutcome(shot, "done", report=report))

    if ray_options is None:
        _run_local(todo, status, record, progress)
    else:
        _run_ray(todo, status, record, ray_options, progress)
    return BatchReport([outcomes[s.id] for s in shots], status.path)


_Record = Callable[[Shot, str | None, Report | None, BaseException | None], None]


def _run_local(
    todo: list[tuple[Shot, AgeOptions | None, str | None, BaseException | None]],
    status: StatusFile,
    record: _Record,
    progress: Progress | None,
) -> None:
    from faceage_video.engine.generator import AgingEngine
    from faceage_video.pipeline import age_video

    engines: dict[Any, AgingEngine] = {}  # one loaded model per engine options, reused across shots
    for shot, opts, fp, err in todo:
        if opts is None:
            record(shot, fp, None, err or OptionsError("invalid options"))
            continue
        status.mark(shot, fp, "running", started=time.time())
        try:
            eng = engines.get(opts.stages.engine)
            if eng is None:
                if len(engines) >= 2:
                    engines.pop(next(iter(engines)))
                eng = engines[opts.stages.engine] = AgingEngine(opts.stages.engine)
            report = age_video(shot.input, shot.output, opts, engine=eng, progress=progress)
        except Exception as exc:  # one shot's failure must not stop the batch
            record(shot, fp, None, exc)
        else:
            record(shot, fp, report, None)


def _run_ray(
    todo: list[tuple[Shot, AgeOptions | None, str | None, BaseException | None]],
    status: StatusFile,
    record: _Record,
    ray_options: RayOptions,
    progress: Progress | None,
) -> None:
    from faceage_video.scale.pool import RayPool, ShotPlan

    plans: list[ShotPlan] = []
    by_plan: dict[int, tuple[Shot, str | None]] = {}
    if not todo:
        return
    with RayPool(ray_options) as pool:
        for shot, opts, fp, err in todo:
            plan = ShotPlan(input=shot.input, output=shot.output, options=opts or AgeOptions(), key=shot.id)
            if opts is None:
                plan.failed = err or OptionsError("invalid options")
            else:
                try:
                    pool.prepare(plan)
                except Exception as exc:  # unreadable input, bad output path: this shot only
                    plan.failed = exc
            if plan.failed is None:
                status.mark(shot, fp, "running", started=time.time())
            by_plan[id(plan)] = (shot, fp)
            plans.append(plan)

        def done(plan: ShotPlan, report: Report | None, exc: BaseException | None) -> None:
            shot, fp = by_plan[id(plan)]
            record(shot, fp, report, exc)

        pool.run(plans, on_done=done, progress=progress)
