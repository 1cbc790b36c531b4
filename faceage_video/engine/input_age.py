"""Each face's own age, for an age-conditioned model asked for a target age without `--input-age`.

`--target-age 60` is a smaller step for a 45-year-old than for a 25-year-old, and the conditioned generators
read both ages: on validation faces the default `G` changes a face 30 % less for 40 → 60 than for 25 → 60.
Without an input age the engine would assume the middle of the generator's domain (25 or 62) for everyone.

`AgeEstimator` is the project's own estimator (`models.estimator`, trained by `python -m training estimator`
on the UTKFace training split; not the benchmark's age judge). `TrackAges` gives a face track the median of
`frames` estimates spread over its first seconds and then holds it, so the age the generator is asked for does
not flicker. Offline, a probe of the clip's first seconds (`stages.probe_input_ages`) fixes those ages before
the run proper, which then asks the generator for the same age from a track's first frame to its last.
`OwnAges` runs, for each face, the generator its own age needs to reach the run's target: `G` for a face
younger than the target, `F` for an older one (the second generator loads the first time a face needs it),
so `--target-age 45` ages the 30-year-old of a cast and de-ages the 60-year-old. The live mode does the same
per request (`toward`); `beyond` says which faces a generator is asked nothing of: those are left unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import ModelError, OptionsError
from faceage_video.face.mesh import CanonicalMesh
from faceage_video.types import Direction

if TYPE_CHECKING:
    from faceage_video.engine.generator import AgingEngine, EngineOptions

Estimate = Callable[[NDArray[np.uint8]], NDArray[np.float32]]


@dataclass(frozen=True)
class InputAgeOptions:
    """Options of the per-face input age.

    Attributes:
        model: estimator name or folder (`models.estimator.resolve_estimator`); None: the bundled one.
        frames: estimates a track's age is the median of, after which it is held (1..1000).
        stride: one estimate every `stride` frames of a track (1..1000): 12 estimates 10 frames apart span
            about 5 s at 25 fps. A face's estimated age follows its expression over seconds (a talking head
            read 21 to 30 y from one second to the next, sd 2.5 y between 12-frame medians taken a second
            apart; 0.2 y over 5 s), so consecutive frames do not average it out.
    """

    model: str | None = None
    frames: int = 12
    stride: int = 10

    def __post_init__(self) -> None:
        for name in ("frames", "stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
                raise OptionsError(f"input-age {name} must be an integer in 1..1000, got {v!r}")

    @property
    def window(self) -> int:
        """Frames of a track its held age is taken over."""
        return (self.frames - 1) * self.stride + 1


class AgeEstimator:
    """The input-age network on canonical-mesh textures of any size."""

    def __init__(self, options: InputAgeOptions, mesh: CanonicalMesh) -> None:
        """Load the estimator and check that it reads `mesh`'s layout.

        Raises:
            ModelError: the estimator is missing or corrupt, or was trained on another mesh layout; the
                message names the file and the fix.
        """
        from models.bundle import BundleError
        from models.estimator import expected_age, load_age_estimator

        try:
            self._model, self.manifest = load_age_estimator(options.model)
        except BundleError as exc:
            raise ModelError(str(exc)) from exc
        sha = self.manifest.template.get("layout_sha")
        if sha != mesh.layout_sha:
            raise ModelError(
                f"age estimator {self.manifest.name!r} reads mesh layout {sha}, the model's faces are cut on "
                f"{mesh.layout_sha}. Fix: retrain it on this layout's cache with `python -m training "
                "estimator`, or pass --input-age"
            )
        self.size = self.manifest.network.size
        import tensorflow as tf

        # One trace per batch size: an eager Keras call costs ~5x the network's own time at this size.
        def run(x: Any) -> Any:
            return expected_age(self._model(x, training=False))

        self._fn = tf.function(run, reduce_retracing=True)

    def __call__(self, textures: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(N, S, S, 3) uint8 RGB canonical textures → (N,) ages in years (mean over the face and its mirror)."""
        if len(textures) == 0:
            return np.zeros(0, np.float32)
        s = self.size
        x = np.stack([cv2.resize(t, (s, s), interpolation=cv2.INTER_AREA) for t in textures])
        x = x.astype(np.float32) / 127.5 - 1.0
        both = np.concatenate([x, x[:, :, ::-1]])
        ages = np.asarray(self._fn(both).numpy(), np.float32)
        mean: NDArray[np.float32] = ((ages[: len(x)] + ages[len(x) :]) / 2).astype(np.float32)
        return mean


class TrackAges:
    """Each track's input age: the median of `frames` estimates `stride` frames apart, then held; meanwhile
    the median of those so far. Ids are never reused."""

    def __init__(self, estimate: Estimate, frames: int = 12, stride: int = 1) -> None:
        """Args:
        estimate: (N, S, S, 3) uint8 textures → (N,) ages, e.g. an `AgeEstimator`.
        frames: estimates before a track's age is held.
        stride: frames of a track between two estimates (the first is on its first frame).
        """
        self._estimate = estimate
        self._frames = frames
        self._stride = stride
        self._seen: dict[int, list[float]] = {}
        self._count: dict[int, int] = {}  # frames of each track so far
        self._frozen: set[int] = set()

    def _wants(self, track_id: int) -> bool:
        if track_id in self._frozen or len(self._seen.get(track_id, ())) >= self._frames:
            return False
        return self._count.get(track_id, 0) % self._stride == 0

    def __call__(
        self, track_ids: Sequence[int], textures: Sequence[NDArray[np.uint8]]
    ) -> NDArray[np.float32]:
        """(N,) input ages of the faces of one frame, estimating only the tracks that take an estimate on this
        frame (once every track is held, nothing is stacked or run).

        Args:
            track_ids: the N faces' track ids. textures: their N (S, S, 3) uint8 canonical textures.
        """
        todo = [i for i, t in enumerate(track_ids) if self._wants(t)]
        if todo:
            for i, age in zip(todo, self._estimate(np.stack([textures[i] for i in todo])), strict=True):
                self._seen.setdefault(track_ids[i], []).append(float(age))
        for t in track_ids:
            self._count[t] = self._count.get(t, 0) + 1
        return np.asarray([np.median(self._seen[t]) for t in track_ids], np.float32)

    def freeze(self) -> None:
        """Hold every track seen so far at its current median, however few its estimates: after a probe of
        a clip's first frames (`stages.probe_input_ages`), the run proper then uses those ages from its
        first frame on."""
        self._frozen.update(t for t, v in self._seen.items() if v)

    def held(self) -> dict[int, float]:
        """Each live track's current input age in years."""
        return {t: float(np.median(v)) for t, v in self._seen.items() if v}

    def reset(self, track_id: int | None = None) -> None:
        """Forget one track (it ended) or every track."""
        if track_id is None:
            self._seen.clear()
            self._count.clear()
            self._frozen.clear()
        else:
            self._seen.pop(track_id, None)
            self._count.pop(track_id, None)
            self._frozen.discard(track_id)


def beyond(generator: str, ages: NDArray[np.float32]) -> NDArray[np.bool_]:
    """(N,) True where an (input, target) pair of (N, 2) asks `generator` for nothing: G with an input not
    younger than the target, F with one not older."""
    a = np.asarray(ages, np.float32)
    return np.asarray(a[:, 0] >= a[:, 1] if generator == "G" else a[:, 0] <= a[:, 1], bool)


def toward(own: NDArray[np.float32], target: float, at: Direction) -> tuple[Direction, ...]:
    """The direction that takes each face from its own age (N,) to `target`: "older" for a younger face,
    "younger" for an older one, and `at` for a face at the target (its generator is then asked for nothing,
    `beyond`)."""
    return tuple("older" if a < target else "younger" if a > target else at for a in np.asarray(own, float))


def age_tracker_for(engine: AgingEngine, options: InputAgeOptions) -> TrackAges | None:
    """A `TrackAges` on the estimator where faces can have their own input age: a conditioned canonical-mesh
    bundle not given an input age. Otherwise None, and nothing is loaded.

    Raises:
        ModelError: the estimator is missing, corrupt or of another mesh layout.
    """
    if not engine.conditioned or engine.options.input_age is not None:
        return None
    if not isinstance(engine.template, CanonicalMesh):
        return None
    return TrackAges(AgeEstimator(options, engine.template), options.frames, options.stride)


class OwnAges:
    """Each face's own input age (`TrackAges`) and, from it, the generator that takes it to the run's target."""

    def __init__(
        self,
        engine: AgingEngine,
        track: TrackAges,
        load: Callable[[EngineOptions], AgingEngine] | None = None,
    ) -> None:
        """Args:
        engine: the run's engine, with a target age (`track_ages_for`).
        track: the per-track ages.
        load: builds the other direction's engine; `AgingEngine` when None.
        """
        if engine.options.target_age is None:
            raise OptionsError("own input ages need a target age")
        self.target = float(engine.options.target_age)
        self.track = track
        self._engines: dict[str, AgingEngine] = {engine.options.generator: engine}
        self._base = engine.options
        self._load = load

    def __call__(
        self, track_ids: Sequence[int], textures: Sequence[NDArray[np.uint8]]
    ) -> NDArray[np.float32]:
        """(N,) input ages of one frame's faces (`TrackAges.__call__`)."""
        return self.track(track_ids, textures)

    def reset(self, track_id: int | None = None) -> None:
        self.track.reset(track_id)

    def freeze(self) -> None:
        self.track.freeze()

    def held(self) -> dict[int, float]:
        return self.track.held()

    def engine(self, generator: str) -> AgingEngine:
        """The engine of "G" or "F", built on first use with the run's other options."""
        eng = self._engines.get(generator)
        if eng is None:
            from faceage_video.engine.generator import AgingEngine

            # Direction alone picks the generator; the ages go with every call.
            direction: Direction = "older" if generator == "G" else "younger"
            opts = replace(self._base, direction=direction, target_age=None, input_age=None)
            eng = (self._load or AgingEngine)(opts)
            self._engines[generator] = eng
        return eng

    def residual(self, crops: NDArray[np.uint8], own: NDArray[np.float32]) -> NDArray[np.float32]:
        """The strength-scaled change of each face towards the target from its own age: `G` for the younger
        faces, `F` for the older, none for a face at the target.

        Args:
            crops: (N, S, S, 3) uint8 canonical textures. own: (N,) their input ages in years.

        Returns:
            (N, S, S, 3) float32 changes in levels.
        """
        out = np.zeros(crops.shape, np.float32)
        ages = np.stack([own, np.full_like(own, self.target)], axis=1).astype(np.float32)
        for generator, faces in (("G", own < self.target), ("F", own > self.target)):
            if faces.any():
                out[faces] = self.engine(generator).residual(crops[faces], ages[faces])
        return out


def track_ages_for(engine: AgingEngine, options: InputAgeOptions) -> OwnAges | None:
    """`OwnAges` for a run asked for a target age where `age_tracker_for` gives a tracker; else None.

    Raises:
        ModelError: the estimator is missing, corrupt or of another mesh layout.
    """
    if engine.options.target_age is None:
        return None
    track = age_tracker_for(engine, options)
    return None if track is None else OwnAges(engine, track)
