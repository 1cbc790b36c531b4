"""One live run: a source through the same stages as `age`, latency before completeness.

    capture thread ─► LatestSlot ─► main loop: FaceAnalyzer.analyze ─► composite ─► HUD ─► outputs
    (camera, URL,     (1 frame)     (landmarks, track, align)   (smooth,          (window, virtualcam,
     paced file)                              │                  paste back)       stream, file, preview)
                                              ▼                    ▲
                                 Generation (thread or inline) ─► ResidualCache

The stages are the offline pipeline's own (`stages.FaceAnalyzer`, `stages.composite`, `select_faces`
inside the analyzer); only the scheduling differs. Every hand-off keeps only the newest item (`handoff`), so
at most one captured frame waits and every processed frame is the newest one; the loop never waits for the
generator (`generation`), so the video never freezes when the model is slow.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faceage_video.engine.generator import AgingEngine
from faceage_video.engine.input_age import InputAgeOptions, age_tracker_for, toward
from faceage_video.engine.temporal import ResidualSmoother
from faceage_video.live.controls import ControlState, LiveControls
from faceage_video.live.generation import (
    EngineSet,
    GenerationPacer,
    GenRequest,
    ResidualCache,
    limit_tf_threads,
    make_generation,
    warm_up,
)
from faceage_video.live.handoff import POLL_S, LatestSlot
from faceage_video.live.hud import draw_hud, hud_lines
from faceage_video.live.options import RealtimeOptions, output_kind
from faceage_video.live.outputs import OUT_TIME_BASE, LiveOutput, WindowOutput, open_output
from faceage_video.live.sources import CaptureThread, LiveFrame, fit, open_source
from faceage_video.live.stats import EndReason, LiveReport, LiveStats, ModelInfo, PacerState
from faceage_video.media.atomic import check_writable_file, write_file_atomic
from faceage_video.media.reader import DecodedFrame
from faceage_video.stages import FaceAnalyzer, composite, hair_amounts
from faceage_video.types import Direction, Frame

OnFrame = Callable[[LiveFrame, Frame], None]


class RealtimeSession:
    """One live run: source, stages, outputs and their threads, all opened when the session is built.

    Use it as a context manager (`with RealtimeSession(...) as s: s.run()`), or call `run_realtime`.
    Leaving the `with` stops the threads and closes the analyzer, every output and the source.

    Attributes:
        outputs: the open outputs, in the order given. capture_slot: the capture → loop hand-off.
        width, height, fps: the frames' size and rate. on_frame: see `run_realtime`.
    """

    def __init__(
        self,
        options: RealtimeOptions,
        engine: AgingEngine | None = None,
        controls: LiveControls | None = None,
        on_frame: OnFrame | None = None,
    ) -> None:
        """Open the source, then the outputs, then load the model (so a bad device fails before anything slow).

        Raises:
            SourceError, InputError: the source cannot be opened.
            OutputError: an output cannot be opened, or the stats folder does not exist.
            ModelError: the model cannot be loaded.
        """
        self.options = options
        if controls is None:
            controls = LiveControls(
                options.enabled, options.engine.direction, options.engine.strength, options.hair.enabled
            )
            controls.set_target_age(options.engine.target_age)
        self.controls = controls
        self.stats = LiveStats(options.warmup_s)
        self.on_frame = on_frame
        self.capture_slot: LatestSlot[LiveFrame] = LatestSlot()
        self.cache = ResidualCache()
        self.smoother = ResidualSmoother(options.temporal)
        self.pacer = GenerationPacer(options.generate_every)
        self.outputs: list[LiveOutput] = []
        self.ended: EndReason = "error"
        # (direction, enabled, target age) of the previous frame
        self._state_seen: tuple[Direction, bool, float | None] | None = None
        self._stack = contextlib.ExitStack()
        try:
            self._check_stats_folder()
            # Source first: a missing or busy camera fails before anything slow is loaded.
            self.source = open_source(options)
            self._stack.callback(self.source.close)
            sample = fit(np.zeros((self.source.height, self.source.width, 3), np.uint8), options.size)
            self.height, self.width = sample.shape[:2]
            self.fps = float(options.fps or self.source.fps or 30.0)
            live = options.source_kind != "file" or options.realtime
            self.capture = CaptureThread(
                self.source, self.capture_slot, self.stats, options.size, options.fps, lossless=not live
            )
            want = self.controls.snapshot().direction
            self.engines = EngineSet(replace(options.engine, direction=want, strength=1.0), engine)
            self.generation = make_generation(options.generator, self.engines, self.cache, self.stats)
            self._stack.callback(self._close_outputs)
            for spec in options.outputs:
                self.outputs.append(
                    open_output(
                        spec,
                        options,
                        (self.width, self.height),
                        self.fps,
                        self.controls,
                        lambda: self.report().to_dict(),
                        self.source.name,
                    )
                )
            self._window = next((o for o in self.outputs if isinstance(o, WindowOutput)), None)
            limit_tf_threads(options.generator_threads)
            first = self.engines.get(want)
            warm_up(first)  # a preloaded engine may never have run
            self.analyzer = FaceAnalyzer(
                options.landmarks,
                options.tracker,
                options.temporal,
                options.blend,
                first.size,
                first.template,
                options.faces,
                hair=options.hair,
            )
            self._stack.callback(self.analyzer.close)
            # Each face's own age, for a target age set without --input-age (now or from the controls later).
            # The controls' ages come from options.engine, so its input age decides (a preloaded engine's may not).
            given = options.engine.input_age is not None
            self.input_ages = None if given else age_tracker_for(first, InputAgeOptions())
            if self.input_ages is not None and options.engine.target_age is not None:
                # Faces can fall on either side of the target: the other model loads now, in the background,
                # so the first face that needs it does not hold up the others' residuals while it loads.
                self.engines.get_nowait("younger" if want == "older" else "older")
            self._own_ages: list[float] = []  # the estimated ages of the last frame's faces, for the HUD
            self._stack.callback(self._stop_threads)
        except BaseException:
            self._stack.close()
            raise

    # -- lifetime -------------------------------------------------------------------------------------

    def __enter__(self) -> RealtimeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads, close the analyzer, the outputs and the source (each once)."""
        self._stack.close()

    def _check_stats_folder(self) -> None:
        """The stats file is written at the end: refuse now what could not be written then (a missing or
        read-only folder, the source itself, a file output)."""
        if self.options.stats is not None:
            files = [("output", o) for o in self.options.outputs if output_kind(o) == "file"]
            check_writable_file(self.options.stats, "--stats", [("source", self.options.source), *files])

    def _close_outputs(self) -> None:
        errors: list[BaseException] = []
        for out in reversed(self.outputs):
            try:
                out.close()
            except Exception as e:  # close every output even if one fails
                errors.append(e)
        self.outputs.clear()
        if errors:
            raise errors[0]

    def _stop_threads(self) -> None:
        self.capture.join()
        self.capture_slot.close(count_unread_as_dropped=True)
        self.generation.stop()

    # -- statistics -----------------------------------------------------------------------------------

    def report(self) -> LiveReport:
        """The run's statistics so far (the preview page polls them; `run` returns the last)."""
        opts = self.options
        eng = self.engines.any()
        measures = self.stats.measure(self.capture_slot.dropped)
        return LiveReport(
            **{f.name: getattr(measures, f.name) for f in fields(measures)},
            source=opts.source,
            source_kind=opts.source_kind,
            outputs=tuple(o.name for o in self.outputs) or opts.outputs,
            width=self.width,
            height=self.height,
            source_fps=round(self.fps, 3),
            capture_queue_max=self.capture_slot.max_depth,
            generator_queue_max=self.generation.queue_max,
            generator_skipped=self.generation.skipped,
            generator_mode=opts.generator,
            generate_every=PacerState(self.pacer.adaptive, self.pacer.k, self.pacer.k_max),
            controls=self.controls.snapshot(),
            rolling=self.stats.rolling().rounded(),
            model=ModelInfo(eng.manifest.name, eng.manifest.training.get("steps")) if eng else None,
            ended=self.ended,
        )

    def write_stats(self) -> None:
        """Write the report to `options.stats` (through a temporary file, renamed when complete)."""
        if self.options.stats is None:
            return
        write_file_atomic(
            Path(self.options.stats), (json.dumps(self.report().to_dict(), indent=2) + "\n").encode()
        )

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> LiveReport:
        """Process frames until the source ends, quit, the time limit or Ctrl-C; returns the report.

        Raises:
            SourceError, OutputError: the source or an output failed mid-run (outputs are still closed).
        """
        self.generation.start()
        t_start = time.perf_counter()
        self.stats.start(t_start)
        self.capture.start()
        restore = _stop_on_sigterm()
        try:
            self.ended = self._loop(t_start)
        except KeyboardInterrupt:
            self.ended = "interrupted"
        except BaseException:
            self.ended = "error"
            raise
        finally:
            restore()
            self._stop_threads()
            with contextlib.suppress(OSError):
                self.write_stats()
        return self.report()

    def _loop(self, t_start: float) -> EndReason:
        opts = self.options
        while True:
            if self.controls.snapshot().quit:
                return "quit"
            if opts.max_seconds is not None and time.perf_counter() - t_start >= opts.max_seconds:
                return "time_limit"
            self.generation.check()
            frame = self.capture_slot.get(POLL_S)
            if frame is None:
                if self._window is not None:
                    self._window.poll()
                if self.capture.error is not None:
                    raise self.capture.error
                if self.capture.ended.is_set() and len(self.capture_slot) == 0:
                    return "source_ended"
                continue
            self._process(frame)

    def _process(self, frame: LiveFrame) -> None:
        opts = self.options
        state = self.controls.snapshot()
        self.generation.check()
        seen, self._state_seen = self._state_seen, (state.direction, state.enabled, state.target_age)
        if seen is not None and (
            seen[0::2] != (state.direction, state.target_age) or (state.enabled and not seen[1])
        ):
            # A new direction or target age, or the effect turned back on: the residuals held do not apply.
            self.cache.clear()
            self.smoother.reset()
        image = frame.image
        faces = reused = 0
        ages: list[float] = []
        if state.enabled:
            image, faces, reused, ages = self._age(frame, state)
        if opts.hud:
            if image is frame.image:
                image = image.copy()
            drop_pct = 100.0 * self.capture_slot.dropped / max(1, self.stats.captured)
            rolling = self.stats.rolling()
            draw_hud(image, hud_lines(state, faces, rolling, drop_pct, self.pacer.k, self._own_ages))
        t = time.perf_counter()
        for out in self.outputs:
            out.write(image, frame)
        now = time.perf_counter()
        self.stats.stage("output", now - t)
        self.stats.frame_out(frame.capture_t, now, faces, reused, ages)
        if self.on_frame is not None:
            self.on_frame(frame, image)

    def _age(self, frame: LiveFrame, state: ControlState) -> tuple[Frame, int, int, list[float]]:
        """Analyze the frame, ask for fresh residuals, paste the latest of each face at `state.strength`.

        Returns:
            The output picture, the faces in it, how many were pasted with an older frame's residual, and
            the age in ms of each residual pasted.
        """
        t = time.perf_counter()
        self.analyzer.set_hair(state.hair)
        job = self.analyzer.analyze(DecodedFrame(frame.index, frame.image, None, OUT_TIME_BASE, frame.time_s))
        self.stats.stage("landmarks_track_align", time.perf_counter() - t)
        for tid in job.ended:
            self.cache.drop(tid)
            if self.input_ages is not None:
                self.input_ages.reset(tid)
        if job.cut:
            self.cache.clear()
        ids = tuple(f.track_id for f in job.faces)
        self._own_ages = []
        direction, gen_ages = state.generator(self.options.engine)
        per_face: tuple[Direction, ...] = (direction,) * len(ids)
        if ids:
            crops = np.stack([f.crop for f in job.faces])
            asked: tuple[float, float] | NDArray[np.float32] = gen_ages
            if self.input_ages is not None and state.target_age is not None:
                own = self.input_ages(ids, [f.crop for f in job.faces])
                self._own_ages = [float(a) for a in own]
                asked = np.stack([own, np.full(len(ids), gen_ages[1], np.float32)], axis=1)
                # Each face toward the target from its own age: the younger aged, the older de-aged.
                per_face = toward(own, gen_ages[1], direction)
            self._request_residuals(frame, direction, ids, crops, asked, per_face)
        residuals = (
            np.zeros((len(ids), *job.faces[0].crop.shape), np.float32) if ids else np.zeros((0,), np.float32)
        )
        reused = 0
        ages: list[float] = []
        for i, tid in enumerate(ids):
            cached = self.cache.get(per_face[i], tid)
            if cached is None:
                continue  # not generated yet: the change fades in through the smoother
            residuals[i] = cached.residual * np.float32(state.strength)
            age_ms = (frame.capture_t - cached.capture_t) * 1000.0
            ages.append(age_ms)
            reused += age_ms > 0
        hair = self.options.hair
        shares = None
        if state.hair and ids:
            # The hair follows the controls as the faces do: their direction, target age and strength.
            now = replace(
                self.options.engine,
                direction=state.direction,
                target_age=state.target_age,
                strength=state.strength,
            )
            shares = hair_amounts(
                now, hair, len(ids), np.array(self._own_ages, np.float32) if self._own_ages else None
            )
        t = time.perf_counter()
        # The offline pipeline's own smooth + paste-back, on the residuals prepared above.
        composite([job], residuals, self.smoother, self.options.blend, hair=hair, hair_shares=shares)
        self.stats.stage("render", time.perf_counter() - t)
        assert job.image is not None  # composite sets it
        return job.image, len(ids), reused, ages

    def _request_residuals(
        self,
        frame: LiveFrame,
        direction: Direction,
        ids: tuple[int, ...],
        crops: NDArray[np.uint8],
        ages: tuple[float, float] | NDArray[np.float32] | None = None,
        directions: tuple[Direction, ...] | None = None,
    ) -> None:
        """On every k-th frame with faces, hand the crops to the generation (thread or inline)."""
        self.pacer.update(frame.capture_t, self.stats.captured, self.capture_slot.dropped)
        if self.pacer.offer():
            self.generation.request(GenRequest(direction, ids, crops, frame.capture_t, ages, directions))


def _stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM (a service manager, `docker stop`) stop the run like Ctrl-C: outputs closed, file kept.

    Only the main thread can install signal handlers; elsewhere this does nothing. Returns the undo.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def run_realtime(
    options: RealtimeOptions,
    engine: AgingEngine | None = None,
    controls: LiveControls | None = None,
    on_frame: OnFrame | None = None,
) -> LiveReport:
    """Age or de-age the faces of a live source and send the result to the outputs, latency first.

    Args:
        options: source, outputs and every stage's options.
        engine: a loaded engine to reuse (its direction is the starting one; the other loads on a switch).
        controls: shared controls, to drive the run from outside (tests, an embedding app); by default the
            window keys and the preview page drive a private one.
        on_frame: called with each frame and its output picture after the outputs took it (runs in the
            processing loop, so a slow callback slows the loop, and the latest-frame policy drops frames).

    Returns:
        The report (also written to `options.stats`): frame counts, drop rate, sustained fps, p50/p95/p99
        capture → output latency in ms, per-stage times, and why the run ended ("source_ended", "quit",
        "interrupted" by Ctrl-C or SIGTERM, "time_limit").

    Raises:
        SourceError: the camera or stream cannot be opened, or drops for good.
        InputError: a file source is missing or unreadable.
        OutputError: an output cannot be opened (missing virtualcam backend, port in use, no display…)
            or fails mid-run.
        ModelError, OptionsError: a bad model or options.
        Every device and output is closed before an error leaves, and on Ctrl-C.
    """
    with RealtimeSession(options, engine, controls, on_frame) as session:
        return session.run()
