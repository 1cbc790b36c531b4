"""FiLM age conditioning: the generators read the input and target ages after every normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceage_video.engine.generator import AgingEngine, EngineOptions, trained_condition
from models.networks import GeneratorConfig, build_generator


def _ages_input(ages: tuple[float, float], n: int = 2, size: int = 32) -> np.ndarray:
    """(n, size, size, 5): a fixed picture, then the two constant age maps in years / 100."""
    rng = np.random.default_rng(3)
    img = rng.uniform(-0.5, 0.5, (n, size, size, 3)).astype(np.float32)
    maps = np.broadcast_to(np.array(ages, np.float32) / 100.0, (n, size, size, 2))
    return np.concatenate([img, maps], axis=-1)


def _randomise_film(model) -> None:  # type: ignore[no-untyped-def]
    """Give every FiLM projection and the output convolution non-zero weights, as training would."""
    rng = np.random.default_rng(11)
    for layer in model.layers:
        if layer.name.endswith("_film") or layer.name == "out_conv":
            layer.set_weights(
                [rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in layer.get_weights()]
            )


def test_film_needs_the_age_channels() -> None:
    with pytest.raises(ValueError, match="film"):
        GeneratorConfig(cond=0, film=True)
    with pytest.raises(ValueError, match="film"):
        GeneratorConfig(cond=2, film=1)  # type: ignore[arg-type]


def test_a_new_film_generator_is_the_identity() -> None:
    """The FiLM projections and the output convolution start at zero: an untrained generator changes nothing."""
    g = build_generator(GeneratorConfig(size=32, ngf=8, n_blocks=1, cond=2, film=True))
    x = _ages_input((25.0, 70.0))
    assert np.array_equal(np.asarray(g(x)), x[..., :3])


def test_without_film_constant_age_maps_do_not_reach_the_output() -> None:
    """The reason for FiLM: instance normalisation removes a constant map's mean, so the ages are lost."""
    g = build_generator(GeneratorConfig(size=32, ngf=8, n_blocks=1, cond=2))
    _randomise_film(g)
    a = np.asarray(g(_ages_input((25.0, 50.0))))
    b = np.asarray(g(_ages_input((25.0, 80.0))))
    assert np.abs(a - b).max() < 1e-4


def test_with_film_the_target_age_changes_the_output() -> None:
    g = build_generator(GeneratorConfig(size=32, ngf=8, n_blocks=1, cond=2, film=True))
    _randomise_film(g)
    a = np.asarray(g(_ages_input((25.0, 50.0))))
    b = np.asarray(g(_ages_input((25.0, 80.0))))
    assert np.abs(a - b).mean() > 1e-3


def test_earlier_bundles_weights_still_load() -> None:
    """FiLM keeps the normalisation layers' names, so the weight files of bundles without it still load."""
    folder = Path(__file__).resolve().parents[2] / "models" / "utkface-mesh-128"
    if not (folder / "G.weights.h5").exists():
        pytest.skip(f"{folder} is not in this checkout")
    g = build_generator(GeneratorConfig(size=128, ngf=16, n_blocks=6, cond=2), name="G")
    g.load_weights(folder / "G.weights.h5")
    assert np.abs(g.get_layer("out_conv").get_weights()[0]).max() > 0


def _film_bundle(tmp_path: Path) -> Path:
    """An untrained "maps" FiLM bundle at 128 px with non-zero FiLM weights."""
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions
    from models.bundle import Manifest, save_bundle

    cfg = GeneratorConfig(size=128, ngf=8, n_blocks=1, cond=2, film=True)
    gens = {}
    for key in ("G", "F"):
        model = build_generator(cfg, name=key)
        _randomise_film(model)
        gens[key] = model
    manifest = Manifest(
        name="film",
        generator=cfg,
        template=CanonicalMesh(MeshOptions(size=128)).to_dict(),
        data={},
        training={"target_age": "maps"},
    )
    return save_bundle(tmp_path / "film", manifest, gens, "# film\n\nUntrained test bundle; not a model.\n")


def test_a_maps_mode_film_bundle_passes_each_target_age_to_the_network(tmp_path: Path) -> None:
    """A FiLM bundle (`target_age` "maps") gets the ages themselves: no gap scaling by the engine, and a
    different target gives a different change."""
    folder = _film_bundle(tmp_path)
    crops = np.random.default_rng(5).integers(60, 200, (2, 128, 128, 3), dtype=np.uint8)

    def change(target: float) -> np.ndarray:
        eng = AgingEngine(EngineOptions(model=str(folder), target_age=target, input_age=25.0, xla=False))
        assert eng.target_mode == "maps"
        return eng.residual(crops)

    at_50, at_80 = change(50.0), change(80.0)
    assert np.abs(at_80 - at_50).mean() > 0.05
    # In "maps" mode the engine does not rescale: the change at one target is the network's own output.
    eng = AgingEngine(EngineOptions(model=str(folder), target_age=50.0, input_age=25.0, xla=False))
    direct = eng.generate(crops, ages=np.array([[25.0, 50.0]] * 2, np.float32)) - crops.astype(np.float32)
    assert np.allclose(direct, at_50, atol=0.05)


def test_targets_nearer_than_any_learned_run_at_the_nearest_learned_one_scaled_down() -> None:
    ages = np.array(
        [
            [25.0, 60.0],  # learned: as asked
            [25.0, 25.0],  # no gap: nothing kept
            [25.0, 30.0],  # G learned targets from 40: run there, a third of its change
            [25.0, 95.0],  # beyond the learned 80: run at 80, nothing scaled up
            [60.0, 50.0],  # G asked to de-age: nothing kept
        ],
        np.float32,
    )
    runs, keep = trained_condition(ages, "G")
    assert runs.tolist() == [[25, 60], [25, 40], [25, 40], [25, 80], [60, 75]]
    assert np.allclose(keep, [1.0, 0.0, 5.0 / 15.0, 1.0, 0.0])
    ages = np.array([[62.0, 55.0], [62.0, 10.0], [30.0, 25.0], [18.0, 10.0], [30.0, 40.0]], np.float32)
    runs, keep = trained_condition(ages, "F")
    # F learned targets up to 15 years before the face, at most 45, from 20.
    assert runs[:, 1].tolist() == [45, 20, 21, 20, 21]
    assert np.allclose(keep, [7.0 / 17.0, 1.0, 5.0 / 9.0, 0.0, 0.0])


def test_a_maps_bundle_changes_nothing_at_no_gap_and_scales_a_small_gap(tmp_path: Path) -> None:
    """An untrained small gap is not run as asked: no gap changes nothing, and 25 → 30 is a third of the
    change 25 → 40 (the nearest learned target)."""
    folder = _film_bundle(tmp_path)
    crops = np.random.default_rng(6).integers(60, 200, (3, 128, 128, 3), dtype=np.uint8)
    eng = AgingEngine(EngineOptions(model=str(folder), xla=False))

    def change(target: float) -> np.ndarray:
        ages = np.array([[25.0, target]] * len(crops), np.float32)
        return eng.generate(crops, ages) - crops.astype(np.float32)

    assert np.array_equal(change(25.0), np.zeros(crops.shape, np.float32))
    at_40 = change(40.0)
    assert np.abs(at_40).mean() > 0.05
    assert np.allclose(change(30.0), at_40 / 3.0, atol=1e-3)
