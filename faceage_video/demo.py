"""`faceage-video demo`: a short clip made from a public-domain image, aged with the bundled model.

The clip is scikit-image's `astronaut` (Eileen Collins, NASA, public domain) with a slow push-in and a quiet
tone as its audio track, so the demo exercises tracking, the generator, blending and audio remuxing.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from faceage_video.errors import OutputError
from faceage_video.report import Progress
from faceage_video.types import Direction, Frame


def make_demo_clip(path: Path, seconds: float = 2.0, fps: int = 25) -> Path:
    """Write a short H.264/AAC clip of the astronaut image with a slow zoom."""
    import av
    from skimage import data

    img: Frame = data.astronaut()
    h, w = img.shape[:2]
    n = max(1, round(seconds * fps))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "16"}
        rate = 44100
        aus = out.add_stream("aac", rate=rate)
        aus.layout = "mono"
        cx, cy = 0.43 * w, 0.36 * h  # zoom towards the face
        for i in range(n):
            z = 1.0 + 0.08 * i / max(n - 1, 1)
            m = np.array([[z, 0, (1 - z) * cx], [0, z, (1 - z) * cy]], np.float64)
            frame = np.asarray(
                cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101),
                dtype=np.uint8,
            )
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        t = np.arange(int(rate * n / fps)) / rate
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        step = 1024
        for k in range(0, len(tone), step):
            af = av.AudioFrame.from_ndarray(tone[None, k : k + step], format="fltp", layout="mono")
            af.sample_rate = rate
            af.pts = k
            af.time_base = Fraction(1, rate)
            for pkt in aus.encode(af):
                out.mux(pkt)
        for pkt in aus.encode(None):
            out.mux(pkt)
    return path


def run_demo(
    out_dir: Path,
    direction: Direction = "older",
    strength: float = 1.0,
    model: str | None = None,
    seconds: float = 2.0,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Make the demo clip, age it, and write a before/after picture (`progress`: as `age_video`'s).

    Returns:
        Paths of the input clip, the aged clip, the side-by-side preview, the matte and the picture.
    """
    from faceage_video.engine.generator import EngineOptions
    from faceage_video.pipeline import AgeOptions, ExtraOutputs, StageOptions, age_video

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create demo folder {out_dir}: {exc}") from exc
    clip = make_demo_clip(out_dir / "astronaut.mp4", seconds)
    aged = out_dir / f"astronaut_{direction}.mp4"
    sbs = out_dir / f"astronaut_{direction}_side_by_side.mp4"
    matte = out_dir / f"astronaut_{direction}_matte.mkv"
    opts = AgeOptions(
        stages=StageOptions(engine=EngineOptions(model=model, direction=direction, strength=strength)),
        extras=ExtraOutputs(side_by_side=str(sbs), matte=str(matte), report=str(out_dir / "report.json")),
    )
    age_video(clip, aged, opts, progress=progress)
    picture = out_dir / f"astronaut_{direction}.png"
    cv2.imwrite(str(picture), cv2.cvtColor(_last_frame(sbs), cv2.COLOR_RGB2BGR))
    return {"input": clip, "output": aged, "side_by_side": sbs, "matte": matte, "picture": picture}


def _last_frame(path: Path) -> Frame:
    import av

    last: Frame | None = None
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            last = np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8)
    assert last is not None
    return last
