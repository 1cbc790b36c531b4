"""Judge any input/output pair with the benchmark's own measures: your footage, any tool.

    python -m benchmarks.quality compare IN OUT [--json FILE] [--max-frames 300] [--samples 12]

IN and OUT are two videos (frame i against frame i) or two folders of images with the same names. The face of
each input picture is found by MediaPipe (IMAGE mode); its region is used for the output picture too. Printed
and written: judged age shift, identity distance and same-person rate, colour cast, blotches, black-and-white
faces tinted and, for videos, the change added between frames (flow-compensated; see
`stability.added_change_by_flow` for its bias: known motion is the clean measure, in the benchmark).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.judges import AgeJudge, IdentityJudge
from benchmarks.measures import colour, regions, stability
from benchmarks.quality import compare as judge_pairs
from benchmarks.quality import judge_images, write_json
from benchmarks.stills import canonical_pair, open_landmarker
from faceage_video.errors import InputError
from faceage_video.face.landmarks import FaceLandmarker, detect_padded
from faceage_video.types import Frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class CompareError(InputError):
    """Bad input to `compare` (exit code 3, as the tool's own input errors): names the cause and the fix."""


def _read(path: Path) -> Frame:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CompareError(f"{path}: not a readable image; pass image files or a video")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _decode(path: Path, max_frames: int) -> list[Frame]:
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise CompareError(f"{path}: no video stream; pass a video or a folder of images")
            out: list[Frame] = []
            for f in c.decode(video=0):
                out.append(np.asarray(f.to_ndarray(format="rgb24"), np.uint8))
                if len(out) >= max_frames:
                    break
            return out
    except av.error.FFmpegError as error:
        raise CompareError(
            f"{path}: cannot be decoded ({error}); pass a video or a folder of images"
        ) from error


def _face_frame(landmarker: FaceLandmarker, image: Frame) -> regions.FaceFrame | None:
    lm = regions.largest_face(detect_padded(landmarker, image, 0.25))
    return None if lm is None else regions.FaceFrame.from_landmarks(lm)


def _inner_mask(frame: regions.FaceFrame, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    inner = regions.region_masks()["inner"].astype(np.uint8)
    back = cv2.warpAffine(
        inner, frame.m, (shape[1], shape[0]), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return np.asarray(back, bool)


def compare_pairs(
    inputs: Sequence[Frame], outputs: Sequence[Frame], samples: int, video: bool
) -> dict[str, Any]:
    """Every measure of outputs against their inputs.

    Args:
        inputs: (H, W, 3) uint8 RGB pictures or frames.
        outputs: the same count, pixel for pixel.
        samples: pictures judged for age, identity and colour (evenly spaced); all of them for images.
        video: also measure the change added between consecutive frames.

    Returns:
        `pairs`, `faces` (inputs with a face), the judges' `compare` numbers, `colour` (`summarize_colour`)
        and, for videos, `temporal` (`added_change_by_flow`).

    Raises:
        CompareError: the counts or sizes differ, or no input has a face.
    """
    if len(inputs) != len(outputs) or not inputs:
        raise CompareError(f"{len(inputs)} inputs and {len(outputs)} outputs: they must pair one to one")
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        if a.shape != b.shape:
            raise CompareError(f"pair {i}: input {a.shape} and output {b.shape} differ in size")
    picks = np.unique(np.linspace(0, len(inputs) - 1, min(samples, len(inputs))).round().astype(int))
    with open_landmarker() as landmarker:
        frames = [_face_frame(landmarker, inputs[i]) for i in (range(len(inputs)) if video else picks)]
    by_index = dict(zip(range(len(inputs)) if video else picks, frames, strict=True))
    found = [int(i) for i in picks if by_index[int(i)] is not None]
    if not found:
        raise CompareError("no face found in any input picture; compare needs faces to judge")
    age_j, id_j = AgeJudge(), IdentityJudge()
    report: dict[str, Any] = {"pairs": len(inputs), "judged": len(found)}
    report.update(judge_pairs(judge_images([inputs[i] for i in found], age_j, id_j),
                              judge_images([outputs[i] for i in found], age_j, id_j)))  # fmt: skip
    changes = []
    for i in found:
        f = by_index[i]
        assert f is not None
        ci, co, masks = canonical_pair(inputs[i], outputs[i], f)
        changes.append(colour.colour_change(ci, co, masks["inner"]))
    report["colour"] = colour.summarize_colour(changes)
    if video:
        masks_all = [None if f is None else _inner_mask(f, inputs[0].shape) for f in frames]
        report["temporal"] = stability.added_change_by_flow(inputs, outputs, masks_all)
    return report


def load_pair(inp: Path, out: Path, max_frames: int) -> tuple[list[Frame], list[Frame], bool]:
    """The pictures of IN and OUT, and whether they are videos.

    Raises:
        CompareError: a path is missing, one is a folder and the other not, or the folders share no name.
    """
    for p in (inp, out):
        if not p.exists():
            raise CompareError(f"{p} does not exist; pass two videos or two folders of images")
    if inp.is_dir() != out.is_dir():
        raise CompareError(f"{inp} and {out}: pass two videos or two folders, not one of each")
    if inp.is_dir():
        names = sorted(
            p.name for p in inp.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and (out / p.name).is_file()
        )
        if not names:
            raise CompareError(
                f"{inp} and {out} share no image file name; outputs must keep their input's names"
            )
        return [_read(inp / n) for n in names], [_read(out / n) for n in names], False
    a, b = _decode(inp, max_frames), _decode(out, max_frames)
    if len(a) != len(b):
        raise CompareError(
            f"{inp} has {len(a)} frames and {out} {len(b)} (first {max_frames}); they must pair one to one"
        )
    return a, b, True


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def main(argv: Sequence[str] | None = None) -> int:
    """`compare IN OUT`: print the measures, write them as JSON when asked; bad input is one line and exit 3."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.quality compare", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("input", type=Path, help="input video, or folder of input images")
    p.add_argument("output", type=Path, help="output video (same frame count), or folder with the same names")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--max-frames", type=int, default=300, help="frames of each video read (default 300)")
    p.add_argument("--samples", type=int, default=12, help="video frames judged for age, identity, colour")
    a = p.parse_args(argv)
    try:
        if a.max_frames < 2 or a.samples < 1:
            raise CompareError("--max-frames must be >= 2 and --samples >= 1")
        inputs, outputs, video = load_pair(a.input, a.output, a.max_frames)
        r = compare_pairs(inputs, outputs, a.samples if video else len(inputs), video)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    r.update(input=str(a.input), output=str(a.output), kind="video" if video else "images")
    c = r["colour"]
    print(f"{r['kind']}: {r['pairs']} pairs, {r['judged']} judged")
    print(f"judged age shift {_fmt(r['shift_mean'], '+.1f')} y (median {_fmt(r['shift_median'], '+.1f')})")
    print(f"identity distance {_fmt(r['id_mean'], '.3f')}, same person {_fmt(r['same_rate'], '.0%')}")
    print(
        f"colour cast {_fmt(c['cast_mean'], '.2f')} (p90 {_fmt(c['cast_p90'], '.2f')}), blotches "
        f"{_fmt(c['blotches_mean'], '.2f')} (p90 {_fmt(c['blotches_p90'], '.2f')}), "
        f"black-and-white faces tinted {c['bw_tinted']} of {c['bw_faces']}"
    )
    if video:
        t = r["temporal"]
        print(
            f"added temporal change {_fmt(t['added_change_flow'], '.3f')} levels/frame over {t['pairs']} frame pairs (flow-compensated, an upper bound)"
        )
    if a.json is not None:
        write_json(a.json, r)
    return 0
