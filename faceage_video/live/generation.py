"""The generator side of the live loop: which frames it sees, which model runs, and where residuals wait.

The generator runs on the newest crops it is offered (`GenerationPacer` picks every k-th frame with faces),
either in its own thread (`AsyncGeneration`: the loop never waits for it) or inline (`SyncGeneration`). Its
output is a full-strength residual per (direction, track id) in `ResidualCache`; the loop pastes the last one
of each still-tracked face at the face's *current* alignment. Residuals live in aligned crop coordinates,
where head motion is already cancelled, so a residual a few frames old still fits the face: when the model
keeps up every frame gets a fresh one, when it does not the video keeps its frame rate and the effect
updates less often.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.input_age import beyond
from faceage_video.live.handoff import POLL_S, LatestSlot
from faceage_video.live.options import GeneratorMode
from faceage_video.live.stats import LiveStats
from faceage_video.types import Direction


@dataclass(frozen=True)
class GenRequest:
    """Crops of one frame offered to the generator.

    Attributes:
        direction: the model to run. track_ids: one per crop.
        crops: (N, S, S, 3) uint8 aligned crops. capture_t: capture time of their frame.
    """

    direction: Direction
    track_ids: tuple[int, ...]
    crops: NDArray[np.uint8]
    capture_t: float
    # (input, target) years for age-conditioned models: one pair for every crop, or (N, 2), one per crop
    ages: tuple[float, float] | NDArray[np.float32] | None = None
    # one per crop, in place of `direction`: with a target age, a face younger than it is aged and an older
    # one de-aged in the same frame (`input_age.toward`)
    directions: tuple[Direction, ...] | None = None

    def groups(self) -> list[tuple[Direction, NDArray[np.intp]]]:
        """(direction, indices of its crops) for each direction the request asks for, in a fixed order."""
        per = self.directions or (self.direction,) * len(self.track_ids)
        if len(per) != len(self.track_ids):
            raise ValueError(f"{len(per)} directions for {len(self.track_ids)} crops")
        both: tuple[Direction, Direction] = ("older", "younger")
        return [(d, idx) for d in both if len(idx := np.flatnonzero([p == d for p in per]))]


@dataclass(frozen=True)
class CachedResidual:
    """A generated change and when its frame was captured.

    Attributes:
        residual: (S, S, 3) float32 full-strength change G(crop) − crop.
        capture_t: capture time of the frame the crop came from.
    """

    residual: NDArray[np.float32]
    capture_t: float


class ResidualCache:
    """The last full-strength residual generated for each (direction, track id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[Direction, int], CachedResidual] = {}

    def put(
        self,
        direction: Direction,
        track_ids: tuple[int, ...],
        residuals: NDArray[np.float32],
        capture_t: float,
    ) -> None:
        with self._lock:
            for tid, r in zip(track_ids, residuals, strict=True):
                self._items[(direction, tid)] = CachedResidual(r, capture_t)

    def get(self, direction: Direction, track_id: int) -> CachedResidual | None:
        with self._lock:
            return self._items.get((direction, track_id))

    def drop(self, track_id: int) -> None:
        with self._lock:
            for key in [k for k in self._items if k[1] == track_id]:
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class EngineSet:
    """One `AgingEngine` per direction; the second is loaded on the first switch to it."""

    def __init__(self, options: EngineOptions, preloaded: AgingEngine | None, *more: AgingEngine) -> None:
        """Args:
        options: what an engine loaded later is built from (its direction set per load).
        preloaded, more: engines already loaded, one per direction at most.
        """
        self.options = options
        self._lock = threading.Lock()
        self._engines: dict[Direction, AgingEngine] = {}
        self._loading: set[Direction] = set()
        self.error: BaseException | None = None
        for eng in (preloaded, *more):
            if eng is not None:
                self._engines[eng.options.direction] = eng

    def get(self, direction: Direction) -> AgingEngine:
        """The engine of a direction, loading and warming it up first if needed (blocks)."""
        with self._lock:
            eng = self._engines.get(direction)
            if eng is None:
                # One engine per direction: the target age picks the direction per request, not here.
                eng = AgingEngine(replace(self.options, direction=direction, strength=1.0, target_age=None))
                warm_up(eng)
                self._engines[direction] = eng
            return eng

    def get_nowait(self, direction: Direction) -> AgingEngine | None:
        """The engine if loaded; otherwise start loading it in the background and return None."""
        with self._lock:
            eng = self._engines.get(direction)
            if eng is not None or direction in self._loading:
                return eng
            self._loading.add(direction)

        def load() -> None:
            try:
                self.get(direction)
            except BaseException as exc:  # re-raised by the processing loop
                self.error = exc

        threading.Thread(target=load, name="faceage-model-load", daemon=True).start()
        return None

    def check(self) -> None:
        """Raise the error a background load failed with, if any."""
        if self.error is not None:
            raise self.error

    def any(self) -> AgingEngine | None:
        """Some loaded engine (for its manifest), without loading anything."""
        with self._lock:
            return next(iter(self._engines.values()), None)


def warm_up(engine: AgingEngine) -> None:
    """Trace and run the generator once, so the first live frame does not pay for it."""
    engine.generate(np.zeros((1, engine.size, engine.size, 3), np.uint8))


def full_residuals(
    engine: AgingEngine,
    crops: NDArray[np.uint8],
    ages: tuple[float, float] | NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Full-strength change G(crop) − crop, (N, S, S, 3) float32; the live strength applies at paste time.

    `ages` (input, target) in years go to an age-conditioned model: one pair for every crop, or (N, 2), one
    per crop, where a face already at or past its target gets no change (`input_age.beyond`); None: the
    model's defaults.
    """
    per_crop = None if ages is None else np.asarray(ages, np.float32)
    if per_crop is not None and per_crop.ndim == 1:
        per_crop = np.tile(per_crop, (len(crops), 1))
    out: NDArray[np.float32] = engine.generate(crops, per_crop) - crops.astype(np.float32)
    if per_crop is not None and engine.conditioned:
        out[beyond(engine.options.generator, per_crop)] = 0.0
    return out


class GenerationPacer:
    """Chooses k: the generator is offered the crops of every k-th frame with faces.

    With a fixed `every` (>= 1) k never changes. Adaptive (`every` = 0): once a second, when more than
    `HIGH` of the frames captured in that second were dropped, the loop is behind the source, and on a small
    machine the generator is what takes the CPU from it; k grows by one (up to `MAX_K`), since a residual
    reused a few frames longer costs the viewer less than a dropped frame. When drops fall under `LOW`, k
    shrinks again, down to 1.
    """

    HIGH = 0.10
    LOW = 0.02
    MAX_K = 8

    def __init__(self, every: int) -> None:
        self.adaptive = every == 0
        self.k = max(1, every)
        self.k_max = self.k
        self._n = 0
        self._window: tuple[float, int, int] | None = None  # (start time, captured, dropped) at its start

    def update(self, now: float, captured: int, dropped: int) -> None:
        """Feed the capture counters; adjusts k once a second when adaptive."""
        if not self.adaptive:
            return
        if self._window is None:
            self._window = (now, captured, dropped)
            return
        t0, c0, d0 = self._window
        if now - t0 < 1.0:
            return
        dc, dd = captured - c0, dropped - d0
        rate = dd / dc if dc > 0 else 0.0
        if rate > self.HIGH and self.k < self.MAX_K:
            self.k += 1
        elif rate < self.LOW and self.k > 1:
            self.k -= 1
        self.k_max = max(self.k_max, self.k)
        self._window = (now, captured, dropped)

    def offer(self) -> bool:
        """Whether this frame with faces goes to the generator."""
        self._n += 1
        if self._n >= self.k:
            self._n = 0
            return True
        return False


def limit_tf_threads(n: int) -> None:
    """Give TensorFlow `n` intra-op threads (0: its default); a no-op once TensorFlow has run something."""
    if n <= 0:
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TensorFlow already ran something in this process
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)


class Generation(Protocol):
    """Turns requests into residuals in the cache, in a thread of its own or inline."""

    def start(self) -> None: ...

    def request(self, request: GenRequest) -> None:
        """Offer the crops of a frame; never blocks on the model."""

    def check(self) -> None:
        """Raise the error a background model load or generator run failed with, if any."""

    def stop(self) -> None: ...

    @property
    def queue_max(self) -> int:
        """Deepest the request hand-off ever was (1 at most; 0 inline)."""

    @property
    def skipped(self) -> int:
        """Requests replaced by a newer one before the generator took them."""


def _generate(
    engine_for: Callable[[Direction], AgingEngine | None],
    request: GenRequest,
    cache: ResidualCache,
    stats: LiveStats,
) -> None:
    """Run each direction's crops of `request` through its engine and cache the residuals; a direction
    whose engine `engine_for` does not have yet (None: still loading) is left for a later request."""
    t = time.perf_counter()
    ran = False
    per_crop = None if request.ages is None else np.asarray(request.ages, np.float32)
    for direction, idx in request.groups():
        engine = engine_for(direction)
        if engine is None:
            continue
        ages = per_crop[idx] if per_crop is not None and per_crop.ndim == 2 else request.ages
        res = full_residuals(engine, request.crops[idx], ages)
        cache.put(direction, tuple(request.track_ids[i] for i in idx), res, request.capture_t)
        ran = True
    if ran:
        now = time.perf_counter()
        stats.stage("generate", now - t)
        stats.generator_ran(now)


class AsyncGeneration:
    """The generator in its own thread, on the newest request (`LatestSlot`): the frame rate never waits."""

    def __init__(self, engines: EngineSet, cache: ResidualCache, stats: LiveStats) -> None:
        self._engines = engines
        self._cache = cache
        self._stats = stats
        self._slot: LatestSlot[GenRequest] = LatestSlot()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="faceage-generator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, request: GenRequest) -> None:
        self._slot.put(request)

    def check(self) -> None:
        if self._error is not None:
            raise self._error
        self._engines.check()

    def stop(self) -> None:
        self._stop.set()
        self._slot.close()
        if self._thread.is_alive():
            self._thread.join(10.0)

    @property
    def queue_max(self) -> int:
        return self._slot.max_depth

    @property
    def skipped(self) -> int:
        return self._slot.dropped

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                req = self._slot.get(POLL_S)
                if req is None:
                    if self._slot.closed:
                        return
                    continue
                _generate(self._engines.get, req, self._cache, self._stats)
        except BaseException as exc:  # re-raised by the processing loop through `check`
            self._error = exc


class SyncGeneration:
    """The generator inline: the request's faces are generated before its frame is shown."""

    def __init__(self, engines: EngineSet, cache: ResidualCache, stats: LiveStats) -> None:
        self._engines = engines
        self._cache = cache
        self._stats = stats

    def start(self) -> None:
        pass

    def request(self, request: GenRequest) -> None:
        # A switch loads the other model in the background, without freezing the picture.
        _generate(self._engines.get_nowait, request, self._cache, self._stats)

    def check(self) -> None:
        self._engines.check()

    def stop(self) -> None:
        pass

    @property
    def queue_max(self) -> int:
        return 0

    @property
    def skipped(self) -> int:
        return 0


def make_generation(
    mode: GeneratorMode, engines: EngineSet, cache: ResidualCache, stats: LiveStats
) -> Generation:
    """The generation of a mode: "async" (its own thread) or "sync" (inline)."""
    if mode == "async":
        return AsyncGeneration(engines, cache, stats)
    return SyncGeneration(engines, cache, stats)
