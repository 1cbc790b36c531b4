"""Batched generator inference over aligned face crops, XLA-compiled over one fixed batch shape.

The engine loads `G` (older) or `F` (younger) from a model bundle, pads every batch to `batch_size` so the
compiled function is traced once, and blends the change by `strength`: out = in + s·(G(in) − in).

A bundle's face space is either the first five-point similarity crop (`face.align`) or the canonical mesh
texture (`face.mesh`); `AgingEngine.space` holds the one its manifest names, so faces are cut the way the
model was trained. Age-conditioned bundles take each face's input and target age in years.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faceage_video.engine.grey import keep_grey
from faceage_video.errors import ModelError, OptionsError
from faceage_video.face.align import AlignTemplate
from faceage_video.face.mesh import MESH_VERSION, CanonicalMesh, MeshOptions
from faceage_video.types import DIRECTIONS, Direction

# Ages an age-conditioned model is asked for when the user names none: the middle of the domain each
# generator was trained on (18–29 for G, 50+ for F), and a target 35 years away, within 18..85.
DEFAULT_INPUT_AGE: dict[str, float] = {"older": 25.0, "younger": 62.0}
AGE_SPAN = 35.0
# Most a "strength"-mode bundle's change is scaled up to reach a target age far beyond what it learned.
MAX_GAP_GAIN = 1.5
MIN_AGE, MAX_AGE = 18.0, 85.0
# The conditions a "maps" bundle's generators were trained on (`training.run` draws its teacher targets from
# these): G's targets at least TRAINED_GAP years older than the face and within G_TARGETS, F's at least
# TRAINED_GAP years younger and within F_TARGETS (`trained_condition`).
TRAINED_GAP = 15.0
G_TARGETS = (40.0, 80.0)
F_TARGETS = (20.0, 45.0)


@dataclass(frozen=True)
class EngineOptions:
    """Options of `AgingEngine`.

    Attributes:
        model: bundled model name or bundle folder; None is the default model.
        direction: "older" runs G (young→old), "younger" runs F (old→young).
        strength: share of the generated change applied, 0..1.
        batch_size: crops per compiled call; partial batches are padded to it.
        xla: compile with XLA (`jit_compile=True`). None picks it where TensorFlow sees a GPU, where XLA
            gains much, and leaves it off on CPU, where it measured 2.8× slower at batch 8 on 2 cores
            (benchmarks/README.md).
        target_age: age to move every face to, in years (age-conditioned bundles). None: the input age
            ± 35 years in `direction`. A target above the input age runs G, below it F, whatever
            `direction` says.
        input_age: the faces' age in years; None assumes the middle of the generator's training domain
            (25 for G, 62 for F), as `DEFAULT_INPUT_AGE` documents.
    """

    model: str | None = None
    direction: Direction = "older"
    strength: float = 1.0
    batch_size: int = 8
    xla: bool | None = None
    target_age: float | None = None
    input_age: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise OptionsError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise OptionsError(f"strength must be in 0..1, got {self.strength}")
        if not 1 <= self.batch_size <= 256:
            raise OptionsError(f"batch_size must be in 1..256, got {self.batch_size}")
        for name in ("target_age", "input_age"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and MIN_AGE - 8 <= v <= 100):
                raise OptionsError(f"{name} must be a number of years in 10..100, got {v!r}")
        if self.target_age is not None and self.input_age is not None and self.target_age == self.input_age:
            raise OptionsError(f"target age equals the input age ({self.target_age}): nothing to change")

    @property
    def generator(self) -> str:
        """ "G" (older) or "F" (younger): from the target age when one is given, else the direction."""
        if self.target_age is not None:
            return "G" if self.target_age > self.ages[0] else "F"
        return "G" if self.direction == "older" else "F"

    @property
    def ages(self) -> tuple[float, float]:
        """(input age, target age) in years, defaults filled in (see the attributes)."""
        if self.target_age is not None and self.input_age is None:
            # The input age is assumed on the far side of the target: a target of 70 is aging.
            guess = DEFAULT_INPUT_AGE["older" if self.target_age >= 45 else "younger"]
        else:
            guess = DEFAULT_INPUT_AGE[self.direction]
        a = float(self.input_age) if self.input_age is not None else guess
        if self.target_age is not None:
            return a, float(self.target_age)
        step = AGE_SPAN if self.direction == "older" else -AGE_SPAN
        return a, float(min(max(a + step, MIN_AGE), MAX_AGE))


class AgingEngine:
    """Runs one generator of a bundle on uint8 crops.

    Attributes:
        template: the face space the bundle was trained in: an `AlignTemplate` (five-point crops) or a
            `CanonicalMesh` (canonical textures); faces must be cut with it.
        size: crop side in pixels.
        conditioned: the generator takes (input age, target age) per face.
        trace_count: how many times the compiled function was traced (1 after any number of batches).
    """

    def __init__(self, options: EngineOptions) -> None:
        import tensorflow as tf

        from models.bundle import BundleError, load_generator, resolve_bundle

        self.options = options
        which = options.generator
        try:
            self._model, self.manifest = load_generator(options.model, which)
        except BundleError as exc:
            raise ModelError(str(exc)) from exc
        self.template: AlignTemplate | CanonicalMesh
        try:
            self.template = face_space(self.manifest.template)
            if self.template.size != self.manifest.generator.size:
                g = self.manifest.generator.size
                raise ValueError(f"template size {self.template.size} differs from generator size {g}")
        except SpaceMismatch as exc:
            raise ModelError(f"{resolve_bundle(options.model) / 'manifest.json'}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{resolve_bundle(options.model) / 'manifest.json'} has a bad alignment template "
                f"({type(exc).__name__}: {exc}). Fix: re-export the bundle with `python -m training export`."
            ) from exc
        self.size = self.manifest.generator.size
        self.conditioned = self.manifest.generator.cond > 0
        # How a conditioned bundle reaches a target age: "maps" (the network reads the age maps) or
        # "strength" (the change is scaled by the age gap asked for over the mean gap the generator was
        # trained on, `age_gap`). utkface-mesh-128 is "strength": its constant age maps do not survive the
        # first instance normalisation, so the network learned one average change (benchmarks.target_age).
        self.target_mode = str(self.manifest.training.get("target_age", "maps"))
        self.age_gap = float(self.manifest.training.get("age_gap", {}).get(which, AGE_SPAN))
        self.trace_count = 0
        b, s = options.batch_size, self.size
        spec = tf.TensorSpec((b, s, s, 3), tf.uint8)
        age_spec = tf.TensorSpec((b, 2), tf.float32)

        def run(x: Any, ages: Any) -> Any:
            # A Python side effect runs only while tracing, so it counts traces.
            self.trace_count += 1
            y = self._model(model_input(x, ages, self.conditioned), training=False)
            return (y + 1.0) * 127.5

        self.xla = bool(tf.config.list_physical_devices("GPU")) if options.xla is None else options.xla
        self._fn = tf.function(run, input_signature=[spec, age_spec], jit_compile=self.xla)

    def generate(
        self, crops: NDArray[np.uint8], ages: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """Generated crops at full strength.

        Args:
            crops: (N, S, S, 3) uint8 RGB aligned crops, any N.
            ages: (N, 2) input and target age in years per crop, for conditioned bundles; None uses
                `options.ages` for every crop. Ignored by unconditioned bundles. A "maps" bundle runs each
                face within the conditions it learned (`trained_condition`).

        Returns:
            (N, S, S, 3) float32 in 0..255; the change keeps no colour on a grey crop (`grey.keep_grey`).
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.size, self.size, 3) or crops.dtype != np.uint8:
            raise OptionsError(
                f"crops must be uint8 (N, {self.size}, {self.size}, 3), got {crops.dtype} {crops.shape}"
            )
        asked = ages is not None or self.options.target_age is not None
        if ages is None:
            ages = np.tile(np.asarray(self.options.ages, np.float32), (len(crops), 1))
        ages = np.asarray(ages, np.float32)
        if ages.shape != (len(crops), 2):
            raise OptionsError(f"ages must be (N, 2) for {len(crops)} crops, got {ages.shape}")
        keep = None
        runs = ages
        if self.conditioned and self.target_mode == "maps":
            runs, keep = trained_condition(ages, self.options.generator)
        out = self._run(crops, runs)
        if keep is not None and not np.all(keep == 1.0):
            base = crops.astype(np.float32)
            out = base + keep[:, None, None, None] * (out - base)
        if self.conditioned and asked and self.target_mode == "strength":
            # The age gap asked for, over the gap the generator learned, scales its change (up to 1.5×).
            k = np.clip(np.abs(ages[:, 1] - ages[:, 0]) / max(self.age_gap, 1.0), 0.0, MAX_GAP_GAIN)
            base = crops.astype(np.float32)
            out = base + k[:, None, None, None].astype(np.float32) * (out - base)
        return keep_grey(crops, out)

    def _run(self, crops: NDArray[np.uint8], ages: NDArray[np.float32]) -> NDArray[np.float32]:
        """(N, S, S, 3) float32 in 0..255: the network on (N, S, S, 3) uint8 crops at (N, 2) ages, in padded
        batches of the compiled shape."""
        b = self.options.batch_size
        out = np.empty(crops.shape, np.float32)
        for i in range(0, len(crops), b):
            chunk, age = crops[i : i + b], ages[i : i + b]
            n = len(chunk)
            # Pad to the compiled shape; repeating the last crop keeps instance-norm statistics sane.
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
                age = np.concatenate([age, np.repeat(age[-1:], b - n, axis=0)])
            out[i : i + n] = np.asarray(self._fn(chunk, age))[:n]
        return out

    def __call__(
        self, crops: NDArray[np.uint8], ages: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """Generated crops blended by `strength`: in + s·(gen − in), float32 (N, S, S, 3) in 0..255."""
        gen = self.generate(crops, ages)
        s = self.options.strength
        if s == 1.0:
            return gen
        base = crops.astype(np.float32)
        return base + s * (gen - base)

    def residual(
        self, crops: NDArray[np.uint8], ages: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """The strength-scaled change s·(G(in) − in), float32 (N, S, S, 3) in -255..255."""
        return self(crops, ages) - crops.astype(np.float32)


def trained_condition(
    ages: NDArray[np.float32], generator: str
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Where a "maps" generator is run for each face, and how much of its change is kept.

    A target nearer the face's age than any the generator learned (`TRAINED_GAP`, and G's targets from 40,
    F's up to 45) runs at the nearest one it did learn, and its change is scaled by the gap asked over the gap
    run: the change falls linearly to none at no gap. Run as asked, such a target got a change the network
    never learned: `G` at no gap at all changed the face by 4 levels with a colour cast of 2.3 ΔE, against
    0.75 at 35 years, and put red blotches on a face aged 18 → 20. A target beyond the learned range runs at
    its end (no change is scaled up). A target on the other side of the input (G asked to de-age, F to age)
    keeps nothing.

    Args:
        ages: (N, 2) input and target age in years.
        generator: "G" or "F".

    Returns:
        (N, 2) the ages to run the network at, and (N,) float32 the share of its change to keep, in 0..1.
    """
    a, t = ages[:, 0].astype(np.float64), ages[:, 1].astype(np.float64)
    if generator == "G":
        near = np.maximum(a + TRAINED_GAP, G_TARGETS[0])
        run = np.clip(t, near, np.maximum(G_TARGETS[1], near))
        gap, run_gap = t - a, run - a
    else:
        near = np.maximum(np.minimum(a - TRAINED_GAP, F_TARGETS[1]), F_TARGETS[0] + 1.0)
        run = np.clip(t, np.minimum(F_TARGETS[0], near), near)
        gap, run_gap = a - t, a - run
    # gap / run_gap is 1 or more where the target was learned, below 0 where it lies the wrong way.
    keep = np.where(run_gap > 0.0, np.clip(gap / np.maximum(run_gap, 1e-6), 0.0, 1.0), 0.0)
    return np.stack([a, run], axis=1).astype(np.float32), keep.astype(np.float32)


def model_input(crops: Any, ages: Any, conditioned: bool) -> Any:
    """What the generator network reads: the crops in -1..1 and, for an age-conditioned bundle, the input- and
    target-age maps (years / 100) as two more channels. The engine's compiled call uses it; so may an eager
    call of the bare Keras model (`python -m benchmarks.throughput`'s naive loop).

    Args:
        crops: (N, S, S, 3) uint8 RGB crops (array or tensor, static shape).
        ages: (N, 2) float32 input and target age in years per crop; unused when not `conditioned`.
        conditioned: the bundle's generator takes age maps (`AgingEngine.conditioned`).

    Returns:
        (N, S, S, 3) float32 tensor, (N, S, S, 5) when `conditioned`.
    """
    import tensorflow as tf

    f = tf.cast(crops, tf.float32) / 127.5 - 1.0
    if conditioned:
        n, h, w = f.shape[0], f.shape[1], f.shape[2]
        maps = tf.broadcast_to(tf.cast(ages, tf.float32)[:, None, None, :] / 100.0, (n, h, w, 2))
        f = tf.concat([f, maps], axis=-1)
    return f


class SpaceMismatch(ValueError):
    """A bundle's face space is not one this version can cut faces for."""


def face_space(template: dict[str, Any]) -> AlignTemplate | CanonicalMesh:
    """The face space a manifest's `template` names: five-point crops, or the canonical mesh.

    Raises:
        SpaceMismatch: a mesh of another version or layout, naming the fix.
        KeyError, TypeError, ValueError: a malformed template.
    """
    if template.get("kind", "five_point") == "five_point":
        return AlignTemplate.from_dict(template)
    if template.get("kind") != "mesh":
        raise SpaceMismatch(f"unknown face space {template.get('kind')!r}. Fix: upgrade faceage-video")
    if template.get("version") != MESH_VERSION:
        raise SpaceMismatch(
            f"the bundle was trained on canonical mesh {template.get('version')!r}, this version has "
            f"{MESH_VERSION!r}. Fix: re-export it with `python -m training export`, or use a matching "
            "faceage-video"
        )
    mesh = CanonicalMesh(MeshOptions(size=int(template["size"])))
    if template.get("layout_sha") not in (None, mesh.layout_sha):
        raise SpaceMismatch(
            f"the bundle's canonical layout {template.get('layout_sha')} differs from the packaged one "
            f"({mesh.layout_sha}): its textures would not line up. Fix: retrain or re-export it against this "
            "layout"
        )
    return mesh
