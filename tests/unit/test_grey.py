"""A grey face stays grey: the change keeps no colour on a black-and-white crop, all of it on a coloured one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceage_video.engine import grey
from faceage_video.engine.generator import AgingEngine, EngineOptions

S = 32


def _skin(n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.array([200, 150, 125], np.int16)
    return np.clip(base + rng.integers(-10, 11, (n, S, S, 1)), 0, 255).astype(np.uint8)


def _grey(n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.repeat(rng.integers(40, 220, (n, S, S, 1)), 3, axis=-1).astype(np.uint8)


def _rosy(crops: np.ndarray) -> np.ndarray:
    """A change that darkens by 6 levels and paints a pink patch: +9 red, −3 green."""
    out = crops.astype(np.float32) - 6.0
    out[:, 8:20, 4:14] += np.array([9.0, -3.0, 0.0], np.float32)
    return out


def test_a_grey_crop_gets_the_changes_luma_and_no_colour() -> None:
    crops = _grey()
    gen = _rosy(crops)
    kept = grey.keep_grey(crops, gen)
    change = kept - crops.astype(np.float32)
    # No colour: every channel changes by the same amount ...
    np.testing.assert_allclose(change[..., 0], change[..., 1], atol=1e-4)
    np.testing.assert_allclose(change[..., 0], change[..., 2], atol=1e-4)
    # ... which is the luma of the generator's change, so the darkening and the patch's lightness stay.
    np.testing.assert_allclose(change[..., 0], (gen - crops.astype(np.float32)) @ grey.LUMA, atol=1e-4)
    assert change[0, 0, 0, 0] == pytest.approx(-6.0, abs=1e-4)


def test_a_coloured_crop_keeps_the_whole_change() -> None:
    crops = _skin()
    gen = _rosy(crops)
    assert grey.chroma_share(crops).min() == 1.0
    assert grey.keep_grey(crops, gen) is gen


def test_a_desaturated_crop_keeps_a_share_of_the_colour() -> None:
    wide = _grey().astype(np.int16)
    wide[..., 0] += 8  # a median spread of 8 levels: halfway between grey and colour
    crops = np.clip(wide, 0, 255).astype(np.uint8)
    share = grey.chroma_share(crops)
    np.testing.assert_allclose(share, 0.5, atol=0.07)
    gen = _rosy(crops)
    change = grey.keep_grey(crops, gen) - crops.astype(np.float32)
    raw = gen - crops.astype(np.float32)
    raw_colour = raw - (raw @ grey.LUMA)[..., None]
    kept_colour = change - (change @ grey.LUMA)[..., None]
    np.testing.assert_allclose(kept_colour, share[:, None, None, None] * raw_colour, atol=1e-3)


def test_the_engine_keeps_a_grey_face_grey_and_changes_it(tiny_bundle: Path) -> None:
    """The tiny bundle's change has a picture-dependent colour; on a grey crop only its luma is left."""
    eng = AgingEngine(EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False))
    rng = np.random.default_rng(3)
    crops = np.repeat(rng.integers(60, 190, (2, 128, 128, 1)), 3, axis=-1).astype(np.uint8)
    change = eng.residual(crops)
    assert np.abs(change).mean() > 5.0  # the face did change
    np.testing.assert_allclose(change[..., 0], change[..., 1], atol=1e-3)
    np.testing.assert_allclose(change[..., 1], change[..., 2], atol=1e-3)
    coloured = np.clip(crops.astype(np.int16) + np.array([40, 0, -30]), 0, 255).astype(np.uint8)
    colour_change = eng.residual(coloured)
    spread = np.abs(colour_change[..., 0] - colour_change[..., 2]).mean()
    assert spread > 0.05  # the same network's change is not grey on a coloured face
