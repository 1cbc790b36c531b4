"""The throughput benchmark on a tiny input: well-formed JSON with every key and positive numbers.

It never asserts a speed; the numbers depend on the machine and its load. The end-to-end part needs the
real clips of ../shared/data and skips with the reason where they are absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import throughput as tp

STAGES = ("decode", "landmarks_track", "align", "generator", "smooth_paste", "encode")
RATIO_KEYS = {
    "e2e_over_generator",
    "e2e_over_naive",
    "e2e_over_limit",
    "e2e_over_serial",
    "best_over_generator",
    "best_over_naive",
    "naive_over_limit",
    "long_peak_rss_mb",
}


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_rate_and_ratio() -> None:
    r = tp.rate(50, 2.0)
    assert r == {"frames": 50, "seconds": 2.0, "fps": 25.0, "ms_per_frame": 40.0}
    assert tp.rate(8, 0.5, unit="crops")["per_s"] == 16.0
    assert tp.ratio(3.0, 2.0) == 1.5
    assert tp.ratio(1.0, 0.0) is None
    assert tp.ratio(None, 1.0) is None


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="start"):
        tp.ThroughputOptions(start_s=2.0, end_s=1.0)
    with pytest.raises(ValueError, match="batch"):
        tp.ThroughputOptions(batch_sizes=(0,))
    with pytest.raises(ValueError, match="resolutions"):
        tp.ThroughputOptions(resolutions=("8K",))
    q = tp.ThroughputOptions.quick(start_s=0.5)
    assert (q.start_s, q.end_s, q.batch_sizes, q.long_seconds) == (0.5, 1.5, (1, 8), 0.0)


def test_cli_bench_passes_arguments_through() -> None:
    from faceage_video.cli import main

    with pytest.raises(SystemExit) as exc:  # argparse prints the benchmark's help and exits 0
        main(["bench", "--help"])
    assert exc.value.code == 0


@pytest.mark.integration
@pytest.mark.slow
def test_quick_run_writes_well_formed_results(videos_dir: Path, tmp_path: Path) -> None:
    # A tiny untrained generator keeps compile time short; the code path is the real one.
    model = tp.make_untrained_bundle(tmp_path / "tiny", size=128, ngf=4, n_blocks=1)
    out = tmp_path / "res" / "throughput.json"
    code = tp.main(
        ["--quick", "--videos", str(videos_dir), "--model", str(model), "--end", "0.6", "--out", str(out)]
    )
    assert code == 0
    res = json.loads(out.read_text())

    assert res["schema"] == tp.SCHEMA
    assert res["date"] and "--quick" in res["command"]
    m = res["machine"]
    assert m["cpu_count"] >= 1 and m["cpu_model"]
    assert m["versions"]["tensorflow"] and m["versions"]["keras"]
    assert res["model"]["path"] == str(model) and res["model"]["untrained"] is False

    st = res["stages"]
    assert st["frames"] > 0 and st["faces"] > 0
    for k in STAGES:
        assert _positive(st[k]["fps"]) and _positive(st[k]["ms_per_frame"]), k
    assert _positive(st["serial_fps"])

    gen = res["generator"]
    assert {r["batch"] for r in gen} == {1, 8}
    for r in gen:
        assert _positive(r["per_s"]) and _positive(r["compile_s"]) and r["trace_count"] == 1

    for k in ("limit", "naive"):
        assert _positive(res["references"][k]["fps"]), k
    assert res["e2e"]["main"] and all(_positive(r["fps"]) for r in res["e2e"]["main"])
    assert [r["clip"] for r in res["e2e"]["clips"]] == [tp.MAIN_CLIP]
    assert res["e2e"]["resolutions"] == [] and res["e2e"]["faces"] == []

    ratios = {r["key"]: r for r in res["ratios"]}
    assert set(ratios) == RATIO_KEYS
    for k in RATIO_KEYS - {"long_peak_rss_mb"}:
        assert _positive(ratios[k]["value"]), k
    assert ratios["long_peak_rss_mb"]["value"] is None  # --quick skips the long clip
    assert _positive(res["memory"]["process_peak_rss_mb"])
    marks = res["memory"]["peak_rss_after_mb"]
    assert {"stages", "generator", "clips"} <= set(marks) and all(_positive(v) for v in marks.values())

    md = Path(res["files"]["markdown"])
    assert md.is_file() and "| ratio |" in md.read_text()
    assert [Path(p).name for p in res["files"]["plots"]] == ["throughput_batch.png"]
    assert Path(res["files"]["plots"][0]).stat().st_size > 0


@pytest.mark.integration
@pytest.mark.parametrize("mesh", [False, True], ids=["five-point", "canonical-mesh"])
def test_stage_timings_run_the_real_analyzer_halves(mesh: bool, short_clip: Path, tmp_path: Path) -> None:
    """The timed landmark and alignment stages are `FaceAnalyzer.track` and `.register`: their jobs equal
    what `FaceAnalyzer.analyze` gives the pipeline, for a five-point and a canonical-mesh bundle."""
    from faceage_video.engine.generator import AgingEngine, EngineOptions
    from faceage_video.face.blend import BlendOptions
    from faceage_video.face.mesh import CanonicalMesh
    from faceage_video.media.reader import ReaderOptions, VideoReader
    from tests.helpers import make_bundle

    bundle = make_bundle(tmp_path / "b", "tiny-bench", mesh=mesh)
    engine = AgingEngine(EngineOptions(model=str(bundle), xla=False))
    assert isinstance(engine.template, CanonicalMesh) == mesh
    with VideoReader(short_clip, ReaderOptions(end_s=0.3)) as r:
        frames = list(r)
    blend = BlendOptions()
    analyzer = tp.make_analyzer(engine, blend)
    try:
        tracked, lmk = tp.time_landmarks(frames, analyzer)
        jobs, aln = tp.time_align(frames, tracked, analyzer)
    finally:
        analyzer.close()
    assert lmk["frames"] == aln["frames"] == len(frames) == len(jobs)
    reference = tp.make_analyzer(engine, blend)
    try:
        want = [reference.analyze(fr) for fr in frames]
    finally:
        reference.close()
    assert sum(len(j.faces) for j in jobs) == sum(len(w.faces) for w in want) >= len(frames)
    for got, exp in zip(jobs, want, strict=True):
        for g, e in zip(got.faces, exp.faces, strict=True):
            assert (g.mesh is not None) == mesh
            assert g.crop.shape == e.crop.shape
            # Same stages on the same frames; the landmarker's own VIDEO-mode tracking may move a point a
            # little, so the crops agree closely rather than bit for bit.
            assert np.abs(g.crop.astype(np.int16) - e.crop.astype(np.int16)).mean() < 8.0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("mesh", "cond"), [(False, 0), (True, 2)], ids=["five-point", "canonical-mesh-conditioned"]
)
def test_naive_loop_runs_any_bundle(mesh: bool, cond: int, short_clip: Path, tmp_path: Path) -> None:
    """The naive loop feeds the network the engine's own input: a conditioned bundle (RGB + two age maps)
    in canonical mesh space runs as a five-point one does, and ages the faces it finds."""
    from faceage_video.face.blend import BlendOptions
    from faceage_video.media.writer import WriterOptions
    from tests.helpers import make_bundle

    bundle = make_bundle(tmp_path / "b", "tiny-naive", mesh=mesh, cond=cond)
    r = tp.run_naive(
        short_clip, tmp_path / "naive.mkv", str(bundle), WriterOptions(codec="ffv1"), BlendOptions(), 0.0, 0.3
    )
    assert r["frames"] > 0 and r["faces"] >= r["frames"]
