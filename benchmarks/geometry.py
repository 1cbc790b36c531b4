"""Landmark stability on known motion: how much the mesh moves on the skin of a photo that only moves rigidly.

A still validation photo is moved along a known smooth similarity path (drift, rotation, zoom), with sensor
noise and an H.264 round trip. Landmarks found in each frame are mapped back into the photo's plane with the
exact inverse transform; there they should not move at all. The mean frame-to-frame motion there, as a
percentage of the inter-ocular distance, is the jitter every effect tied to the mesh inherits.

    python -m benchmarks.geometry --faces 8 --frames 40 [--json FILE]

Variants, each on the same frames: raw detections, the tracker's One Euro smoothing, and the flow
stabiliser (`faceage_video.face.stabilize`) on top of each.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions
from faceage_video.face.stabilize import MeshStabilizer, StabilizerOptions
from faceage_video.face.tracker import FaceTracker, TrackerOptions

UTK = Path("../shared/data/utkface")


@dataclass(frozen=True)
class MotionPath:
    """A smooth similarity path: drift ±`drift` px, rotation ±`rotation`°, zoom ±`zoom`, over `frames`."""

    frames: int = 40
    drift: float = 40.0
    rotation: float = 6.0
    zoom: float = 0.08

    def matrix(self, t: int, size: int) -> NDArray[np.float64]:
        """(2, 3) photo → frame transform at frame t."""
        u = 2 * math.pi * t / max(self.frames, 1)
        dx, dy = self.drift * math.sin(u), 0.6 * self.drift * math.sin(2 * u + 0.7)
        ang = self.rotation * math.sin(u + 1.3)
        sc = 1.0 + self.zoom * math.sin(0.5 * u + 0.2)
        c = (size - 1) / 2.0
        m = cv2.getRotationMatrix2D((c, c), ang, sc)
        m[:, 2] += np.array([dx, dy])
        return np.asarray(m, np.float64)


def photo_canvas(path: str | Path, size: int = 512, face: int = 300) -> NDArray[np.uint8]:
    """A UTKFace chip upscaled to `face` px in the middle of a `size` canvas, edges reflected."""
    raw = cv2.imread(str(path))
    if raw is None:
        raise FileNotFoundError(f"cannot read {path}")
    img = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (face, face), interpolation=cv2.INTER_CUBIC)
    p = (size - face) // 2
    out = cv2.copyMakeBorder(img, p, size - face - p, p, size - face - p, cv2.BORDER_REFLECT101)
    return np.asarray(out, np.uint8)


def known_motion_frames(
    canvas: NDArray[np.uint8], path: MotionPath, noise: float = 1.5, crf: int | None = 20, seed: int = 0
) -> Iterator[tuple[NDArray[np.uint8], NDArray[np.float64]]]:
    """(frame, photo → frame matrix) along the path, noisy and, with `crf`, through H.264 and back."""
    rng = np.random.default_rng(seed)
    size = canvas.shape[0]
    mats = [path.matrix(t, size) for t in range(path.frames)]
    frames = []
    for m in mats:
        f = cv2.warpAffine(canvas, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        f = np.clip(f.astype(np.float32) + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8)
        frames.append(f)
    if crf is not None:
        frames = list(_h264_round_trip(frames, crf))
    yield from zip(frames, mats, strict=True)


def _h264_round_trip(frames: list[NDArray[np.uint8]], crf: int) -> Iterator[NDArray[np.uint8]]:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=30, options={"crf": str(crf), "preset": "veryfast"})
        st.width, st.height, st.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    buf.seek(0)
    with av.open(buf, "r") as inp:
        for fr in inp.decode(video=0):
            yield np.asarray(fr.to_ndarray(format="rgb24"), np.uint8)


def jitter(photo_plane: list[NDArray[np.float64]]) -> float:
    """Mean frame-to-frame landmark motion in the photo plane, as % of the inter-ocular distance."""
    if len(photo_plane) < 2:
        return float("nan")
    iod = float(np.linalg.norm(photo_plane[0][468] - photo_plane[0][473]))
    steps = [np.linalg.norm(b - a, axis=1).mean() for a, b in itertools.pairwise(photo_plane)]
    return 100.0 * float(np.mean(steps)) / max(iod, 1e-6)


def measure_face(photo: str | Path, path: MotionPath, landmarker: str | None = None) -> dict[str, float]:
    """Jitter of each variant on one photo's known-motion clip."""
    variants = ("raw", "one_euro", "raw+flow", "one_euro+flow")
    back: dict[str, list[NDArray[np.float64]]] = {v: [] for v in variants}
    stab = {v: MeshStabilizer(StabilizerOptions()) for v in ("raw+flow", "one_euro+flow")}
    tracker = FaceTracker(TrackerOptions())
    with FaceLandmarker(LandmarkerOptions(mode="video", max_faces=1, model_path=landmarker)) as lm:
        for t, (frame, m) in enumerate(known_motion_frames(photo_canvas(photo), path, seed=t_seed(photo))):
            faces = tracker.update(lm.detect(frame, t * 33 + 1), t / 30.0)
            if not faces:
                continue
            f = faces[0]
            inv = cv2.invertAffineTransform(m)
            pts = {
                "raw": f.raw,
                "one_euro": f.landmarks,
                "raw+flow": stab["raw+flow"](frame, f.track_id, f.raw),
                "one_euro+flow": stab["one_euro+flow"](frame, f.track_id, f.landmarks),
            }
            for v, p in pts.items():
                q = np.asarray(p, np.float64)
                back[v].append(q @ inv[:, :2].T + inv[:, 2])
    return {v: jitter(back[v]) for v in variants}


def t_seed(photo: str | Path) -> int:
    return sum(Path(photo).name.encode()) % 1000


def validation_photos(n: int) -> list[Path]:
    """`n` fixed validation photos (hash split), ages 18+, alternating gender."""
    from training.datasets import hash_split, load_utkface

    recs = [r for r in load_utkface(UTK) if r.age >= 18 and hash_split(Path(r.path).name) == "val"]
    men = [Path(r.path) for r in recs if r.gender == 0]
    women = [Path(r.path) for r in recs if r.gender == 1]
    out: list[Path] = []
    for a, b in zip(men, women, strict=False):
        out += [a, b]
    return out[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=8)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    path = MotionPath(frames=args.frames)
    rows = []
    for p in validation_photos(args.faces):
        r = measure_face(p, path)
        rows.append(r)
        print(p.name[:28], " ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    print(
        "mean jitter, % of inter-ocular distance per frame:",
        " ".join(f"{k}={v:.2f}" for k, v in mean.items()),
    )
    if args.json:
        args.json.write_text(json.dumps({"path": vars(path), "faces": rows, "mean": mean}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
