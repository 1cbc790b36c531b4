"""Batched generator inference over aligned face crops, XLA-compiled over one fixed batch shape.

The engine loads `G` (older) or `F` (younger) from a model bundle, pads every batch to `batch_size` so the
compiled function is traced once, and blends the change by `strength`: out = in + s·(G(in) − in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import ModelError, OptionsError
from faceage_video.face.align import AlignTemplate
from faceage_video.types import DIRECTIONS, Direction


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
    """

    model: str | None = None
    direction: Direction = "older"
    strength: float = 1.0
    batch_size: int = 8
    xla: bool | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise OptionsError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise OptionsError(f"strength must be in 0..1, got {self.strength}")
        if not 1 <= self.batch_size <= 256:
            raise OptionsError(f"batch_size must be in 1..256, got {self.batch_size}")


class AgingEngine:
    """Runs one generator of a bundle on uint8 crops.

    Attributes:
        template: the alignment template the bundle was trained with; crops must be cut with it.
        size: crop side in pixels.
        trace_count: how many times the compiled function was traced (1 after any number of batches).
    """

    def __init__(self, options: EngineOptions) -> None:
        import tensorflow as tf

        from models.bundle import BundleError, load_generator, resolve_bundle

        self.options = options
        which = "G" if options.direction == "older" else "F"
        try:
            self._model, self.manifest = load_generator(options.model, which)
        except BundleError as exc:
            raise ModelError(str(exc)) from exc
        try:
            self.template = AlignTemplate.from_dict(self.manifest.template)
            if self.template.size != self.manifest.generator.size:
                g = self.manifest.generator.size
                raise ValueError(f"template size {self.template.size} differs from generator size {g}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{resolve_bundle(options.model) / 'manifest.json'} has a bad alignment template "
                f"({type(exc).__name__}: {exc}). Fix: re-export the bundle with `python -m training export`."
            ) from exc
        self.size = self.manifest.generator.size
        self.trace_count = 0
        spec = tf.TensorSpec((options.batch_size, self.size, self.size, 3), tf.uint8)

        def run(x: Any) -> Any:
            # A Python side effect runs only while tracing, so it counts traces.
            self.trace_count += 1
            f = tf.cast(x, tf.float32) / 127.5 - 1.0
            y = self._model(f, training=False)
            return (y + 1.0) * 127.5

        self.xla = bool(tf.config.list_physical_devices("GPU")) if options.xla is None else options.xla
        self._fn = tf.function(run, input_signature=[spec], jit_compile=self.xla)

    def generate(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Generated crops at full strength.

        Args:
            crops: (N, S, S, 3) uint8 RGB aligned crops, any N.

        Returns:
            (N, S, S, 3) float32 in 0..255.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.size, self.size, 3) or crops.dtype != np.uint8:
            raise OptionsError(
                f"crops must be uint8 (N, {self.size}, {self.size}, 3), got {crops.dtype} {crops.shape}"
            )
        b = self.options.batch_size
        out = np.empty(crops.shape, np.float32)
        for i in range(0, len(crops), b):
            chunk = crops[i : i + b]
            n = len(chunk)
            # Pad to the compiled shape; repeating the last crop keeps instance-norm statistics sane.
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            out[i : i + n] = np.asarray(self._fn(chunk))[:n]
        return out

    def __call__(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Generated crops blended by `strength`: in + s·(gen − in), float32 (N, S, S, 3) in 0..255."""
        gen = self.generate(crops)
        s = self.options.strength
        if s == 1.0:
            return gen
        base = crops.astype(np.float32)
        return base + s * (gen - base)

    def residual(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The strength-scaled change s·(G(in) − in), float32 (N, S, S, 3) in -255..255."""
        return self(crops) - crops.astype(np.float32)
