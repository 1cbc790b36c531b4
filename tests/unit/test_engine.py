"""AgingEngine on the tiny untrained bundle: one trace for any number of batches, strength, direction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.errors import OptionsError
from tests.helpers import TINY_F_BIAS, TINY_G_BIAS

S = 128
BATCH = 4


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """(10, S, S, 3) uint8 mid-grey faces with texture, away from the clip limits."""
    rng = np.random.default_rng(7)
    return rng.integers(60, 190, size=(10, S, S, 3), dtype=np.uint8)


_ENGINES: dict[tuple[str, float, bool], AgingEngine] = {}


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path):  # type: ignore[no-untyped-def]
    """engine(direction, strength, xla): one engine per setting, shared across the module."""

    def get(direction: str = "older", strength: float = 1.0, xla: bool = False) -> AgingEngine:
        key = (direction, strength, xla)
        if key not in _ENGINES:
            _ENGINES[key] = AgingEngine(
                EngineOptions(
                    model=str(tiny_bundle),
                    direction=direction,  # type: ignore[arg-type]
                    strength=strength,
                    batch_size=BATCH,
                    xla=xla,
                )
            )
        return _ENGINES[key]

    yield get
    _ENGINES.clear()


@pytest.mark.parametrize("xla", [True, False], ids=["xla", "no-xla"])
def test_traces_once_across_batches_and_a_padded_partial_batch(engine, crops: np.ndarray, xla: bool) -> None:  # type: ignore[no-untyped-def]
    eng = engine(xla=xla)
    assert eng.options.xla is xla
    out10 = eng.generate(crops)  # 4 + 4 + a partial 2 padded to 4
    out3 = eng.generate(crops[:3])  # one partial batch
    out1 = eng.generate(crops[5:6])
    eng.residual(crops[:7])
    assert eng.trace_count == 1
    # Padding must not leak into the results: the same crop gives the same output in any batch position.
    np.testing.assert_allclose(out3, out10[:3], atol=1e-3)
    np.testing.assert_allclose(out1[0], out10[5], atol=1e-3)


def test_xla_and_plain_paths_agree(engine, crops: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(
        engine(xla=True).generate(crops[:4]), engine(xla=False).generate(crops[:4]), atol=0.05
    )


def test_output_shape_dtype_and_range(engine, crops: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    eng = engine()
    for n in (1, 4, 5, 10):
        out = eng.generate(crops[:n])
        assert out.shape == (n, S, S, 3) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
        res = eng.residual(crops[:n])
        assert res.shape == (n, S, S, 3) and res.dtype == np.float32
    assert eng.size == S and eng.template.size == S
    assert eng.manifest.name == "tiny-untrained"


def test_generator_changes_the_face_by_its_bias(engine, crops: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """The untrained bundle's change is its output bias (×127.5 levels) plus a small picture-dependent one."""
    res = engine().residual(crops)
    assert res.mean() == pytest.approx(TINY_G_BIAS * 127.5, abs=3.0)
    assert res.std() > 0.5  # not a constant: depends on the picture


def test_strength_zero_returns_the_input(engine, crops: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    eng = engine(strength=0.0)
    np.testing.assert_array_equal(eng(crops), crops.astype(np.float32))
    np.testing.assert_array_equal(eng.residual(crops), np.zeros(crops.shape, np.float32))


def test_strength_half_is_halfway(engine, crops: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    full = engine()(crops)
    half = engine(strength=0.5)(crops)
    base = crops.astype(np.float32)
    np.testing.assert_allclose(half, base + 0.5 * (full - base), atol=1e-2)
    np.testing.assert_allclose(
        engine(strength=0.5).residual(crops), 0.5 * engine().residual(crops), atol=1e-2
    )


def test_direction_picks_g_or_f(engine, crops: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    older, younger = engine("older")(crops), engine("younger")(crops)
    base = crops.astype(np.float32)
    assert np.abs(older - younger).mean() > 40.0
    assert (older - base).mean() == pytest.approx(TINY_G_BIAS * 127.5, abs=3.0)
    assert (younger - base).mean() == pytest.approx(TINY_F_BIAS * 127.5, abs=3.0)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 64, 64, 3), np.uint8),  # wrong size
        np.zeros((S, S, 3), np.uint8),  # no batch axis
        np.zeros((2, S, S, 4), np.uint8),  # RGBA
        np.zeros((2, S, S, 3), np.float32),  # not uint8
        np.zeros((2, S, S), np.uint8),  # grey
    ],
    ids=["size", "no-batch", "rgba", "float", "grey"],
)
def test_bad_crops_raise_options_error(engine, bad: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    eng = engine()
    for call in (eng.generate, eng, eng.residual):
        with pytest.raises(OptionsError, match="crops must be uint8"):
            call(bad)


def test_empty_batch_gives_empty_output(engine) -> None:  # type: ignore[no-untyped-def]
    out = engine().generate(np.zeros((0, S, S, 3), np.uint8))
    assert out.shape == (0, S, S, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strength": 1.5}, "strength"),
        ({"strength": -0.1}, "strength"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1000}, "batch_size"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_engine_options_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(OptionsError, match=match):
        EngineOptions(**kwargs)
