"""Aligned-crop cache: every face aligned once with `faceage_video.face.align`, stored as uint8 `.npy` shards.

Layout of a cache folder:

    index.json                      template, age ranges, counts, faces not found
    young_train.npy  (N, S, S, 3)   uint8 RGB crops, one file per domain and split
    young_train.json                per-crop metadata: path, age, gender, identity
    ...

Training reads only the cache, so it never re-runs landmarks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from faceage_video.face.align import AlignTemplate, align_face
from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, detect_padded
from training.datasets import AgeRanges, DomainSplit, FaceRecord
from training.errors import DatasetError
from training.landmarks import largest_face, read_rgb

PARTS = ("young_train", "young_val", "old_train", "old_val")


@dataclass(frozen=True)
class CropSet:
    """One cached part: crops and their records."""

    crops: NDArray[np.uint8]  # (N, S, S, 3) RGB
    records: tuple[FaceRecord, ...]


def align_records(
    records: Sequence[FaceRecord],
    landmarker: FaceLandmarker,
    template: AlignTemplate,
    progress: Progress | None = None,
    label: str = "",
) -> tuple[CropSet, list[str]]:
    """Detect, align and crop each record's largest face.

    Returns:
        The crops of the faces found, and the paths where no face (or no readable image) was found.
    """
    crops: list[NDArray[np.uint8]] = []
    kept: list[FaceRecord] = []
    missing: list[str] = []
    task = progress.add_task(label, total=len(records)) if progress is not None else None
    for rec in records:
        img = read_rgb(rec.path)
        faces = detect_padded(landmarker, img) if img is not None else []
        if img is None or not faces:
            missing.append(rec.path)
        else:
            lm = largest_face(faces)  # the chip's subject; bystanders in the margin are smaller
            crop, _ = align_face(img, lm, template)
            crops.append(crop)
            kept.append(rec)
        if progress is not None and task is not None:
            progress.advance(task)
    s = template.size
    arr = np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8)
    return CropSet(arr, tuple(kept)), missing


def build_cache(
    split: DomainSplit,
    out_dir: str | Path,
    template: AlignTemplate,
    ranges: AgeRanges,
    source: str,
    landmarker_path: str | None = None,
) -> dict[str, Any]:
    """Align every face of every part and write the cache. Existing parts are kept (the build resumes).

    Returns:
        The index (counts per part, faces not found).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = {
        "young_train": split.young_train,
        "young_val": split.young_val,
        "old_train": split.old_train,
        "old_val": split.old_val,
    }
    index: dict[str, Any] = {
        "template": template.to_dict(),
        "ranges": {"young": list(ranges.young), "old": list(ranges.old)},
        "source": source,
        "counts": {},
        "not_found": {},
    }
    opts = LandmarkerOptions(mode="image", max_faces=2, model_path=landmarker_path)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with FaceLandmarker(opts) as lm, Progress(*columns) as progress:
        for name, recs in parts.items():
            npy, meta = out / f"{name}.npy", out / f"{name}.json"
            if npy.exists() and meta.exists():
                info = json.loads(meta.read_text())
                index["counts"][name] = len(info["records"])
                index["not_found"][name] = info["not_found"]
                continue
            cs, missing = align_records(recs, lm, template, progress, f"aligning {name}")
            tmp = out / f".{name}.tmp.npy"
            np.save(tmp, cs.crops)
            tmp.replace(npy)
            meta.write_text(
                json.dumps({"records": [asdict(r) for r in cs.records], "not_found": missing}, indent=0)
            )
            index["counts"][name] = len(cs.records)
            index["not_found"][name] = missing
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return index


def load_part(cache_dir: str | Path, part: str, mmap: bool = True) -> CropSet:
    """Read one cached part.

    Raises:
        DatasetError: if the part is missing, naming the command that builds it.
    """
    if part not in PARTS:
        raise DatasetError(f"unknown cache part {part!r}; expected one of {PARTS}")
    d = Path(cache_dir)
    npy, meta = d / f"{part}.npy", d / f"{part}.json"
    if not npy.exists() or not meta.exists():
        raise DatasetError(
            f"crop cache part {npy} is missing. Build it with `python -m training cache --config CONFIG`."
        )
    crops = np.load(npy, mmap_mode="r" if mmap else None)
    recs = tuple(FaceRecord(**r) for r in json.loads(meta.read_text())["records"])
    if len(crops) != len(recs):
        raise DatasetError(
            f"crop cache {d} is inconsistent ({len(crops)} crops, {len(recs)} records); rebuild it"
        )
    return CropSet(crops, recs)


def load_index(cache_dir: str | Path) -> dict[str, Any]:
    """The cache's index.json."""
    p = Path(cache_dir) / "index.json"
    if not p.exists():
        raise DatasetError(f"{p} missing. Build the cache with `python -m training cache --config CONFIG`.")
    data: dict[str, Any] = json.loads(p.read_text())
    return data
