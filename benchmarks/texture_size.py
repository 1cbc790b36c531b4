"""What a canonical face texture of S px can carry, and what it costs, at S = 128, 192 and 256, in one run.

    python -m benchmarks.texture_size [--sizes 128 192 256] [--floor 512] [--photos 20] [--clips NAME ...]
                                      [--rounds 8] [--no-train] [--json FILE] [--picture FILE.png|.jpg]

Detail ceiling, on real faces: older UTKFace photos (ages 50-80, wrinkles; every k-th of the sorted file
names, so the set is fixed) and frames 0 and the middle frame of a few talking-head clips at their native
resolution, where the face is far larger than 128 px. Each frame goes through the canonical texture and back
(frame → `to_canonical` at S → `to_frame`), with nothing changed in between: what is lost is what a texture of
that size cannot carry. The pipeline pastes back only the generator's change (frame + alpha · change), so the
face keeps its own detail where nothing changes: the round trip bounds how fine a change the texture can
express (wrinkles, pores) and how fine the detail the generator sees, not what the video loses. Inside the
face (the mesh face mask warped to the frame, eroded so the oval's edge does not count) it reports, per
luminance band (difference of Gaussians of luma at σ 0.5-1, 1-2, 2-4, 4-8 frame px), the share of the
original's band energy (mean square) the round trip keeps, the band's error energy over the original's (which
also counts detail aliased into the band), and the round trip's PSNR. An oversampled texture (`--floor`, 512
px) is measured beside them, for detail only: what the two bilinear warps lose by themselves, the ceiling no
texture size gets past. Each size low-passes a face larger than its training crops' sampling first, as the
runtime does (`MeshOptions.antialias`: 2 frame px a texel at 128, 1.33 at 192, 1 at 256); the floor does
not. Each face's size is given as its inter-ocular distance in frame px and as the texture side at which the
canonical texture samples the face 1:1 ("native S"): below it, S undersamples the face.

Cost, against the 128 px reference measured in the same run (the machine is shared, so the ratios are what
count): the default bundle's generator shape with only `size` changed (untrained weights: speed does not
depend on them), ms per crop at batch 1 and 8; one forward + backward of the generator and of the
discriminator at the training batch (2), from which a training step's cost is estimated; and the mesh
forward warp and inverse warp (`to_canonical`, `to_frame`) on a real 1280×720 frame, single OpenCV thread.
Sizes are measured round-robin (one call at each size in turn, medians over rounds), so a burst of load
elsewhere hits every size alike.

`--picture` writes, for a few clip faces, a cheek-and-eye crop at the frame's native resolution (enlarged with
nearest-neighbour so its pixels show): the original and the round trip at each S, labelled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.throughput import machine
from faceage_video.face.mesh import CanonicalMesh, MeshFit, MeshOptions
from faceage_video.types import Frame, Landmarks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SIZES = (128, 192, 256)
# Difference-of-Gaussians bands of luma, (σ fine, σ coarse) in frame pixels.
BANDS: tuple[tuple[float, float], ...] = ((0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0))
# Clips and the frames taken from each ("mid" is the frame at half the duration).
CLIPS = ("liveportrait_s18.mp4", "liveportrait_d13.mp4", "liveportrait_d0.mp4", "sadtalker_wda_katiehill.mp4")
PICTURE_CLIPS = 3
PHOTO_AGES = (50, 80)
# Mesh size the face region is drawn with (the region is the same frame area at every S).
REGION_SIZE = 256
# An oversampled texture, measured for detail only: what the two bilinear warps lose on their own, the
# ceiling no texture size gets past.
FLOOR_SIZE = 512
# Face region: the face mask warped to the frame, at least this strong, eroded by this share of the
# inter-ocular distance (at least 2 px), so the oval's edge (hair, jaw line, background) does not count.
REGION_THRESHOLD = 0.5
REGION_ERODE = 0.08
# Eye centres: mean of the outer and inner corner landmarks (image left, image right).
EYES = ((33, 133), (362, 263))
CHEEK = 205  # below the image-left eye, on the cheekbone
TRAIN_BATCH = 2  # faces per domain per adversarial step (training/config.py, batch_size)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ----------------------------------------------------------------------------------------------------------
# Faces


@dataclass(frozen=True)
class Face:
    """One real face: the frame it is in and its landmarks in that frame's pixels."""

    source: str  # "utkface" or "clips"
    name: str
    frame: Frame
    landmarks: Landmarks


def inter_ocular(landmarks: NDArray[np.floating]) -> float:
    """Distance between the eye centres (mean of each eye's corners), in the landmarks' own pixels."""
    a = landmarks[list(EYES[0])].mean(0)
    b = landmarks[list(EYES[1])].mean(0)
    return float(np.hypot(*(a - b)))


def photo_paths(folder: Path, count: int, ages: tuple[int, int] = PHOTO_AGES) -> list[Path]:
    """`count` UTKFace photos aged ages[0]..ages[1], every k-th of the sorted file names (deterministic)."""
    old = []
    for p in sorted(folder.glob("*.jpg")):
        head = p.name.split("_", 1)[0]
        if head.isdigit() and ages[0] <= int(head) <= ages[1]:
            old.append(p)
    if not old or count <= 0:
        return []
    step = max(1, len(old) // count)
    return old[::step][:count]


def _clip_frames(path: Path) -> list[tuple[str, Frame]]:
    """Frame 0 and the frame at half the duration, upright RGB at native resolution."""
    from faceage_video.media.reader import ReaderOptions, VideoReader, probe

    info = probe(path)
    out: list[tuple[str, Frame]] = []
    mid = (info.duration_s or 0.0) / 2.0
    for start in (None, mid) if mid > 0 else (None,):
        with VideoReader(path, ReaderOptions(start_s=start)) as reader:
            for decoded in reader:
                label = "f0" if start is None else f"{decoded.time_s:.1f}s"
                out.append((f"{path.stem}@{label}", decoded.image))
                break
    return out


def load_faces(photos: Sequence[Path], clips: Sequence[Path]) -> list[Face]:
    """Detect the largest face of each photo (padded, as in training) and of each clip frame."""
    from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, detect_padded

    faces: list[Face] = []
    with FaceLandmarker(LandmarkerOptions(mode="image", max_faces=1)) as lm:
        for p in photos:
            raw = cv2.imread(str(p))
            if raw is None:
                continue
            img = np.ascontiguousarray(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), np.uint8)
            found = detect_padded(lm, img)
            if found:
                faces.append(Face("utkface", p.name, img, found[0]))
        for c in clips:
            for name, frame in _clip_frames(c):
                found = lm.detect(frame)
                if found:
                    faces.append(Face("clips", name, frame, found[0]))
    return faces


# ----------------------------------------------------------------------------------------------------------
# Detail ceiling


def luma(rgb: NDArray[np.floating] | NDArray[np.uint8]) -> NDArray[np.float32]:
    """(H, W) float32 Rec. 601 luma of an RGB image, 0..255."""
    return np.asarray(np.asarray(rgb, np.float32) @ LUMA, np.float32)


def dog(y: NDArray[np.float32], band: tuple[float, float]) -> NDArray[np.float32]:
    """Difference of Gaussians of a luma image: the detail between σ band[0] and band[1] px."""
    fine = cv2.GaussianBlur(y, (0, 0), band[0], borderType=cv2.BORDER_REFLECT101)
    coarse = cv2.GaussianBlur(y, (0, 0), band[1], borderType=cv2.BORDER_REFLECT101)
    return np.asarray(fine - coarse, np.float32)


def face_region(mesh: CanonicalMesh, fit: MeshFit, frame_shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """(H, W) True inside the face in frame pixels: the mesh face mask warped to the frame, eroded."""
    h, w = frame_shape[:2]
    x0, y0, x1, y1 = fit.roi
    region = np.zeros((h, w), bool)
    warped = mesh.to_frame(mesh.face_mask(fit), fit)
    inside = (warped >= REGION_THRESHOLD).astype(np.uint8)
    r = max(2, round(REGION_ERODE * inter_ocular(fit.vertices)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    region[y0:y1, x0:x1] = cv2.erode(inside, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return region


def round_trip(frame: Frame, mesh: CanonicalMesh, fit: MeshFit) -> NDArray[np.float32]:
    """The frame with the face replaced by its trip through the S px texture and back (float32 RGB)."""
    out = frame.astype(np.float32)
    x0, y0, x1, y1 = fit.roi
    tex = mesh.to_canonical(frame, fit).astype(np.float32)
    back = mesh.to_frame(tex, fit)
    cover = mesh.to_frame(np.ones((mesh.size, mesh.size), np.float32), fit)[..., None]
    roi = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = cover * back + (1.0 - cover) * roi
    return np.clip(out, 0.0, 255.0)


def _psnr(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    mse = float(np.mean((a - b) ** 2))
    return round(float(10.0 * np.log10(255.0**2 / max(mse, 1e-10))), 2)


def detail_row(
    frame: Frame, landmarks: Landmarks, meshes: dict[int, CanonicalMesh], region_mesh: CanonicalMesh
) -> dict[str, Any]:
    """Band-energy ratios and PSNR of the round trip at each S, inside the face, for one face."""
    fit = region_mesh.fit(landmarks, frame.shape)
    region = face_region(region_mesh, fit, frame.shape)
    iod = inter_ocular(landmarks)
    iod_canon = inter_ocular(region_mesh.landmark_vertices) / region_mesh.size  # per px of S
    x0, y0, x1, y1 = fit.roi
    # Bands are computed on the ROI grown by the widest kernel's reach, not the whole frame.
    pad = int(np.ceil(4 * BANDS[-1][1]))
    h, w = frame.shape[:2]
    bx0, by0, bx1, by1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    sel = region[by0:by1, bx0:bx1]
    y_orig = luma(frame[by0:by1, bx0:bx1])
    orig_bands = [dog(y_orig, b)[sel] for b in BANDS]
    orig_energy = [float(np.mean(d**2)) for d in orig_bands]
    row: dict[str, Any] = {
        "iod_px": round(iod, 1),
        "roi_px": [x1 - x0, y1 - y0],
        "region_px": int(sel.sum()),
        "native_size": round(iod / iod_canon, 1),
        "band_energy": [round(e, 3) for e in orig_energy],
        "sizes": {},
    }
    for s, mesh in meshes.items():
        fit_s = mesh.fit(landmarks, frame.shape)
        rt = round_trip(frame, mesh, fit_s)[by0:by1, bx0:bx1]
        y_rt = luma(rt)
        rt_bands = [dog(y_rt, b)[sel] for b in BANDS]
        ratios = [
            round(float(np.mean(d**2)) / max(e, 1e-9), 4) for d, e in zip(rt_bands, orig_energy, strict=True)
        ]
        # Energy of the band's error over the original's: 0 when the band is reproduced, 1 when it is lost,
        # and above the kept ratio's shortfall when aliasing puts wrong detail in its place.
        errors = [
            round(float(np.mean((d - o) ** 2)) / max(e, 1e-9), 4)
            for d, o, e in zip(rt_bands, orig_bands, orig_energy, strict=True)
        ]
        psnr = _psnr(rt[sel], frame[by0:by1, bx0:bx1][sel].astype(np.float32))
        row["sizes"][str(s)] = {
            "kept": ratios,
            "error": errors,
            "psnr_db": psnr,
            "sampling": round(s / row["native_size"], 3),
        }
    return row


def _band_name(b: tuple[float, float]) -> str:
    return f"σ{b[0]:g}-{b[1]:g}"


def summarise(rows: Sequence[dict[str, Any]], sizes: Sequence[int]) -> dict[str, Any]:
    """Medians per source set and S."""
    out: dict[str, Any] = {}
    for source in ("utkface", "clips"):
        mine = [r for r in rows if r["source"] == source]
        if not mine:
            continue
        per: dict[str, Any] = {
            "faces": len(mine),
            "iod_px_median": round(statistics.median(r["iod_px"] for r in mine), 1),
            "iod_px_range": [min(r["iod_px"] for r in mine), max(r["iod_px"] for r in mine)],
            "native_size_median": round(statistics.median(r["native_size"] for r in mine), 1),
            "sizes": {},
        }
        for s in sizes:
            key = str(s)
            kept = [
                round(statistics.median(r["sizes"][key]["kept"][i] for r in mine), 3)
                for i in range(len(BANDS))
            ]
            err = [
                round(statistics.median(r["sizes"][key]["error"][i] for r in mine), 3)
                for i in range(len(BANDS))
            ]
            psnr = round(statistics.median(r["sizes"][key]["psnr_db"] for r in mine), 2)
            per["sizes"][key] = {"kept_median": kept, "error_median": err, "psnr_db_median": psnr}
        out[source] = per
    return out


# ----------------------------------------------------------------------------------------------------------
# Cost


def _round_robin(calls: dict[int, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[int, float]:
    """Median ms of each call, timed one size after the other in each round."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[int, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1000.0)
    return {k: statistics.median(v) for k, v in times.items()}


def _ratios(ms: dict[int, float], ref: int) -> dict[str, float]:
    return {str(k): round(v / ms[ref], 3) for k, v in ms.items()}


def _numpy_call(fn: Callable[[Any], Any], x: Any) -> Any:
    return fn(x).numpy()


def generator_cost(sizes: Sequence[int], rounds: int, train: bool = True) -> dict[str, Any]:
    """ms per crop of the default bundle's generator shape at each S, batch 1 and 8, and training passes."""
    import tensorflow as tf

    from models.bundle import DEFAULT_MODEL, load_manifest
    from models.networks import DiscriminatorConfig, build_discriminator, build_generator

    tf.get_logger().setLevel("ERROR")  # one tf.function per size and batch is meant: no retracing warnings
    _, manifest = load_manifest(DEFAULT_MODEL)
    base = manifest.generator
    ref = sizes[0]
    rng = np.random.default_rng(0)
    gens = {s: build_generator(replace(base, size=s)) for s in sizes}
    channels = 3 + base.cond
    out: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "generator": {**base.to_dict(), "size": "S"},
        "reference": ref,
    }
    for batch, n_rounds in ((1, 2 * rounds), (8, rounds)):
        calls: dict[int, Callable[[], Any]] = {}
        for s, g in gens.items():

            def forward(x: Any, g: Any = g) -> Any:
                return g(x, training=False)

            fn = tf.function(forward, jit_compile=False)
            x = tf.constant(rng.uniform(-1, 1, (batch, s, s, channels)).astype(np.float32))
            calls[s] = partial(_numpy_call, fn, x)
        ms = _round_robin(calls, n_rounds)
        per_crop = {k: v / batch for k, v in ms.items()}
        out[f"batch{batch}"] = {
            "ms_per_crop": {str(k): round(v, 2) for k, v in per_crop.items()},
            "over_ref": _ratios(per_crop, ref),
        }
    if train:
        discs = {s: build_discriminator(DiscriminatorConfig(size=s)) for s in sizes}
        for name, nets, ch in (("train_G", gens, channels), ("train_D", discs, 3)):
            calls = {}
            for s, net in nets.items():

                def step(x: Any, net: Any = net) -> Any:
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.square(net(x, training=True)))
                    grads = tape.gradient(loss, net.trainable_variables)
                    return loss + tf.linalg.global_norm(grads)

                fn = tf.function(step, jit_compile=False)
                x = tf.constant(rng.uniform(-1, 1, (TRAIN_BATCH, s, s, ch)).astype(np.float32))
                calls[s] = partial(_numpy_call, fn, x)
            ms = _round_robin(calls, max(2, rounds // 2))
            out[name] = {
                "ms_per_pass": {str(k): round(v, 1) for k, v in ms.items()},
                "over_ref": _ratios(ms, ref),
            }
        # A CycleGAN step runs G and F forward and backward and both discriminators (on real and fake).
        step_ms = {
            s: 2 * out["train_G"]["ms_per_pass"][str(s)] + 4 * out["train_D"]["ms_per_pass"][str(s)]
            for s in sizes
        }
        out["train_step_estimate"] = {
            "how": "2 × (G fwd+bwd) + 4 × (D fwd+bwd) at batch 2; the losses' own cost left out",
            "ms": {str(k): round(v, 1) for k, v in step_ms.items()},
            "over_ref": _ratios(step_ms, ref),
        }
    return out


def mesh_cost(frame: Frame, landmarks: Landmarks, sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    """ms of the forward warp and of the inverse warp (paste) at each S, on one real frame, one OpenCV thread."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        meshes = {s: CanonicalMesh(MeshOptions(size=s)) for s in sizes}
        fits = {s: m.fit(landmarks, frame.shape) for s, m in meshes.items()}
        texs = {s: m.to_canonical(frame, fits[s]).astype(np.float32) for s, m in meshes.items()}
        fwd = _round_robin({s: partial(m.to_canonical, frame, fits[s]) for s, m in meshes.items()}, rounds)
        inv = _round_robin({s: partial(m.to_frame, texs[s], fits[s]) for s, m in meshes.items()}, rounds)
    finally:
        cv2.setNumThreads(previous)
    ref = sizes[0]
    return {
        "frame": f"{frame.shape[1]}x{frame.shape[0]}",
        "face_roi": list(fits[ref].roi),
        "to_canonical_ms": {str(k): round(v, 3) for k, v in fwd.items()},
        "to_canonical_over_ref": _ratios(fwd, ref),
        "to_frame_ms": {str(k): round(v, 3) for k, v in inv.items()},
        "to_frame_over_ref": _ratios(inv, ref),
    }


# ----------------------------------------------------------------------------------------------------------
# Picture


def _cheek_box(landmarks: Landmarks, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Square (x0, y0, x1, y1) over the image-left eye and the cheek below it, one inter-ocular distance wide."""
    eye = landmarks[list(EYES[0])].mean(0)
    c = 0.5 * (eye + landmarks[CHEEK])
    half = 0.5 * inter_ocular(landmarks)
    h, w = shape[:2]
    x0 = int(np.clip(round(c[0] - half), 0, w - 1))
    y0 = int(np.clip(round(c[1] - half), 0, h - 1))
    x1 = int(np.clip(round(c[0] + half), x0 + 1, w))
    y1 = int(np.clip(round(c[1] + half), y0 + 1, h))
    return x0, y0, x1, y1


def _label(tile: NDArray[np.uint8], text: str) -> NDArray[np.uint8]:
    bar = np.full((22, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, tile])


def picture(faces: Sequence[Face], sizes: Sequence[int], tile: int = 288) -> NDArray[np.uint8]:
    """RGB grid: one row per face, columns original and round trip at each S, native crop enlarged."""
    meshes = {s: CanonicalMesh(MeshOptions(size=s)) for s in sizes}
    rows = []
    for face in faces:
        x0, y0, x1, y1 = _cheek_box(face.landmarks, face.frame.shape)
        side = x1 - x0
        crops = [("original", face.frame[y0:y1, x0:x1])]
        for s, mesh in meshes.items():
            rt = round_trip(face.frame, mesh, mesh.fit(face.landmarks, face.frame.shape))
            crops.append((f"S={s}", np.round(rt[y0:y1, x0:x1]).astype(np.uint8)))
        tiles = []
        for name, crop in crops:
            big = cv2.resize(
                crop, (tile, round(tile * crop.shape[0] / crop.shape[1])), interpolation=cv2.INTER_NEAREST
            )
            tiles.append(
                _label(
                    np.asarray(big, np.uint8),
                    f"{face.name} {name} ({side}px)" if name == "original" else name,
                )
            )
        hmax = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, hmax - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    wmax = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, wmax - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.asarray(np.concatenate(rows), np.uint8)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a result file is read by everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_picture(path: Path, image: NDArray[np.uint8]) -> int:
    """Encode (PNG, or JPEG for .jpg/.jpeg) and write via a temp file; returns the byte count."""
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if ext in (".jpg", ".jpeg") else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, buf = cv2.imencode(
        ext if ext in (".png", ".jpg", ".jpeg") else ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params
    )
    if not ok:
        raise OSError(f"could not encode {path}")
    _write_atomic(path, buf.tobytes())
    return int(buf.size)


# ----------------------------------------------------------------------------------------------------------
# Report


@dataclass
class Options:
    sizes: tuple[int, ...] = SIZES
    photos: int = 20
    clips: tuple[str, ...] = CLIPS
    rounds: int = 8
    floor: int = FLOOR_SIZE
    train: bool = True
    data: Path = SHARED
    picture: Path | None = None
    json: Path | None = None
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run(opts: Options) -> dict[str, Any]:
    """Every measurement; the result as JSON-ready dict."""
    t0 = time.perf_counter()
    sizes = tuple(sorted(opts.sizes))
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": opts.command,
        "machine": machine(),
        "sizes": list(sizes),
        "bands_sigma_px": [list(b) for b in BANDS],
        "region": {
            "mesh_size": REGION_SIZE,
            "threshold": REGION_THRESHOLD,
            "erode_iod_share": REGION_ERODE,
        },
    }
    photos = photo_paths(opts.data / "utkface", opts.photos)
    clips = [opts.data / "videos" / c for c in opts.clips if (opts.data / "videos" / c).is_file()]
    faces = load_faces(photos, clips)
    detail_sizes = sizes + ((opts.floor,) if opts.floor and opts.floor not in sizes else ())
    res["floor_size"] = opts.floor or None
    # Each size low-passes a face larger than its training crops' sampling, as the runtime does
    # (`MeshOptions.antialias`); the oversampled floor does not, so it stays the floor of the two warps alone.
    meshes = {
        s: CanonicalMesh(MeshOptions(size=s, antialias=0.0 if s == opts.floor else None))
        for s in detail_sizes
    }
    region_mesh = meshes.get(REGION_SIZE) or CanonicalMesh(MeshOptions(size=REGION_SIZE))
    rows = []
    for face in faces:
        row = {
            "source": face.source,
            "name": face.name,
            "frame": f"{face.frame.shape[1]}x{face.frame.shape[0]}",
        }
        row.update(detail_row(face.frame, face.landmarks, meshes, region_mesh))
        rows.append(row)
    res["faces"] = rows
    res["detail"] = summarise(rows, detail_sizes)
    res["seconds_detail"] = round(time.perf_counter() - t0, 1)

    clip_faces = [f for f in faces if f.source == "clips"]
    wide = [f for f in clip_faces if f.frame.shape[:2] == (720, 1280)]
    if wide:
        res["mesh"] = mesh_cost(wide[0].frame, wide[0].landmarks, sizes, opts.rounds * 4)
    t1 = time.perf_counter()
    res["generator"] = generator_cost(sizes, opts.rounds, opts.train)
    res["seconds_generator"] = round(time.perf_counter() - t1, 1)

    if opts.picture is not None and clip_faces:
        chosen, seen = [], set()
        for f in clip_faces:  # frame 0 of the first clips, one face per clip
            clip = f.name.split("@")[0]
            if clip not in seen:
                seen.add(clip)
                chosen.append(f)
        img = picture(chosen[:PICTURE_CLIPS], sizes)
        res["picture"] = {"path": str(opts.picture), "bytes": write_picture(opts.picture, img)}
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def table(res: dict[str, Any]) -> str:
    """Readable tables (markdown) of the medians and the costs."""
    sizes = res["sizes"]
    names = [_band_name((b[0], b[1])) for b in res["bands_sigma_px"]]
    bands, fine = " | ".join(names), names[0]
    lines = [
        "Detail kept by the round trip (median band-energy ratio inside the face, the finest band's error energy"
        " over its energy, PSNR in the face)",
        "",
        f"| faces | n | IOD px (median, range) | native S | S | {bands} | error {fine} | PSNR dB |",
        "|---|---|---|---|---|" + "---|" * len(res["bands_sigma_px"]) + "---|---|",
    ]
    for source, per in res["detail"].items():
        for key, d in per["sizes"].items():
            s = f"{key} (warp floor)" if int(key) == res.get("floor_size") else key
            kept = " | ".join(f"{k:.2f}" for k in d["kept_median"])
            lo, hi = per["iod_px_range"]
            lines.append(
                f"| {source} | {per['faces']} | {per['iod_px_median']:.0f} ({lo:.0f}-{hi:.0f}) | "
                f"{per['native_size_median']:.0f} | {s} | {kept} | {d['error_median'][0]:.2f} | "
                f"{d['psnr_db_median']:.1f} |"
            )
    g = res["generator"]
    lines += [
        "",
        f"Cost against S={g['reference']} measured in the same run (ms; ratio to {g['reference']})",
        "",
    ]
    head = "| S | G b=1 ms/crop | G b=8 ms/crop |"
    sep = "|---|---|---|"
    if "train_G" in g:
        head += " G fwd+bwd b=2 ms | D fwd+bwd b=2 ms | train step est. |"
        sep += "---|---|---|"
    if "mesh" in res:
        head += f" to_canonical ms ({res['mesh']['frame']}) | to_frame ms |"
        sep += "---|---|"
    lines += [head, sep]
    for s in sizes:
        k = str(s)
        cells = [
            f"{g['batch1']['ms_per_crop'][k]:.1f} ({g['batch1']['over_ref'][k]:.2f}×)",
            f"{g['batch8']['ms_per_crop'][k]:.1f} ({g['batch8']['over_ref'][k]:.2f}×)",
        ]
        if "train_G" in g:
            cells += [
                f"{g['train_G']['ms_per_pass'][k]:.0f} ({g['train_G']['over_ref'][k]:.2f}×)",
                f"{g['train_D']['ms_per_pass'][k]:.0f} ({g['train_D']['over_ref'][k]:.2f}×)",
                f"{g['train_step_estimate']['over_ref'][k]:.2f}×",
            ]
        if "mesh" in res:
            m = res["mesh"]
            cells += [
                f"{m['to_canonical_ms'][k]:.2f} ({m['to_canonical_over_ref'][k]:.2f}×)",
                f"{m['to_frame_ms'][k]:.2f} ({m['to_frame_over_ref'][k]:.2f}×)",
            ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(SIZES),
        help="texture sides; the smallest is the reference",
    )
    ap.add_argument("--photos", type=int, default=20, help="UTKFace photos aged 50-80")
    ap.add_argument("--clips", nargs="*", default=list(CLIPS), help="clip file names in DATA/videos")
    ap.add_argument("--rounds", type=int, default=8, help="timing rounds (batch 1 gets twice as many)")
    ap.add_argument(
        "--floor", type=int, default=FLOOR_SIZE, help="oversampled size for the detail table only (0: none)"
    )
    ap.add_argument("--no-train", action="store_true", help="skip the forward+backward timings")
    ap.add_argument("--data", type=Path, default=SHARED, help="folder holding utkface/ and videos/")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--picture", type=Path, help="write the crop grid here (.png, or .jpg)")
    args = ap.parse_args(argv)
    if not (args.data / "utkface").is_dir() and not (args.data / "videos").is_dir():
        print(f"{args.data} holds neither utkface/ nor videos/; pass --data", file=sys.stderr)
        return 2
    argv_used = sys.argv[1:] if argv is None else argv
    opts = Options(
        sizes=tuple(args.sizes),
        photos=args.photos,
        clips=tuple(args.clips),
        rounds=args.rounds,
        floor=args.floor,
        train=not args.no_train,
        data=args.data,
        picture=args.picture,
        json=args.json,
        command=shlex.join(["python", "-m", "benchmarks.texture_size", *argv_used]),
    )
    res = run(opts)
    print(table(res))
    print(f"\n{res['seconds']} s; load average {res['machine']['loadavg']} → {res['machine']['loadavg_end']}")
    if args.json:
        _write_atomic(args.json, (json.dumps(res, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
