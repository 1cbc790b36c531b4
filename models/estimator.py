"""The input-age estimator: a small Keras 3 CNN that reads a face's canonical-mesh texture and gives its age.

An age-conditioned generator needs the face's own age beside the target (`--target-age 60` asks for less
change on a 45-year-old than on a 25-year-old). This network supplies it when the user does not. It is
trained here (`python -m training estimator`) on the UTKFace training split, never on the benchmark's age
judge, and never the judge's outputs.

    models/<name>/
        estimator.json      format, network config, face space, normalisation, sha256, validation error
        E.weights.h5        Keras weights
        CARD.md             data, licence, error by age band

The output is a distribution over whole years 0..100 (DEX-style classification); its mean is the estimate,
which is smoother than a plain regression near the ends of the range. Only `keras.layers` and `keras.ops` are
used, so it runs on the TensorFlow and JAX backends. Tensors are NHWC in [-1, 1].
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
from keras import layers, ops

from models.bundle import BUNDLED_DIR, BundleError, sha256_file

FORMAT = "faceage-age-estimator/1"
MANIFEST = "estimator.json"
DEFAULT_ESTIMATOR = "utkface-age-64"
AGE_BINS = 101  # whole years 0..100
_FIX = "Fix: retrain it with `python -m training estimator`, or reinstall faceage-video for the bundled one."


@dataclass(frozen=True)
class EstimatorConfig:
    """Shape of the estimator network.

    Attributes:
        size: input side in pixels; the canonical texture is resized to it (a multiple of 16, 32..256).
        width: filters of the first stage, doubled at each of the four stages (4..128).
    """

    size: int = 64
    width: int = 32

    def __post_init__(self) -> None:
        for name in ("size", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"estimator {name} must be an integer, got {v!r}")
        if self.size % 16 or not 32 <= self.size <= 256:
            raise ValueError(f"estimator size must be a multiple of 16 in 32..256, got {self.size}")
        if not 4 <= self.width <= 128:
            raise ValueError(f"estimator width must be in 4..128, got {self.width}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_age_estimator(config: EstimatorConfig, name: str = "E") -> keras.Model:
    """(N, size, size, 3) in [-1, 1] → (N, 101) logits over ages 0..100.

    Four stages of two 3×3 convolutions (batch norm, ReLU) and a 2× max-pool, then global average pooling,
    dropout and one dense layer.
    """
    inp = keras.Input((config.size, config.size, 3), name="texture")
    x = inp
    for stage in range(4):
        filters = config.width * 2**stage
        for k in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"s{stage}_conv{k}")(x)
            x = layers.BatchNormalization(name=f"s{stage}_bn{k}")(x)
            x = layers.ReLU(name=f"s{stage}_relu{k}")(x)
        x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    out = layers.Dense(AGE_BINS, name="logits")(x)
    return keras.Model(inp, out, name=name)


def expected_age(logits: Any) -> Any:
    """(N, 101) logits → (N,) expected age in years (the mean of the softmax over 0..100)."""
    p = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    years = ops.arange(AGE_BINS, dtype="float32")
    return ops.sum(p * years, axis=-1)


@dataclass(frozen=True)
class EstimatorManifest:
    """Contents of `estimator.json`.

    Attributes:
        name: the estimator's name.
        network: its `EstimatorConfig`.
        template: the face space it reads: {"kind": "mesh", "version", "layout_sha"}; any texture size of that
            layout is resized to `network.size`.
        normalisation: how uint8 pixels map to the network's range.
        file: the weight file, relative to the folder.
        sha256: hex SHA-256 of the weight file, checked on load.
        data: what it was trained on, and its licence.
        metrics: its error on the validation split.
        training: steps and provenance.
    """

    name: str
    network: EstimatorConfig
    template: dict[str, Any]
    normalisation: str = "x / 127.5 - 1"
    file: str = "E.weights.h5"
    sha256: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["network"] = self.network.to_dict()
        return json.dumps({"format": FORMAT, **d}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> EstimatorManifest:
        """Parse and validate; a wrong format, a bad field or a weight file outside the folder raises."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                got = d.get("format") if isinstance(d, dict) else type(d).__name__
                raise ValueError(f"format {got!r} is not {FORMAT!r}")
            d.pop("format")
            d["network"] = EstimatorConfig(**d["network"])
            m = cls(**d)
            if not m.file or "/" in m.file or "\\" in m.file or m.file in (".", ".."):
                raise ValueError(f"file {m.file!r} must be a plain file name inside the folder")
            if m.template.get("kind") != "mesh":
                raise ValueError(f"face space {m.template.get('kind')!r} is not 'mesh'")
            return m
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BundleError(f"{source} is not a valid age-estimator manifest ({exc}). {_FIX}") from exc


def resolve_estimator(name_or_path: str | Path | None = None) -> Path:
    """Folder of an estimator: a bundled name, or a folder holding `estimator.json`. None: the bundled one.

    Raises:
        BundleError: naming what was looked for and the fix.
    """
    key = str(name_or_path) if name_or_path is not None else DEFAULT_ESTIMATOR
    bundled = BUNDLED_DIR / key
    if "/" not in key and "\\" not in key and (bundled / MANIFEST).is_file():
        return bundled
    p = Path(key)
    if (p / MANIFEST).is_file():
        return p
    raise BundleError(f"age estimator {key!r} not found (no {p / MANIFEST}). {_FIX}")


def load_age_estimator(name_or_path: str | Path | None = None) -> tuple[keras.Model, EstimatorManifest]:
    """Build the estimator and load its weights, checking their sha256.

    Raises:
        BundleError: the folder, manifest or weights are missing, corrupt or mismatched; names the file.
    """
    folder = resolve_estimator(name_or_path)
    mpath = folder / MANIFEST
    try:
        text = mpath.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath} cannot be read ({type(exc).__name__}: {exc}). {_FIX}") from exc
    manifest = EstimatorManifest.from_json(text, str(mpath))
    wpath = folder / manifest.file
    if not wpath.is_file() or not wpath.resolve().is_relative_to(folder.resolve()):
        raise BundleError(f"weights {wpath} missing from {folder}. {_FIX}")
    if manifest.sha256 and sha256_file(wpath) != manifest.sha256:
        raise BundleError(f"weights {wpath} are corrupt: their sha256 is not the one {mpath} records. {_FIX}")
    model = build_age_estimator(manifest.network)
    try:
        model.load_weights(str(wpath))
    except Exception as exc:  # h5py and Keras raise many types for a damaged or mismatched file
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise BundleError(f"weights {wpath} are corrupt or do not match {mpath}: {first}. {_FIX}") from exc
    return model, manifest


def save_age_estimator(
    folder: str | Path, manifest: EstimatorManifest, model: keras.Model, card: str
) -> Path:
    """Write an estimator folder: weights, `estimator.json` with their sha256, and the card."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    # A fresh copy: a compiled model would also write its optimiser's state (twice the weights again).
    clean = build_age_estimator(manifest.network, name=model.name)
    clean.set_weights(model.get_weights())
    clean.save_weights(str(out / manifest.file))
    manifest = replace(manifest, sha256=sha256_file(out / manifest.file))
    (out / MANIFEST).write_text(manifest.to_json() + "\n", encoding="utf-8")
    (out / "CARD.md").write_text(card, encoding="utf-8")
    return out
