"""Train the input-age estimator (`models.estimator`) on a canonical-mesh cache, and judge it on the cache's
validation split.

The cache (`python -m training cache`) holds every UTKFace face from 15 years up as a canonical texture
with its labelled age and the hash split. The estimator trains on the training split only; its error is
reported on the validation split, which no generator and no estimator has seen. The benchmark's age judge
plays no part: it neither labels nor checks anything here.

Labels are soft: a Gaussian of σ = `sigma` years around the labelled age over the 101 year bins (UTKFace ages
are self-reported or guessed, and neighbouring years look alike). Augmentation: mirror, ±3 px shifts,
brightness and contrast, and one face in five turned grey, so black-and-white footage reads alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from training.errors import ConfigError, DatasetError

BANDS: tuple[tuple[int, int], ...] = ((15, 17), (18, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 120))


@dataclass(frozen=True)
class EstimatorTrainOptions:
    """How to train the estimator.

    Attributes:
        cache: a canonical-mesh cache folder (`faces.npy`, `faces.npz`, `index.json`).
        out: the folder to write (`estimator.json`, `E.weights.h5`, `CARD.md`).
        name: the estimator's name, written into its manifest.
        size: network input side; textures are resized to it (area filter).
        width: filters of the first stage.
        steps: optimiser steps. batch_size: faces a step. lr: Adam's rate, cosine-decayed to 5 % of it.
        sigma: the soft label's spread in years.
        seed: the run's random seed (weights, batches, augmentation).
    """

    cache: Path
    out: Path
    name: str = "utkface-age-64"
    size: int = 64
    width: int = 32
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    sigma: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or not 1 <= self.batch_size <= 1024:
            raise ConfigError(
                f"steps must be ≥ 1 and batch_size in 1..1024, got {self.steps}, {self.batch_size}"
            )
        if not 0.0 < self.lr < 1.0 or not 0.5 <= self.sigma <= 20.0:
            raise ConfigError(f"lr must be in (0, 1) and sigma in 0.5..20 years, got {self.lr}, {self.sigma}")


@dataclass(frozen=True)
class CachedFaces:
    """The cache resized for the estimator.

    Attributes:
        textures: (N, size, size, 3) uint8 RGB canonical textures.
        ages: (N,) labelled ages in years. val: (N,) True on the validation split.
        mesh: the cache's face space (`CanonicalMesh.to_dict()`).
    """

    textures: NDArray[np.uint8]
    ages: NDArray[np.float32]
    val: NDArray[np.bool_]
    mesh: dict[str, Any]


def load_cache(cache: Path, size: int) -> CachedFaces:
    """Read a canonical-mesh cache and resize its textures to `size`.

    Raises:
        DatasetError: the cache is missing or not a canonical-mesh cache, naming the fix.
    """
    files = [cache / "faces.npy", cache / "faces.npz", cache / "index.json"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DatasetError(
            f"{', '.join(missing)} not found. Fix: build the canonical cache first, e.g. "
            "`python -m training cache --config utkface-oriented-128`."
        )
    index = json.loads(files[2].read_text(encoding="utf-8"))
    mesh = index.get("mesh")
    if not isinstance(mesh, dict) or mesh.get("kind") != "mesh":
        raise DatasetError(f"{files[2]} is not a canonical-mesh cache (no mesh face space in it)")
    faces = np.load(files[0], mmap_mode="r")
    meta = np.load(files[1])
    resized = [cv2.resize(np.asarray(f), (size, size), interpolation=cv2.INTER_AREA) for f in faces]
    textures: NDArray[np.uint8] = np.stack(resized).astype(np.uint8)
    return CachedFaces(textures, meta["age"].astype(np.float32), meta["val"].astype(bool), mesh)


def soft_labels(ages: NDArray[np.float32], sigma: float, bins: int) -> NDArray[np.float32]:
    """(N,) ages → (N, bins) Gaussian label distributions over whole years 0..bins−1, each summing to 1."""
    years = np.arange(bins, dtype=np.float32)
    w = np.exp(-0.5 * ((years[None, :] - np.clip(ages, 0, bins - 1)[:, None]) / sigma) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def augment(batch: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.float32]:
    """(B, S, S, 3) uint8 → (B, S, S, 3) float32 in about [-1, 1]: mirror, ±3 px shift, brightness and
    contrast, one in five grey."""
    x = batch.astype(np.float32) / 127.5 - 1.0
    out = np.empty_like(x)
    s = x.shape[1]
    pad = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
    for i in range(len(x)):
        dy, dx = rng.integers(0, 7, size=2)
        img = pad[i, dy : dy + s, dx : dx + s]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if rng.random() < 0.2:
            img = np.repeat(img @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=-1)
        out[i] = img * rng.uniform(0.8, 1.2) + rng.uniform(-0.15, 0.15)
    return out


def band_errors(pred: NDArray[np.float32], ages: NDArray[np.float32]) -> dict[str, dict[str, float]]:
    """Mean absolute error and mean signed error (bias) by labelled-age band, with counts."""
    out: dict[str, dict[str, float]] = {}
    for lo, hi in BANDS:
        m = (ages >= lo) & (ages <= hi)
        if m.any():
            key = f"{lo}-{hi}" if hi < 120 else f"{lo}+"
            err = pred[m] - ages[m]
            out[key] = {"n": int(m.sum()), "mae": float(np.abs(err).mean()), "bias": float(err.mean())}
    return out


def train_estimator(
    options: EstimatorTrainOptions, progress: Callable[[str], None] = print
) -> tuple[Path, dict[str, Any]]:
    """Train, judge on the validation split, and write the estimator folder.

    Returns:
        The folder written, and its validation metrics (MAE, bias and counts overall and by age band).
    """
    import keras

    from models.estimator import (
        AGE_BINS,
        EstimatorConfig,
        EstimatorManifest,
        build_age_estimator,
        expected_age,
        save_age_estimator,
    )

    keras.utils.set_random_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    data = load_cache(options.cache, options.size)
    train = np.flatnonzero(~data.val)
    val = np.flatnonzero(data.val)
    if len(train) < options.batch_size or len(val) == 0:
        raise DatasetError(f"{options.cache}: {len(train)} training and {len(val)} validation faces, too few")
    labels = soft_labels(data.ages, options.sigma, AGE_BINS)
    model = build_age_estimator(EstimatorConfig(options.size, options.width))
    schedule = keras.optimizers.schedules.CosineDecay(options.lr, options.steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )

    def predict(idx: NDArray[np.intp]) -> NDArray[np.float32]:
        x = data.textures[idx].astype(np.float32) / 127.5 - 1.0
        logits = model.predict(x, batch_size=256, verbose=0)
        # Mirrored as well: the estimate is the mean of both, as at run time.
        logits_m = model.predict(x[:, :, ::-1], batch_size=256, verbose=0)
        both = keras.ops.convert_to_numpy(expected_age(logits) + expected_age(logits_m))
        return (both / 2).astype(np.float32)

    t0 = time.perf_counter()
    losses: list[float] = []
    for step in range(1, options.steps + 1):
        idx = rng.choice(train, options.batch_size, replace=False)
        losses.append(float(model.train_on_batch(augment(data.textures[idx], rng), labels[idx])))
        if step % 100 == 0 or step == options.steps:
            rate = step / (time.perf_counter() - t0)
            line = f"step {step}/{options.steps}  loss {np.mean(losses[-100:]):.3f}  {rate:.1f} steps/s"
            if step % 1000 == 0 or step == options.steps:
                line += f"  val MAE {np.abs(predict(val) - data.ages[val]).mean():.2f} y"
            progress(line + f"  ETA {(options.steps - step) / rate / 60:.1f} min")
    pred = predict(val)
    err = pred - data.ages[val]
    adult = data.ages[val] >= 18
    metrics = {
        "split": "validation (hash of the file name), never trained on",
        "n": len(val),
        "mae": float(np.abs(err).mean()),
        "mae_18_plus": float(np.abs(err[adult]).mean()),
        "bias": float(err.mean()),
        "by_band": band_errors(pred, data.ages[val]),
    }
    mesh = {k: data.mesh[k] for k in ("kind", "version", "layout_sha")}
    manifest = EstimatorManifest(
        name=options.name,
        network=EstimatorConfig(options.size, options.width),
        template=mesh,
        data={
            "dataset": "utkface",
            "cache": str(options.cache),
            "faces": {"train": len(train), "val": len(val)},
            "ages": [float(data.ages.min()), float(data.ages.max())],
            "licence": "UTKFace is available for non-commercial research purposes only; so are weights trained on it.",
        },
        metrics=metrics,
        training={
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
            "seconds": round(time.perf_counter() - t0, 1),
            "command": "python -m training estimator",
        },
    )
    folder = save_age_estimator(options.out, manifest, model, estimator_card(manifest))
    faces = np.load(options.cache / "faces.npy", mmap_mode="r")
    picks = val[np.argsort(data.ages[val], kind="stable")][:: max(1, len(val) // 16)][:16]
    sheet = sample_sheet(np.asarray(faces[picks]), data.ages[picks], pred[np.searchsorted(val, picks)])
    cv2.imwrite(str(folder / "samples.png"), sheet[:, :, ::-1])
    return folder, metrics


def sample_sheet(
    textures: NDArray[np.uint8], labels: NDArray[np.float32], estimates: NDArray[np.float32]
) -> NDArray[np.uint8]:
    """Validation faces in rows of 8, each captioned with its label and the estimate: (rows·(S+18), 8·S, 3) RGB."""
    s = textures.shape[1]
    tiles = []
    for tex, label, est in zip(textures, labels, estimates, strict=True):
        tile = np.full((s + 18, s, 3), 255, np.uint8)
        tile[18:] = tex
        cv2.putText(tile, f"{label:.0f} -> {est:.0f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        tiles.append(tile)
    while len(tiles) % 8:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i : i + 8], axis=1) for i in range(0, len(tiles), 8)]
    return np.concatenate(rows, axis=0)


def estimator_card(manifest: Any) -> str:
    """The estimator's CARD.md: what it is for, its data and licence, and its validation error by band."""
    m = manifest.metrics
    rows = "\n".join(
        f"| {band} | {v['n']} | {v['mae']:.1f} | {v['bias']:+.1f} |" for band, v in m["by_band"].items()
    )
    t, d = manifest.training, manifest.data
    return f"""# {manifest.name}: the input-age estimator

Reads a face's canonical-mesh texture (any texture size of mesh layout `{manifest.template["layout_sha"]}`,
resized to {manifest.network.size} px) and gives its age in years. faceage-video uses it for the input age
of an age-conditioned model when `--target-age` is given without `--input-age`: the median of a face
track's first estimates, then held (`faceage_video/engine/input_age.py`).

- **Trained here** by `python -m training estimator`, on the UTKFace training split of the canonical cache
  ({d["faces"]["train"]} faces labelled {d["ages"][0]:.0f}–{d["ages"][1]:.0f} y): {t["steps"]} steps of
  {t["batch_size"]} faces, soft labels σ {t["sigma"]} y, {t["seconds"] / 60:.0f} minutes on 2 CPU cores.
  The benchmark's age judge plays no part in its training or its labels.
- **Validation split** ({m["n"]} faces, never trained on): mean absolute error **{m["mae"]:.2f} y**
  ({m["mae_18_plus"]:.2f} y from 18 up), bias {m["bias"]:+.2f} y.
- Faces under 15 are outside its data: it reads them as 15 or more.
- **Licence**: UTKFace is for non-commercial research only, and so is this estimator.

| labelled age | faces | MAE (y) | bias (y) |
|---|---|---|---|
{rows}

`samples.png`: 16 validation faces from the youngest to the oldest, captioned "label -> estimate".
"""
