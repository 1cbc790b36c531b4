"""The pool on the driver: warm actors, one queue of segments for all shots, retries, stitching.

An actor that dies fails only its own segment: the driver starts a replacement and runs the segment again,
at most `max_retries` times. An error raised by the pipeline itself is not retried: it fails its shot.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from faceage_video.checks import can_copy_input
from faceage_video.errors import OptionsError
from faceage_video.media.atomic import copy_file_atomic
from faceage_video.media.reader import VideoInfo, probe
from faceage_video.media.remux import stitch_segments
from faceage_video.options import AgeOptions
from faceage_video.report import (
    Progress,
    Report,
    expected_frames,
    finish_report,
    note_no_face,
    report_options,
)
from faceage_video.scale.plan import DistributedError, RayOptions, Segment, plan_segments
from faceage_video.scale.worker import ProgressCounter, SegmentJob, SegmentResult, SegmentWorker
from faceage_video.stages import StageOptions

# Seconds between polls of the cluster for finished segments and progress.
_POLL_S = 0.25


class _Overdue(Exception):
    """An attempt at a segment outlived its `RayOptions.attempt_timeout_s`: its worker is taken for lost."""


@dataclass
class ShotPlan:
    """One clip to age on the cluster (a batch has many).

    Attributes:
        input, output: paths.
        options: the shot's options.
        info: the input's facts (filled in by `prepare`).
        segments: the plan (filled in by `prepare`).
        key: the caller's name for the shot (a batch's shot id).
    """

    input: str
    output: str
    options: AgeOptions
    key: str = ""
    info: VideoInfo | None = None
    segments: list[Segment] = field(default_factory=list)
    work_dir: Path | None = None
    results: dict[int, SegmentResult] = field(default_factory=dict)
    retries: int = 0
    started: float = 0.0
    failed: BaseException | None = None
    # the shot's one face's input age, probed before its segments (`RayPool.probe_ages`); {} otherwise
    input_ages: dict[int, float] = field(default_factory=dict)


def _drop(ray: Any, ref: Any) -> None:
    """Read a failed task's other return, so Ray does not report its error as unhandled."""
    with contextlib.suppress(Exception):
        ray.get(ref, timeout=5)


def _check_ray_options(opts: AgeOptions) -> None:
    if not isinstance(opts.stages.faces, str):
        raise OptionsError(
            "faces given by track id need the whole clip's tracking in one process: with --ray use "
            "--faces all or largest, or run without --ray"
        )
    if opts.extras.matte or opts.extras.side_by_side:
        raise OptionsError("--matte and --side-by-side are not supported with --ray yet; run without --ray")


# Ray resolves a node address of 127.0.0.1 to the machine's public one unless clusters are off; with this
# set before Ray is imported, a local cluster's GCS, raylet, workers and agents all bind to loopback only.
_RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCAL_NODE_IP = "127.0.0.1"


def _import_ray(local: bool = False) -> Any:
    """Import Ray; for a local cluster (`local`) first make it bind to loopback (see `_RAY_LOCAL_ONLY_ENV`)."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault(_RAY_LOCAL_ONLY_ENV, "0")
    try:
        import ray
    except ImportError:
        raise DistributedError(
            "Ray is not installed: install the extra with `pip install 'faceage-video[ray]'` "
            '(or `pip install "ray[default]"`)'
        ) from None
    return ray


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """While starting a local cluster, keep Ray from replacing 127.0.0.1 by the public address.

    Ray reads `_RAY_LOCAL_ONLY_ENV` once, at import; when Ray was imported before `_import_ray` could set it,
    the flag it derives is set here for the duration of `ray.init` (a private name, so only if present).
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    before = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None and before is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if constants is not None and before is not None:
            constants.ENABLE_RAY_CLUSTER = before


class RayPool:
    """Warm aging actors on a Ray cluster, and the driver-side scheduler that feeds them segments.

    Use as a context manager; the actors live until `close()`, so a batch loads each model once per actor.
    """

    def __init__(self, options: RayOptions | None = None) -> None:
        """Connect to (or start) the cluster.

        Raises:
            DistributedError: Ray is not installed or the cluster cannot be reached.
        """
        self.options = options = options if options is not None else RayOptions()
        addr = options.address
        local = addr is None or addr == "local"
        ray = self._ray = _import_ray(local)
        self._started_ray = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            try:
                if local:
                    # Loopback only: a local cluster must not listen on the network.
                    with _loopback_only(ray):
                        ray.init(_node_ip_address=LOCAL_NODE_IP, dashboard_host=LOCAL_NODE_IP, **kw)
                    if ray.util.get_node_ip_address() != LOCAL_NODE_IP:
                        ray.shutdown()
                        raise RuntimeError(
                            f"Ray was imported before faceage-video could set {_RAY_LOCAL_ONLY_ENV}=0, so the "
                            "local cluster would listen on every interface; set it in the environment"
                        )
                else:
                    ray.init(address=addr, **kw)
            except Exception as exc:
                raise DistributedError(
                    f"cannot start or join the Ray cluster {addr or 'local'!r} "
                    f"({type(exc).__name__}: {exc}); check the address "
                    "(host:6379, ray://host:10001, auto or local)"
                ) from exc
            self._started_ray = True
        self._actors: list[Any] = []
        self._progress_actor: Any = None
        self._size: tuple[int, float, float] = (1, options.cpus_per_actor, 0.0)
        self.retries = 0

    # -- lifetime

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the actors, and the cluster when this pool started it."""
        ray = self._ray
        for a in [*self._actors, self._progress_actor]:
            if a is not None:
                with contextlib.suppress(Exception):
                    ray.kill(a)
        self._actors = []
        self._progress_actor = None
        if self._started_ray:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._started_ray = False

    # -- actors

    def _transport(self) -> Literal["path", "bytes"]:
        if self.options.transport != "auto":
            return self.options.transport
        alive = [n for n in self._ray.nodes() if n.get("Alive")]
        return "path" if len(alive) <= 1 else "bytes"

    def _sizing(self, n_segments: int) -> tuple[int, float, float]:
        """Actors to run, and the CPUs and GPUs each reserves, so that all of them fit the cluster.

        Without `actors`: one per GPU (or per `gpus_per_actor`), else one per `cpus_per_actor` CPUs. With
        `actors`: that many, each reserving at most its share of the cluster (an actor that cannot be placed
        would wait forever).
        """
        o = self.options
        res = self._ray.cluster_resources()
        have_cpu, have_gpu = float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))
        gpus = o.gpus_per_actor if o.gpus_per_actor is not None else (1.0 if have_gpu >= 1 else 0.0)
        cpus = min(o.cpus_per_actor, have_cpu)
        if o.actors is not None:
            n = o.actors
            cpus = min(cpus, have_cpu / n)
            if gpus > 0:
                gpus = min(gpus, have_gpu / n)
        elif gpus > 0:
            n = int(have_gpu // gpus)
        else:
            n = int(have_cpu // cpus)
        return max(1, min(n, n_segments)), cpus, gpus

    def _new_actor(self) -> Any:
        _, cpus, gpus = self._size
        cls = self._ray.remote(SegmentWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        return cls.remote()

    def _ensure(self, n_segments: int) -> None:
        if self._progress_actor is None:
            self._progress_actor = self._ray.remote(ProgressCounter).options(num_cpus=0).remote()
        if not self._actors:
            self._size = self._sizing(n_segments)
        while len(self._actors) < self._size[0]:
            self._actors.append(self._new_actor())

    # -- planning

    def prepare(self, shot: ShotPlan, segment_seconds: float | None = None) -> None:
        """Probe the input and plan its segments (on the driver: packets only).

        Raises:
            InputError, OutputError, OptionsError: the input, output or options cannot work (nothing is run).
        """
        o = shot.options
        _check_ray_options(o)
        from faceage_video.media.writer import VideoWriter

        ro = o.reader
        shot.info = probe(shot.input, ro.allow_protocols)
        dur = shot.info.duration_s
        if ro.start_s is not None and dur is not None and ro.start_s >= dur:
            raise OptionsError(
                f"start ({ro.start_s} s) is at or past the end of {shot.input} ({dur:.2f} s); "
                "pick a start inside the clip"
            )
        # Open (and drop) the final writer once, so a bad output path, codec/container or audio/container
        # pairing fails here, with the writer's own message, before any worker starts.
        VideoWriter(
            shot.output,
            shot.info,
            o.writer,
            audio_source=shot.input if o.writer.audio else None,
            start_s=ro.start_s,
            end_s=ro.end_s,
            allow_protocols=ro.allow_protocols,
        ).abort()
        shot.segments = plan_segments(
            shot.input,
            shot.info,
            segment_seconds or self.options.segment_seconds,
            self.options.warmup_frames,
            ro.start_s,
            ro.end_s,
            ro.allow_protocols,
        )

    # -- running

    def probe_ages(self, shots: Sequence[ShotPlan]) -> dict[int, BaseException]:
        """Probe the input age of the faces at the start of each shot run with a target age and no input age,
        on the actors; a shot with one face there, and no more than one at any segment's start, gets that age
        as its input age, so every segment asks the generator for the same age (each segment estimating its
        own from its own first seconds differed by a few years). A shot with several faces is left to its
        segments, which probe their own starts.

        Returns:
            The shots whose probe failed with an error of the run's own (a missing model), by index.
        """
        ray = self._ray
        refs: list[tuple[Any, int]] = []
        for i, shot in enumerate(shots):
            e = shot.options.stages.engine
            if shot.failed is not None or e.target_age is None or e.input_age is not None:
                continue
            actor = self._actors[len(refs) % len(self._actors)]
            starts = [s.start_s for s in shot.segments if s.start_s is not None]
            ref = actor.probe_ages.remote(shot.input, shot.options.reader, shot.options.stages, starts)
            refs.append((ref, i))
        failed: dict[int, BaseException] = {}
        for ref, i in refs:
            shot = shots[i]
            try:
                ages, most = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                failed[i] = exc.cause if isinstance(exc.cause, BaseException) else exc
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                continue  # a lost worker: the segments estimate for themselves
            # One face at the start and at most one at every segment's start: one person's shot. A face
            # that came and went between two segment starts would take that person's age too.
            if len(ages) == 1 and most <= 1:
                age = round(next(iter(ages.values())), 1)
                o = shot.options
                engine = replace(o.stages.engine, input_age=age)
                shot.options = replace(o, stages=replace(o.stages, engine=engine))
                shot.input_ages = {0: age}
        return failed

    def dispatch(self, actor: Any, job: SegmentJob, options: StageOptions, attempt: int) -> tuple[Any, Any]:
        """Start `job` on `actor` (`attempt` counts from 0); returns the refs of its result and its bytes.

        The worker gets the shot's stage options only; `job` carries its reader and writer options.

        The one place a segment reaches a worker: a subclass may wrap it (a fault-injection test kills the
        actor here, as a lost node would).
        """
        refs: tuple[Any, Any] = actor.run.options(num_returns=2).remote(job, options, self._progress_actor)
        return refs

    def run(
        self,
        shots: Sequence[ShotPlan],
        on_done: Callable[[ShotPlan, Report | None, BaseException | None], None] | None = None,
        progress: Progress | None = None,
    ) -> list[Report | BaseException]:
        """Age every prepared shot; a failed shot does not stop the others.

        Segments of all shots share one queue, so actors stay busy across shot boundaries; a shot is stitched
        on the driver as soon as its last segment is in.

        Args:
            shots: shots whose `prepare` succeeded (a shot with `failed` set is passed through as failed).
            on_done: called on the driver as each shot finishes, with its report or its error.
            progress: told the frames done of all shots, their total and the rate at each poll; None: silent.

        Returns:
            Per shot, in order, its `Report` or the exception that failed it.
        """
        ray = self._ray
        transport = self._transport()
        outcome: dict[int, Report | BaseException] = {}
        queue: deque[tuple[int, int, int]] = deque()
        total_frames = 0
        for i, shot in enumerate(shots):
            if shot.failed is not None:
                outcome[i] = shot.failed
                if on_done:
                    on_done(shot, None, shot.failed)
                continue
            assert shot.info is not None
            work = Path(self.options.work_dir or Path(shot.output).resolve().parent)
            shot.work_dir = work / f".{Path(shot.output).name}.segments-{secrets.token_hex(4)}"
            shot.work_dir.mkdir(parents=True, exist_ok=False)
            shot.started = time.perf_counter()
            queue.extend((i, k, 0) for k in range(len(shot.segments)))
            ro = shot.options.reader
            total_frames += expected_frames(shot.info, ro.start_s, ro.end_s) or 0
        if not queue:
            return [outcome[i] for i in range(len(shots))]
        self._ensure(len(queue))
        idle = list(self._actors)
        # meta ref -> (actor, bytes ref, shot, segment, attempt)
        inflight: dict[Any, tuple[Any, Any, int, int, int]] = {}
        started: dict[Any, float] = {}  # meta ref -> when it was dispatched
        t0 = time.perf_counter()

        def fail_shot(i: int, exc: BaseException) -> None:
            shots[i].failed = exc
            outcome[i] = exc
            for item in [q for q in queue if q[0] == i]:
                queue.remove(item)
            if shots[i].work_dir is not None:
                shutil.rmtree(shots[i].work_dir, ignore_errors=True)  # type: ignore[arg-type]
            if on_done:
                on_done(shots[i], None, exc)

        for i, exc in self.probe_ages(shots).items():
            fail_shot(i, exc)

        def submit(actor: Any, i: int, k: int, attempt: int) -> None:
            shot = shots[i]
            job = SegmentJob(
                shot=i,
                segment=shot.segments[k],
                input=shot.input,
                suffix=Path(shot.output).suffix,
                out_dir=str(shot.work_dir) if transport == "path" else None,
                reader=shot.options.reader,
                writer=shot.options.writer,
            )
            meta, data = self.dispatch(actor, job, shot.options.stages, attempt)
            inflight[meta] = (actor, data, i, k, attempt)
            started[meta] = time.perf_counter()

        try:
            while queue or inflight:
                while idle and queue:
                    i, k, attempt = queue.popleft()
                    submit(idle.pop(), i, k, attempt)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_POLL_S)
                now = time.perf_counter()
                overdue = [
                    r
                    for r in inflight
                    if (limit := self.options.attempt_timeout_s(inflight[r][4])) is not None
                    and now - started[r] > limit
                    and r not in ready
                ]
                for ref in [*ready, *overdue]:
                    actor, data_ref, i, k, attempt = inflight.pop(ref)
                    started.pop(ref, None)
                    shot = shots[i]
                    try:
                        if ref in overdue:
                            limit = self.options.attempt_timeout_s(attempt)
                            raise _Overdue(f"segment {k} attempt {attempt + 1} ran past its {limit} s")
                        res: SegmentResult = ray.get(ref)
                    except (
                        _Overdue,
                        ray.exceptions.RayActorError,
                        ray.exceptions.WorkerCrashedError,
                        ray.exceptions.ObjectLostError,
                    ) as exc:
                        # The worker died: replace it, and run its segment again.
                        _drop(ray, data_ref)
                        with contextlib.suppress(Exception):
                            ray.kill(actor)
                        self._actors.remove(actor)
                        fresh = self._new_actor()
                        self._actors.append(fresh)
                        idle.append(fresh)
                        if shot.failed is not None:
                            continue
                        if attempt >= self.options.max_retries:
                            fail_shot(
                                i,
                                DistributedError(
                                    f"{shot.input}: segment {k} failed {attempt + 1} times (worker died: "
                                    f"{type(exc).__name__}); raise max_retries or check the workers' logs"
                                ),
                            )
                        else:
                            self.retries += 1
                            shot.retries += 1
                            queue.appendleft((i, k, attempt + 1))
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        _drop(ray, data_ref)
                        idle.append(actor)
                        if shot.failed is None:
                            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                            fail_shot(i, cause)
                        continue
                    idle.append(actor)
                    if shot.failed is not None:
                        continue
                    if res.path is None:
                        assert shot.work_dir is not None
                        p = shot.work_dir / f"seg{k:05d}{Path(shot.output).suffix}"
                        p.write_bytes(ray.get(data_ref))
                        res.path = str(p)
                    del data_ref
                    shot.results[k] = res
                    if len(shot.results) == len(shot.segments):
                        try:
                            outcome[i] = self._finish(shot)
                        except Exception as exc:  # one shot's failure must not stop the rest
                            fail_shot(i, exc)
                        else:
                            if on_done:
                                on_done(shot, outcome[i], None)  # type: ignore[arg-type]
                if progress is not None:
                    done = ray.get(self._progress_actor.total.remote())
                    el = time.perf_counter() - t0
                    progress(done, total_frames or None, done / max(el, 1e-9))
        finally:
            for shot in shots:
                if shot.work_dir is not None:
                    shutil.rmtree(shot.work_dir, ignore_errors=True)
        return [outcome[i] for i in range(len(shots))]

    def _finish(self, shot: ShotPlan) -> Report:
        """Stitch a shot whose segments are all in, and build its report."""
        assert shot.info is not None and shot.work_dir is not None
        o = shot.options
        results = [shot.results[k] for k in range(len(shot.segments))]
        report = Report(input=shot.input, output=shot.output)
        for r in results:
            report.frames += r.frames
            report.frames_with_faces += r.frames_with_faces
            report.faces += r.faces
            for tid, n in r.tracks.items():
                report.tracks[tid] = report.tracks.get(tid, 0) + n
            for stage, s in r.stage_s.items():
                report.stage_s[stage] = round(report.stage_s.get(stage, 0.0) + s, 3)
            for w in r.warnings:
                if w not in report.warnings:
                    report.warnings.append(w)
        report.model = results[0].model if results else {}
        report.input_ages = dict(shot.input_ages)
        report.options = {
            **report_options(o.stages, o.writer, o.stages.engine.batch_size, o.stages.engine.xla),
            "ray": {
                "segments": len(results),
                "actors": len(self._actors),
                "retries": shot.retries,
                "transport": self._transport(),
                "segment_seconds": self.options.segment_seconds,
                "warmup_frames": self.options.warmup_frames,
                "nodes": sorted({r.node for r in results}),
            },
        }
        src, dst = shot.input, shot.output
        # As age_video: no face anywhere and nothing cut or dropped hands back the input itself.
        copied = report.frames_with_faces == 0 and can_copy_input(src, dst, o)
        if copied:
            copy_file_atomic(src, dst)
        else:
            paths = [r.path for r in results if r.path and r.frames > 0]
            report.warnings.extend(
                stitch_segments(
                    paths,
                    dst,
                    src,
                    shot.info,
                    audio=o.writer.audio,
                    start_s=o.reader.start_s,
                    end_s=o.reader.end_s,
                    allow_protocols=o.reader.allow_protocols,
                )
            )
        note_no_face(report, copied)
        shutil.rmtree(shot.work_dir, ignore_errors=True)
        shot.work_dir = None
        return finish_report(report, shot.started, o.extras.report)


def age_video_ray(
    input: str | Path,
    output: str | Path,
    options: AgeOptions | None = None,
    address: str | None = None,
    segment_seconds: float | None = None,
    ray_options: RayOptions | None = None,
    pool: RayPool | None = None,
    *,
    progress: Progress | None = None,
) -> Report:
    """`age_video` on a Ray cluster: split at keyframes, age the segments on warm actors, stitch by remux.

    Args:
        input: a video every worker can read (shared storage, or a URL with `allow_protocols`).
        output: the file to write (atomic, as `age_video`).
        options: as `age_video`; faces by track id, `matte` and `side_by_side` are refused.
        address: overrides `ray_options.address` ("local", "auto", "host:6379", "ray://host:10001").
        segment_seconds: overrides `ray_options.segment_seconds`.
        ray_options: the scale-out settings (default: the pool's, else `RayOptions()`); with `pool`, only its
            segment_seconds applies.
        pool: warm actors to reuse (a batch); otherwise a pool is made for this call and closed after it.
        progress: told the frames done, the total and the rate at each poll of the cluster; None: silent.

    Returns:
        The run's `Report`; `report.options["ray"]` says segments, actors and retries. Track ids in
        `report.tracks` are per segment, summed.

    Raises:
        InputError, OutputError, ModelError, OptionsError: as `age_video`.
        DistributedError: Ray is missing or unreachable, or a segment failed on every retry.
    """
    ropts = ray_options or (pool.options if pool is not None else RayOptions())
    if address is not None:
        ropts = replace(ropts, address=address)
    if segment_seconds is not None:
        ropts = replace(ropts, segment_seconds=segment_seconds)
    opts = options or AgeOptions()
    _check_ray_options(opts)
    shot = ShotPlan(input=str(input), output=str(output), options=opts)
    own = pool is None
    p = pool or RayPool(ropts)
    try:
        p.prepare(shot, ropts.segment_seconds)
        (res,) = p.run([shot], progress=progress)
    finally:
        if own:
            p.close()
    if isinstance(res, BaseException):
        raise res
    if res.frames_with_faces == 0:
        warnings.warn(res.warnings[-1], stacklevel=2)
    return res
