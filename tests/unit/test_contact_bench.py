"""The contact sheet of every clip: tiles keep their aspect, rows of different widths pad to the widest."""

from __future__ import annotations

import numpy as np

from benchmarks.contact import sheet, tile


def test_a_tile_keeps_the_aspect_at_the_height_asked() -> None:
    wide = np.zeros((720, 1280, 3), np.uint8)
    assert tile(wide, 240).shape == (240, 427, 3)


def test_rows_pad_to_the_widest_with_black_and_keep_their_pixels() -> None:
    square = np.full((100, 100, 3), 200, np.uint8)
    wide = np.full((100, 300, 3), 50, np.uint8)
    out = sheet([[square, square], [wide, square]], 100)
    assert out.shape == (200, 400, 3)
    assert (out[:100, 200:] == 0).all()  # the short row is padded with black
    assert (out[:100, :200] == 200).all() and (out[100:, :300] == 50).all()
