"""Every real clip at a glance: one frame of each, moved to fixed target ages, in one picture.

    python -m benchmarks.contact [--model NAME] [--targets 70 20] [--at 1.0] [--age-hair] [--height 240]
        [--out benchmarks/results/contact.jpg]

Each clip of `../shared/data/videos` runs through the real pipeline (`age_video`) from `--at` seconds for 0.2 s,
once per target age, each face from its own estimated age as `--target-age` runs it. The first output frame of
each run is laid out beside the input's frame, one row per clip, every tile `--height` pixels high. It
measures nothing: it is for looking at what a user would get on every clip at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from benchmarks.motion import decode, write_jpeg
from benchmarks.quality import DEFAULT_VIDEOS
from faceage_video.engine.generator import EngineOptions
from faceage_video.face.hair import HairOptions
from faceage_video.media.reader import ReaderOptions
from faceage_video.media.writer import WriterOptions
from faceage_video.pipeline import AgeOptions, StageOptions, age_video
from faceage_video.types import Frame

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "contact.jpg"


def frame_at(path: Path, seconds: float) -> Frame:
    """(H, W, 3) uint8 RGB: the first frame of a video at or after `seconds`."""
    with av.open(str(path)) as container:
        frame = None
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                break
        if frame is None:
            raise ValueError(f"{path} has no video frame")
        return np.asarray(frame.to_ndarray(format="rgb24"))


def tile(image: Frame, height: int) -> Frame:
    """The image scaled to `height` pixels high, its aspect kept."""
    h, w = image.shape[:2]
    return np.asarray(
        cv2.resize(image, (max(round(w * height / h), 1), height), interpolation=cv2.INTER_AREA)
    )


def sheet(rows: Sequence[Sequence[Frame]], height: int) -> Frame:
    """The rows of images side by side, each row padded with black to the widest."""
    lines = [np.concatenate([tile(im, height) for im in row], axis=1) for row in rows]
    width = max(line.shape[1] for line in lines)
    return np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contact", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--targets", type=float, nargs="+", default=[70.0, 20.0])
    p.add_argument("--at", type=float, default=1.0, help="seconds into each clip")
    p.add_argument("--age-hair", action="store_true", help="age the hair with the face (`--age-hair`)")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    clips = sorted(a.videos.glob("*.mp4"))
    if not clips:
        print(f"no clips in {a.videos}")
        return 1
    rows: list[list[Frame]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="faceage-contact-") as tmp:
        for n, clip in enumerate(clips):
            row = [frame_at(clip, a.at)]
            for target in a.targets:
                dst = Path(tmp) / f"{clip.stem}-{target:g}.mkv"
                options = AgeOptions(
                    stages=StageOptions(
                        engine=EngineOptions(model=a.model, target_age=target),
                        hair=HairOptions(enabled=a.age_hair),
                    ),
                    reader=ReaderOptions(start_s=a.at, end_s=a.at + 0.2),
                    writer=WriterOptions(codec="ffv1", audio=False),
                )
                age_video(clip, dst, options)
                row.append(decode(dst)[0])
            rows.append(row)
            print(f"{n + 1}/{len(clips)} {clip.name}, {time.perf_counter() - t0:.0f} s", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_jpeg(a.out, sheet(rows, a.height))
    print(
        f"wrote {a.out}: rows {', '.join(c.stem for c in clips)}; columns input, "
        + ", ".join(f"target {t:g}" for t in a.targets)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
