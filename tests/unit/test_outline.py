"""The outline halo measure: a light stripe along the face oval reads positive, a uniform change reads 0."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.measures.outline import (
    BAND,
    SHELL,
    OutlineChange,
    outline_change,
    outline_regions,
    summarize_outline,
)
from faceage_video.face.landmarks import FACE_OVAL


def _face(size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A flat grey image and 478 landmarks: the oval a circle of radius 70 around the centre, the irises 60 px
    apart."""
    lm = np.zeros((478, 2), np.float64)
    c = size / 2
    t = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    lm[list(FACE_OVAL)] = np.stack([c + 70 * np.cos(t), c + 70 * np.sin(t)], 1)
    lm[:] = np.where(np.isin(np.arange(478), FACE_OVAL)[:, None], lm, c)
    lm[468], lm[473] = (c - 30, c - 20), (c + 30, c - 20)
    return np.full((size, size, 3), 120, np.uint8), lm


def test_a_light_rim_reads_positive_and_a_uniform_change_zero() -> None:
    img, lm = _face()
    band, ring = outline_regions(img.shape, lm)
    assert band.any() and ring.any() and not (band & ring).any()
    # The band is BAND inter-ocular distances deep: no band pixel is deeper than 0.2 x 60 = 12 px (+1).
    yy, xx = np.nonzero(band)
    r = np.hypot(xx - 100, yy - 100)
    assert r.min() >= 70 - BAND * 60 - 1.5 and r.max() <= 71
    uniform = img + np.uint8(10)
    flat = outline_change(img, uniform, lm)
    assert flat is not None and abs(flat.halo) < 1e-3 and abs(flat.ring - 10) < 1e-3
    rim = img.copy()
    rim[band] += 20
    lit = outline_change(img, rim, lm)
    assert lit is not None and lit.halo == pytest.approx(20.0, abs=0.01)
    dark = img.copy()
    dark[band] -= 8
    assert outline_change(img, dark, lm).halo == pytest.approx(-8.0, abs=0.01)  # type: ignore[union-attr]
    # A change that grows evenly towards the edge is no stripe: the band lifts as much as the ring beside it.
    ramp = img.astype(np.float32)
    ramp[band | ring] += 6.0
    assert outline_change(img, ramp.astype(np.uint8), lm).halo == pytest.approx(0.0, abs=0.01)  # type: ignore[union-attr]
    # Outside the oval nothing counts: a light background changes nothing.
    outside = img.copy()
    outside[:5] = 255
    assert outline_change(img, outside, lm).halo == 0.0  # type: ignore[union-attr]


def test_a_narrow_line_reads_its_height_where_the_halo_dilutes_it() -> None:
    """A line two shells deep, 30 levels, just inside the oval (the jaw line on `liveportrait_d0`): the halo
    averages it over the band's four shells, the line keeps its height; a change even over the band reads the
    same on both."""
    img, lm = _face()
    band, _ = outline_regions(img.shape, lm)
    yy, xx = np.mgrid[0:200, 0:200]
    depth = (70 - np.hypot(xx - 100, yy - 100)) / 60.0  # inter-ocular distances inside the circle
    narrow = img.copy()
    line = band & (depth > SHELL) & (depth <= 3 * SHELL)
    narrow[line] += 30
    c = outline_change(img, narrow, lm)
    assert c is not None
    assert c.line == pytest.approx(30.0, abs=1.0)
    assert c.halo < 18.0  # half the band: the halo sees about half of it
    even = img.copy()
    even[band] += 20
    e = outline_change(img, even, lm)
    assert e is not None and e.line == pytest.approx(e.halo, abs=0.01) == pytest.approx(20.0, abs=0.01)
    dark = img.copy()
    dark[line] -= 12
    assert outline_change(img, dark, lm).line == pytest.approx(-12.0, abs=1.0)  # type: ignore[union-attr]


def test_summary_and_errors() -> None:
    s = summarize_outline([OutlineChange(5.0, 1.0, 9.0), OutlineChange(0.0, 2.0), None])
    assert s == {
        "faces": 2,
        "band_mean": 2.5,
        "ring_mean": 1.5,
        "halo_mean": 1.0,
        "halo_abs_mean": 3.0,
        "halo_abs_p90": 3.8,
        "line_mean": 3.0,
        "line_abs_p90": 7.4,
    }
    assert summarize_outline([None])["halo_mean"] is None
    img, lm = _face()
    with pytest.raises(ValueError, match="same shape"):
        outline_change(img, img[:-1], lm)
    # A face whose oval lies off the image has nothing to measure.
    assert outline_change(img, img, lm + 1000.0) is None
