"""The training package: loaders, crop cache, train steps, bit-identical resume, export, config, teacher.

Networks are tiny (32 px, ngf 4, one residual block) so the file runs in well under a minute on 2 cores; the
cost is the tracing of each CycleGAN instance's step functions, so instances are shared through a fixture.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest

from tests.helpers import run_module
from training.config import TrainConfig, load_config
from training.datasets import (
    AgeRanges,
    DomainSplit,
    FaceRecord,
    hash_split,
    load_folders,
    load_utkface,
    split_domains,
)
from training.errors import ConfigError, DatasetError
from training.prototype import AgePrototypes, TeacherOptions, age_transform, age_transform_batch

if TYPE_CHECKING:
    import keras

    from training.train import CycleGAN, TrainData

S = 32


def tiny_config(tmp: Path, **changes: object) -> TrainConfig:
    """A config whose paths all live under `tmp`, never the repo's runs/ or cache/."""
    base: dict[str, object] = dict(
        name="tiny",
        data=str(tmp / "data"),
        cache=str(tmp / "cache"),
        run_dir=str(tmp / "run"),
        size=S,
        ngf=4,
        n_blocks=1,
        ndf=4,
        pool_size=2,
        steps=8,
        warm_steps=2,
        batch_size=2,
        warm_batch_size=2,
        decay_from=6,
        checkpoint_every=1,
        sample_every=1,
        seed=7,
    )
    base.update(changes)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _touch_jpeg(path: Path, value: int = 128, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", np.full((size, size, 3), value, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())


def _smooth_faces(rng: np.random.Generator, n: int, darken: float, texture: float) -> np.ndarray:
    """Synthetic uint8 (n, S, S, 3) 'faces': a shared smooth gradient, darkened and textured per domain."""
    yy, xx = np.mgrid[0:S, 0:S] / (S - 1.0)
    base = np.stack([0.7 + 0.2 * xx, 0.55 + 0.2 * yy, 0.45 + 0.1 * xx * yy], axis=-1)
    imgs = base[None] * (1.0 - darken) + texture * rng.standard_normal((n, S, S, 3))
    imgs += 0.02 * rng.standard_normal((n, 1, 1, 3))  # per-face colour cast
    return np.clip(imgs * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Loaders and splits
# ---------------------------------------------------------------------------------------------------------


def test_utkface_loader_keeps_valid_names(tmp_path: Path) -> None:
    good = ["25_0_1_20170116174525125.jpg.chip.jpg", "61_1_0_20170109142408075.jpg.chip.jpg"]
    bad = ["readme.txt", "abc_1_2_20170101.jpg.chip.jpg", "30_1_0_20170101.txt", "44_1.jpg"]
    for n in good + bad:
        (tmp_path / n).write_bytes(b"")
    recs = load_utkface(tmp_path)
    assert [(Path(r.path).name, r.age, r.gender, r.identity) for r in recs] == [
        (good[0], 25, 0, good[0]),
        (good[1], 61, 1, good[1]),
    ]


def test_utkface_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"UTKFace folder not found: .*nope.*--data"):
        load_utkface(tmp_path / "nope")
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no UTKFace files"):
        load_utkface(tmp_path)


def test_folders_loader(tmp_path: Path) -> None:
    for p in ("young/a.jpg", "young/sub/b.png", "young/notes.txt", "old/c.jpeg"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"")
    recs = load_folders(tmp_path)
    assert [(r.domain, Path(r.path).name, r.age) for r in recs] == [
        ("young", "a.jpg", -1),
        ("young", "b.png", -1),
        ("old", "c.jpeg", -1),
    ]
    split = split_domains(recs, val_fraction=0.01)
    assert len(split.young_train) + len(split.young_val) == 2 and len(split.old_train) == 1


def test_folders_loader_errors(tmp_path: Path) -> None:
    (tmp_path / "young").mkdir()
    (tmp_path / "young" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"old/"):
        load_folders(tmp_path)
    (tmp_path / "old").mkdir()
    with pytest.raises(DatasetError, match=r"no images in .*old"):
        load_folders(tmp_path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [("utkface", "UTKFace folder not found"), ("folders", "young/"), ("cacd", "CACD folder not found")],
)
def test_missing_dataset_path_names_it(tmp_path: Path, kind: str, message: str) -> None:
    from training.run import ensure_cache

    cfg = tiny_config(tmp_path, dataset=kind, data=str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match=message):
        ensure_cache(cfg)
    assert not (tmp_path / "cache").exists()


def test_age_ranges() -> None:
    r = AgeRanges((18, 29), (50, 200))
    assert [r.domain_of(a) for a in (17, 18, 29, 30, 49, 50, 90)] == [
        None,
        "young",
        "young",
        None,
        None,
        "old",
        "old",
    ]
    with pytest.raises(DatasetError, match="must end below"):
        AgeRanges((18, 50), (50, 200))
    with pytest.raises(DatasetError, match="low <= high"):
        AgeRanges((29, 18), (50, 200))
    with pytest.raises(DatasetError, match="low <= high"):
        AgeRanges((-1, 18), (50, 200))


def test_hash_split_is_deterministic() -> None:
    keys = [f"person-{i}" for i in range(2000)]
    first = [hash_split(k, 0.1) for k in keys]
    assert first == [hash_split(k, 0.1) for k in keys]
    # sha1-based, not Python's salted hash(): these answers hold on every machine and run.
    assert hash_split("1", 0.3) == "val" and hash_split("2", 0.3) == "train"
    share = first.count("val") / len(keys)
    assert 0.07 < share < 0.13
    # A larger fraction only moves keys from train to val.
    wider = [hash_split(k, 0.3) for k in keys]
    assert all(w == "val" for f, w in zip(first, wider, strict=True) if f == "val")


def test_split_domains_counts_and_identity_disjointness() -> None:
    recs = [
        FaceRecord(f"/d/{p}_{i}.jpg", age=age, identity=f"p{p}")
        for p in range(60)
        for i, age in enumerate((20 + p % 10, 55 + p % 30, 35))  # a young, an old and an out-of-range photo
    ]
    split = split_domains(recs, AgeRanges((18, 29), (50, 200)), val_fraction=0.25)
    c = split.counts()
    assert c["young_train"] + c["young_val"] == 60 and c["old_train"] + c["old_val"] == 60
    assert c["young_val"] == c["old_val"] > 0  # the same identities are held out of both domains
    train_ids = {r.identity for r in split.young_train + split.old_train}
    val_ids = {r.identity for r in split.young_val + split.old_val}
    assert train_ids and val_ids and not train_ids & val_ids
    assert all(r.age != 35 for part in (split.young_train, split.old_train) for r in part)

    more_young = [*recs, *(FaceRecord(f"/d/y{i}.jpg", 22, f"y{i}") for i in range(10))]
    unbalanced = split_domains(more_young, val_fraction=0.25)
    assert len(unbalanced.young_train) > len(unbalanced.old_train)
    balanced = split_domains(more_young, val_fraction=0.25, balance=True)
    assert len(balanced.young_train) == len(balanced.old_train) == len(unbalanced.old_train)
    # Which faces the cut keeps depends on their paths only, not on the order they arrive in.
    shuffled = split_domains(list(reversed(more_young)), val_fraction=0.25, balance=True)
    assert balanced.young_train == shuffled.young_train and balanced.old_train == shuffled.old_train


def test_split_domains_empty_domain() -> None:
    recs = [FaceRecord(f"/d/{i}.jpg", age=20, identity=str(i)) for i in range(5)]
    with pytest.raises(DatasetError, match="old training domain is empty"):
        split_domains(recs)


# ---------------------------------------------------------------------------------------------------------
# Crop cache on real UTKFace chips
# ---------------------------------------------------------------------------------------------------------


def _pick(utk: Path, lo: int, hi: int, n: int) -> list[FaceRecord]:
    recs = [r for r in load_utkface(utk) if lo <= r.age <= hi]
    return recs[:n]


def test_crop_cache_round_trip(utkface_dir: Path, tmp_path: Path) -> None:
    from faceage_video.errors import ModelError
    from faceage_video.face.align import AlignTemplate
    from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, resolve_landmarker_model
    from training.preprocess import PARTS, align_records, build_cache, load_index, load_part

    try:
        resolve_landmarker_model()
    except ModelError as exc:
        pytest.skip(f"no face_landmarker.task here: {exc}")
    young, old = _pick(utkface_dir, 20, 25, 3), _pick(utkface_dir, 60, 70, 3)
    blank, broken = tmp_path / "src" / "20_0_0_0.jpg", tmp_path / "src" / "65_0_0_1.jpg"
    _touch_jpeg(blank, size=200)  # a readable image with no face
    broken.write_bytes(b"not a jpeg")  # an unreadable image
    split = DomainSplit(
        young_train=tuple(young[:2]),
        young_val=(young[2], FaceRecord(str(blank), 20, blank.name)),
        old_train=tuple(old[:2]),
        old_val=(old[2], FaceRecord(str(broken), 65, broken.name)),
    )
    template, ranges = AlignTemplate(S), AgeRanges()
    index = build_cache(split, tmp_path / "cache", template, ranges, "utkface")

    parts = dict(
        zip(PARTS, (split.young_train, split.young_val, split.old_train, split.old_val), strict=True)
    )
    with FaceLandmarker(LandmarkerOptions(mode="image", max_faces=2)) as lm:
        for name, recs in parts.items():
            expected, missing = align_records(recs, lm, template)
            got = load_part(tmp_path / "cache", name)
            assert got.crops.dtype == np.uint8 and got.crops.shape == (len(expected.records), S, S, 3)
            np.testing.assert_array_equal(np.asarray(got.crops), expected.crops)
            assert got.records == expected.records
            assert index["counts"][name] == len(got.records)
            assert index["not_found"][name] == missing
            assert len(got.records) + len(missing) == len(recs)
    assert str(blank) in index["not_found"]["young_val"] and str(broken) in index["not_found"]["old_val"]
    assert index["counts"]["young_train"] >= 1 and index["counts"]["old_train"] >= 1
    assert load_index(tmp_path / "cache") == json.loads(json.dumps(index))
    assert index["template"]["size"] == S


def test_missing_cache_part_names_the_build_command(tmp_path: Path) -> None:
    from training.preprocess import load_index, load_part

    with pytest.raises(DatasetError, match=r"young_train\.npy is missing.*python -m training cache"):
        load_part(tmp_path, "young_train")
    with pytest.raises(DatasetError, match="python -m training cache"):
        load_index(tmp_path)
    with pytest.raises(DatasetError, match="unknown cache part"):
        load_part(tmp_path, "young_test")


# ---------------------------------------------------------------------------------------------------------
# Train steps, resume, export
# ---------------------------------------------------------------------------------------------------------


def _train_data(seed: int = 0) -> TrainData:
    from training.train import TrainData

    rng = np.random.default_rng(seed)
    x = _smooth_faces(rng, 6, 0.0, 0.02)
    y = _smooth_faces(rng, 6, 0.35, 0.06)
    protos = AgePrototypes.from_crops(x, y)
    return TrainData(x, age_transform_batch(x, protos, "older"), y, age_transform_batch(y, protos, "younger"))


def _weights(model: CycleGAN) -> list[np.ndarray]:
    """Every network weight, flat."""
    return [w for net in _networks(model) for w in net]


@dataclass
class StraightRun:
    """One run of `cfg.steps` steps without interruption, checkpointed on the way like `training.run` does."""

    cfg: TrainConfig
    model: CycleGAN
    data: TrainData
    checkpoints: dict[int, Path]
    losses: dict[int, dict[str, float]]
    snapshots: dict[int, list[list[np.ndarray]]]  # step -> weights of [G, F, D_X, D_Y]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StraightRun]:
    import keras

    from training.train import CycleGAN

    tmp = tmp_path_factory.mktemp("straight")
    cfg = tiny_config(tmp)
    keras.utils.set_random_seed(cfg.seed)
    model = CycleGAN(cfg)
    data = _train_data()
    ckdir = Path(cfg.run_dir) / "checkpoints"
    ckdir.mkdir(parents=True)
    (Path(cfg.run_dir) / "config.json").write_text(json.dumps(cfg.to_dict()))
    checkpoints: dict[int, Path] = {}
    losses: dict[int, dict[str, float]] = {}
    snapshots = {0: _networks(model)}

    def on_step(step: int, out: dict[str, float]) -> None:
        losses[step] = out
        if step in (1, cfg.warm_steps, cfg.warm_steps + 1):
            snapshots[step] = _networks(model)
        if step in (cfg.steps // 2, cfg.steps):
            checkpoints[step] = ckdir / f"ckpt-{step}.npz"
            model.save(checkpoints[step])

    model.train_steps(data, cfg.steps, on_step)
    yield StraightRun(cfg, model, data, checkpoints, losses, snapshots)


def _networks(model: CycleGAN) -> list[list[np.ndarray]]:
    """Weights of G, F, D_X and D_Y."""
    return [[np.array(w.numpy()) for w in net.weights] for net in (model.G, model.F, model.D_X, model.D_Y)]


def _changed(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return any(not np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_straight_run_visits_both_phases(straight_run: StraightRun) -> None:
    run = straight_run
    assert int(run.model.step.numpy()) == run.cfg.steps
    assert sorted(run.losses) == list(range(1, run.cfg.steps + 1))
    assert set(run.losses[1]) == {"teach_G", "teach_F"}
    assert {"adv_G", "cycle", "D_X", "D_Y"} <= set(run.losses[run.cfg.steps])
    assert all(np.isfinite(v) for out in run.losses.values() for v in out.values())


def test_warm_start_moves_generators_only(straight_run: StraightRun) -> None:
    """Warm steps train G and F on the teacher's pairs; the discriminators move in the adversarial phase."""
    snap, w = straight_run.snapshots, straight_run.cfg.warm_steps
    g, f, d_x, d_y = (_changed(a, b) for a, b in zip(snap[0], snap[1], strict=True))
    assert g and f and not d_x and not d_y
    assert not any(_changed(a, b) for a, b in zip(snap[0][2:], snap[w][2:], strict=True))
    assert all(_changed(a, b) for a, b in zip(snap[w], snap[w + 1], strict=True))


def test_resume_is_bit_identical(straight_run: StraightRun) -> None:
    """N/2 steps (warm start, then adversarial), save, a new CycleGAN restores, N/2 more: same weights."""
    from training.train import CycleGAN

    run = straight_run
    half = run.cfg.steps // 2
    assert run.cfg.warm_steps < half  # the first half crosses from the warm start into the adversarial phase
    resumed = CycleGAN(run.cfg)  # fresh random weights, all overwritten by the checkpoint
    resumed.restore(run.checkpoints[half])
    assert int(resumed.step.numpy()) == half
    resumed.train_steps(run.data, run.cfg.steps)
    a, b = _weights(run.model), _weights(resumed)
    assert len(a) == len(b) > 0
    for i, (wa, wb) in enumerate(zip(a, b, strict=True)):
        assert np.array_equal(wa, wb), f"weight {i} differs after resume"
    # The rest of the state (optimisers, image pools) matches too, so a second resume would also agree.
    for va, vb in zip(run.model.variables(), resumed.variables(), strict=True):
        assert np.array_equal(np.asarray(va.numpy()), np.asarray(vb.numpy()))


def test_restore_rejects_another_configuration(tmp_path: Path) -> None:
    from training.errors import TrainingError
    from training.train import CycleGAN

    CycleGAN(tiny_config(tmp_path)).save(tmp_path / "ckpt-0.npz")
    with pytest.raises(TrainingError, match="different configuration"):
        CycleGAN(tiny_config(tmp_path, n_blocks=2)).restore(tmp_path / "ckpt-0.npz")
    with pytest.raises(TrainingError, match="shape"):
        CycleGAN(tiny_config(tmp_path, ngf=8)).restore(tmp_path / "ckpt-0.npz")


def test_gan_steps_change_weights_and_lower_the_cycle_loss(tmp_path: Path) -> None:
    """One adversarial step on a tiny batch moves all four networks; 25 steps on that fixed batch lower the
    cycle loss and the total generator loss (mean of the first five steps against the last five, fixed seed).

    A residual generator starts as the identity, where the cycle loss is already 0, so both generators' output
    layers are first set to random values (a G and F that disagree), and the teacher term is off so the
    loss is plain CycleGAN: LSGAN + cycle + identity.
    """
    import keras
    import tensorflow as tf

    from training.train import CycleGAN, make_dataset

    cfg = tiny_config(
        tmp_path, warm_steps=0, steps=40, decay_from=40, lr=2e-3, lambda_teacher=0.0, lambda_teacher_end=0.0
    )
    keras.utils.set_random_seed(cfg.seed)
    model = CycleGAN(cfg)
    rng = np.random.default_rng(cfg.seed)
    for net in (model.G, model.F):
        kernel = net.get_layer("out_conv").kernel
        kernel.assign(0.05 * rng.standard_normal(tuple(kernel.shape)).astype(np.float32))
    batch = next(iter(make_dataset(_train_data(1), cfg, 0, 1, 2)))
    lam = tf.constant(0.0, tf.float32)

    def losses(out: dict[str, tf.Tensor]) -> tuple[float, float]:
        o = {k: float(v) for k, v in out.items()}
        total = cfg.lambda_adv * (o["adv_G"] + o["adv_F"]) + cfg.lambda_cycle * o["cycle"]
        return o["cycle"], total + cfg.lambda_identity * o["ident"]

    before = _networks(model)
    history = [losses(model.gan_step(*batch, lam))]
    assert all(_changed(a, b) for a, b in zip(before, _networks(model), strict=True))
    history += [losses(model.gan_step(*batch, lam)) for _ in range(24)]
    assert int(model.step.numpy()) == 25
    first, last = np.mean(history[:5], axis=0), np.mean(history[-5:], axis=0)
    assert last[0] < 0.7 * first[0], f"cycle loss did not fall: {first[0]:.3f} -> {last[0]:.3f}"
    assert last[1] < 0.8 * first[1], f"generator loss did not fall: {first[1]:.3f} -> {last[1]:.3f}"


def test_export_loads_in_the_runtime_with_the_same_outputs(straight_run: StraightRun, tmp_path: Path) -> None:
    import tensorflow as tf

    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.types import Direction
    from models.bundle import load_manifest
    from training.export import export_bundle

    run = straight_run
    folder = export_bundle(Path(run.cfg.run_dir), name="tiny", out_dir=tmp_path / "bundles")
    assert folder == tmp_path / "bundles" / "tiny"
    _, manifest = load_manifest(folder)
    assert manifest.generator.size == S and manifest.template["size"] == S
    assert (
        manifest.training["steps"] == run.cfg.steps
        and manifest.training["checkpoint"] == f"ckpt-{run.cfg.steps}.npz"
    )
    assert (folder / "CARD.md").is_file()

    crops = np.concatenate([run.data.x[:3], run.data.y[:2]])
    nets: tuple[tuple[Direction, keras.Model], ...] = (("older", run.model.G), ("younger", run.model.F))
    for direction, net in nets:
        engine = AgingEngine(EngineOptions(model=str(folder), direction=direction, xla=False, batch_size=4))
        got = engine.generate(crops)  # uint8 in, 0..255 out; 5 crops = one full and one padded batch
        ref = (np.asarray(net(tf.constant(crops, tf.float32) / 127.5 - 1.0, training=False)) + 1.0) * 127.5
        assert got.shape == crops.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-3)
        # The trained generator is not the identity, so the comparison above is not trivial.
        assert float(np.abs(ref - crops).max()) > 0.5


def test_init_from_bundle_starts_g_and_f_from_its_weights(straight_run: StraightRun, tmp_path: Path) -> None:
    """`init_from` copies a bundle's G and F into a fresh run (the discriminators stay new), and a bundle
    of another architecture is refused by name."""
    from training.errors import TrainingError
    from training.export import export_bundle
    from training.train import CycleGAN

    run = straight_run
    folder = export_bundle(Path(run.cfg.run_dir), name="tiny", out_dir=tmp_path / "bundles")
    fresh = CycleGAN(run.cfg)
    d_before = [np.array(w.numpy()) for w in fresh.D_X.weights]
    fresh.init_from_bundle(folder)
    for mine, theirs in ((fresh.G, run.model.G), (fresh.F, run.model.F)):
        for a, b in zip(mine.weights, theirs.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not _changed(d_before, [np.array(w.numpy()) for w in fresh.D_X.weights])
    assert int(fresh.step.numpy()) == 0
    with pytest.raises(TrainingError, match="is not this config's"):
        CycleGAN(tiny_config(tmp_path, n_blocks=2)).init_from_bundle(folder)
    # The same weights run at another texture size (fully convolutional): a larger run starts from them.
    larger = CycleGAN(tiny_config(tmp_path, size=2 * S))
    larger.init_from_bundle(folder)
    for a, b in zip(larger.G.weights, run.model.G.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(TrainingError, match="init_from"):
        CycleGAN(run.cfg).init_from_bundle(tmp_path / "missing")


def test_init_from_a_bundle_without_the_detail_head_starts_the_head_at_zero(
    straight_run: StraightRun, tmp_path: Path
) -> None:
    """`detail_head`: a run with the head starts from a head-less bundle, computing exactly what the bundle
    does; another architecture is still refused, and the message names the key."""
    import tensorflow as tf

    from training.errors import TrainingError
    from training.export import export_bundle
    from training.train import CycleGAN

    run = straight_run
    folder = export_bundle(Path(run.cfg.run_dir), name="tiny", out_dir=tmp_path / "bundles")
    headed = CycleGAN(run.cfg.replace(detail_head=True))
    headed.init_from_bundle(folder)
    assert len(headed.F.weights) == len(run.model.F.weights) + 4  # two convolutions, kernels and biases
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, S, S, 3)), tf.float32)
    for mine, theirs in ((headed.G, run.model.G), (headed.F, run.model.F)):
        np.testing.assert_allclose(
            mine(x, training=False).numpy(), theirs(x, training=False).numpy(), atol=1e-6
        )
    # A trained head (as in a checkpoint exported with --g-from) is switched off by the head-less bundle's G.
    conv = headed.G.get_layer("head_conv1")
    conv.kernel.assign(tf.ones_like(conv.kernel))
    assert np.abs(headed.G(x, training=False).numpy() - run.model.G(x, training=False).numpy()).max() > 1e-3
    headed.init_from_bundle(folder, ("G",))
    np.testing.assert_allclose(
        headed.G(x, training=False).numpy(), run.model.G(x, training=False).numpy(), atol=1e-6
    )
    with pytest.raises(TrainingError, match="detail_head"):
        CycleGAN(run.cfg.replace(n_blocks=2, detail_head=True)).init_from_bundle(folder)


def test_export_ships_a_generator_whose_head_is_zero_without_it(
    straight_run: StraightRun, tmp_path: Path
) -> None:
    """A head run started from a head-less bundle whose `G` never trained (`train_generators = "F"`): `G` ships
    head-less (a manifest override), computing the same, and the manifest names where it came from; `F`,
    whose head learned, keeps its head, also beside a head-less run's `G` (`--f-from`). An override that changes
    the generator's interface is refused."""
    import json

    import tensorflow as tf

    from models.bundle import BundleError, load_generator, load_manifest
    from training.errors import TrainingError
    from training.export import export_bundle
    from training.train import CycleGAN

    run = straight_run
    folder = export_bundle(Path(run.cfg.run_dir), name="tiny", out_dir=tmp_path / "bundles")
    cfg = run.cfg.replace(
        detail_head=True, run_dir=str(tmp_path / "headrun"), init_from=str(folder), train_generators="F"
    )
    headed = CycleGAN(cfg)
    headed.init_from_bundle(folder)
    conv = headed.F.get_layer("head_conv1")
    conv.kernel.assign(0.01 * tf.ones_like(conv.kernel))
    (tmp_path / "headrun" / "checkpoints").mkdir(parents=True)
    (tmp_path / "headrun" / "config.json").write_text(json.dumps(cfg.to_dict()))
    headed.save(tmp_path / "headrun" / "checkpoints" / "ckpt-8.npz")
    out = export_bundle(tmp_path / "headrun", name="headed", out_dir=tmp_path / "bundles")
    _, manifest = load_manifest(out)
    assert manifest.overrides == {"G": {"detail_head": False}}
    assert manifest.training["G_from"]["bundle"] == "tiny"  # only F learned: G is the start bundle's
    assert manifest.generator.detail_head and not manifest.config("G").detail_head
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, S, S, 3)), tf.float32)
    g, _ = load_generator(out, "G")
    f, _ = load_generator(out, "F")
    assert "head_conv1" not in [layer.name for layer in g.layers]
    np.testing.assert_allclose(g(x).numpy(), headed.G(x, training=False).numpy(), atol=1e-6)
    np.testing.assert_allclose(f(x).numpy(), headed.F(x, training=False).numpy(), atol=1e-6)
    # A head run may start from it again: its G is head-less, so the head starts at zero.
    again = CycleGAN(cfg)
    again.init_from_bundle(out)
    np.testing.assert_allclose(again.G(x, training=False).numpy(), g(x).numpy(), atol=1e-6)
    # A head-less run ships beside that F (`--f-from`): F keeps its head, as an override of the run's config.
    mixed = export_bundle(Path(run.cfg.run_dir), name="mixed", out_dir=tmp_path / "bundles", f_from=out)
    _, mixed_manifest = load_manifest(mixed)
    assert mixed_manifest.overrides == {"F": {"detail_head": True}}
    assert not mixed_manifest.generator.detail_head and mixed_manifest.config("F").detail_head
    mixed_f, _ = load_generator(mixed, "F")
    assert all(np.array_equal(a, b) for a, b in zip(mixed_f.get_weights(), f.get_weights(), strict=True))
    mixed_g, _ = load_generator(mixed, "G")
    np.testing.assert_allclose(mixed_g(x).numpy(), run.model.G(x, training=False).numpy(), atol=1e-6)
    # A head-less run that learns only G may start from it: its F, which has a head, does not learn and keeps
    # the seed's weights; export ships the bundle's F, head included, beside the run's G.
    g_cfg = run.cfg.replace(run_dir=str(tmp_path / "grun"), init_from=str(out), train_generators="G")
    g_only = CycleGAN(g_cfg)
    assert "F does not learn" in g_only.start_from_bundle(out)
    np.testing.assert_allclose(g_only.G(x, training=False).numpy(), g(x).numpy(), atol=1e-6)
    (tmp_path / "grun" / "checkpoints").mkdir(parents=True)
    (tmp_path / "grun" / "config.json").write_text(json.dumps(g_cfg.to_dict()))
    g_only.save(tmp_path / "grun" / "checkpoints" / "ckpt-8.npz")
    shipped = export_bundle(tmp_path / "grun", name="g-only", out_dir=tmp_path / "bundles")
    assert load_manifest(shipped)[1].training["F_from"]["bundle"] == "headed"
    np.testing.assert_allclose(load_generator(shipped, "F")[0](x).numpy(), f(x).numpy(), atol=1e-6)
    # A run that learns F must fit the bundle's F.
    with pytest.raises(TrainingError, match="init_from"):
        CycleGAN(g_cfg.replace(train_generators="F")).start_from_bundle(out)
    raw = json.loads((out / "manifest.json").read_text())
    raw["generator_overrides"] = {"G": {"size": 64}}
    (out / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="generator_overrides may set detail_head"):
        load_manifest(out)


def _bundle_weights(folder: Path, which: str) -> list[np.ndarray]:
    from models.bundle import load_generator

    return [np.array(w) for w in load_generator(folder, which)[0].get_weights()]


def _net_weights(net: Any) -> list[np.ndarray]:
    return [np.array(w.numpy()) for w in net.weights]


def _equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_export_g_from_ships_another_bundles_g_beside_this_runs_f(
    straight_run: StraightRun, tmp_path: Path
) -> None:
    """`--g-from`: the bundle's G is the named bundle's, bit for bit, its F the checkpoint's; the manifest
    and the card say where G came from."""
    from models.bundle import load_manifest
    from training.export import export_bundle

    run = straight_run
    half = run.cfg.steps // 2
    early = export_bundle(run.checkpoints[half], name="early", out_dir=tmp_path / "b")
    mixed = export_bundle(Path(run.cfg.run_dir), name="mixed", out_dir=tmp_path / "b", g_from=early)
    assert _equal(_bundle_weights(mixed, "G"), _bundle_weights(early, "G"))
    assert _equal(_bundle_weights(mixed, "F"), _net_weights(run.model.F))
    # The early G is another network than the run's final one, so the check above is not trivial.
    assert _changed(_bundle_weights(early, "G"), _net_weights(run.model.G))
    record = load_manifest(mixed)[1].training
    assert record["G_from"]["bundle"] == "early" and record["G_from"]["training"]["steps"] == half
    assert record["steps"] == run.cfg.steps
    assert "it is the bundle `early`'s" in (mixed / "CARD.md").read_text()
    # A G taken from a bundle whose G was itself taken keeps the record of the run that trained it.
    again = export_bundle(Path(run.cfg.run_dir), name="again", out_dir=tmp_path / "b", g_from=mixed)
    chained = load_manifest(again)[1].training["G_from"]
    assert chained["bundle"] == "mixed" and chained["origin"] == "early"
    assert chained["training"]["steps"] == half


def test_export_f_from_ships_another_bundles_f_beside_this_runs_g(
    straight_run: StraightRun, tmp_path: Path
) -> None:
    """`--f-from`, the mirror of `--g-from`: a run that trained only G ships beside an F judged in another
    bundle, bit for bit; the record is that F's run, not the run that trained the bundle's G."""
    from models.bundle import load_manifest
    from training.export import export_bundle

    run = straight_run
    half = run.cfg.steps // 2
    early = export_bundle(run.checkpoints[half], name="early", out_dir=tmp_path / "b")
    # A bundle whose G is another's, as the shipped defaults are: its F is still its own run's.
    mixed = export_bundle(run.checkpoints[half], name="mixed", out_dir=tmp_path / "b", g_from=early)
    out = export_bundle(Path(run.cfg.run_dir), name="out", out_dir=tmp_path / "b", f_from=mixed)
    assert _equal(_bundle_weights(out, "F"), _bundle_weights(early, "F"))
    assert _equal(_bundle_weights(out, "G"), _net_weights(run.model.G))
    assert _changed(_bundle_weights(early, "F"), _net_weights(run.model.F))
    record = load_manifest(out)[1].training
    assert "G_from" not in record
    assert record["F_from"]["bundle"] == "mixed" and record["F_from"]["training"]["steps"] == half
    assert "G_from" not in record["F_from"]["training"]
    card = (out / "CARD.md").read_text()
    assert "`F` is not this run's: it is the bundle `mixed`'s" in card and "(`--f-from`)" in card


def test_mesh_card_says_which_generator_a_fine_tune_trained_and_the_teachers_fades(
    straight_run: StraightRun, tmp_path: Path
) -> None:
    """The card's Training line names the generator a one-sided run trained (the other stayed its start
    bundle's), and the teacher options that shape the pairs: the fine detail kept in place, the masked
    shading and its fade at the face oval."""
    from dataclasses import replace

    from models.bundle import load_manifest
    from training.export import _card, export_bundle

    folder = export_bundle(Path(straight_run.cfg.run_dir), name="card", out_dir=tmp_path / "b")
    manifest = load_manifest(folder)[1]
    mesh = replace(
        straight_run.cfg, space="mesh", landmarks=str(tmp_path / "lm.npz"), init_from="models/start"
    )
    both = _card(manifest, mesh, {})
    assert "G and F started from the bundle `models/start`" in both
    assert "faded to 0 towards the face oval" not in both and "not the skin's fine detail" not in both
    only_f = _card(
        manifest,
        replace(
            mesh,
            train_generators="F",
            teacher_shading_rim=0.06,
            teacher_shading_masked=True,
            teacher_warp_fine=False,
        ),
        {},
    )
    assert "only F learned, started from the bundle `models/start`" in only_f
    assert "G stayed that bundle's" in only_f and "G and F started" not in only_f
    assert "blurred over the skin only, faded to 0 towards the face oval over 0.06 of the texture" in only_f
    assert "not the skin's fine detail" in only_f


def test_export_without_checkpoints(tmp_path: Path) -> None:
    from training.errors import TrainingError
    from training.export import export_bundle

    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(TrainingError, match="no checkpoints"):
        export_bundle(tmp_path, name="x", out_dir=tmp_path / "b")


# ---------------------------------------------------------------------------------------------------------
# Config errors, in process and through the command line
# ---------------------------------------------------------------------------------------------------------


def _toml(tmp: Path, body: str, name: str = "cfg.toml") -> Path:
    p = tmp / name
    p.write_text(body, encoding="utf-8")
    return p


def test_load_config_reads_a_file_and_overrides(tmp_path: Path) -> None:
    p = _toml(tmp_path, 'name = "t"\nsize = 64\nyoung = [20, 30]\nlr = 1\n')
    cfg = load_config(p, steps=2000, data=None)
    assert (cfg.name, cfg.size, cfg.young, cfg.steps, cfg.lr) == ("t", 64, (20, 30), 2000, 1)
    assert load_config("utkface-128").name == "utkface-128"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("lamda_cycle = 5.0\n", "unknown keys.*lamda_cycle"),
        ("size = \n", "not valid TOML"),
        ("size = 30\n", "size must be a multiple of 4"),
        ("steps = 10\nwarm_steps = 20\n", "warm_steps must be in 0..steps"),
        ("val_fraction = 1.5\n", "val_fraction"),
        ('steps = "6000"\n', "steps must be an integer"),
        ("lr = -1.0\n", "lr must be > 0"),
        ("lambda_cycle = -1\n", "lambda_cycle must be >= 0"),
        ('dataset = "imagenet"\n', "dataset must be"),
        ("young = [30, 20]\n", "young must be"),
        ("young = [18, 60]\n", r"young \[18, 60\] must end below old"),
        ("old = 50\n", "old must be two integers"),
        ("ngf = 2\n", "ngf must be >= 4"),
        ("xla = 1\n", "xla must be true or false"),
        ("texture_single_exemplar = true\nlambda_texture = 5.0\n", "needs teacher_exemplar_mean"),
        ("texture_transplant = 1.5\nlambda_texture = 5.0\n", "texture_transplant must be -1"),
        ("texture_transplant = 1.0\n", "texture_transplant must be -1.*lambda_texture > 0"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_toml(tmp_path, body))


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*Named: .*utkface-128"):
        load_config("no-such-config")


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_module("training", *args, cwd=cwd, timeout=120)


def test_cli_bad_config_exits_with_a_message(tmp_path: Path) -> None:
    bad = _toml(tmp_path, "size = 30\nlamda = 1\n")
    proc = _cli(["train", "--config", str(bad)], tmp_path)
    assert proc.returncode == ConfigError.exit_code
    assert "error:" in proc.stderr and "lamda" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_missing_dataset_exits_with_a_message(tmp_path: Path) -> None:
    cfg = _toml(
        tmp_path,
        f'data = "{tmp_path / "nowhere"}"\ncache = "{tmp_path / "cache"}"\nrun_dir = "{tmp_path / "run"}"\n',
    )
    proc = _cli(["cache", "--config", str(cfg)], tmp_path)
    assert proc.returncode == DatasetError.exit_code
    assert "error:" in proc.stderr and "UTKFace folder not found" in proc.stderr and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ---------------------------------------------------------------------------------------------------------
# Prototype teacher
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prototypes() -> tuple[AgePrototypes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    young = _smooth_faces(rng, 12, 0.0, 0.01)
    old = _smooth_faces(rng, 12, 0.3, 0.05)
    return AgePrototypes.from_crops(young[:-1], old[:-1]), young[-1], old[-1]


def test_teacher_keeps_shape_and_range(prototypes: tuple[AgePrototypes, np.ndarray, np.ndarray]) -> None:
    protos, young, _ = prototypes
    out = age_transform(
        young.astype(np.float32) / 255.0, protos, "older", TeacherOptions(shape=1.5, texture=1.5)
    )
    assert out.shape == (S, S, 3) and out.dtype == np.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    batch = age_transform_batch(np.stack([young, young]), protos, "older")
    assert batch.shape == (2, S, S, 3) and batch.dtype == np.uint8
    with pytest.raises(ValueError, match="older"):
        age_transform(young.astype(np.float32) / 255.0, protos, "sideways")


def test_teacher_moves_towards_the_other_age_group(
    prototypes: tuple[AgePrototypes, np.ndarray, np.ndarray],
) -> None:
    protos, young, old = prototypes
    yf, of = young.astype(np.float32) / 255.0, old.astype(np.float32) / 255.0

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - b) ** 2)))

    aged = age_transform(yf, protos, "older")
    assert dist(aged, protos.old_mean) < 0.5 * dist(yf, protos.old_mean)
    # Texture transfer: the aged face carries the old group's fine-band amplitude, not the young one's.
    from training.prototype import envelopes

    assert envelopes(aged)[0].mean() > 1.5 * envelopes(yf)[0].mean()
    younger = age_transform(of, protos, "younger")
    assert dist(younger, protos.young_mean) < 0.5 * dist(of, protos.young_mean)


def test_prototypes_round_trip(
    prototypes: tuple[AgePrototypes, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    protos = prototypes[0]
    protos.save(tmp_path / "p.npz")
    back = AgePrototypes.load(tmp_path / "p.npz")
    for name in ("young_mean", "old_mean", "young_env", "old_env"):
        np.testing.assert_array_equal(getattr(back, name), getattr(protos, name))


def test_mixed_precision_trains_in_bfloat16_and_keeps_float32_weights(tmp_path: Path) -> None:
    from training.train import CycleGAN

    cfg = tiny_config(tmp_path, mixed_precision="on", steps=4)
    model = CycleGAN(cfg)
    assert model.mixed
    assert model.G.dtype_policy.compute_dtype == "bfloat16"
    before = [w.copy() for w in _weights(model)]
    losses = model.train_steps(_train_data(), cfg.steps)
    assert all(np.isfinite(v) for v in losses.values())
    after = _weights(model)
    assert all(w.dtype == np.float32 for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    with pytest.raises(ConfigError, match="mixed_precision"):
        tiny_config(tmp_path, mixed_precision="fp8")


def test_band_envelope_loss_sees_missing_detail_but_not_where_it_sits() -> None:
    """The texture term: zero for the same image, large when the detail is gone, small when the same kind of
    detail sits elsewhere (an exemplar's wrinkles need not land on the teacher's pixels)."""
    import tensorflow as tf

    from training.train import BandEnvelope

    rng = np.random.default_rng(0)
    base = np.full((1, 64, 64, 3), 0.1, np.float32)
    detail = rng.normal(0, 0.2, (1, 64, 64, 1)).astype(np.float32) * np.ones((1, 1, 1, 3), np.float32)
    other = rng.normal(0, 0.2, (1, 64, 64, 1)).astype(np.float32) * np.ones((1, 1, 1, 3), np.float32)
    env = BandEnvelope(64)
    a, b, c = (tf.constant(v) for v in (base + detail, base + other, base))
    assert float(env.loss(a, a)) == 0.0
    missing, moved = float(env.loss(a, c)), float(env.loss(a, b))
    assert missing > 0.05
    assert moved < 0.25 * missing
    # A plain L1 says the opposite: the moved detail is further than no detail at all.
    assert float(tf.reduce_mean(tf.abs(a - b))) > float(tf.reduce_mean(tf.abs(a - c)))
    assert env(a).shape == (1, 64, 64, 4)


def test_oriented_band_envelope_tells_lines_from_their_turn_and_keeps_moved_detail_close() -> None:
    """Horizontal lines and the same lines turned upright have the same band energy: the plain envelope
    cannot tell them apart, the oriented one can. Moved texture of the same kind stays close in both."""
    import tensorflow as tf

    from training.train import BandEnvelope

    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    flat = np.full((1, 64, 64, 3), 0.1, np.float32)
    rows = flat + 0.2 * np.sin(2 * np.pi * yy / 5.0)[None, ..., None]  # horizontal lines
    cols = flat + 0.2 * np.sin(2 * np.pi * xx / 5.0)[None, ..., None]  # the same lines, upright
    shifted = flat + 0.2 * np.sin(2 * np.pi * (yy + 2.0) / 5.0)[None, ..., None]
    plain, oriented = BandEnvelope(64), BandEnvelope(64, oriented=True)
    h, v, m = (tf.constant(x.astype(np.float32)) for x in (rows, cols, shifted))
    assert oriented(h).shape == (1, 64, 64, 16) and oriented.channels == 16 and plain.channels == 4
    missing = float(oriented.loss(h, tf.constant(flat)))
    assert float(plain.loss(h, v)) < 0.1 * float(plain.loss(h, tf.constant(flat)))
    assert float(oriented.loss(h, v)) > 0.5 * missing  # turned lines are as wrong as no lines at all
    assert float(oriented.loss(h, m)) < 0.25 * missing  # the same lines moved are not
    # The horizontal lines' energy is in the y derivative, none in the x derivative.
    env = oriented(h).numpy()[0, 16:48, 16:48]
    assert env[..., 1].mean() > 20 * env[..., 0].mean()


def test_lambda_texture_enters_both_phases(tmp_path: Path) -> None:
    import keras

    from training.train import CycleGAN

    cfg = tiny_config(tmp_path, steps=4, warm_steps=2, lambda_texture=5.0)
    keras.utils.set_random_seed(cfg.seed)
    model = CycleGAN(cfg)
    losses: dict[int, dict[str, float]] = {}
    model.train_steps(_train_data(), cfg.steps, lambda step, out: losses.__setitem__(step, out))
    assert "texture" in losses[1] and "texture" in losses[4]
    assert all(np.isfinite(out["texture"]) and out["texture"] > 0 for out in losses.values())


def test_envelope_targets_travel_with_their_pair_and_set_the_texture_loss(tmp_path: Path) -> None:
    """`TrainData.e_y/e_x` (`texture_single_exemplar`): the batch carries them under the same augmentation
    as the pair, and the texture term compares with them, not with the teacher's pair; without them the
    envelopes' targets are the pair's."""
    import keras

    from training.train import CycleGAN, make_dataset

    cfg = tiny_config(tmp_path, steps=1, warm_steps=1, lambda_texture=5.0)
    base = _train_data()
    grain = np.clip(base.t_x.astype(np.float32) + _fine_detail((*base.t_x.shape[:3], 1), 40.0), 0, 255)
    with_env = replace(base, e_y=base.t_y.copy(), e_x=grain.astype(np.uint8))
    plain_batch = next(iter(make_dataset(base, cfg, 0, 1, 2)))
    env_batch = next(iter(make_dataset(with_env, cfg, 0, 1, 2)))
    assert len(plain_batch) == len(env_batch) == 10
    for a, b in zip(plain_batch[:9], env_batch[:9], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)  # same faces, same jitter
    np.testing.assert_array_equal(plain_batch[8].numpy(), plain_batch[1].numpy())
    np.testing.assert_array_equal(plain_batch[9].numpy(), plain_batch[3].numpy())
    # The grainy target is the pair's t_x plus grain, moved by the same transform: off by the grain only.
    diff = np.abs(env_batch[9].numpy() - env_batch[3].numpy())
    assert 0.02 < float(diff.mean()) < 0.2

    def texture(data: TrainData) -> float:
        keras.utils.set_random_seed(cfg.seed)
        model = CycleGAN(cfg)
        return float(model.warm_step(*next(iter(make_dataset(data, cfg, 0, 1, 2))))["texture"])

    assert texture(with_env) > 1.5 * texture(base)


def _fine_detail(shape: tuple[int, ...], amp: float, seed: int = 1) -> np.ndarray:
    """Grey noise with its coarse part (Gaussian sigma 1) taken out: detail like pores and fine lines."""
    rng = np.random.default_rng(seed)
    out = np.empty(shape, np.float32)
    for i in range(shape[0]):
        n = rng.normal(0, amp, shape[1:3]).astype(np.float32)
        out[i] = (n - cv2.GaussianBlur(n, (0, 0), 1.0))[..., None]
    return out


def test_lowpass_teacher_frees_the_skins_fine_detail_only() -> None:
    """`teacher_lowpass`: on the skin, fine grey detail unlike the teacher's costs almost nothing, a shading
    difference or fine colour costs in full; off the skin, the fine detail costs as a plain L1 does."""
    import tensorflow as tf

    from training.train import LowpassTeacher, lowpass_teacher

    s = 64
    skin = np.zeros((s, s), np.float32)
    skin[:, : s // 2] = 1.0  # left half skin, right half "eyes"
    teach = LowpassTeacher(s, 1.5, skin)
    fine = _fine_detail((1, s, s, 3), 0.2)
    base = np.zeros((1, s, s, 3), np.float32)
    left, right = np.zeros_like(base), np.zeros_like(base)
    left[:, 4 : s - 4, 4 : s // 2 - 4] = 1.0
    right[:, 4 : s - 4, s // 2 + 4 : s - 4] = 1.0
    t = tf.constant(base)
    on_skin = float(teach(tf.constant(fine * left), t, None))
    off_skin = float(teach(tf.constant(fine * right), t, None))
    plain = float(tf.reduce_mean(tf.abs(fine * right)))
    assert off_skin > 0.9 * plain
    assert on_skin < 0.3 * off_skin
    # Fine colour on the skin costs in full: only the luminance of the detail is free.
    tint = fine * np.array([0.587, -0.299, 0.0], np.float32) / 0.587
    assert float(teach(tf.constant(tint * left), t, None)) > 0.9 * float(np.abs(tint * left).mean())
    # A smooth shading step on the skin costs what a plain L1 says.
    shade = 0.1 * left
    assert float(teach(tf.constant(shade), t, None)) > 0.8 * float(np.abs(shade).mean())
    # Off in a config by default.
    cfg = TrainConfig(space="mesh", landmarks="x.npz")
    assert lowpass_teacher(cfg) is None and lowpass_teacher(cfg.replace(teacher_lowpass=1.5)) is not None


def test_texture_oriented_reaches_the_trainer_and_its_loss(tmp_path: Path) -> None:
    """`texture_oriented = true` in a config gives the trainer the oriented envelope (four channels a band),
    and the texture term of a step changes with it; false keeps the plain one."""
    import keras

    from training.train import CycleGAN, texture_loss

    plain_cfg = tiny_config(tmp_path, steps=1, warm_steps=0, lambda_texture=1.0)
    oriented_cfg = tiny_config(tmp_path, steps=1, warm_steps=0, lambda_texture=1.0, texture_oriented=True)
    plain, oriented = texture_loss(plain_cfg), texture_loss(oriented_cfg)
    assert plain is not None and oriented is not None
    assert (plain.oriented, plain.channels) == (False, 4)
    assert (oriented.oriented, oriented.channels) == (True, 16)

    def texture_term(cfg: TrainConfig) -> float:
        keras.utils.set_random_seed(cfg.seed)
        model = CycleGAN(cfg)
        assert model.texture is not None and model.texture.oriented == cfg.texture_oriented
        return float(model.train_steps(_train_data(), cfg.steps)["texture"])

    a, b = texture_term(plain_cfg), texture_term(oriented_cfg)
    assert a > 0.0 and b > 0.0 and b != pytest.approx(a, rel=0.05)


def test_teacher_lowpass_enters_the_adversarial_phase(tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    from training.train import CycleGAN, LowpassTeacher

    class Marked(LowpassTeacher):
        """Costs a fixed 0.125 a call, so the step's teacher term shows which L1 it used."""

        def __call__(self, a: tf.Tensor, b: tf.Tensor, w: tf.Tensor | None) -> tf.Tensor:
            return 0.0 * super().__call__(a, b, w) + 0.125

    def teacher_term(lowpass: LowpassTeacher | None) -> float:
        """The teacher term of the first adversarial step (the same weights either way)."""
        cfg = tiny_config(tmp_path, steps=1, warm_steps=0)
        keras.utils.set_random_seed(cfg.seed)
        model = CycleGAN(cfg)
        model.lowpass = lowpass
        return model.train_steps(_train_data(), cfg.steps)["teach"]

    plain = teacher_term(None)
    assert plain > 0.3
    assert teacher_term(Marked(S, 1.5, np.ones((S, S), np.float32))) == pytest.approx(0.25)


def test_disc_age_negatives_score_the_other_domain_as_fake(tmp_path: Path) -> None:
    """`disc_age_negatives`: the other domain's real faces join the fakes as negatives, weighted; at 0 they
    play no part. And the config's value reaches the adversarial step."""
    import keras
    import tensorflow as tf

    from training.train import CycleGAN, discriminator_loss

    def disc(img: tf.Tensor) -> tf.Tensor:  # scores each image by its mean: real 1, fake 0.5, other 0.8
        return tf.reduce_mean(img, axis=[1, 2, 3], keepdims=True)

    class Disc:
        def __call__(self, img: tf.Tensor, training: bool = False) -> tf.Tensor:
            return disc(img)

    real, fake, other = (tf.fill((2, 4, 4, 3), v) for v in (1.0, 0.5, 0.8))
    d = Disc()
    assert float(discriminator_loss(d, real, fake, other, 0.0)) == pytest.approx(0.5 * 0.25)
    assert float(discriminator_loss(d, real, fake, other, 1.0)) == pytest.approx(0.5 * (0.25 + 0.64) / 2)
    assert float(discriminator_loss(d, real, fake, other, 3.0)) == pytest.approx(0.5 * (0.25 + 3 * 0.64) / 4)

    def first_step(w: float) -> dict[str, float]:
        # Warm steps first: a fresh residual generator returns its input, and its fakes are then the other
        # domain's faces, which makes the two negatives one.
        cfg = tiny_config(tmp_path, steps=3, warm_steps=2, disc_age_negatives=w)
        keras.utils.set_random_seed(cfg.seed)
        return CycleGAN(cfg).train_steps(_train_data(), cfg.steps)

    plain, negatives = first_step(0.0), first_step(1.0)
    assert plain["adv_G"] == pytest.approx(negatives["adv_G"])  # the generators' step comes first, unchanged
    assert plain["D_Y"] != pytest.approx(negatives["D_Y"], rel=1e-3)
    with pytest.raises(Exception, match="disc_age_negatives must be >= 0"):
        tiny_config(tmp_path, disc_age_negatives=-1.0)


def test_train_generators_f_learns_f_and_d_x_only_and_the_unweighed_cycle_is_not_run(tmp_path: Path) -> None:
    """`train_generators = "F"`: G and D_Y keep their start to the bit, F and D_X learn; with no cycle weight
    the cycle passes are not run (their loss is not reported)."""
    import keras

    from training.train import CycleGAN

    cfg = tiny_config(
        tmp_path, steps=4, warm_steps=2, lambda_cycle=0.0, lambda_identity=0.0, train_generators="F"
    )
    keras.utils.set_random_seed(cfg.seed)
    model = CycleGAN(cfg)
    before = _networks(model)
    out = model.train_steps(_train_data(), cfg.steps)
    after = _networks(model)
    g, f, d_x, d_y = (_changed(a, b) for a, b in zip(before, after, strict=True))
    assert (g, f, d_x, d_y) == (False, True, True, False)
    assert {"adv_F", "D_X", "teach"} <= set(out) and not {"adv_G", "D_Y", "cycle"} & set(out)
    with pytest.raises(Exception, match="train_generators must be both, G or F"):
        tiny_config(tmp_path, train_generators="D")


def test_ema_averages_the_learning_generator_resumes_and_exports(tmp_path: Path) -> None:
    """`ema_decay`: the average of F's weights follows the warmed-up recursion step by step (G, which does
    not learn, keeps none); a checkpoint holds it; export ships it, and `ema=False` the last step's weights."""
    import keras

    from training.export import export_bundle
    from training.train import CycleGAN

    decay = 0.5
    cfg = tiny_config(
        tmp_path,
        steps=4,
        warm_steps=1,
        lambda_cycle=0.0,
        lambda_identity=0.0,
        train_generators="F",
        ema_decay=decay,
    )
    keras.utils.set_random_seed(cfg.seed)
    model = CycleGAN(cfg)
    assert len(model.ema_pairs) == len(model.F.weights)
    want: list[np.ndarray] = []

    def on_step(step: int, _: dict[str, float]) -> None:
        now = [np.array(w.numpy()) for w in model.F.weights]
        n = step - 1  # updates before this one
        d = 0.0 if n == 0 else min(decay, (1 + n) / (10 + n))
        want[:] = now if n == 0 else [d * e + (1 - d) * w for e, w in zip(want, now, strict=True)]

    model.train_steps(_train_data(), cfg.steps, on_step)
    last = [np.array(w.numpy()) for w in model.F.weights]
    ema = [np.array(e.numpy()) for _, e in model.ema_pairs]
    for e, w in zip(ema, want, strict=True):
        np.testing.assert_allclose(e, w, rtol=1e-5, atol=1e-6)
    assert _changed(ema, last)

    ckdir = Path(cfg.run_dir) / "checkpoints"
    ckdir.mkdir(parents=True)
    (Path(cfg.run_dir) / "config.json").write_text(json.dumps(cfg.to_dict()))
    model.save(ckdir / "ckpt-4.npz")
    again = CycleGAN(cfg)
    again.restore(ckdir / "ckpt-4.npz")
    assert int(again.ema_n.numpy()) == cfg.steps
    assert _equal([np.array(e.numpy()) for _, e in again.ema_pairs], ema)

    averaged = export_bundle(ckdir / "ckpt-4.npz", "avg", out_dir=tmp_path / "b", force=True)
    raw = export_bundle(ckdir / "ckpt-4.npz", "raw", out_dir=tmp_path / "b", force=True, ema=False)
    assert _equal(_bundle_weights(averaged, "F"), ema)
    assert _equal(_bundle_weights(raw, "F"), last)
    manifest = json.loads((averaged / "manifest.json").read_text())
    assert manifest["training"]["weights"] == f"moving average, decay {decay}"
    with pytest.raises(Exception, match="ema_decay must be in"):
        tiny_config(tmp_path, ema_decay=1.0)
