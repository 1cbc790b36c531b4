"""The outline halo of several bundles on the same faces: how much lighter each turns the skin along the face
oval than the skin just inside it (`measures.outline`), through the runtime's paste-back.

    python -m benchmarks.outline MODEL [MODEL ...] [--direction older] [--limit 60] [--json FILE]
                                 [--clip VIDEO [--seconds 2]]

The faces are the quality benchmark's fixed validation sources of that direction (`stills.load_faces`, no
black-and-white copies), so the numbers match its `outline` row for the same model. With `--clip`, they are
every 10th frame of the clip's first `--seconds`, aged by the whole pipeline (`age_video`, FFV1, smoothing
on) and measured against the input frame's landmarks. Per model: the band's own mean change, the ring's just
inside it, their difference (the halo), and the line (the band's most changed thin shell minus the ring: a
narrow stripe the band's mean dilutes), mean over faces, in levels of 0..255. It measures and asserts
nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np

from benchmarks.measures.outline import OutlineChange, outline_change, summarize_outline
from benchmarks.measures.regions import largest_face
from benchmarks.quality import DEFAULT_DATA, write_json
from benchmarks.stills import DIRECTIONS, Direction, age_stills, load_faces, open_landmarker
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.landmarks import detect_padded
from faceage_video.media.reader import ReaderOptions
from faceage_video.options import AgeOptions
from faceage_video.pipeline import age_video
from faceage_video.types import Frame

# Every this many frames of a clip is measured.
CLIP_STEP = 10


def measure(
    models: Sequence[str], direction: Direction, limit: int, data: Path = DEFAULT_DATA
) -> list[dict[str, Any]]:
    """One row per model: `model` and `summarize_outline`'s keys (`halo_mean`, `line_mean`, ...)."""
    with open_landmarker() as lm:
        sources = load_faces(data, direction, lm, limit=limit, bw=0).sources
    rows = []
    for model in models:
        engine = AgingEngine(EngineOptions(model=model, direction=direction))
        outputs = age_stills(
            [f.image for f in sources], [f.landmarks for f in sources], engine.generate, engine.template
        )
        changes = [outline_change(f.image, o, f.landmarks) for f, o in zip(sources, outputs, strict=True)]
        rows.append(_row(model, changes))
    return rows


def _sampled(path: Path, seconds: float) -> list[Frame]:
    """Every `CLIP_STEP`th frame of a video's first `seconds`, RGB."""
    out: list[Frame] = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for i, frame in enumerate(c.decode(stream)):
            if frame.time is not None and frame.time >= seconds:
                break
            if i % CLIP_STEP == 0:
                out.append(np.asarray(frame.to_ndarray(format="rgb24"), np.uint8))
    return out


def measure_clip(
    models: Sequence[str], direction: Direction, clip: Path, seconds: float
) -> list[dict[str, Any]]:
    """As `measure`, on the sampled frames of one clip aged by the whole pipeline."""
    inputs = _sampled(clip, seconds)
    with open_landmarker() as lm:
        found = [detect_padded(lm, f) for f in inputs]
    rows = []
    for model in models:
        engine = AgingEngine(EngineOptions(model=model, direction=direction))
        options = AgeOptions(reader=ReaderOptions(end_s=seconds))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.mkv"
            age_video(
                clip,
                out,
                replace(options, stages=replace(options.stages, engine=engine.options)),
                engine=engine,
            )
            outputs = _sampled(out, seconds)
        faces = [largest_face(f) for f in found]
        changes = [
            None if f is None else outline_change(a, b, f)
            for a, b, f in zip(inputs, outputs, faces, strict=False)
        ]
        rows.append(_row(model, changes))
    return rows


def _row(model: str, changes: Sequence[OutlineChange | None]) -> dict[str, Any]:
    """`model` and `summarize_outline` of its faces, printed."""
    row = {"model": model, **summarize_outline(changes)}
    if row["faces"]:
        print(
            f"{model}: band {row['band_mean']:+.2f}, ring {row['ring_mean']:+.2f}, halo {row['halo_mean']:+.2f} "
            f"(|halo| {row['halo_abs_mean']:.2f}, p90 {row['halo_abs_p90']:.2f}), line {row['line_mean']:+.2f} "
            f"(|line| p90 {row['line_abs_p90']:.2f}) levels over {row['faces']} faces",
            flush=True,
        )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.outline", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="bundled model names or bundle folders")
    p.add_argument("--direction", choices=DIRECTIONS, default="older")
    p.add_argument("--limit", type=int, default=60, help="source faces (default 60)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    p.add_argument("--clip", type=Path, default=None, help="measure this video through the pipeline instead")
    p.add_argument("--seconds", type=float, default=2.0, help="of the clip, from its start (default 2)")
    a = p.parse_args(argv)
    direction: Direction = a.direction
    if a.clip is not None:
        rows = measure_clip(a.models, direction, a.clip, a.seconds)
    else:
        rows = measure(a.models, direction, a.limit, a.data)
    if a.json is not None:
        where = {"clip": str(a.clip), "seconds": a.seconds} if a.clip is not None else {"limit": a.limit}
        write_json(a.json, {"benchmark": "outline", "direction": a.direction, **where, "rows": rows})
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
