"""Keras 3 network builders for the aging CycleGAN: a residual ResNet generator and a PatchGAN discriminator.

Only `keras.layers` and `keras.ops` are used, so the same models run on the TensorFlow and JAX backends.
Tensors are NHWC, scaled to [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
from keras import layers, ops


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
    """

    size: int = 128
    ngf: int = 16
    n_blocks: int = 6
    residual: bool = True
    norm: str = "instance"
    cond: int = 0

    def __post_init__(self) -> None:
        if self.size % 4 or self.size < 16:
            raise ValueError(f"generator size must be a multiple of 4 and >= 16, got {self.size}")
        if self.ngf < 4 or self.n_blocks < 0:
            raise ValueError(f"ngf must be >= 4 and n_blocks >= 0, got {self.ngf}, {self.n_blocks}")
        if self.norm not in ("instance", "group"):
            raise ValueError(f"norm must be 'instance' or 'group', got {self.norm!r}")
        if self.cond not in (0, 2):
            raise ValueError(f"cond must be 0 (none) or 2 (input and target age), got {self.cond!r}")

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


def _norm(kind: str, name: str) -> layers.Layer:
    groups = -1 if kind == "instance" else 8
    return layers.GroupNormalization(groups=groups, epsilon=1e-5, name=name)


def _conv_block(x: Any, filters: int, kernel: int, stride: int, norm: str, name: str) -> Any:
    x = ReflectionPad2D(kernel // 2, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = _norm(norm, f"{name}_norm")(x)
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
    x = _conv_block(inp, c.ngf, 7, 1, c.norm, "enc0")
    x = _conv_block(x, c.ngf * 2, 3, 2, c.norm, "enc1")
    x = _conv_block(x, c.ngf * 4, 3, 2, c.norm, "enc2")
    for i in range(c.n_blocks):
        y = ReflectionPad2D(1, name=f"res{i}_pad0")(x)
        y = layers.Conv2D(c.ngf * 4, 3, use_bias=False, name=f"res{i}_conv0")(y)
        y = _norm(c.norm, f"res{i}_norm0")(y)
        y = layers.ReLU(name=f"res{i}_relu")(y)
        y = ReflectionPad2D(1, name=f"res{i}_pad1")(y)
        y = layers.Conv2D(c.ngf * 4, 3, use_bias=False, name=f"res{i}_conv1")(y)
        y = _norm(c.norm, f"res{i}_norm1")(y)
        x = layers.Add(name=f"res{i}_add")([x, y])
    for i, f in enumerate((c.ngf * 2, c.ngf)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        x = _conv_block(x, f, 3, 1, c.norm, f"dec{i}")
    x = ReflectionPad2D(3, name="out_pad")(x)
    if c.residual:
        delta = layers.Conv2D(3, 7, kernel_initializer="zeros", name="out_conv")(x)
        out = layers.Add(name="out_add")([rgb, delta])
        out = layers.Activation(lambda t: ops.clip(t, -1.0, 1.0), name="out_clip")(out)
    else:
        out = layers.Conv2D(3, 7, activation="tanh", name="out_conv")(x)
    return keras.Model(inp, out, name=name)


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
