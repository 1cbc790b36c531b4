"""Progress is a callback: the library reports frames done, total and rate; the CLI's `ProgressBar` draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import age_options, write_ffv1


def test_age_video_reports_progress_through_the_callback(tiny_bundle: Path, tmp_path: Path) -> None:
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.media.writer import WriterOptions
    from faceage_video.pipeline import age_video

    src = write_ffv1(tmp_path / "in.mkv", [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(5)])
    engine = AgingEngine(EngineOptions(model=str(tiny_bundle), batch_size=2, xla=False))
    calls: list[tuple[int, int | None, float]] = []
    with pytest.warns(UserWarning, match="no face"):
        rep = age_video(
            src,
            tmp_path / "o.mkv",
            age_options(engine=engine.options, writer=WriterOptions(codec="ffv1")),
            engine=engine,
            progress=lambda done, total, fps: calls.append((done, total, fps)),
        )
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == rep.frames == 5
    assert all(c[1] == 5 and c[2] >= 0 for c in calls)


def test_progress_bar_starts_a_new_line_when_the_count_goes_back() -> None:
    from faceage_video.cli import ProgressBar

    with ProgressBar(enabled=False) as bar:
        bar(4, 10, 2.0)
        bar(10, 10, 2.5)
        first = bar._task
        bar(3, 8, 1.0)  # the next shot of a local batch
        assert bar._task != first
        assert bar._prog is not None and [t.completed for t in bar._prog.tasks] == [10, 3]
    bar(1, 1, 1.0)  # after the run: ignored
