"""Canonical-texture cache: every face registered on the dense mesh once, stored with its age and shape.

    faces.npy        (N, S, S, 3)  uint8 RGB canonical textures (`faceage_video.face.mesh`)
    faces.npz        paths (N,), age (N,), gender (N,), race (N,), val (N,) bool,
                     shape (N, 468, 2) float32: the face's landmarks after the least-squares similarity onto
                     the layout, in canonical pixels (what is left is the face's own shape)
    index.json       mesh, counts, provenance

Training, the teacher's prototypes and the validation judges read only this cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faceage_video.face.align import apply_affine
from faceage_video.face.mesh import N_LANDMARKS, CanonicalMesh
from training.datasets import hash_split
from training.errors import DatasetError
from training.landmarks import read_rgb

_UTK = re.compile(r"^(\d+)_(\d)_(\d)_")


@dataclass(frozen=True)
class CanonicalSet:
    """The cached faces.

    Attributes:
        faces: (N, S, S, 3) uint8 canonical textures (memory-mapped).
        age, gender, race: (N,) int labels (-1 unknown).
        val: (N,) True for the validation split.
        shape: (N, 468, 2) float32 registered landmark positions in canonical pixels.
        paths: (N,) source files.
    """

    faces: NDArray[np.uint8]
    age: NDArray[np.int32]
    gender: NDArray[np.int32]
    race: NDArray[np.int32]
    val: NDArray[np.bool_]
    shape: NDArray[np.float32]
    paths: NDArray[np.str_]

    def select(self, mask: NDArray[np.bool_]) -> NDArray[np.intp]:
        return np.flatnonzero(mask)


def build_canonical_cache(
    landmarks: dict[str, NDArray[Any]], mesh: CanonicalMesh, out_dir: str | Path, every: int = 1000
) -> dict[str, Any]:
    """Warp every face with landmarks into canonical space and write the cache (atomically per file).

    Args:
        landmarks: the landmark cache (`training.landmarks.detect_landmarks`).
        mesh: the canonical mesh at the training size.
        out_dir: cache folder.

    Returns:
        The index.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    idx = np.flatnonzero(landmarks["found"])
    s = mesh.size
    faces = np.lib.format.open_memmap(
        out / ".faces.tmp.npy", mode="w+", dtype=np.uint8, shape=(len(idx), s, s, 3)
    )
    shape = np.zeros((len(idx), N_LANDMARKS, 2), np.float32)
    meta: dict[str, list[Any]] = {"paths": [], "age": [], "gender": [], "race": [], "val": []}
    for j, i in enumerate(idx):
        path = str(landmarks["paths"][i])
        img = read_rgb(path)
        if img is None:
            raise DatasetError(f"{path} is listed in the landmark cache but cannot be read")
        fit = mesh.fit(landmarks["landmarks"][i], img.shape)
        faces[j] = mesh.to_canonical(img, fit)
        shape[j] = apply_affine(fit.similarity, fit.vertices[:N_LANDMARKS])
        name = Path(path).name
        m = _UTK.match(name)
        meta["paths"].append(path)
        meta["age"].append(int(m[1]) if m else -1)
        meta["gender"].append(int(m[2]) if m else -1)
        meta["race"].append(int(m[3]) if m else -1)
        meta["val"].append(hash_split(name) == "val")
        if (j + 1) % every == 0:
            print(f"canonical cache {j + 1}/{len(idx)}", flush=True)
    faces.flush()
    del faces
    np.savez(
        out / ".faces.tmp.npz",
        paths=np.array(meta["paths"]),
        age=np.array(meta["age"], np.int32),
        gender=np.array(meta["gender"], np.int32),
        race=np.array(meta["race"], np.int32),
        val=np.array(meta["val"], bool),
        shape=shape,
    )
    (out / ".faces.tmp.npy").replace(out / "faces.npy")
    (out / ".faces.tmp.npz").replace(out / "faces.npz")
    index = {"mesh": mesh.to_dict(), "count": len(idx), "val": int(np.sum(meta["val"]))}
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return index


def load_canonical(cache_dir: str | Path) -> CanonicalSet:
    """Read the cache.

    Raises:
        DatasetError: if it is missing, naming the command that builds it.
    """
    d = Path(cache_dir)
    if not (d / "faces.npy").exists() or not (d / "faces.npz").exists():
        raise DatasetError(
            f"canonical cache {d} is missing. Build it with `python -m training cache --config CONFIG`."
        )
    m = np.load(d / "faces.npz")
    faces = np.load(d / "faces.npy", mmap_mode="r")
    if len(faces) != len(m["age"]):
        raise DatasetError(f"canonical cache {d} is inconsistent; delete it and rebuild")
    return CanonicalSet(faces, m["age"], m["gender"], m["race"], m["val"], m["shape"], m["paths"])
