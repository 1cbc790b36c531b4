"""Cost of the canonical-mesh warps against the five-point similarity warps, at 512² and 4K, in one run.

    python -m benchmarks.mesh_cost [--repeats 20] [--json FILE]

A real UTKFace face (its detected landmarks) is scaled so it spans 60 % of the frame height, as in a
close-up plate, and each step is timed on it: the mesh fit, the forward warp (face → 128 px canonical
texture), the inverse map, and the whole paste-back of a change (warp back + blend); beside them the
five-point crop and paste-back, the reference measured in the same run. Single OpenCV thread, so the
numbers compare like with like on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceage_video.face.align import AlignTemplate, align_face, apply_affine
from faceage_video.face.blend import BlendOptions, crop_mask, paste_back, paste_back_mesh
from faceage_video.face.landmarks import oval_polygon
from faceage_video.face.mesh import CanonicalMesh, MeshOptions

SIZES = {"512x512": (512, 512), "3840x2160": (3840, 2160)}
FACE_FRACTION = 0.6


def _ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return round((time.perf_counter() - t) / repeats * 1000.0, 3)


def _face(frame_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A frame with one real face (UTKFace validation photo, upscaled) and its landmarks."""
    from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, detect_padded

    photo = sorted(Path("../shared/data/utkface").glob("25_1_0_*.jpg"))[0]
    raw = cv2.imread(str(photo))
    if raw is None:
        raise FileNotFoundError(photo)
    img = np.asarray(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), np.uint8)
    with FaceLandmarker(LandmarkerOptions(mode="image")) as lm:
        lms = detect_padded(lm, img)[0]
    w, h = frame_wh
    scale = FACE_FRACTION * h / img.shape[0]
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    frame = np.zeros((h, w, 3), np.uint8)
    oy, ox = (h - big.shape[0]) // 2, (w - big.shape[1]) // 2
    frame[oy : oy + big.shape[0], ox : ox + big.shape[1]] = big
    return frame, (lms * scale + [ox, oy]).astype(np.float32)


def _row(
    frame: np.ndarray, lm: np.ndarray, mesh: CanonicalMesh, plain: CanonicalMesh, repeats: int
) -> dict[str, Any]:
    template = AlignTemplate(128)
    blend = BlendOptions()
    mask_c = mesh.mask("face")
    change = np.random.default_rng(0).normal(0, 6, (128, 128, 3)).astype(np.float32)
    fit = mesh.fit(lm, frame.shape)
    crop, m = align_face(frame, lm, template)
    mask5 = crop_mask("face", 128, apply_affine(m, oval_polygon(lm)), blend.feather)
    gen5 = crop.astype(np.float32) + change
    t: dict[str, float] = {
        "mesh_fit_ms": _ms(lambda: mesh.fit(lm, frame.shape), repeats),
        "mesh_forward_ms": _ms(lambda: mesh.to_canonical(frame, fit), repeats),
        # The same warp without the anti-alias low-pass: what the prefilter costs at this face size.
        "mesh_forward_plain_ms": _ms(lambda: plain.to_canonical(frame, fit), repeats),
        "mesh_inverse_map_ms": _ms(lambda: mesh.inverse_map(fit), repeats),
        "mesh_paste_ms": _ms(lambda: paste_back_mesh(frame, change, mask_c, fit, mesh, blend), repeats),
        "five_point_forward_ms": _ms(lambda: align_face(frame, lm, template), repeats),
        "five_point_paste_ms": _ms(lambda: paste_back(frame, gen5, crop, m, mask5, blend), repeats),
    }
    mesh_total = t["mesh_fit_ms"] + t["mesh_forward_ms"] + t["mesh_paste_ms"]
    five_total = t["five_point_forward_ms"] + t["five_point_paste_ms"]
    return {
        **t,
        "face_roi": list(fit.roi),
        "frame_px_per_texel": round(mesh.sampling(fit), 2),
        "mesh_over_five_point": round(mesh_total / five_total, 2),
    }


def measure(repeats: int = 20) -> dict[str, Any]:
    """Milliseconds per face of each step, per frame size."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        mesh = CanonicalMesh(MeshOptions(size=128))
        plain = CanonicalMesh(MeshOptions(size=128, antialias=0.0))
        out: dict[str, Any] = {}
        for name, wh in SIZES.items():
            frame, lm = _face(wh)
            out[name] = _row(frame, lm, mesh, plain, repeats)
        return out
    finally:
        cv2.setNumThreads(previous)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    res = measure(args.repeats)
    for size, row in res.items():
        print(size, " ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
