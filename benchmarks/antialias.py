"""Shimmer in canonical space with the anti-alias low-pass on and off (`MeshOptions.antialias`).

    python -m benchmarks.antialias [--clips NAME ...] [--frames 60] [--json FILE]

For each clip, the largest face of each of the first `--frames` frames is registered (IMAGE-mode landmarks)
and cut into the default bundle's canonical texture twice: low-passed to the training crops' sampling first
(the runtime's way), and sampled plainly. Inside the face, per frame:

- `texture_dt`: mean |tex_t − tex_{t−1}|, levels of 0..255: how much the texture the generator reads moves
  on the skin. Real motion, expression and landmark jitter count in both rows alike; aliasing only in the
  plain one.
- `change_dt`: the same of the generator's change G(tex) − tex, before any temporal smoothing.
- `change_size`: mean |G(tex) − tex|, so a lower `change_dt` is not a weaker change.

`f` is the face's median frame pixels per texel: the low-pass acts above the training crops' 2.
`--picture FILE` writes, for the first clip, two consecutive frames' textures and changes (x4, nearest
neighbour; the change ×4 around grey), plain above low-passed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.quality import DEFAULT_VIDEOS, _read_frames, write_json
from benchmarks.stills import open_landmarker
from faceage_video.face.mesh import CanonicalMesh, MeshFit, MeshOptions
from faceage_video.types import Frame

DEFAULT_CLIPS = ("liveportrait_d13.mp4", "liveportrait_d3.mp4", "liveportrait_s18.mp4")


def shimmer(
    frames: Sequence[Frame], fits: Sequence[MeshFit], mesh: CanonicalMesh, residual: Any
) -> dict[str, float]:
    """`texture_dt`, `change_dt` and `change_size` (module docstring) of one face over consecutive frames.

    Args:
        frames: (H, W, 3) uint8 RGB frames; fits: the face's registration in each.
        mesh: the canonical space to cut with (its `antialias` decides the low-pass).
        residual: (N, S, S, 3) uint8 → (N, S, S, 3) float32 change, e.g. `AgingEngine.residual`.
    """
    face: NDArray[np.bool_] = mesh.mask("face") > 0.99
    tex = np.stack([mesh.to_canonical(fr, fit) for fr, fit in zip(frames, fits, strict=True)])
    change = np.asarray(residual(tex), np.float32)
    t = tex.astype(np.float32)
    return {
        "texture_dt": round(float(np.abs(np.diff(t, axis=0))[:, face].mean()), 3),
        "change_dt": round(float(np.abs(np.diff(change, axis=0))[:, face].mean()), 3),
        "change_size": round(float(np.abs(change)[:, face].mean()), 3),
    }


def picture(
    frames: Sequence[Frame], fits: Sequence[MeshFit], meshes: Sequence[CanonicalMesh], residual: Any
) -> Frame:
    """(rows, 4 tiles) uint8 RGB: per mesh a row of two consecutive textures, then their changes (×4 around
    grey), each tile enlarged 4× by nearest neighbour so texels stay visible."""
    import cv2

    rows = []
    for mesh in meshes:
        tex = np.stack([mesh.to_canonical(fr, fit) for fr, fit in zip(frames[:2], fits[:2], strict=True)])
        change = np.asarray(residual(tex), np.float32)
        tiles = [*tex, *np.clip(128.0 + 4.0 * change, 0, 255).astype(np.uint8)]
        big = [cv2.resize(t, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST) for t in tiles]
        rows.append(np.concatenate(big, axis=1))
    return np.concatenate(rows, axis=0)


def measure(
    clips: Sequence[Path], frames: int = 60, model: str | None = None, picture_path: Path | None = None
) -> dict[str, Any]:
    """Per clip: `f`, then the `shimmer` numbers low-passed ("on") and plain ("off"); `picture` of the first
    clip to `picture_path` when given."""
    from faceage_video.engine.generator import AgingEngine, EngineOptions

    engine = AgingEngine(EngineOptions(model=model, direction="older"))
    size = int(engine.size)
    on = CanonicalMesh(MeshOptions(size=size))
    off = CanonicalMesh(MeshOptions(size=size, antialias=0.0))
    out: dict[str, Any] = {}
    with open_landmarker() as landmarker:
        for clip in clips:
            kept: list[Frame] = []
            fits: list[MeshFit] = []
            for fr in _read_frames(clip, frames):
                found = landmarker.detect(fr)
                if found:
                    kept.append(fr)
                    fits.append(on.fit(max(found, key=lambda lm: float(np.ptp(lm[:, 0]))), fr.shape))
            if len(kept) < 2:
                out[clip.name] = {"error": "a face in fewer than 2 frames"}
                continue
            if picture_path is not None and not out:
                from benchmarks.motion import write_jpeg

                write_jpeg(picture_path, picture(kept, fits, (off, on), engine.residual))
            out[clip.name] = {
                "frames": len(kept),
                "f": round(float(np.median([on.sampling(x) for x in fits])), 2),
                "on": shimmer(kept, fits, on, engine.residual),
                "off": shimmer(kept, fits, off, engine.residual),
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clip names in --videos")
    ap.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--model", default=None, help="bundle (default: the bundled default)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--picture", type=Path, help="JPEG of the first clip's textures and changes")
    args = ap.parse_args(argv)
    paths = [args.videos / c for c in args.clips]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: clips not found: {', '.join(missing)} (see ../shared/data/README.md)")
        return 2
    res = measure(paths, args.frames, args.model, args.picture)
    print("| clip | f px/texel | texture Δ/frame on (off) | change Δ/frame on (off) | change size on (off) |")
    print("|---|---|---|---|---|")
    for name, r in res.items():
        if "error" in r:
            print(f"| {name} | {r['error']} | | | |")
            continue
        on, off = r["on"], r["off"]
        print(
            f"| {name} | {r['f']:.2f} | {on['texture_dt']:.3f} ({off['texture_dt']:.3f}) | "
            f"{on['change_dt']:.3f} ({off['change_dt']:.3f}) | {on['change_size']:.2f} ({off['change_size']:.2f}) |"
        )
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
