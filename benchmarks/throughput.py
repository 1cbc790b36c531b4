"""Throughput benchmark: how fast the video pipeline runs, stage by stage and end to end, against references.

    python -m benchmarks.throughput [--model NAME_OR_PATH] [--clips NAME ...] [--start S] [--end S]
                                    [--quick] [--out benchmarks/results/throughput.json]

Every number is measured after a warm-up (model compiled, MediaPipe graph built, files in the page cache),
and the speeds that matter are ratios to references measured in the same run, so a busy machine depresses
every row alike (ARCHITECTURE.md, principle 10):

- the limit: PyAV decode + encode of the same frames with the same codec settings and no processing
  (decoding in its own thread, as the pipeline does);
- the naive loop: one frame at a time, face detection (IMAGE mode) on every frame, an eager Keras call at
  batch 1, nothing overlapped, the same paste-back and encode.

What it measures:

- stages in isolation on one clip (frames held in memory between stages): decode, landmarks + tracking,
  alignment, the generator at each batch size, smoothing + paste-back, encode;
- the generator alone over batch sizes, XLA on and off (and on the CPU too when TensorFlow sees a GPU);
- the real pipeline (`age_video`) on every clip, at a few batch sizes, XLA on and off, at 480p-4K made by
  scaling one clip, and with 1 against 4 faces (a clip tiled 2×2);
- peak RSS of this process, and of a child process running a clip looped to >= 60 s (memory must not grow
  with the length).

Writes JSON (date, machine, versions, command line, every number), a markdown table beside it, and PNG
plots of frames/s against batch size and against resolution. It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import queue
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext, suppress
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
DEFAULT_OUT = Path("benchmarks/results/throughput.json")
SCHEMA = "faceage-throughput/1"
# The clip the stages, references and sweeps run on: one face filling a 512×512 frame, with AAC audio.
MAIN_CLIP = "liveportrait_d12.mp4"
# The clip scaled to each resolution: 16:9, so 480p…4K keep its shape.
RESOLUTION_CLIP = "liveportrait_s18.mp4"
# The clip tiled 2×2 for four faces: short, one face, plain backdrop.
TILE_CLIP = "liveportrait_d0.mp4"
RESOLUTIONS: dict[str, tuple[int, int]] = {
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2160p": (3840, 2160),
}
# Memory the 4K run may need (frames in queues and mattes, ~1 GB), with a margin; skipped below it.
_MEM_FOR_4K_BYTES = 4 << 30
# The generator at the default architecture (models/utkface-128): what an untrained stand-in must match.
DEFAULT_ARCH = {"size": 128, "ngf": 16, "n_blocks": 6}
GOALS = {"e2e_over_generator": 0.85, "e2e_over_naive": 3.0, "long_peak_rss_mb": 2500.0}

Frames = list[Any]  # DecodedFrame list held in memory for the stage benchmarks


# ---------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputOptions:
    """What to measure.

    Attributes:
        model: bundle name or folder; None uses the bundled default when present, else an untrained bundle
            of the default architecture built in a temporary folder (speed does not depend on training).
        videos: folder of the clips.
        clips: clip names for the end-to-end table; empty = every video in `videos`.
        main_clip: the clip of the stages, references and sweeps.
        resolution_clip: the clip scaled to each of `resolutions`.
        tile_clip: the clip tiled 2×2 for the face-count sweep.
        start_s, end_s: the window of every clip that is processed (`--start`/`--end`).
        batch_sizes: generator-alone sweep.
        e2e_batch_sizes: end-to-end sweep on the main clip.
        default_batch: the batch of the ratios, the clip table and the resolution sweep (the CLI default).
        xla_sweep: also measure with XLA off (generator alone, and end to end at `default_batch`).
        resolutions: names from `RESOLUTIONS`; 2160p is skipped when memory is short.
        faces_sweep: 1 face against 4 (the tile clip, scaled 2× against tiled 2×2).
        long_seconds: length of the looped clip for the memory run; 0 skips it.
        long_size: side of the looped clip (small, so the run stays affordable).
        min_time_s: least timed seconds per generator measurement.
        out: the JSON path; the markdown and PNGs go beside it.
        command: the command line, recorded in the JSON.
    """

    model: str | None = None
    videos: Path = DEFAULT_VIDEOS
    clips: tuple[str, ...] = ()
    main_clip: str = MAIN_CLIP
    resolution_clip: str = RESOLUTION_CLIP
    tile_clip: str = TILE_CLIP
    start_s: float = 0.0
    end_s: float = 2.0
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    e2e_batch_sizes: tuple[int, ...] = (1, 8, 32)
    default_batch: int = 8
    xla_sweep: bool = True
    resolutions: tuple[str, ...] = tuple(RESOLUTIONS)
    faces_sweep: bool = True
    long_seconds: float = 60.0
    long_size: int = 256
    min_time_s: float = 1.0
    out: Path = DEFAULT_OUT
    command: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start_s < self.end_s:
            raise ValueError(f"need 0 <= start ({self.start_s}) < end ({self.end_s})")
        if not self.batch_sizes or any(not 1 <= b <= 256 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be in 1..256, got {self.batch_sizes}")
        if any(not 1 <= b <= 256 for b in (*self.e2e_batch_sizes, self.default_batch)):
            raise ValueError(f"end-to-end batch sizes must be in 1..256, got {self.e2e_batch_sizes}")
        unknown = [r for r in self.resolutions if r not in RESOLUTIONS]
        if unknown:
            raise ValueError(f"unknown resolutions {unknown}; choose from {list(RESOLUTIONS)}")
        if self.long_seconds < 0 or self.long_size < 64 or self.long_size % 2:
            raise ValueError("long_seconds must be >= 0 and long_size an even number >= 64")

    @classmethod
    def quick(cls, **kw: Any) -> ThroughputOptions:
        """A tiny subset for tests: one clip, 1 s, batch 1 and 8, XLA on only, no sweeps of inputs."""
        base: dict[str, Any] = {
            "end_s": kw.get("start_s", 0.0) + 1.0,
            "batch_sizes": (1, 8),
            "e2e_batch_sizes": (8,),
            "xla_sweep": False,
            "resolutions": (),
            "faces_sweep": False,
            "long_seconds": 0.0,
            "min_time_s": 0.3,
        }
        base.update(kw)
        base.setdefault("clips", (base.get("main_clip", MAIN_CLIP),))
        return cls(**base)


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def rate(frames: int, seconds: float, unit: str = "frames") -> dict[str, Any]:
    """A speed record: count, seconds, per second and milliseconds each."""
    seconds = max(seconds, 1e-9)
    return {
        unit: int(frames),
        "seconds": round(seconds, 4),
        "fps" if unit == "frames" else "per_s": round(frames / seconds, 3),
        "ms_per_frame" if unit == "frames" else "ms_each": round(1000.0 * seconds / max(frames, 1), 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None when either is missing or b is 0."""
    if a is None or b is None or b <= 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return round(a / b, 3)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (1 << 20) if sys.platform == "darwin" else r / 1024, 1)


def own_peak_rss_mb() -> float:
    """Peak RSS of this process's own address space: VmHWM, falling back to ru_maxrss.

    A child started with fork + exec inherits the parent's ru_maxrss (Linux carries the high-water mark
    across exec), so only VmHWM, which belongs to the new address space, is the child's own peak.
    """
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return peak_rss_mb()


def current_rss_mb() -> float:
    """Resident set size now, from /proc (0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20), 1)


def mem_available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """Where the numbers come from: CPU, memory, load, library versions, GPUs TensorFlow sees."""
    import av
    import keras
    import mediapipe
    import tensorflow as tf

    cpu_model = platform.processor() or platform.machine()
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem = None
    with suppress(OSError, IndexError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory_gb": round(mem / (1 << 30), 1) if mem else None,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "nice": os.nice(0),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "mediapipe": mediapipe.__version__,
            "av": av.__version__,
            "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
            "numpy": np.__version__,
        },
    }


# ---------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------


def make_untrained_bundle(folder: Path, size: int = 128, ngf: int = 16, n_blocks: int = 6) -> Path:
    """A bundle of the default architecture with untrained weights, for speed measurements only."""
    from faceage_video.face.align import AlignTemplate
    from models.bundle import Manifest, save_bundle
    from models.networks import GeneratorConfig, build_generator

    cfg = GeneratorConfig(size=size, ngf=ngf, n_blocks=n_blocks)
    manifest = Manifest(
        name=f"untrained-{size}",
        generator=cfg,
        template=AlignTemplate(size).to_dict(),
        training={"steps": 0, "note": "untrained; for throughput benchmarks only"},
    )
    gens = {k: build_generator(cfg, name=k) for k in ("G", "F")}
    card = (
        "# untrained\n\nThe default architecture with untrained weights. Its speed is the trained model's.\n"
    )
    return save_bundle(folder, manifest, gens, card)


def resolve_model(model: str | None, workdir: Path) -> tuple[str, dict[str, Any]]:
    """The bundle to benchmark and a description of it.

    Raises:
        BundleError: an explicitly named model does not exist.
    """
    from models.bundle import BundleError, load_manifest

    try:
        folder, man = load_manifest(model)
        return str(folder), {
            "name": man.name,
            "path": str(folder),
            "generator": man.generator.to_dict(),
            "steps": man.training.get("steps"),
            "untrained": False,
        }
    except BundleError:
        if model is not None:
            raise
    folder = make_untrained_bundle(workdir / "untrained-128", **DEFAULT_ARCH)
    return str(folder), {
        "name": "untrained-128",
        "path": None,
        "generator": dict(DEFAULT_ARCH),
        "steps": 0,
        "untrained": True,
        "note": "default bundle absent: default architecture, untrained weights",
    }


class Engines:
    """One warmed `AgingEngine` per (batch size, XLA, device), reused by every measurement."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._engines: dict[tuple[int, bool, str], Any] = {}
        self.compile_s: dict[tuple[int, bool, str], float] = {}

    def drop(self, batch: int, xla: bool, device: str = "default") -> None:
        self._engines.pop((batch, xla, device), None)

    def get(self, batch: int, xla: bool, device: str = "default") -> Any:
        from faceage_video.engine.generator import AgingEngine, EngineOptions

        key = (batch, xla, device)
        if key not in self._engines:
            eng = AgingEngine(EngineOptions(model=self.model, batch_size=batch, xla=xla))
            t = time.perf_counter()
            with _device(device):
                eng.generate(np.zeros((batch, eng.size, eng.size, 3), np.uint8))  # trace + compile
            self.compile_s[key] = round(time.perf_counter() - t, 3)
            self._engines[key] = eng
        return self._engines[key]


def _device(device: str) -> Any:
    if device == "default":
        return nullcontext()
    import tensorflow as tf

    return tf.device(f"/{device}:0")


# ---------------------------------------------------------------------------------------------------------
# Inputs made with PyAV
# ---------------------------------------------------------------------------------------------------------


def _segment(path: Path, start_s: float | None, end_s: float | None) -> Iterator[NDArray[np.uint8]]:
    from faceage_video.media.reader import ReaderOptions, VideoReader

    with VideoReader(path, ReaderOptions(start_s=start_s, end_s=end_s)) as r:
        for fr in r:
            yield fr.image


def make_clip(
    src: Path,
    dst: Path,
    size: tuple[int, int] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    tile: int = 1,
    min_seconds: float = 0.0,
) -> Path:
    """Write a derived H.264 clip with PyAV: a window of `src`, tiled, scaled, looped; no audio.

    Args:
        src: source clip.
        dst: output .mp4.
        size: (width, height) of the output; None keeps the (tiled) source size.
        start_s, end_s: the window of the source.
        tile: repeat the picture tile × tile (tile² faces).
        min_seconds: loop the window until the output is at least this long.

    Returns:
        `dst`. Frames stream through one at a time, so memory stays flat at any size and length.
    """
    import av

    from faceage_video.media.reader import probe

    info = probe(src)
    fps = Fraction(info.fps).limit_denominator(1001) if info.fps else Fraction(25)
    with av.open(str(dst), "w") as out:
        stream: Any = None
        n = 0
        loops = 0
        while loops == 0 or n / float(fps) < min_seconds:
            loops += 1
            before = n
            for img in _segment(src, start_s, end_s):
                if tile > 1:
                    img = np.ascontiguousarray(np.tile(img, (tile, tile, 1)))
                h, w = img.shape[:2]
                ow, oh = size or (w, h)
                if stream is None:
                    stream = out.add_stream("libx264", rate=fps)
                    stream.width, stream.height, stream.pix_fmt = ow, oh, "yuv420p"
                    stream.options = {"crf": "18", "preset": "veryfast"}
                    stream.codec_context.time_base = 1 / fps
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
                    width=ow, height=oh, format="yuv420p", interpolation="AREA" if ow < w else "BICUBIC"
                )
                frame.pts = n
                frame.time_base = 1 / fps
                out.mux(stream.encode(frame))
                n += 1
            if n == before:
                raise ValueError(f"{src}: no frames in [{start_s}, {end_s})")
        out.mux(stream.encode(None))
    return dst


# ---------------------------------------------------------------------------------------------------------
# Stages in isolation
# ---------------------------------------------------------------------------------------------------------


def time_decode(path: Path, start_s: float, end_s: float) -> tuple[Frames, dict[str, Any]]:
    """Decode the window twice (the first warms the page cache and the decoder); time the second."""
    from faceage_video.media.reader import ReaderOptions, VideoReader

    def once() -> tuple[Frames, float]:
        t = time.perf_counter()
        with VideoReader(path, ReaderOptions(start_s=start_s, end_s=end_s)) as r:
            frames = list(r)
        return frames, time.perf_counter() - t

    once()
    frames, s = once()
    return frames, rate(len(frames), s)


def make_analyzer(engine: Any, blend: Any, max_faces: int = 4) -> Any:
    """The pipeline's own `FaceAnalyzer` for `engine`'s template (five-point or canonical mesh)."""
    from faceage_video.engine.temporal import TemporalOptions
    from faceage_video.face.landmarks import LandmarkerOptions
    from faceage_video.face.tracker import TrackerOptions
    from faceage_video.stages import FaceAnalyzer

    return FaceAnalyzer(
        LandmarkerOptions(max_faces=max_faces),
        TrackerOptions(max_faces=max_faces),
        TemporalOptions(),
        blend,
        engine.size,
        engine.template,
    )


def time_landmarks(frames: Frames, analyzer: Any) -> tuple[list[Any], dict[str, Any]]:
    """`FaceAnalyzer.track` per frame: scene cut, landmarks (VIDEO mode), tracking, stabilisation.

    A few frames first warm the graph; then the analyser is reset and the timed pass runs 10 s later on
    the same clock, since VIDEO mode needs increasing timestamps. Returns a `TrackedFrame` per frame.
    """
    for fr in frames[:3]:
        analyzer.track(fr)
    analyzer.reset()
    later = [replace(fr, time_s=fr.time_s + 10.0) for fr in frames]
    t = time.perf_counter()
    out = [analyzer.track(fr) for fr in later]
    return out, rate(len(frames), time.perf_counter() - t)


def time_align(frames: Frames, tracked: list[Any], analyzer: Any) -> tuple[list[Any], dict[str, Any]]:
    """`FaceAnalyzer.register` per frame (selection, then alignment with oval and mask, or the mesh fit).

    Returns the pipeline's `FrameJob` per frame, ready for the generator and the paste-back.
    """
    from faceage_video.stages import FrameJob

    pairs = list(zip(frames, tracked, strict=True))
    for fr, tf in pairs[:3]:
        analyzer.register(fr.image, tf.faces)
    t = time.perf_counter()
    jobs = [FrameJob(fr, analyzer.register(fr.image, tf.faces), tf.ended, tf.cut) for fr, tf in pairs]
    return jobs, rate(len(frames), time.perf_counter() - t)


def time_generator(
    engine: Any, crops: NDArray[np.uint8], min_time_s: float, device: str = "default"
) -> dict[str, Any]:
    """Crops per second of `engine.residual` on full batches of real crops.

    The engine has already run once (the compile). One more untimed call warms caches and the allocator;
    then calls are timed until `min_time_s` has passed, with at least two calls at batches up to 16 and
    one above (a batch of 64 takes seconds on a CPU).
    """
    b = engine.options.batch_size
    reps = math.ceil(b / max(len(crops), 1))
    batch = np.ascontiguousarray(np.concatenate([crops] * reps)[:b])
    least = 2 if b <= 16 else 1
    calls = 0
    with _device(device):
        engine.residual(batch)
        t = time.perf_counter()
        while True:
            engine.residual(batch)
            calls += 1
            el = time.perf_counter() - t
            if el >= min_time_s and calls >= least:
                break
    r = rate(calls * b, el, unit="crops")
    r.update({"batch": b, "calls": calls, "trace_count": engine.trace_count})
    return r


def time_smooth_paste(jobs: list[Any], residuals: NDArray[np.float32], blend: Any) -> dict[str, Any]:
    """Per-track residual smoothing and paste-back of every face, as `stages.render` does them."""
    from faceage_video.engine.temporal import ResidualSmoother, TemporalOptions
    from faceage_video.stages import composite

    def run(js: list[Any]) -> None:
        composite(js, residuals, ResidualSmoother(TemporalOptions()), blend)

    run(jobs[:3])
    t = time.perf_counter()
    run(jobs)
    return rate(len(jobs), time.perf_counter() - t)


def time_encode(
    path: Path,
    frames: Frames,
    images: list[NDArray[np.uint8]],
    workdir: Path,
    writer: Any,
    start_s: float,
    end_s: float,
) -> dict[str, Any]:
    """Encode the frames with the pipeline's audio remux, flush included; a short warm-up file first."""
    from faceage_video.media.reader import probe
    from faceage_video.media.writer import VideoWriter

    info = probe(path)
    audio = str(path) if writer.audio else None

    def run(n: int, name: str) -> float:
        t = time.perf_counter()
        with VideoWriter(workdir / name, info, writer, audio_source=audio, start_s=start_s, end_s=end_s) as w:
            for fr, img in list(zip(frames, images, strict=True))[:n]:
                w.write(img, fr.pts, fr.time_base)
        return time.perf_counter() - t

    run(3, "encode_warm.mp4")
    return rate(len(frames), run(len(frames), "encode.mp4"))


# ---------------------------------------------------------------------------------------------------------
# References and the real pipeline
# ---------------------------------------------------------------------------------------------------------


def run_limit(
    src: Path, dst: Path, writer: Any, start_s: float | None, end_s: float | None
) -> dict[str, Any]:
    """The limit: decode (own thread, bounded queue, as the pipeline) and encode, no processing."""
    from faceage_video.media.reader import ReaderOptions, VideoReader
    from faceage_video.media.writer import VideoWriter

    t = time.perf_counter()
    n = 0
    with VideoReader(src, ReaderOptions(start_s=start_s, end_s=end_s)) as reader:
        q: queue.Queue[Any] = queue.Queue(8)
        errors: list[BaseException] = []

        def decode() -> None:
            try:
                for fr in reader:
                    q.put(fr)
            except BaseException as exc:
                errors.append(exc)
            finally:
                q.put(None)

        th = threading.Thread(target=decode, daemon=True)
        th.start()
        audio = str(src) if writer.audio else None
        with VideoWriter(dst, reader.info, writer, audio_source=audio, start_s=start_s, end_s=end_s) as w:
            while (fr := q.get()) is not None:
                w.write(fr.image, fr.pts, fr.time_base)
                n += 1
        th.join()
        if errors:
            raise errors[0]
    return rate(n, time.perf_counter() - t)


def run_naive(
    src: Path,
    dst: Path,
    model: str,
    writer: Any,
    blend: Any,
    start_s: float | None,
    end_s: float | None,
    max_faces: int = 4,
) -> dict[str, Any]:
    """The naive loop: per frame, detect (IMAGE mode), align, eager Keras at batch 1, paste back, encode.

    The model call and the detector are warmed once before the clock starts; nothing else is cached. The
    network's input is the engine's own (`model_input`: RGB, plus the two age maps of a conditioned bundle),
    and faces are cut in the bundle's face space (five-point crop or canonical mesh), so any bundle runs.
    """
    from faceage_video.engine.generator import EngineOptions, face_space, model_input
    from faceage_video.face.align import align_face, apply_affine
    from faceage_video.face.blend import crop_mask, paste_back, paste_back_mesh
    from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, oval_polygon
    from faceage_video.face.mesh import CanonicalMesh
    from faceage_video.media.reader import ReaderOptions, VideoReader
    from faceage_video.media.writer import VideoWriter
    from models.bundle import load_generator

    g, manifest = load_generator(model, "G")
    space = face_space(manifest.template)
    conditioned = manifest.generator.cond > 0
    ages = np.asarray([EngineOptions(model=model).ages], np.float32)  # (1, 2): the engine's defaults
    size = space.size

    def generate(crop: NDArray[np.uint8]) -> NDArray[np.float32]:
        y = np.asarray(g(model_input(crop[None], ages, conditioned), training=False))[0]
        return ((y + 1.0) * 127.5).astype(np.float32)

    n = faces = 0
    with FaceLandmarker(LandmarkerOptions(mode="image", max_faces=max_faces)) as lm:
        generate(np.zeros((size, size, 3), np.uint8))
        lm.detect(np.zeros((256, 256, 3), np.uint8))
        t = time.perf_counter()
        with VideoReader(src, ReaderOptions(start_s=start_s, end_s=end_s)) as reader:
            audio = str(src) if writer.audio else None
            with VideoWriter(dst, reader.info, writer, audio_source=audio, start_s=start_s, end_s=end_s) as w:
                for fr in reader:
                    img = fr.image
                    for lms in lm.detect(img):
                        if isinstance(space, CanonicalMesh):
                            fit = space.fit(lms, img.shape)
                            crop = space.to_canonical(img, fit)
                            mask = space.face_mask(fit, blend.mask)
                            change = generate(crop) - crop.astype(np.float32)
                            img, _ = paste_back_mesh(img, change, mask, fit, space, blend)
                        else:
                            crop, m = align_face(img, lms, space)
                            oval = apply_affine(m, oval_polygon(lms)) if blend.mask == "face" else None
                            mask = crop_mask(blend.mask, size, oval, blend.feather)
                            img, _ = paste_back(img, generate(crop), crop, m, mask, blend)
                        faces += 1
                    w.write(img, fr.pts, fr.time_base)
                    n += 1
    s = time.perf_counter() - t
    r = rate(n, s)
    r["faces"] = faces
    return r


def run_e2e(
    src: Path, dst: Path, engine: Any, start_s: float | None, end_s: float | None, **stage_kw: Any
) -> dict[str, Any]:
    """The real pipeline, `age_video`, with a warm engine and no progress callback."""
    from faceage_video.media.reader import ReaderOptions
    from faceage_video.pipeline import AgeOptions, StageOptions, age_video

    opts = AgeOptions(
        stages=StageOptions(engine=engine.options, **stage_kw),
        reader=ReaderOptions(start_s=start_s, end_s=end_s),
    )
    rep = age_video(src, dst, opts, engine=engine)
    r = rate(rep.frames, rep.wall_s)
    r.update(
        {
            "faces": rep.faces,
            "faces_per_frame": round(rep.faces / max(rep.frames, 1), 3),
            "tracks": len(rep.tracks),
            "batch": engine.options.batch_size,
            "xla": engine.xla,
            "stage_busy_s": rep.stage_s,
            # Start-up of this run (engine warm, so mostly the landmarker) and the rate without it.
            "startup_s": rep.startup_s,
            "startup": rep.startup,
            "processing_fps": round(rep.processing_fps, 3),
        }
    )
    return r


# ---------------------------------------------------------------------------------------------------------
# Memory on a long clip, in a child process so its peak is its own
# ---------------------------------------------------------------------------------------------------------


def rss_child(src: str, dst: str, model: str, batch: int, xla: bool) -> dict[str, Any]:
    """Run the pipeline on `src` here, sampling RSS every 0.25 s; returns peaks and samples (JSON-able)."""
    from faceage_video.engine.generator import AgingEngine, EngineOptions

    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append((round(time.perf_counter() - t0, 2), current_rss_mb()))

    engine = AgingEngine(EngineOptions(model=model, batch_size=batch, xla=xla))
    engine.generate(np.zeros((batch, engine.size, engine.size, 3), np.uint8))
    after_load = current_rss_mb()
    th = threading.Thread(target=sample, daemon=True)
    t_run = time.perf_counter() - t0
    th.start()
    try:
        r = run_e2e(Path(src), Path(dst), engine, None, None)
    finally:
        stop.set()
        th.join()
    run_samples = [s for s in samples if s[0] >= t_run]
    n = len(run_samples)
    q = max(1, n // 4)
    first = max((s[1] for s in run_samples[:q]), default=0.0)
    last = max((s[1] for s in run_samples[-q:]), default=0.0)
    return {
        "frames": r["frames"],
        "seconds_of_video": None,
        "fps": r["fps"],
        "rss_after_model_mb": after_load,
        "rss_max_first_quarter_mb": first,
        "rss_max_last_quarter_mb": last,
        "growth_mb": round(last - first, 1),
        "peak_rss_mb": own_peak_rss_mb(),
        "sampled_max_mb": max((s[1] for s in run_samples), default=0.0),
        "samples": run_samples[:: max(1, n // 60)],
    }


def run_long_rss(src: Path, dst: Path, model: str, batch: int, xla: bool, seconds_of_video: float) -> dict:
    """`rss_child` in a fresh interpreter; its ru_maxrss is the pipeline's alone."""
    code = (
        "import json, sys; from benchmarks.throughput import rss_child; "
        "print('@@' + json.dumps(rss_child(*json.loads(sys.argv[1]))))"
    )
    arg = json.dumps([str(src), str(dst), model, batch, xla])
    p = subprocess.run(
        [sys.executable, "-c", code, arg], cwd=ROOT, capture_output=True, text=True, check=False
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("@@")), None)
    if p.returncode != 0 or line is None:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-800:]}"}
    res: dict[str, Any] = json.loads(line[2:])
    res["seconds_of_video"] = round(seconds_of_video, 2)
    res["meets_goal"] = res["peak_rss_mb"] <= GOALS["long_peak_rss_mb"]
    return res


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


Log = Callable[[str], None]


def _log_to_stderr(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_throughput(opts: ThroughputOptions, log: Log = _log_to_stderr) -> dict[str, Any]:
    """Measure everything `opts` asks for and write JSON, markdown and plots.

    Returns:
        The results dict (also written to `opts.out`).

    Raises:
        FileNotFoundError: a clip is missing.
    """
    import tensorflow as tf

    from faceage_video.face.blend import BlendOptions
    from faceage_video.media.reader import probe
    from faceage_video.media.writer import WriterOptions

    t_all = time.perf_counter()
    videos = Path(opts.videos)
    main = videos / opts.main_clip
    clips = opts.clips or tuple(sorted(p.name for p in videos.glob("*.mp4")))
    for c in (opts.main_clip, *clips):
        if not (videos / c).is_file():
            raise FileNotFoundError(f"clip {videos / c} not found (pass --videos or --clips)")
    res: dict[str, Any] = {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": opts.command,
        "machine": machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "goals": GOALS,
        "memory": {"peak_rss_after_mb": {}},
    }
    marks: dict[str, float] = res["memory"]["peak_rss_after_mb"]  # ru_maxrss after each section
    writer = WriterOptions()  # the pipeline's defaults: h264, crf 18, medium, audio copied
    blend = BlendOptions()
    window = (opts.start_s, opts.end_s)
    with tempfile.TemporaryDirectory(prefix="faceage-bench-") as tmp:
        work = Path(tmp)
        model, res["model"] = resolve_model(opts.model, work)
        log(f"model: {res['model']['name']} ({model})")
        engines = Engines(model)
        eng_default = engines.get(opts.default_batch, True)

        # --- stages in isolation --------------------------------------------------------------------
        log(f"stages on {opts.main_clip} [{window[0]}, {window[1]}) s")
        frames, dec = time_decode(main, *window)
        analyzer = make_analyzer(eng_default, blend)
        try:
            tracked, lmk = time_landmarks(frames, analyzer)
            jobs, aln = time_align(frames, tracked, analyzer)
        finally:
            analyzer.close()
        crops = np.stack([f.crop for j in jobs for f in j.faces]) if any(j.faces for j in jobs) else None
        if crops is None:
            raise RuntimeError(f"no face found in {main} [{window[0]}, {window[1]}); choose another window")
        n_faces = len(crops)
        fpf = n_faces / len(frames)
        residuals = eng_default.residual(crops)
        pst = time_smooth_paste(jobs, residuals, blend)
        enc = time_encode(main, frames, [j.image for j in jobs], work, writer, *window)
        stages: dict[str, Any] = {
            "clip": opts.main_clip,
            "window_s": list(window),
            "frames": len(frames),
            "size": [int(frames[0].image.shape[1]), int(frames[0].image.shape[0])],
            "faces": n_faces,
            "faces_per_frame": round(fpf, 3),
            "decode": dec,
            "landmarks_track": lmk,
            "align": aln,
            "smooth_paste": pst,
            "encode": enc,
        }
        del frames

        # --- generator alone ------------------------------------------------------------------------
        gpus = tf.config.list_physical_devices("GPU")
        devices = ["default", "CPU"] if gpus else ["default"]
        gen_rows: list[dict[str, Any]] = []
        keep = {(b, True, "default") for b in (*opts.e2e_batch_sizes, opts.default_batch)}
        keep.add((opts.default_batch, False, "default"))
        for device in devices:
            for xla in (True, False) if opts.xla_sweep else (True,):
                for b in opts.batch_sizes:
                    eng = engines.get(b, xla, device)
                    r = time_generator(eng, crops, opts.min_time_s, device)
                    r.update(
                        {
                            "xla": xla,
                            "device": ("GPU" if gpus else "CPU") if device == "default" else device,
                            "compile_s": engines.compile_s[(b, xla, device)],
                        }
                    )
                    gen_rows.append(r)
                    log(f"generator {r['device']} xla={xla} b={b}: {r['per_s']:.1f} crops/s")
                    if (b, xla, device) not in keep:
                        engines.drop(b, xla, device)  # free what no later run needs
        res["generator"] = gen_rows
        marks["generator"] = peak_rss_mb()

        def gen_fps(b: int, xla: bool = True) -> float | None:
            """Generator-only frames/s at the main clip's faces per frame."""
            for r in gen_rows:
                if r["batch"] == b and r["xla"] == xla and r["device"] == ("GPU" if gpus else "CPU"):
                    return float(r["per_s"]) / fpf
            return None

        g_def = next(r for r in gen_rows if r["batch"] == opts.default_batch and r["xla"])
        # Per frame at the clip's faces per frame, from the generator-alone measurement at the default batch.
        stages["generator"] = {
            "batch": opts.default_batch,
            "xla": True,
            "crops_per_s": g_def["per_s"],
            "fps": round(g_def["per_s"] / fpf, 3),
            "ms_per_frame": round(1000.0 * fpf / g_def["per_s"], 3),
        }
        order = ("decode", "landmarks_track", "align", "generator", "smooth_paste", "encode")
        serial_ms = sum(stages[k]["ms_per_frame"] for k in order)
        stages["serial_ms_per_frame"] = round(serial_ms, 3)
        stages["serial_fps"] = round(1000.0 / serial_ms, 3)
        stages["slowest"] = max(order, key=lambda k: stages[k]["ms_per_frame"])
        # The canonical-mesh warps against the five-point ones, per face, at 512² and 4K (benchmarks.mesh_cost).
        from benchmarks.mesh_cost import measure as measure_mesh

        stages["mesh_warp"] = measure_mesh(repeats=5)
        res["stages"] = stages
        marks["stages"] = peak_rss_mb()
        _checkpoint(res, opts.out)

        # --- references and the pipeline on the main clip ---------------------------------------------
        log("warm-up run of the pipeline")
        run_e2e(main, work / "warm.mp4", eng_default, window[0], min(window[1], window[0] + 0.5))
        log("references: limit and naive")
        limit = run_limit(main, work / "limit.mp4", writer, *window)
        naive = run_naive(main, work / "naive.mp4", model, writer, blend, *window)
        res["references"] = {"clip": opts.main_clip, "limit": limit, "naive": naive}
        e2e_batch: list[dict[str, Any]] = []
        for b in sorted({*opts.e2e_batch_sizes, opts.default_batch}):
            r = run_e2e(main, work / f"e2e_b{b}.mp4", engines.get(b, True), *window)
            r["generator_fps"] = gen_fps(b)
            r["over_generator"] = ratio(r["fps"], r["generator_fps"])
            e2e_batch.append(r)
            log(f"e2e b={b}: {r['fps']:.1f} fps (generator alone {r['generator_fps'] or 0:.1f})")
        if opts.xla_sweep:
            eng = engines.get(opts.default_batch, False)
            r = run_e2e(main, work / "e2e_noxla.mp4", eng, *window)
            r["generator_fps"] = gen_fps(opts.default_batch, False)
            r["over_generator"] = ratio(r["fps"], r["generator_fps"])
            e2e_batch.append(r)
            log(f"e2e b={opts.default_batch} no XLA: {r['fps']:.1f} fps")
        e2e: dict[str, Any] = {"main": e2e_batch}
        res["e2e"] = e2e
        marks["main_clip_e2e_and_references"] = peak_rss_mb()
        _checkpoint(res, opts.out)

        # --- every clip ------------------------------------------------------------------------------
        rows = []
        for c in clips:
            src = videos / c
            info = probe(src)
            r = run_e2e(src, work / f"clip_{c}", eng_default, *window)
            lim = run_limit(src, work / f"limit_{c}", writer, *window)
            r.update(
                {
                    "clip": c,
                    "size": [info.width, info.height],
                    "codec": info.codec,
                    "limit_fps": lim["fps"],
                    "over_limit": ratio(r["fps"], lim["fps"]),
                }
            )
            rows.append(r)
            log(f"clip {c}: {r['fps']:.1f} fps, limit {lim['fps']:.1f}")
        e2e["clips"] = rows
        marks["clips"] = peak_rss_mb()
        _checkpoint(res, opts.out)

        # --- resolutions -----------------------------------------------------------------------------
        res_rows = []
        avail = mem_available_bytes()
        for name in opts.resolutions:
            w, h = RESOLUTIONS[name]
            if name == "2160p" and avail is not None and avail < _MEM_FOR_4K_BYTES:
                res_rows.append({"name": name, "skipped": f"only {avail >> 20} MiB available"})
                continue
            src = make_clip(videos / opts.resolution_clip, work / f"res_{name}.mp4", (w, h), *window)
            r = run_e2e(src, work / f"res_{name}_out.mp4", eng_default, None, None)
            lim = run_limit(src, work / f"res_{name}_limit.mp4", writer, None, None)
            r.update(
                {
                    "name": name,
                    "size": [w, h],
                    "limit_fps": lim["fps"],
                    "over_limit": ratio(r["fps"], lim["fps"]),
                }
            )
            res_rows.append(r)
            src.unlink()
            log(f"{name}: {r['fps']:.1f} fps, limit {lim['fps']:.1f}")
        e2e["resolutions"] = res_rows
        marks["resolutions"] = peak_rss_mb()
        _checkpoint(res, opts.out)

        # --- one face against four -------------------------------------------------------------------
        face_rows = []
        if opts.faces_sweep:
            tile_src = videos / opts.tile_clip
            ti = probe(tile_src)
            size2 = (ti.width * 2, ti.height * 2)
            for name, tile in (("1 face (scaled 2x)", 1), ("4 faces (tiled 2x2)", 2)):
                src = make_clip(tile_src, work / f"faces_{tile}.mp4", size2, *window, tile=tile)
                r = run_e2e(src, work / f"faces_{tile}_out.mp4", eng_default, None, None)
                r.update(
                    {
                        "name": name,
                        "size": list(size2),
                        "crops_per_s": round(r["fps"] * r["faces_per_frame"], 3),
                    }
                )
                face_rows.append(r)
                log(f"{name}: {r['fps']:.1f} fps, {r['faces_per_frame']} faces/frame")
        e2e["faces"] = face_rows
        res["e2e"] = e2e

        # --- memory ----------------------------------------------------------------------------------
        marks["faces"] = peak_rss_mb()
        memory: dict[str, Any] = res["memory"]
        memory.update({"process_peak_rss_mb": peak_rss_mb(), "long": None})
        if opts.long_seconds > 0:
            s = opts.long_size
            long_src = make_clip(
                videos / opts.tile_clip, work / "long.mp4", (s, s), min_seconds=opts.long_seconds
            )
            long_info = probe(long_src)
            log(f"long clip: {long_info.duration_s} s at {s}x{s}, {opts.tile_clip} looped")
            memory["long"] = run_long_rss(
                long_src, work / "long_out.mp4", model, opts.default_batch, True, long_info.duration_s or 0.0
            )
            memory["long"].update({"clip": f"{opts.tile_clip} looped", "size": [s, s]})
            log(f"long clip peak RSS {memory['long'].get('peak_rss_mb')} MB")
        memory["process_peak_rss_mb"] = peak_rss_mb()
        res["memory"] = memory

    # --- ratios ---------------------------------------------------------------------------------------
    res["ratios"] = compute_ratios(res, opts.default_batch)
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["wall_s"] = round(time.perf_counter() - t_all, 1)
    write_outputs(res, Path(opts.out))
    return res


def compute_ratios(res: dict[str, Any], default_batch: int) -> list[dict[str, Any]]:
    """The ratio table from measured results: the CLI default (batch `default_batch`, XLA on) against the
    references, and the fastest end-to-end configuration of the run against the same references.

    A pure function of `res`, so a report can be recomputed from a saved JSON.
    """
    main = res["e2e"]["main"]
    ref = res["references"]
    stages = res["stages"]
    d = next(r for r in main if r["batch"] == default_batch and r["xla"])
    best = max(main, key=lambda r: r["fps"])
    best_name = f"b={best['batch']}, XLA {'on' if best['xla'] else 'off'}"
    long = res.get("memory", {}).get("long") or {}
    rows: list[tuple[str, str, float | None, str]] = [
        (f"end-to-end / generator alone (default b={default_batch}, XLA on)", "e2e_over_generator",
         ratio(d["fps"], d["generator_fps"]), f">= {GOALS['e2e_over_generator']}"),
        ("end-to-end / naive loop (default)", "e2e_over_naive", ratio(d["fps"], ref["naive"]["fps"]),
         f">= {GOALS['e2e_over_naive']}"),
        ("end-to-end / limit: decode + encode (default)", "e2e_over_limit", ratio(d["fps"], ref["limit"]["fps"]),
         "-"),
        ("end-to-end / serial sum of the stages (default)", "e2e_over_serial",
         ratio(d["fps"], stages["serial_fps"]), "> 1 (overlap)"),
        (f"fastest end-to-end ({best_name}) / generator alone, same config", "best_over_generator",
         ratio(best["fps"], best["generator_fps"]), f">= {GOALS['e2e_over_generator']}"),
        (f"fastest end-to-end ({best_name}) / naive loop", "best_over_naive",
         ratio(best["fps"], ref["naive"]["fps"]), f">= {GOALS['e2e_over_naive']}"),
        ("naive loop / limit", "naive_over_limit", ratio(ref["naive"]["fps"], ref["limit"]["fps"]), "-"),
        ("long-clip peak RSS, MB", "long_peak_rss_mb", long.get("peak_rss_mb"),
         f"<= {GOALS['long_peak_rss_mb']:.0f}"),
    ]  # fmt: skip
    out = []
    for name, key, value, goal in rows:
        target = GOALS.get(key.replace("best_", "e2e_"))
        meets = None
        if value is not None and target is not None:
            meets = value <= target if key == "long_peak_rss_mb" else value >= target
        out.append({"name": name, "key": key, "value": value, "goal": goal, "meets": meets})
    return out


# ---------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return [*lines, ""]


def markdown(res: dict[str, Any]) -> str:
    """The results as markdown tables (ratios first)."""
    m = res["machine"]
    st = res["stages"]
    v = m["versions"]
    kind = "untrained stand-in" if res["model"]["untrained"] else "bundled"
    out = [
        f"Throughput, {res['date']}: `{res['command']}`",
        "",
        f"Machine: {m['cpu_count']} × {m['cpu_model']}, {m['memory_gb']} GB; GPUs: {m['gpus'] or 'none'}; "
        f"TF {v['tensorflow']}, Keras {v['keras']}, MediaPipe {v['mediapipe']}, PyAV {v['av']}; "
        f"load average {m['loadavg']} at start, {m.get('loadavg_end')} at end. "
        f"Model: {res['model']['name']} ({kind}).",
        "",
        "**Ratios** (same run):",
        "",
    ]
    out += _table(
        ["ratio", "value", "goal", "meets"],
        [[r["name"], _fmt(r["value"], 2), r["goal"], _fmt(r["meets"])] for r in res["ratios"]],
    )
    out += [
        f"**Stages in isolation** ({st['clip']}, {st['size'][0]}×{st['size'][1]}, {st['frames']} frames, "
        f"{st['faces_per_frame']} faces/frame):",
        "",
    ]
    names = {
        "decode": "decode",
        "landmarks_track": "landmarks + tracking",
        "align": "align",
        "generator": f"generator (b={st['generator']['batch']}, XLA)",
        "smooth_paste": "smoothing + paste-back",
        "encode": "encode (h264 crf 18 medium)",
    }
    rows: list[list[Any]] = [[n, st[k]["fps"], st[k]["ms_per_frame"]] for k, n in names.items()]
    rows.append(["serial sum", st["serial_fps"], st["serial_ms_per_frame"]])
    out += _table(["stage", "frames/s", "ms/frame"], rows)
    ref = res["references"]
    out += ["**References and the pipeline** (main clip):", ""]
    rows = [
        ["limit: decode + encode", ref["limit"]["fps"], "", ""],
        ["naive loop", ref["naive"]["fps"], "", ""],
    ]
    for r in res["e2e"]["main"]:
        rows.append(
            [
                f"pipeline b={r['batch']}{'' if r['xla'] else ', no XLA'}",
                r["fps"],
                r["generator_fps"],
                _fmt(r["over_generator"], 2),
            ]
        )
    out += _table(["run", "frames/s", "generator alone, frames/s", "ratio"], rows)
    out += ["**Generator alone** (crops/s; compile s in brackets):", ""]
    gen = res["generator"]
    keys = sorted({(r["device"], r["xla"]) for r in gen})
    batches = sorted({r["batch"] for r in gen})
    rows = []
    for dev, xla in keys:
        row: list[Any] = [f"{dev}, XLA {'on' if xla else 'off'}"]
        for b in batches:
            r = next((x for x in gen if x["device"] == dev and x["xla"] == xla and x["batch"] == b), None)
            row.append(f"{r['per_s']:.1f} ({r['compile_s']:.1f})" if r else "–")
        rows.append(row)
    out += _table(["", *[f"b={b}" for b in batches]], rows)
    if res["e2e"]["clips"]:
        out += ["**Every clip** (pipeline at the default batch):", ""]
        out += _table(
            ["clip", "size", "codec", "frames", "faces/frame", "frames/s", "limit", "/ limit"],
            [
                [
                    r["clip"],
                    f"{r['size'][0]}×{r['size'][1]}",
                    r["codec"],
                    r["frames"],
                    r["faces_per_frame"],
                    r["fps"],
                    r["limit_fps"],
                    _fmt(r["over_limit"], 2),
                ]
                for r in res["e2e"]["clips"]
            ],
        )
    if res["e2e"]["resolutions"]:
        out += ["**Resolutions** (scaled clip):", ""]
        out += _table(
            ["resolution", "frames", "frames/s", "limit", "/ limit", "busy s per stage"],
            [
                [
                    r["name"],
                    r.get("frames"),
                    r.get("fps"),
                    r.get("limit_fps"),
                    _fmt(r.get("over_limit"), 2),
                    r.get("skipped") or ", ".join(f"{k} {v:.1f}" for k, v in r["stage_busy_s"].items()),
                ]
                for r in res["e2e"]["resolutions"]
            ],
        )
    if res["e2e"]["faces"]:
        out += ["**Faces per frame**:", ""]
        out += _table(
            ["input", "size", "faces/frame", "frames/s", "crops/s"],
            [
                [
                    r["name"],
                    f"{r['size'][0]}×{r['size'][1]}",
                    r["faces_per_frame"],
                    r["fps"],
                    r["crops_per_s"],
                ]
                for r in res["e2e"]["faces"]
            ],
        )
    mem = res["memory"]
    lg = mem.get("long") or {}
    out += [
        "**Memory**:",
        "",
        f"- this benchmark process, peak RSS: {mem['process_peak_rss_mb']} MB (every run above, 4K included)",
    ]
    marks = mem.get("peak_rss_after_mb") or {}
    if marks:
        out.append("- its peak after each section: " + ", ".join(f"{k} {v:.0f}" for k, v in marks.items()))
    if lg and "error" not in lg:
        out.append(
            f"- the pipeline alone on a {lg['seconds_of_video']} s clip ({lg['size'][0]}×{lg['size'][1]}, "
            f"{lg['frames']} frames, {lg['fps']} frames/s) in its own process: peak RSS {lg['peak_rss_mb']} MB "
            f"(VmHWM); sampled RSS max {lg.get('sampled_max_mb', '–')} MB; max in the first quarter of the "
            f"clip {lg['rss_max_first_quarter_mb']} MB, in the last {lg['rss_max_last_quarter_mb']} MB "
            f"(growth {lg['growth_mb']} MB)"
        )
        if lg.get("note"):
            out.append(f"- note: {lg['note']}")
    elif lg:
        out.append(f"- long clip failed: {lg['error']}")
    return "\n".join(out) + "\n"


def _checkpoint(res: dict[str, Any], out: Path) -> None:
    """Write what is measured so far, marked partial, so an interrupted run still leaves its numbers."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**res, "partial": True}, indent=1, default=str) + "\n", encoding="utf-8")


def write_outputs(res: dict[str, Any], out: Path) -> None:
    """JSON at `out`, markdown and PNG plots beside it."""
    from benchmarks.plots import plot_batch, plot_resolution

    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    batch_png = out.with_name(out.stem + "_batch.png")
    res_png = out.with_name(out.stem + "_resolution.png")
    res["files"] = {"json": str(out), "markdown": str(md), "plots": []}
    if plot_batch(res, batch_png):
        res["files"]["plots"].append(str(batch_png))
    if plot_resolution(res, res_png):
        res["files"]["plots"].append(str(res_png))
    md.write_text(markdown(res), encoding="utf-8")
    out.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="bundle name or folder (default: the bundled default, else untrained)")
    p.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of the clips")
    p.add_argument(
        "--clips", nargs="*", default=None, help="clip names for the per-clip table (default: all)"
    )
    p.add_argument("--main-clip", default=MAIN_CLIP, help="clip of the stages, references and sweeps")
    p.add_argument("--start", type=float, default=0.0, help="first second of every clip")
    p.add_argument("--end", type=float, default=None, help="stop before this second (default: start + 2)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="generator-alone sweep")
    p.add_argument("--e2e-batch-sizes", type=int, nargs="+", default=None, help="end-to-end sweep")
    p.add_argument("--resolutions", nargs="*", default=None, choices=list(RESOLUTIONS))
    p.add_argument("--no-xla-sweep", action="store_true", help="XLA on only")
    p.add_argument("--no-faces", action="store_true", help="skip the 1-against-4-faces run")
    p.add_argument("--long-seconds", type=float, default=None, help="looped clip for memory; 0 skips")
    p.add_argument("--min-time", type=float, default=None, help="least timed seconds per generator point")
    p.add_argument("--quick", action="store_true", help="tiny subset: one clip, 1 s, batch 1 and 8")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path; .md and .png go beside it")
    return p


def options_from_args(a: argparse.Namespace, command: str) -> ThroughputOptions:
    kw: dict[str, Any] = {
        "model": a.model,
        "videos": a.videos,
        "main_clip": a.main_clip,
        "start_s": a.start,
        "out": a.out,
        "command": command,
    }
    if a.end is not None:
        kw["end_s"] = a.end
    if a.clips is not None:
        kw["clips"] = tuple(a.clips)
    for name, attr in (
        ("batch_sizes", "batch_sizes"),
        ("e2e_batch_sizes", "e2e_batch_sizes"),
        ("resolutions", "resolutions"),
    ):
        if getattr(a, attr) is not None:
            kw[name] = tuple(getattr(a, attr))
    if a.no_xla_sweep:
        kw["xla_sweep"] = False
    if a.no_faces:
        kw["faces_sweep"] = False
    if a.long_seconds is not None:
        kw["long_seconds"] = a.long_seconds
    if a.min_time is not None:
        kw["min_time_s"] = a.min_time
    if a.quick:
        return ThroughputOptions.quick(**kw)
    if "end_s" not in kw:
        kw["end_s"] = a.start + 2.0
    return ThroughputOptions(**kw)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from command-line arguments; print the markdown; return an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(args)
    command = shlex.join(["python", "-m", "benchmarks.throughput", *args])
    try:
        opts = options_from_args(a, command)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not Path(opts.videos).is_dir():
        print(f"error: clips folder {opts.videos} not found (pass --videos)", file=sys.stderr)
        return 3
    res = run_throughput(opts)
    print(markdown(res))
    print(f"wrote {res['files']['json']}, {res['files']['markdown']}, {', '.join(res['files']['plots'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
