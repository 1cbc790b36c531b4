"""Keras 3 network builders for the aging CycleGAN: a residual ResNet generator and a PatchGAN discriminator.

Only `keras.layers` and `keras.ops` are used, so the same models run on the TensorFlow and JAX backends.
Tensors are NHWC, scaled to [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import keras
from keras import layers, ops

# Upper bounds of a generator config, so a crafted manifest cannot ask for unbounded memory: the largest
# (1024 px, ngf 128, 32 blocks) is far beyond any bundle and still builds in a few GB.
MAX_SIZE = 1024
MAX_NGF = 128
MAX_BLOCKS = 32


@dataclass(frozen=True)
class GeneratorConfig:
    """ResNet generator shape.

    Attributes:
        size: input/output side in pixels (a multiple of 4).
        ngf: filters of the first convolution; doubled at each of the two downsamplings.
        n_blocks: residual blocks at 1/4 resolution.
        residual: predict a change added to the input (FRAN-style) instead of the whole image. The last
            convolution starts at zero, so an untrained generator is the identity.
        norm: "instance" (per-sample, per-channel) or "group" (8 groups).
        cond: conditioning channels after RGB: 0 (none) or 2 (the input age and the target age, each a
            constant map of years / 100, as in FRAN).
        film: with cond 2, also feed the two ages (and their difference) to every normalisation as a
            per-channel scale and shift (FiLM). Constant maps alone do not survive the first instance
            normalisation, which removes each channel's mean: without FiLM the network cannot see the ages.
        detail_head: with `residual`, a second path to the change at full resolution: two 3×3 convolutions
            over the decoder's features and the input RGB. Without it the change cannot follow the input's
            finest detail, which the two stride-2 downsamplings lose, so it can add fine detail but never
            take a face's own away (de-aging kept the old skin's grain). Its last convolution starts at
            zero: a generator given the head computes what it did without it until trained.
    """

    size: int = 128
    ngf: int = 16
    n_blocks: int = 6
    residual: bool = True
    norm: str = "instance"
    cond: int = 0
    film: bool = False
    detail_head: bool = False

    def __post_init__(self) -> None:
        for name in ("size", "ngf", "n_blocks"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise ValueError(f"generator {name} must be an integer, got {getattr(self, name)!r}")
        if self.size % 4 or not 16 <= self.size <= MAX_SIZE:
            raise ValueError(f"generator size must be a multiple of 4 in 16..{MAX_SIZE}, got {self.size}")
        if not 4 <= self.ngf <= MAX_NGF or not 0 <= self.n_blocks <= MAX_BLOCKS:
            raise ValueError(
                f"ngf must be in 4..{MAX_NGF} and n_blocks in 0..{MAX_BLOCKS}, got {self.ngf}, {self.n_blocks}"
            )
        if self.norm not in ("instance", "group"):
            raise ValueError(f"norm must be 'instance' or 'group', got {self.norm!r}")
        if self.cond not in (0, 2):
            raise ValueError(f"cond must be 0 (none) or 2 (input and target age), got {self.cond!r}")
        if not isinstance(self.detail_head, bool) or (self.detail_head and not self.residual):
            raise ValueError(f"detail_head must be a boolean and needs residual, got {self.detail_head!r}")
        if not isinstance(self.film, bool) or (self.film and self.cond != 2):
            raise ValueError(
                f"film must be a boolean and needs cond 2, got film={self.film!r}, cond={self.cond}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """70×70 PatchGAN (C64-C128-C256-C512 with ndf=64).

    Attributes:
        size: input side in pixels.
        ndf: filters of the first layer.
        n_layers: stride-2 layers; 3 gives the 70×70 receptive field.
    """

    size: int = 128
    ndf: int = 32
    n_layers: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@keras.saving.register_keras_serializable(package="faceage")
class ReflectionPad2D(layers.Layer):
    """Reflection padding, which keeps the crop borders free of the dark frames zero padding leaves."""

    def __init__(self, pad: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x: Any) -> Any:
        p = self.pad
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        b, h, w, c = input_shape
        p = 2 * self.pad
        return (b, None if h is None else h + p, None if w is None else w + p, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="faceage")
class FiLM(layers.Layer):
    """Feature-wise modulation: x · (1 + γ) + β, with (γ, β) = split(params), per sample and channel.

    Inputs: x (B, H, W, C) and params (B, 2C).
    """

    def call(self, x: Any, params: Any) -> Any:
        gamma, beta = ops.split(params, 2, axis=-1)
        return x * (1.0 + gamma[:, None, None, :]) + beta[:, None, None, :]

    def compute_output_shape(self, x_shape: Any, params_shape: Any) -> Any:
        return x_shape


def _age_code(inp: Any) -> Any:
    """(B, S, S, 5) generator input → (B, 3): input age, target age and their difference, in years / 100."""
    ages = ops.mean(inp[..., 3:5], axis=(1, 2))
    return ops.concatenate([ages, ages[:, 1:2] - ages[:, 0:1]], axis=-1)


def _norm(kind: str, name: str) -> layers.Layer:
    groups = -1 if kind == "instance" else 8
    return layers.GroupNormalization(groups=groups, epsilon=1e-5, name=name)


def _normalise(x: Any, kind: str, name: str, code: Any) -> Any:
    """Normalisation, then FiLM from the age code when there is one. The FiLM projection starts at zero, so
    a new conditioned generator starts as its unconditioned self. `name` is the normalisation layer's own
    name, which the weight files of earlier bundles key on."""
    x = _norm(kind, name)(x)
    if code is None:
        return x
    params = layers.Dense(2 * int(x.shape[-1]), kernel_initializer="zeros", name=f"{name}_film")(code)
    return FiLM(name=f"{name}_mod")(x, params)


def _conv_block(
    x: Any, filters: int, kernel: int, stride: int, norm: str, name: str, code: Any = None
) -> Any:
    x = ReflectionPad2D(kernel // 2, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = _normalise(x, norm, f"{name}_norm", code)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_generator(config: GeneratorConfig, name: str = "G") -> keras.Model:
    """ResNet generator: c7s1-ngf, d2ngf, d4ngf, R4ngf × n_blocks, u2ngf, ungf, c7s1-3.

    Upsampling is bilinear resize followed by a convolution, which avoids the checkerboard artefacts of
    transposed convolutions.

    Args:
        config: the generator shape.
        name: model name, "G" (young→old) or "F" (old→young) by convention.

    Returns:
        A Keras model mapping (B, S, S, 3 + cond) in [-1, 1] (RGB, then the conditioning maps) to
        (B, S, S, 3) in [-1, 1].
    """
    c = config
    inp = keras.Input((c.size, c.size, 3 + c.cond), name="image")
    rgb = inp if c.cond == 0 else layers.Lambda(lambda t: t[..., :3], name="rgb")(inp)
    code = None
    if c.film:
        code = layers.Lambda(_age_code, name="age_code")(inp)
        code = layers.Dense(64, activation="relu", name="age_mlp0")(code)
        code = layers.Dense(64, activation="relu", name="age_mlp1")(code)
    x = _conv_block(inp, c.ngf, 7, 1, c.norm, "enc0", code)
    x = _conv_block(x, c.ngf * 2, 3, 2, c.norm, "enc1", code)
    x = _conv_block(x, c.ngf * 4, 3, 2, c.norm, "enc2", code)
    for i in range(c.n_blocks):
        y = ReflectionPad2D(1, name=f"res{i}_pad0")(x)
        y = layers.Conv2D(c.ngf * 4, 3, use_bias=False, name=f"res{i}_conv0")(y)
        y = _normalise(y, c.norm, f"res{i}_norm0", code)
        y = layers.ReLU(name=f"res{i}_relu")(y)
        y = ReflectionPad2D(1, name=f"res{i}_pad1")(y)
        y = layers.Conv2D(c.ngf * 4, 3, use_bias=False, name=f"res{i}_conv1")(y)
        y = _normalise(y, c.norm, f"res{i}_norm1", code)
        x = layers.Add(name=f"res{i}_add")([x, y])
    for i, f in enumerate((c.ngf * 2, c.ngf)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        x = _conv_block(x, f, 3, 1, c.norm, f"dec{i}", code)
    feat = x
    x = ReflectionPad2D(3, name="out_pad")(x)
    if c.residual:
        delta = layers.Conv2D(3, 7, kernel_initializer="zeros", name="out_conv")(x)
        if c.detail_head:
            h = layers.Concatenate(name="head_in")([feat, rgb])
            h = ReflectionPad2D(1, name="head_pad0")(h)
            h = layers.Conv2D(c.ngf, 3, name="head_conv0")(h)
            h = layers.ReLU(name="head_relu")(h)
            h = ReflectionPad2D(1, name="head_pad1")(h)
            h = layers.Conv2D(3, 3, kernel_initializer="zeros", name="head_conv1")(h)
            delta = layers.Add(name="head_add")([delta, h])
        out = layers.Add(name="out_add")([rgb, delta])
        out = layers.Activation(lambda t: ops.clip(t, -1.0, 1.0), name="out_clip")(out)
    else:
        out = layers.Conv2D(3, 7, activation="tanh", name="out_conv")(x)
    return keras.Model(inp, out, name=name)


def without_zero_head(model: keras.Model, config: GeneratorConfig) -> keras.Model | None:
    """A head-less copy of a `detail_head` generator whose head's last convolution is exactly zero (the head
    then adds nothing, so the copy computes the same output without its cost); None if it has no head or
    its head is not zero."""
    if not config.detail_head:
        return None
    last = model.get_layer("head_conv1")
    if any(bool(ops.any(ops.not_equal(w, 0.0))) for w in last.weights):
        return None
    lean = build_generator(replace(config, detail_head=False), name=model.name)
    theirs = {w.path: w for w in model.weights}
    for mine in lean.weights:
        mine.assign(theirs[mine.path])
    return lean


def build_discriminator(config: DiscriminatorConfig, name: str = "D") -> keras.Model:
    """PatchGAN discriminator: one real/fake logit per overlapping patch (LSGAN targets 1 and 0).

    Args:
        config: the discriminator shape.
        name: "D_X" (young domain) or "D_Y" (old domain) by convention.

    Returns:
        A Keras model mapping (B, S, S, 3) to (B, S/8 - 2, S/8 - 2, 1) patch scores for n_layers=3.
    """
    c = config
    inp = keras.Input((c.size, c.size, 3), name="image")
    x = layers.Conv2D(c.ndf, 4, strides=2, padding="same", name="c0")(inp)
    x = layers.LeakyReLU(0.2)(x)
    nf = c.ndf
    for i in range(1, c.n_layers + 1):
        nf = min(c.ndf * 2**i, c.ndf * 8)
        stride = 2 if i < c.n_layers else 1
        x = layers.Conv2D(nf, 4, strides=stride, padding="same", use_bias=False, name=f"c{i}")(x)
        x = layers.GroupNormalization(groups=-1, epsilon=1e-5, name=f"n{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
    out = layers.Conv2D(1, 4, padding="same", name="patch")(x)
    return keras.Model(inp, out, name=name)
