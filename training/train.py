"""CycleGAN training loop: warm start on teacher pseudo-pairs, then adversarial fine-tuning.

Paper names (Zhu et al. 2017):
    X    young faces,  Y    old faces
    G    X → Y (ages),  F    Y → X (de-ages)
    D_X  tells real young from F's output,  D_Y  tells real old from G's output

Schedule:
    steps [0, warm_steps): L1 to the classic teacher's pseudo-pairs only (training.prototype), which converges
        in minutes where plain CycleGAN learns "change nothing" for hours on a CPU.
    steps [warm_steps, steps): LSGAN + cycle + identity + a decaying teacher L1, discriminators fed from an
        image pool of past fakes.

Every random choice is a stateless function of (seed, step), and checkpoints hold every variable (models,
optimisers, pool), so resuming gives bit-identical weights.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from models.bundle import Manifest
from models.networks import DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator
from training.config import TrainConfig
from training.errors import TrainingError

# x (young), t_y = teacher(x), y (old), t_x = teacher(y), then ages (B,) in years: x's, the age t_y shows,
# y's, the age t_x shows (unconditioned generators ignore them), then e_y and e_x, the band envelopes'
# targets for x and y (t_y and t_x themselves unless `TrainData.e_y` is given).
Batch = tuple[tf.Tensor, ...]  # the ten tensors above, in that order


@dataclass(frozen=True)
class TrainData:
    """In-memory training arrays, uint8 (N, S, S, 3) RGB.

    Attributes:
        x: young crops. t_y: the teacher's aged version of each young crop.
        y: old crops. t_x: the teacher's de-aged version of each old crop.
        e_y, e_x: the band envelopes' targets when they are not t_y and t_x (`texture_single_exemplar`,
            `texture_transplant`).
    """

    x: NDArray[np.uint8]
    t_y: NDArray[np.uint8]
    y: NDArray[np.uint8]
    t_x: NDArray[np.uint8]
    x_age: NDArray[np.float32] | None = None  # (N,) years; None: unconditioned (all 0)
    x_target: NDArray[np.float32] | None = None  # (N,) the age t_y was made for
    y_age: NDArray[np.float32] | None = None
    y_target: NDArray[np.float32] | None = None
    e_y: NDArray[np.uint8] | None = None
    e_x: NDArray[np.uint8] | None = None


def _augment(pair: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
    """Jitter a (B, S, S, 3k) stack of [image, teacher target(s)] with one transform per sample.

    Flip, ±5 % scale, ±5° rotation, ±3 % shift and light brightness/contrast jitter, applied identically to
    every image of the stack so the pseudo-pair stays a pair.
    """
    b = tf.shape(pair)[0]
    s = tf.cast(size, tf.float32)
    u = tf.random.stateless_uniform((b, 6), seed=seed, minval=-1.0, maxval=1.0)
    flip = u[:, 0] > 0
    scale = 1.0 + 0.05 * u[:, 1]
    angle = np.deg2rad(5.0) * u[:, 2]
    tx, ty = 0.03 * s * u[:, 3], 0.03 * s * u[:, 4]
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    c = (s - 1.0) / 2.0
    fx = tf.where(flip, -1.0, 1.0)
    # Output pixel p maps to input pixel A p + t (projective transform in the "output → input" convention).
    a0, a1 = cos * fx, -sin
    b0, b1 = sin * fx, cos
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=pair,
        transforms=transforms,
        output_shape=tf.constant([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    bright = 0.04 * u[:, 5][:, None, None, None]
    contrast = 1.0 + 0.08 * tf.random.stateless_uniform((b, 1, 1, 1), seed=seed + 7, minval=-1.0, maxval=1.0)
    return (out - 0.5) * contrast + 0.5 + bright


def make_dataset(data: TrainData, cfg: TrainConfig, start: int, stop: int, batch: int) -> tf.data.Dataset:
    """Batches for steps [start, stop), each a pure function of (seed, step).

    Each step draws `batch` faces of each domain (balanced by construction), augments them on a parallel map
    and prefetches, so the generators never wait for data.
    """
    x, t_y = tf.constant(data.x), tf.constant(data.t_y)
    y, t_x = tf.constant(data.y), tf.constant(data.t_x)
    # The envelopes' own targets travel in the same stack, so one augmentation moves all three alike.
    e_y = None if data.e_y is None else tf.constant(data.e_y)
    e_x = None if data.e_x is None else tf.constant(data.e_x)
    nx, ny = len(data.x), len(data.y)

    def ages(a: NDArray[np.float32] | None, n: int) -> tf.Tensor:
        return tf.constant(np.zeros(n, np.float32) if a is None else np.asarray(a, np.float32))

    xa, xt = ages(data.x_age, nx), ages(data.x_target, nx)
    ya, yt = ages(data.y_age, ny), ages(data.y_target, ny)
    seed = cfg.seed
    size = cfg.size

    def load(step: tf.Tensor) -> Batch:
        k = tf.stack([tf.constant(seed, tf.int64), step])
        ix = tf.random.stateless_uniform((batch,), seed=k, maxval=nx, dtype=tf.int64)
        iy = tf.random.stateless_uniform((batch,), seed=k + 1, maxval=ny, dtype=tf.int64)
        px = tf.concat([tf.gather(a, ix) for a in (x, t_y, e_y) if a is not None], axis=-1)
        py = tf.concat([tf.gather(a, iy) for a in (y, t_x, e_x) if a is not None], axis=-1)
        px = _augment(tf.cast(px, tf.float32) / 255.0, k + 2, size)
        py = _augment(tf.cast(py, tf.float32) / 255.0, k + 3, size)
        px = tf.clip_by_value(px, 0.0, 1.0) * 2.0 - 1.0
        py = tf.clip_by_value(py, 0.0, 1.0) * 2.0 - 1.0
        return (
            px[..., :3],
            px[..., 3:6],
            py[..., :3],
            py[..., 3:6],
            tf.gather(xa, ix),
            tf.gather(xt, ix),
            tf.gather(ya, iy),
            tf.gather(yt, iy),
            px[..., 6:] if e_y is not None else px[..., 3:6],
            py[..., 6:] if e_x is not None else py[..., 3:6],
        )

    ds = tf.data.Dataset.range(start, stop).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(2)


def _l1(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    # Losses in float32 whatever the compute dtype (bfloat16 under mixed precision).
    return tf.reduce_mean(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def _l1_weighted(a: tf.Tensor, b: tf.Tensor, w: tf.Tensor | None) -> tf.Tensor:
    """`_l1` with a (S, S, 1) pixel weight of mean 1; None is the plain mean."""
    if w is None:
        return _l1(a, b)
    return tf.reduce_mean(w * tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def texture_loss(cfg: TrainConfig) -> BandEnvelope | None:
    """The band-envelope loss of a config (`lambda_texture`), on the face of the canonical mesh; None when
    off."""
    if cfg.lambda_texture <= 0:
        return None
    mask = None
    if cfg.space == "mesh":
        from faceage_video.face.mesh import CanonicalMesh, MeshOptions

        mask = CanonicalMesh(MeshOptions(size=cfg.size)).mask("face")
    return BandEnvelope(cfg.size, mask, oriented=cfg.texture_oriented)


def teacher_weight_map(cfg: TrainConfig) -> NDArray[np.float32] | None:
    """(S, S, 1) weight of the teacher L1, mean 1: `1 + teacher_regions` on the eyes, brows and lips; None
    where the config asks for none (or trains outside mesh space)."""
    if cfg.space != "mesh" or cfg.teacher_regions <= 0:
        return None
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions
    from training.teacher import skin_mask

    mesh = CanonicalMesh(MeshOptions(size=cfg.size))
    features = np.clip(mesh.mask("face") - skin_mask(mesh, cfg.skin_lids), 0.0, 1.0)
    w = 1.0 + cfg.teacher_regions * features
    return (w / w.mean())[..., None].astype(np.float32)


# Band-pass scales and envelope blur at 128 px, as the registered teacher splits luminance (scaled with size).
TEXTURE_SIGMAS_128 = (0.7, 1.4, 2.8, 5.6)
TEXTURE_ENVELOPE_128 = 4.0
_LUMA = (0.299, 0.587, 0.114)


def _gauss(x: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur of (B, S, S, 1), reflected at the edges."""
    r = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    x = tf.nn.conv2d(x, tf.constant(k.reshape(1, -1, 1, 1)), 1, "VALID")
    return tf.nn.conv2d(x, tf.constant(k.reshape(-1, 1, 1, 1)), 1, "VALID")


class BandEnvelope:
    """Local amplitude of each luminance band: where, and how strongly, an image has detail of each scale,
    whatever the detail's exact position.

    The teacher's made detail comes from a real exemplar, a pattern the input does not predict: under L1 a
    generator learns its average, which is no detail at all. The envelope is predictable (the target age's
    band energy there), so an L1 on it teaches a generator to make detail of the right scale and strength
    where the teacher has it.

    `oriented` splits each band by the way its detail runs: the envelopes of its derivative along x, y and
    both diagonals (scaled by the band's sigma, so a band and its derivatives have comparable amplitudes),
    four channels a band instead of one. Energy in horizontal lines and the same energy in a mottled,
    isotropic texture then read differently."""

    def __init__(self, size: int, mask: NDArray[np.float32] | None = None, oriented: bool = False) -> None:
        k = size / 128.0
        self.sigmas = [s * k for s in TEXTURE_SIGMAS_128]
        self.envelope = TEXTURE_ENVELOPE_128 * k
        self.oriented = oriented
        m = np.ones((size, size), np.float32) if mask is None else mask.astype(np.float32)
        self.mask = tf.constant((m / max(float(m.mean()), 1e-6))[None, ..., None])
        # Central differences along x, y and the two diagonals, (3, 3, 1, 4); the diagonal steps are √2 long.
        d = np.zeros((3, 3, 1, 4), np.float32)
        d[1, 2, 0, 0], d[1, 0, 0, 0] = 0.5, -0.5
        d[2, 1, 0, 1], d[0, 1, 0, 1] = 0.5, -0.5
        d[2, 2, 0, 2], d[0, 0, 0, 2] = 0.5 / np.sqrt(2.0), -0.5 / np.sqrt(2.0)
        d[2, 0, 0, 3], d[0, 2, 0, 3] = 0.5 / np.sqrt(2.0), -0.5 / np.sqrt(2.0)
        self.derivatives = tf.constant(d)

    @property
    def channels(self) -> int:
        """Envelope channels: one per band, or four per band when oriented."""
        return len(self.sigmas) * (4 if self.oriented else 1)

    def __call__(self, img: tf.Tensor) -> tf.Tensor:
        """(B, S, S, 3) images in [-1, 1] → (B, S, S, `channels`) envelopes."""
        img = tf.cast(img, tf.float32)
        y = tf.reduce_sum(img * tf.constant(_LUMA, tf.float32), axis=-1, keepdims=True)
        out, prev = [], y
        for s in self.sigmas:
            low = _gauss(y, s)
            band = prev - low
            if self.oriented:
                padded = tf.pad(band, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
                grads = tf.nn.conv2d(padded, self.derivatives, 1, "VALID") * s
                envs = tf.split(tf.abs(grads), 4, axis=-1)
                out += [_gauss(e, self.envelope) for e in envs]
            else:
                out.append(_gauss(tf.abs(band), self.envelope))
            prev = low
        return tf.concat(out, axis=-1)

    def loss(self, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        """Masked L1 between the envelopes of a and b, summed over the bands."""
        d = tf.abs(self(a) - self(b)) * self.mask
        return tf.reduce_sum(tf.reduce_mean(d, axis=[0, 1, 2]))


class LowpassTeacher:
    """The adversarial phase's teacher L1 with the skin's fine detail left free (`teacher_lowpass`).

    On the skin the Gaussian low-pass of the difference to the teacher counts, and the chroma of the rest:
    shading, shape and colour are what the input predicts. The luminance of the teacher's fine skin detail
    is one real exemplar's, which the input does not predict, so matching it pixel for pixel teaches its
    average (none) and fights the discriminator. Off the skin (eyes, brows, lips, hair, background) the
    whole difference counts, so their own detail is kept."""

    def __init__(self, size: int, sigma_128: float, skin: NDArray[np.float32]) -> None:
        self.sigma = sigma_128 * size / 128.0
        self.free = tf.constant(np.clip(skin, 0.0, 1.0).astype(np.float32)[None, ..., None])

    def lowpass(self, d: tf.Tensor) -> tf.Tensor:
        """(B, S, S, C) blurred channel by channel."""
        b, s, c = tf.shape(d)[0], tf.shape(d)[1], d.shape[-1]
        x = tf.reshape(tf.transpose(d, [0, 3, 1, 2]), [-1, s, s, 1])
        x = _gauss(x, self.sigma)
        return tf.transpose(tf.reshape(x, [b, c, s, s]), [0, 2, 3, 1])

    def __call__(self, a: tf.Tensor, b: tf.Tensor, w: tf.Tensor | None) -> tf.Tensor:
        """Mean of |low-pass of a - b| + |chroma of the rest| + (1 - skin) |luminance of the rest|, with the
        pixel weight `w` (mean 1)."""
        d = tf.cast(a, tf.float32) - tf.cast(b, tf.float32)
        low = self.lowpass(d)
        high = d - low
        y = tf.reduce_sum(high * tf.constant(_LUMA, tf.float32), axis=-1, keepdims=True)
        # Only the luminance of the fine detail is free: the teacher's detail is grey (aging adds lines,
        # not colour), and a discriminator left free on chroma too painted red mottling on the cheeks.
        per = tf.abs(low) + tf.abs(high - y) + (1.0 - self.free) * tf.abs(y)
        return tf.reduce_mean(per if w is None else w * per)


def lowpass_teacher(cfg: TrainConfig) -> LowpassTeacher | None:
    """The config's `LowpassTeacher` (mesh space, `teacher_lowpass` > 0), else None."""
    if cfg.teacher_lowpass <= 0 or cfg.space != "mesh":
        return None
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions
    from training.teacher import skin_mask

    skin = skin_mask(CanonicalMesh(MeshOptions(size=cfg.size)), cfg.skin_lids)
    return LowpassTeacher(cfg.size, cfg.teacher_lowpass, skin)


def _mse(a: tf.Tensor, target: float) -> tf.Tensor:
    return tf.reduce_mean(tf.square(tf.cast(a, tf.float32) - target))


def discriminator_loss(
    disc: keras.Model, real: tf.Tensor, fake: tf.Tensor, other: tf.Tensor, other_weight: float
) -> tf.Tensor:
    """LSGAN loss of one discriminator: its domain's real faces → 1, the generator's fakes → 0, and with
    `other_weight` > 0 (`disc_age_negatives`) the other domain's real faces → 0 too, sharing the negative
    half with the fakes in proportion 1 : `other_weight`. Those negatives make it read age, not only the
    fakes' artifacts. All (B, S, S, 3) in [-1, 1]."""
    neg = _mse(disc(fake, training=True), 0.0)
    if other_weight > 0:
        neg = (neg + other_weight * _mse(disc(other, training=True), 0.0)) / (1.0 + other_weight)
    return 0.5 * (_mse(disc(real, training=True), 1.0) + neg)


class CycleGAN:
    """The four networks, two optimisers and the fake-image pools of one training run."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        gcfg = GeneratorConfig(
            size=cfg.size,
            ngf=cfg.ngf,
            n_blocks=cfg.n_blocks,
            residual=True,
            cond=2 if cfg.conditioned else 0,
            film=cfg.film,
            detail_head=cfg.detail_head,
        )
        dcfg = DiscriminatorConfig(size=cfg.size, ndf=cfg.ndf)
        self.generator_config = gcfg
        gpu = bool(tf.config.list_physical_devices("GPU"))
        self.mixed = cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpu)
        previous = keras.config.dtype_policy()
        # The policy is read when layers are built, so it is set for these four models only.
        keras.config.set_dtype_policy("mixed_bfloat16" if self.mixed else "float32")
        try:
            self.G = build_generator(gcfg, "G")
            self.F = build_generator(gcfg, "F")
            self.D_X = build_discriminator(dcfg, "D_X")
            self.D_Y = build_discriminator(dcfg, "D_Y")
        finally:
            keras.config.set_dtype_policy(previous)
        self.opt_gen = keras.optimizers.Adam(cfg.lr, beta_1=cfg.beta1, beta_2=0.999)
        self.opt_disc = keras.optimizers.Adam(cfg.lr, beta_1=cfg.beta1, beta_2=0.999)
        # Only the trained generators and their discriminators (D_Y judges G, D_X judges F) get gradients.
        self.trains_g = cfg.train_generators in ("both", "G")
        self.trains_f = cfg.train_generators in ("both", "F")
        self.gen_vars = (self.G.trainable_variables if self.trains_g else []) + (
            self.F.trainable_variables if self.trains_f else []
        )
        self.disc_vars = (self.D_X.trainable_variables if self.trains_f else []) + (
            self.D_Y.trainable_variables if self.trains_g else []
        )
        self.opt_gen.build(self.gen_vars)
        self.opt_disc.build(self.disc_vars)
        p, s = max(cfg.pool_size, 1), cfg.size
        self.pool_x = tf.Variable(tf.zeros((p, s, s, 3)), trainable=False, name="pool_x")
        self.pool_y = tf.Variable(tf.zeros((p, s, s, 3)), trainable=False, name="pool_y")
        self.pool_n = tf.Variable(tf.zeros((2,), tf.int32), trainable=False, name="pool_n")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The moving average of the learning generators' weights (`ema_decay`), one copy per weight.
        learning = [n for n, on in ((self.G, self.trains_g), (self.F, self.trains_f)) if on]
        self.ema_pairs: list[tuple[Any, tf.Variable]] = (
            [
                (w, tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False))
                for n in learning
                for w in n.weights
            ]
            if cfg.ema_decay > 0
            else []
        )
        self.ema_n = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_n")
        w = teacher_weight_map(cfg)
        self.teach_w = None if w is None else tf.constant(w)
        self.texture = texture_loss(cfg)
        self.lowpass = lowpass_teacher(cfg)
        jit = cfg.xla
        self.warm_step = tf.function(self._warm_step, jit_compile=jit, reduce_retracing=True)
        self.gan_step = tf.function(self._gan_step, jit_compile=jit, reduce_retracing=True)

    # -- state -----------------------------------------------------------------------------------------

    def variables(self) -> list[Any]:
        """Every variable a checkpoint must hold, in a fixed order."""
        return [
            *self.G.weights,
            *self.F.weights,
            *self.D_X.weights,
            *self.D_Y.weights,
            *self.opt_gen.variables,
            *self.opt_disc.variables,
            self.pool_x,
            self.pool_y,
            self.pool_n,
            self.step,
            # Only a run with the average holds it, so older checkpoints keep their layout.
            *([e for _, e in self.ema_pairs] + [self.ema_n] if self.ema_pairs else []),
        ]

    def save(self, path: Path) -> None:
        """Write every variable to `path` (.npz, no pickles), atomically."""
        arrays = {
            f"v{i:04d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for i, v in enumerate(self.variables())
        }
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, allow_pickle=False, **arrays)
        tmp.replace(path)

    def init_from_bundle(
        self, folder: str | Path, which_nets: tuple[str, ...] = ("G", "F"), option: str = "init_from"
    ) -> Manifest:
        """Set G and F (or those named in `which_nets`) to an exported bundle's weights.

        Args:
            option: how the caller named the bundle (`init_from`, `--g-from`), for the error messages.

        Returns:
            The bundle's manifest.

        Raises:
            TrainingError: the bundle is unreadable or its generators are not this config's.
        """
        from models.bundle import BundleError, load_generator

        manifest: Manifest | None = None
        for which, net in (("G", self.G), ("F", self.F)):
            if which not in which_nets:
                continue
            try:
                src, manifest = load_generator(folder, which)
            except BundleError as exc:
                raise TrainingError(f"{option} = {str(folder)!r}: {exc}") from exc
            # The generators are fully convolutional, so the same weights run at any texture size: a
            # bundle trained at 128 px starts a 192 px run (a feature is then 1.5 times as many texels).
            theirs_cfg = replace(manifest.config(which), size=self.generator_config.size)
            # A run with the detail head may start from a bundle without one (never the other way round).
            adds_head = self.generator_config.detail_head and not theirs_cfg.detail_head
            if replace(theirs_cfg, detail_head=theirs_cfg.detail_head or adds_head) != self.generator_config:
                raise TrainingError(
                    f"{option} = {str(folder)!r}: its {which} {manifest.config(which)} is not this config's "
                    f"{self.generator_config}. Fix: match ngf, n_blocks, conditioned, film and detail_head."
                )
            if adds_head:
                # The head's last convolution is set to zero, so the generator computes what the bundle's
                # does (a fresh run, or a trained one given --g-from).
                theirs = {w.path: w for w in src.weights}
                for mine in net.weights:
                    if mine.path in theirs:
                        mine.assign(tf.cast(theirs[mine.path], mine.dtype))
                    elif mine.path.startswith("head_conv1/"):
                        mine.assign(tf.zeros_like(mine))
                continue
            for mine, theirs_w in zip(net.weights, src.weights, strict=True):
                mine.assign(tf.cast(theirs_w, mine.dtype))
        if manifest is None:
            raise TrainingError(f"{option}: no generator named in {which_nets} (G or F)")
        return manifest

    def start_from_bundle(self, folder: str | Path) -> str:
        """Start a fresh run from a bundle (`init_from`): the generators that learn must fit its own.

        A generator that does not learn (`train_generators`) only draws the samples, and export takes it
        from the same bundle, so it may differ (an `F` with a detail head beside a head-less `G` run).

        Returns:
            "" when both came from the bundle, else why the one that does not learn kept its seed's weights.

        Raises:
            TrainingError: the bundle is unreadable or a generator that learns does not fit it.
        """
        trained = tuple(w for w, learns in (("G", self.trains_g), ("F", self.trains_f)) if learns)
        self.init_from_bundle(folder, trained)
        fixed = tuple(w for w in ("G", "F") if w not in trained)
        if not fixed:
            return ""
        try:
            self.init_from_bundle(folder, fixed)
        except TrainingError as exc:
            return f"{fixed[0]} does not learn and keeps its seed's weights, not the bundle's: {exc}"
        return ""

    def restore(self, path: Path) -> None:
        """Load a checkpoint written by `save`.

        Raises:
            TrainingError: the file does not match this configuration.
        """
        with np.load(path, allow_pickle=False) as data:
            vs = self.variables()
            if len(data.files) != len(vs):
                raise TrainingError(
                    f"checkpoint {path} holds {len(data.files)} variables, this config needs {len(vs)}: "
                    f"it was written by a different configuration"
                )
            for i, v in enumerate(vs):
                arr = data[f"v{i:04d}"]
                if tuple(arr.shape) != tuple(v.shape):
                    raise TrainingError(
                        f"checkpoint {path}: variable {i} has shape {arr.shape}, expected {v.shape}"
                    )
                v.assign(arr)

    def _update_ema(self) -> None:
        """Fold the current weights into the average; the first update copies them (no bias to zero)."""
        if not self.ema_pairs:
            return
        n = tf.cast(self.ema_n, tf.float32)
        d = tf.minimum(self.cfg.ema_decay, (1.0 + n) / (10.0 + n)) * tf.cast(self.ema_n > 0, tf.float32)
        for w, e in self.ema_pairs:
            e.assign(d * e + (1.0 - d) * tf.cast(w.value, e.dtype))
        self.ema_n.assign_add(1)

    def use_ema(self) -> bool:
        """Set the learning generators to their weights' moving average (for export and samples).

        Returns:
            False when this run keeps no average or has not updated it yet (the weights stay as they are).
        """
        if not self.ema_pairs or int(self.ema_n.numpy()) == 0:
            return False
        for w, e in self.ema_pairs:
            w.assign(e)
        return True

    def set_learning_rate(self, step: int) -> float:
        """Linear decay from `decay_from` to 0 at `steps`."""
        cfg = self.cfg
        frac = 1.0
        if step >= cfg.decay_from and cfg.steps > cfg.decay_from:
            frac = max(0.0, 1.0 - (step - cfg.decay_from) / (cfg.steps - cfg.decay_from))
        lr = cfg.lr * frac
        self.opt_gen.learning_rate = lr
        self.opt_disc.learning_rate = lr
        return lr

    def teacher_weight(self, step: int) -> float:
        cfg = self.cfg
        span = max(cfg.steps - cfg.warm_steps, 1)
        frac = min(max((step - cfg.warm_steps) / span, 0.0), 1.0)
        return cfg.lambda_teacher + (cfg.lambda_teacher_end - cfg.lambda_teacher) * frac

    # -- steps -----------------------------------------------------------------------------------------

    def generator_input(self, img: tf.Tensor, age: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Generator input: the (B, S, S, 3) image, plus constant age maps (years / 100) when conditioned."""
        if self.generator_config.cond == 0:
            return img
        shape = tf.shape(img)[:3]
        a = tf.broadcast_to(tf.cast(age, img.dtype)[:, None, None] / 100.0, shape)
        b = tf.broadcast_to(tf.cast(target, img.dtype)[:, None, None] / 100.0, shape)
        return tf.concat([img, a[..., None], b[..., None]], axis=-1)

    def _warm_step(
        self,
        x: tf.Tensor,
        t_y: tf.Tensor,
        y: tf.Tensor,
        t_x: tf.Tensor,
        xa: tf.Tensor,
        xt: tf.Tensor,
        ya: tf.Tensor,
        yt: tf.Tensor,
        e_y: tf.Tensor,
        e_x: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        out: dict[str, tf.Tensor] = {}
        total = tf.constant(0.0)
        with tf.GradientTape() as tape:
            # Each trained generator against its pairs; in units of the teacher L1, which the warm start weighs 1.
            w_tex = self.cfg.lambda_texture / max(self.cfg.lambda_teacher, 1e-6)
            for name, net, img, age, target, want, env, on in (
                ("G", self.G, x, xa, xt, t_y, e_y, self.trains_g),
                ("F", self.F, y, ya, yt, t_x, e_x, self.trains_f),
            ):
                if not on:
                    continue
                fake = net(self.generator_input(img, age, target), training=True)
                out[f"teach_{name}"] = _l1_weighted(fake, want, self.teach_w)
                total += out[f"teach_{name}"]
                if self.texture is not None:
                    tex = self.texture.loss(fake, env)
                    out["texture"] = out.get("texture", 0.0) + tex
                    total += w_tex * tex
        grads = tape.gradient(total, self.gen_vars)
        self.opt_gen.apply_gradients(zip(grads, self.gen_vars, strict=False))
        self._update_ema()
        self.step.assign_add(1)
        return out

    @tf.autograph.experimental.do_not_convert
    def _query_pool(self, pool: tf.Variable, which: int, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Image pool of Shrivastava et al.: half the time show a stored past fake instead of the new one."""
        out = []
        b = images.shape[0]
        cap = pool.shape[0]
        u = tf.random.stateless_uniform((b, 2), seed=seed)
        for i in range(b):
            img = images[i]
            n = self.pool_n[which]
            if self.cfg.pool_size < 1:
                out.append(img)
                continue
            slot = tf.cast(tf.floor(u[i, 1] * cap), tf.int32)
            stored = pool[slot]
            not_full = n < cap
            use_old = tf.logical_and(tf.logical_not(not_full), u[i, 0] > 0.5)
            write_at = tf.where(not_full, n, slot)
            write = tf.logical_or(not_full, use_old)
            new_val = tf.where(write, img, pool[write_at])
            pool.scatter_nd_update([[write_at]], new_val[None])
            self.pool_n.scatter_nd_update([[which]], [tf.minimum(n + 1, cap)])
            out.append(tf.where(use_old, stored, img))
        return tf.stack(out)

    def _gan_step(
        self,
        x: tf.Tensor,
        t_y: tf.Tensor,
        y: tf.Tensor,
        t_x: tf.Tensor,
        xa: tf.Tensor,
        xt: tf.Tensor,
        ya: tf.Tensor,
        yt: tf.Tensor,
        e_y: tf.Tensor,
        e_x: tf.Tensor,
        lam_teach: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        cfg = self.cfg
        zero = tf.constant(0.0)
        # A generator that is not trained runs only where a trained one's loss needs it (the cycle).
        need_y = self.trains_g or cfg.lambda_cycle > 0
        need_x = self.trains_f or cfg.lambda_cycle > 0
        with tf.GradientTape() as tape:
            fake_y = self.G(self.generator_input(x, xa, xt), training=self.trains_g) if need_y else None
            fake_x = self.F(self.generator_input(y, ya, yt), training=self.trains_f) if need_x else None
            adv_g = _mse(self.D_Y(fake_y, training=True), 1.0) if self.trains_g else zero
            adv_f = _mse(self.D_X(fake_x, training=True), 1.0) if self.trains_f else zero
            out: dict[str, tf.Tensor] = {}
            if cfg.lambda_cycle > 0:
                # Computed only when weighed: at weight 0 its two extra passes cost a third of the step.
                cyc_x = self.F(self.generator_input(fake_y, xt, xa), training=self.trains_f)
                cyc_y = self.G(self.generator_input(fake_x, yt, ya), training=self.trains_g)
                out["cycle"] = _l1(x, cyc_x) + _l1(y, cyc_y)
            if cfg.lambda_identity > 0:
                # A conditioned generator asked for the face's own age must change nothing.
                ident = _l1(y, self.G(self.generator_input(y, ya, ya), training=self.trains_g)) + _l1(
                    x, self.F(self.generator_input(x, xa, xa), training=self.trains_f)
                )
            else:
                ident = zero
            l1 = _l1_weighted if self.lowpass is None else self.lowpass
            teach, tex = zero, zero
            for fake, want, env, on in ((fake_y, t_y, e_y, self.trains_g), (fake_x, t_x, e_x, self.trains_f)):
                if on:
                    teach += l1(fake, want, self.teach_w)
                    if self.texture is not None:
                        tex += self.texture.loss(fake, env)
            total = (
                cfg.lambda_adv * (adv_g + adv_f)
                + cfg.lambda_cycle * out.get("cycle", zero)
                + cfg.lambda_identity * ident
                + lam_teach * teach
                + cfg.lambda_texture * tex
            )
        grads = tape.gradient(total, self.gen_vars)
        self.opt_gen.apply_gradients(zip(grads, self.gen_vars, strict=False))
        self._update_ema()

        k = tf.stack([tf.constant(self.cfg.seed + 99, tf.int64), self.step])
        w = cfg.disc_age_negatives
        with tf.GradientTape() as dtape:
            d_total = zero
            if self.trains_g:
                pool_y = self._query_pool(self.pool_y, 1, tf.cast(tf.stop_gradient(fake_y), tf.float32), k)
                out["D_Y"] = discriminator_loss(self.D_Y, y, pool_y, x, w)
                d_total += out["D_Y"]
            if self.trains_f:
                pool_x = self._query_pool(
                    self.pool_x, 0, tf.cast(tf.stop_gradient(fake_x), tf.float32), k + 1
                )
                out["D_X"] = discriminator_loss(self.D_X, x, pool_x, y, w)
                d_total += out["D_X"]
        dgrads = dtape.gradient(d_total, self.disc_vars)
        self.opt_disc.apply_gradients(zip(dgrads, self.disc_vars, strict=False))
        self.step.assign_add(1)
        return {
            **({"adv_G": adv_g} if self.trains_g else {}),
            **({"adv_F": adv_f} if self.trains_f else {}),
            "ident": ident,
            "teach": teach,
            "texture": tex,
            **out,
        }

    def train_steps(
        self, data: TrainData, stop: int, on_step: Callable[[int, dict[str, float]], None] | None = None
    ) -> dict[str, float]:
        """Run steps from the current step up to `stop` (exclusive), phase by phase.

        Returns:
            The losses of the last step.
        """
        cfg = self.cfg
        last: dict[str, float] = {}
        while int(self.step.numpy()) < stop:
            start = int(self.step.numpy())
            warm = start < cfg.warm_steps
            end = min(stop, cfg.warm_steps) if warm else stop
            batch = cfg.warm_batch_size if warm else cfg.batch_size
            for b in make_dataset(data, cfg, start, end, batch):
                s = int(self.step.numpy())
                self.set_learning_rate(s)
                if warm:
                    out = self.warm_step(*b)
                else:
                    out = self.gan_step(*b, tf.constant(self.teacher_weight(s), tf.float32))
                last = {k: float(v) for k, v in out.items()}
                if on_step is not None:
                    on_step(s + 1, last)
        return last


def sample_grid(
    model: CycleGAN,
    young: NDArray[np.uint8],
    old: NDArray[np.uint8],
    young_age: NDArray[np.float32] | None = None,
    old_age: NDArray[np.float32] | None = None,
) -> NDArray[np.uint8]:
    """A sample grid, RGB uint8.

    Unconditioned rows: young | G(young) | F(G(young)) ; old | F(old) | G(F(old)).
    Conditioned rows (ages given): young | G(→50) | G(→70) | F(G(→70)→own age) ; old | F(→35) | F(→22) |
    G(F(→22)→own age).
    """

    def to_u8(a: NDArray[np.float32]) -> NDArray[np.uint8]:
        return np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

    xs = young.astype(np.float32) / 127.5 - 1.0
    ys = old.astype(np.float32) / 127.5 - 1.0
    if young_age is None or old_age is None or model.generator_config.cond == 0:

        def run(net: keras.Model, a: NDArray[np.float32]) -> NDArray[np.float32]:
            return np.asarray(net(a, training=False), dtype=np.float32)

        gx = run(model.G, xs)
        fy = run(model.F, ys)
        rows = [xs, gx, run(model.F, gx), ys, fy, run(model.G, fy)]
    else:

        def runc(net: keras.Model, a: NDArray[np.float32], age: NDArray[np.float32], t: Any) -> Any:
            tgt = np.broadcast_to(np.asarray(t, np.float32), age.shape)
            return np.asarray(
                net(model.generator_input(tf.constant(a), age, tgt), training=False), dtype=np.float32
            )

        ya, oa = young_age.astype(np.float32), old_age.astype(np.float32)
        g70 = runc(model.G, xs, ya, 70.0)
        f22 = runc(model.F, ys, oa, 22.0)
        rows = [
            xs,
            runc(model.G, xs, ya, 50.0),
            g70,
            runc(model.F, g70, np.full_like(ya, 70.0), ya),
            ys,
            runc(model.F, ys, oa, 35.0),
            f22,
            runc(model.G, f22, np.full_like(oa, 22.0), oa),
        ]
        return np.concatenate(
            [
                np.concatenate([np.concatenate(list(to_u8(r)), axis=0) for r in rows[:4]], axis=1),
                np.concatenate([np.concatenate(list(to_u8(r)), axis=0) for r in rows[4:]], axis=1),
            ],
            axis=1,
        )
    return np.concatenate([np.concatenate(list(to_u8(r)), axis=1) for r in rows], axis=0)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def now() -> float:
    return time.perf_counter()
