"""The input-age estimator: its network and folder format (`models.estimator`), its training
(`training.estimator`), and the per-track ages the engine is asked for (`faceage_video.engine.input_age`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from faceage_video.engine.input_age import InputAgeOptions, TrackAges, beyond
from faceage_video.errors import ModelError, OptionsError
from models.bundle import BundleError
from models.estimator import (
    AGE_BINS,
    MANIFEST,
    EstimatorConfig,
    EstimatorManifest,
    build_age_estimator,
    expected_age,
    load_age_estimator,
    resolve_estimator,
    save_age_estimator,
)
from tests.helpers import _mesh_template
from training.errors import DatasetError
from training.estimator import EstimatorTrainOptions, band_errors, load_cache, soft_labels, train_estimator


def _manifest(cfg: EstimatorConfig, layout_sha: str = "ec4f47c0a0cc5bd1") -> EstimatorManifest:
    return EstimatorManifest(
        name="test-age", network=cfg, template={"kind": "mesh", "version": "x", "layout_sha": layout_sha}
    )


@pytest.mark.parametrize("kw", [{"size": 40}, {"size": 16}, {"width": 2}, {"width": 8.0}, {"size": True}])
def test_estimator_config_refuses_bad_shapes(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EstimatorConfig(**kw)  # type: ignore[arg-type]


def test_network_gives_101_bins_and_expected_age_is_their_mean() -> None:
    model = build_age_estimator(EstimatorConfig(size=32, width=4))
    out = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32), training=False))
    assert out.shape == (2, AGE_BINS)
    logits = np.full((3, AGE_BINS), -50.0, np.float32)
    logits[0, 40] = logits[1, 70] = 50.0
    logits[2, [20, 30]] = 50.0  # two equal peaks: the mean between them
    np.testing.assert_allclose(ops.convert_to_numpy(expected_age(logits)), [40.0, 70.0, 25.0], atol=1e-3)


def test_folder_round_trip_and_damage_names_the_file(tmp_path: Path) -> None:
    import h5py
    import keras

    cfg = EstimatorConfig(size=32, width=4)
    model = build_age_estimator(cfg)
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    model.train_on_batch(np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, AGE_BINS), np.float32))
    folder = save_age_estimator(tmp_path / "est", _manifest(cfg), model, "# card\n")
    with h5py.File(folder / "E.weights.h5") as f:
        assert "optimizer" not in f  # the weights alone, not the trained model's optimiser state
    loaded, manifest = load_age_estimator(folder)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)), atol=1e-5
    )
    assert len(manifest.sha256) == 64 and resolve_estimator(folder) == folder

    weights = folder / manifest.file
    blob = bytearray(weights.read_bytes())
    blob[-100] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match=r"E\.weights\.h5.*corrupt.*Fix"):
        load_age_estimator(folder)
    weights.unlink()
    with pytest.raises(BundleError, match=r"missing.*Fix"):
        load_age_estimator(folder)
    with pytest.raises(BundleError, match="not found"):
        resolve_estimator(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "change",
    [
        {"format": "faceage-bundle/1"},
        {"file": "../G.weights.h5"},
        {"template": {"kind": "five_point"}},
        {"network": {"size": 7}},
    ],
)
def test_bad_manifest_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    d = json.loads(_manifest(EstimatorConfig()).to_json())
    d.update(change)
    with pytest.raises(BundleError, match=r"not a valid age-estimator manifest.*Fix"):
        EstimatorManifest.from_json(json.dumps(d), str(tmp_path / MANIFEST))


def test_track_age_is_the_median_of_its_first_estimates_then_held() -> None:
    calls: list[int] = []
    readings = iter([30.0, 50.0, 34.0, 90.0, 90.0, 90.0])

    def estimate(textures: np.ndarray) -> np.ndarray:
        calls.append(len(textures))
        return np.array([next(readings) for _ in textures], np.float32)

    ages = TrackAges(estimate, frames=3)
    crops = np.zeros((1, 8, 8, 3), np.uint8)
    got = [float(ages([7], crops)[0]) for _ in range(5)]
    assert got == [30.0, 40.0, 34.0, 34.0, 34.0]  # median of 30, 50, 34; the 90s never asked for
    assert calls == [1, 1, 1]
    assert ages.held() == {7: 34.0}
    ages.reset(7)
    assert float(ages([7], crops)[0]) == 90.0 and calls == [1, 1, 1, 1]


def test_estimates_are_spread_stride_frames_apart_and_freeze_holds_them() -> None:
    """stride 3: a track is estimated on its 1st, 4th and 7th frames, and between them keeps the median so
    far; `freeze` holds every track as it stands, however few its estimates."""
    calls: list[tuple[int, ...]] = []
    readings = iter([30.0, 50.0, 34.0, 90.0, 60.0, 70.0])

    def estimate(textures: np.ndarray) -> np.ndarray:
        calls.append(tuple(int(t[0, 0, 0]) for t in textures))
        return np.array([next(readings) for _ in textures], np.float32)

    ages = TrackAges(estimate, frames=3, stride=3)
    crops = [np.full((8, 8, 3), i, np.uint8) for i in range(10)]
    got = [float(ages([7], [crops[i]])[0]) for i in range(9)]
    assert calls == [(0,), (3,), (6,)]  # frames 0, 3 and 6 of the track
    assert got == [30.0, 30.0, 30.0, 40.0, 40.0, 40.0, 34.0, 34.0, 34.0]
    # A second track, frozen after one estimate: held at it, and never estimated again.
    assert float(ages([8], [crops[0]])[0]) == 90.0
    ages.freeze()
    assert [float(ages([8], [crops[i]])[0]) for i in range(1, 8)] == [90.0] * 7
    assert len(calls) == 4 and ages.held() == {7: 34.0, 8: 90.0}
    # A track first seen after the freeze is estimated as usual.
    assert float(ages([9], [crops[0]])[0]) == 60.0


def test_probe_holds_the_ages_of_a_clips_first_frames() -> None:
    """`probe_input_ages` reads at most `limit` frames with its own analyzer, estimates each track there and
    freezes them, so the run proper asks for one age from a track's first frame on."""
    from dataclasses import dataclass

    from faceage_video.stages import probe_input_ages

    @dataclass
    class Face:
        track_id: int
        crop: np.ndarray

    @dataclass
    class Job:
        faces: list[Face]

    class Analyzer:
        def __init__(self) -> None:
            self.frames = 0

        def analyze(self, frame: int) -> Job:
            self.frames += 1
            # track 1 everywhere, track 2 from the 4th frame; the "texture" carries the frame number
            faces = [Face(1, np.full((4, 4, 3), frame, np.uint8))]
            if frame >= 3:
                faces.append(Face(2, np.full((4, 4, 3), 100 + frame, np.uint8)))
            return Job(faces)

    ages = TrackAges(lambda t: t[:, 0, 0, 0].astype(np.float32), frames=3, stride=2)
    analyzer = Analyzer()
    assert probe_input_ages(iter(range(100)), analyzer, ages, 5) == 5  # type: ignore[arg-type]
    assert analyzer.frames == 5
    # track 1: frames 0, 2, 4 → median 2; track 2: its frames 3 (its 1st) → 103
    assert ages.held() == {1: 2.0, 2: 103.0}
    np.testing.assert_array_equal(ages([1, 2], [np.zeros((4, 4, 3), np.uint8)] * 2), [2.0, 103.0])


def test_only_unheld_tracks_are_estimated_in_a_frame() -> None:
    seen: list[int] = []

    def estimate(textures: np.ndarray) -> np.ndarray:
        seen.append(len(textures))
        return textures[:, 0, 0, 0].astype(np.float32)

    ages = TrackAges(estimate, frames=1)
    a = np.full((1, 4, 4, 3), 20, np.uint8)
    b = np.full((1, 4, 4, 3), 60, np.uint8)
    np.testing.assert_array_equal(ages([1], a), [20.0])
    np.testing.assert_array_equal(ages([1, 2], np.concatenate([a + 5, b])), [20.0, 60.0])
    assert seen == [1, 1]  # track 1 held after one estimate


def test_faces_past_the_target_are_left_alone() -> None:
    ages = np.array([[25, 60], [60, 60], [75, 60]], np.float32)
    np.testing.assert_array_equal(beyond("G", ages), [False, True, True])
    np.testing.assert_array_equal(beyond("F", np.array([[25, 30], [55, 30]], np.float32)), [True, False])
    np.testing.assert_array_equal(beyond("F", np.array([[40, 30], [30, 30]], np.float32)), [False, True])


def test_input_age_options_are_checked() -> None:
    with pytest.raises(OptionsError):
        InputAgeOptions(frames=0)
    with pytest.raises(OptionsError):
        InputAgeOptions(frames=True)
    with pytest.raises(OptionsError, match="stride"):
        InputAgeOptions(stride=0)
    assert InputAgeOptions().window == 111 and InputAgeOptions(frames=1, stride=5).window == 1


def test_estimator_of_another_layout_is_refused(tmp_path: Path) -> None:
    from faceage_video.engine.input_age import AgeEstimator
    from faceage_video.face.mesh import CanonicalMesh, MeshOptions

    cfg = EstimatorConfig(size=32, width=4)
    folder = save_age_estimator(
        tmp_path / "est", _manifest(cfg, "0000"), build_age_estimator(cfg), "# card\n"
    )
    with pytest.raises(ModelError, match=r"layout.*Fix"):
        AgeEstimator(InputAgeOptions(model=str(folder)), CanonicalMesh(MeshOptions(size=64)))


def _synthetic_cache(folder: Path, n: int = 96) -> Path:
    """A cache whose textures' brightness is the age: a network can learn it in a few steps."""
    rng = np.random.default_rng(1)
    ages = rng.integers(15, 90, n)
    faces = np.repeat(((ages - 15) * 3)[:, None, None, None], 3, axis=-1)
    faces = np.broadcast_to(faces, (n, 48, 48, 3)).astype(np.uint8)
    folder.mkdir(parents=True)
    np.save(folder / "faces.npy", faces)
    np.savez(folder / "faces.npz", age=ages, val=np.arange(n) % 4 == 0)
    (folder / "index.json").write_text(json.dumps({"mesh": _mesh_template(48)}))
    return folder


def test_training_writes_a_loadable_estimator_with_its_validation_error(tmp_path: Path) -> None:
    cache = _synthetic_cache(tmp_path / "cache")
    lines: list[str] = []
    opts = EstimatorTrainOptions(cache=cache, out=tmp_path / "est", size=32, width=4, steps=60, batch_size=16)
    folder, metrics = train_estimator(opts, progress=lines.append)
    _, manifest = load_age_estimator(folder)
    assert manifest.network == EstimatorConfig(32, 4)
    assert manifest.template["layout_sha"] == _mesh_template(48)["layout_sha"]
    assert metrics["n"] == 24 and sum(b["n"] for b in metrics["by_band"].values()) == 24
    assert manifest.metrics["mae"] == pytest.approx(metrics["mae"])
    assert any("val MAE" in line for line in lines) and "ETA" in lines[0]
    assert "non-commercial" in (folder / "CARD.md").read_text()
    import cv2

    sheet = cv2.imread(str(folder / "samples.png"))
    assert sheet is not None and sheet.shape == (2 * (48 + 18), 8 * 48, 3)  # 16 faces, 8 a row


def test_cache_missing_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="python -m training cache"):
        load_cache(tmp_path, 32)


def test_soft_labels_peak_at_the_age_and_sum_to_one() -> None:
    lab = soft_labels(np.array([20.0, 100.0, 130.0], np.float32), 3.0, AGE_BINS)
    np.testing.assert_allclose(lab.sum(axis=1), 1.0, atol=1e-5)
    assert list(lab.argmax(axis=1)) == [20, 100, 100]


def test_band_errors_are_signed_per_band() -> None:
    out = band_errors(np.array([25.0, 30.0, 80.0], np.float32), np.array([20.0, 20.0, 75.0], np.float32))
    assert out["18-29"] == {"n": 2, "mae": 7.5, "bias": 7.5}
    assert out["70+"]["bias"] == 5.0 and "30-39" not in out


class _Engine:
    """Stands in for `AgingEngine`: its change is +1 (G) or −1 (F) times the age gap it is asked for / 10."""

    def __init__(self, options: object) -> None:
        from faceage_video.engine.generator import EngineOptions

        assert isinstance(options, EngineOptions)
        self.options = options
        self.calls = 0

    def residual(self, crops: np.ndarray, ages: np.ndarray) -> np.ndarray:
        self.calls += 1
        sign = 1.0 if self.options.generator == "G" else -1.0
        return np.broadcast_to(
            (sign * np.abs(ages[:, 1] - ages[:, 0]) / 10)[:, None, None, None], crops.shape
        ).astype(np.float32)


def test_each_face_takes_the_generator_its_own_age_needs() -> None:
    from faceage_video.engine.generator import EngineOptions
    from faceage_video.engine.input_age import OwnAges

    loaded: list[str] = []

    def load(options: EngineOptions) -> _Engine:
        loaded.append(options.generator)
        return _Engine(options)

    first = _Engine(EngineOptions(target_age=45))  # 45 and up: G is the run's engine
    own = OwnAges(first, TrackAges(lambda t: np.zeros(len(t), np.float32)), load)  # type: ignore[arg-type]
    crops = np.zeros((3, 4, 4, 3), np.uint8)
    out = own.residual(crops, np.array([25.0, 45.0, 65.0], np.float32))
    np.testing.assert_allclose(out[:, 0, 0, 0], [2.0, 0.0, -2.0])  # aged, at the target, de-aged
    assert loaded == ["F"] and first.calls == 1
    own.residual(crops[:1], np.array([80.0], np.float32))
    assert loaded == ["F"]  # the second generator loads once
    with pytest.raises(OptionsError, match="target age"):
        OwnAges(_Engine(EngineOptions()), TrackAges(lambda t: t))  # type: ignore[arg-type]
