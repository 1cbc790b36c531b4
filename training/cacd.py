"""CACD (Cross-Age Celebrity Dataset, Chen et al. 2014) in its real download layout.

Layout of the dataset root (`--data`):

    CACD2000/                   163,446 JPEGs, 250×250, named AGE_First_Last_NNNN.jpg,
                                e.g. 53_Robin_Williams_0001.jpg; ages 14–62, 2,000 celebrities
    celebrity2000_meta.mat      metadata, MATLAB v5 (scipy.io.loadmat); optional
    celebrity2000.mat           the same metadata plus LBP features, MATLAB v7.3 = HDF5 (h5py); optional

Both .mat files hold two structs:

    celebrityData        one entry per celebrity: name, identity, birth, rank, lfw
    celebrityImageData   one entry per image: age, identity, year, feature, rank, lfw, birth, name
                         - age: age in the photo (year - birth)
                         - identity: the celebrity id, the key into celebrityData.identity
                         - name: the image's FILE name in CACD2000/, not the celebrity's name
                         - feature: a 4,000-d LBP feature per image; never read here

How each format stores `celebrityImageData` (N images):

    v5 (loadmat)     a 1×1 struct array; each field an N×1 array, `name` an N×1 cell of 1-element string
                     arrays, so `s["name"][0, 0][i, 0][0]` is the i-th file name.
    v7.3 (HDF5)      a group with one dataset per field. MATLAB writes column-major, so an N×1 column reads
                     as shape (1, N). `name` holds (1, N) object references, each to an L×1 uint16 dataset
                     (MATLAB chars are UTF-16 code units) under `#refs#`.

Identity: the metadata's celebrity id (as a string) where a .mat file is present, so `split_domains` keeps
each celebrity's photos on one side of the train/validation split. Without metadata the file name gives
both the age and the identity (`First_Last`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.datasets import IMAGE_SUFFIXES, FaceRecord
from training.errors import DatasetError

IMAGE_DIR = "CACD2000"
META_FILES = ("celebrity2000_meta.mat", "celebrity2000.mat")  # in order of preference: v5 loads fastest
IMAGE_STRUCT = "celebrityImageData"

# AGE_First_Last_NNNN: names may hold further underscores, hyphens, dots and non-ASCII letters.
_NAME_RE = re.compile(r"^(\d{1,3})_(.+)_(\d+)$")


@dataclass(frozen=True)
class CacdMeta:
    """The per-image part of a CACD metadata file (`celebrityImageData`), one entry per image.

    Attributes:
        names: image file names in CACD2000/.
        ages: age in each photo, (N,) int64.
        identities: celebrity id of each photo, (N,) int64.
        source: the .mat file read.
    """

    names: tuple[str, ...]
    ages: NDArray[np.int64]
    identities: NDArray[np.int64]
    source: str

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.ages) == len(self.identities):
            raise DatasetError(
                f"{self.source}: {IMAGE_STRUCT} fields disagree in length (name {len(self.names)}, "
                f"age {len(self.ages)}, identity {len(self.identities)}); download the file again"
            )


def _int_column(values: object, field: str, source: str) -> NDArray[np.int64]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise DatasetError(
            f"{source}: {IMAGE_STRUCT}.{field} holds non-finite values; download the file again"
        )
    return np.rint(arr).astype(np.int64)


def _v5_string(cell: object) -> str:
    # A cell entry is a 1-element string array (an empty string loads as an empty array).
    a = np.asarray(cell).ravel()
    return str(a[0]) if a.size else ""


def _read_v5(path: Path) -> CacdMeta:
    import scipy.io

    # Only the per-image struct: celebrityData is not needed, and loadmat reads whole variables.
    mat = scipy.io.loadmat(str(path), variable_names=[IMAGE_STRUCT])
    if IMAGE_STRUCT not in mat:
        raise DatasetError(f"{path} has no {IMAGE_STRUCT} struct; is it the CACD metadata file?")
    s = mat[IMAGE_STRUCT]
    missing = [f for f in ("age", "identity", "name") if f not in (s.dtype.names or ())]
    if missing:
        raise DatasetError(
            f"{path}: {IMAGE_STRUCT} lacks the fields {missing}; is it the CACD metadata file?"
        )
    rec = s[0, 0]
    names = tuple(_v5_string(c) for c in np.asarray(rec["name"]).ravel())
    src = str(path)
    return CacdMeta(
        names, _int_column(rec["age"], "age", src), _int_column(rec["identity"], "identity", src), src
    )


def _read_v73(path: Path) -> CacdMeta:
    import h5py

    src = str(path)
    with h5py.File(path, "r") as f:
        if IMAGE_STRUCT not in f:
            raise DatasetError(f"{path} has no {IMAGE_STRUCT} group; is it the CACD metadata file?")
        g = f[IMAGE_STRUCT]
        missing = [k for k in ("age", "identity", "name") if k not in g]
        if missing:
            raise DatasetError(
                f"{path}: {IMAGE_STRUCT} lacks the fields {missing}; is it the CACD metadata file?"
            )
        # Only these three datasets are read: h5py is lazy, so the feature matrix (GBs) never loads.
        ages = _int_column(g["age"][()], "age", src)
        ids = _int_column(g["identity"][()], "identity", src)
        names = tuple(
            "".join(map(chr, np.asarray(f[ref][()]).ravel().tolist()))
            for ref in np.asarray(g["name"][()]).ravel()
        )
    return CacdMeta(names, ages, ids, src)


def read_cacd_meta(path: str | Path) -> CacdMeta:
    """Read `celebrityImageData` from a CACD metadata file of either MATLAB format.

    The format is told by the file's content, not its name: an HDF5 file (v7.3) goes to h5py, anything else
    to scipy.io.loadmat (v5).

    Raises:
        DatasetError: the file is missing, unreadable, or not CACD metadata.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"CACD metadata file not found: {p}")
    try:
        return _read_v73(p) if h5py.is_hdf5(str(p)) else _read_v5(p)
    except DatasetError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, NotImplementedError) as exc:
        # scipy and h5py raise many types for truncated or foreign files.
        raise DatasetError(f"cannot read CACD metadata {p}: {exc}. Download it again or remove it.") from exc


def _image_dir(root: Path) -> Path:
    """The folder of the JPEGs: root/CACD2000, a doubly extracted root/CACD2000/CACD2000, or root itself."""
    for cand in (root / IMAGE_DIR / IMAGE_DIR, root / IMAGE_DIR):
        if cand.is_dir():
            return cand
    if root.name == IMAGE_DIR:
        return root
    raise DatasetError(
        f"CACD layout needs {root / IMAGE_DIR}/ holding AGE_First_Last_NNNN.jpg files (and optionally "
        f"{META_FILES[0]} beside it). Pass --data PATH to the folder that holds {IMAGE_DIR}/."
    )


def _find_meta(root: Path, image_dir: Path) -> Path | None:
    for folder in dict.fromkeys((root, image_dir.parent, image_dir.parent.parent)):
        for name in META_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def parse_cacd_name(file_name: str) -> tuple[int, str] | None:
    """(age, "First_Last") from a file name `AGE_First_Last_NNNN.jpg`, or None if it does not follow it."""
    stem, suffix = os.path.splitext(file_name)
    m = _NAME_RE.match(stem)
    if m is None or suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return int(m[1]), m[2]


def load_cacd(root: str | Path, use_metadata: bool = True) -> list[FaceRecord]:
    """CACD faces with age and identity.

    Args:
        root: the folder holding `CACD2000/` and, optionally, `celebrity2000_meta.mat` or `celebrity2000.mat`.
        use_metadata: read age and identity from the .mat file when one is present; False parses file names.

    Returns:
        One record per image present on disk, sorted by path. With metadata, images the metadata does not
        list are left out, as are metadata entries without an image.

    Raises:
        DatasetError: the folder is missing or holds no CACD images, or the metadata is unreadable or
            matches no image on disk.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"CACD folder not found: {root}. Pass --data PATH to the folder that holds {IMAGE_DIR}/ "
            f"and {META_FILES[0]}."
        )
    images = _image_dir(root)
    # One directory listing instead of 163k stat calls.
    on_disk = {e.name for e in os.scandir(images) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)}
    if not on_disk:
        raise DatasetError(f"no images in {images}; expected AGE_First_Last_NNNN.jpg files")
    meta_path = _find_meta(root, images) if use_metadata else None
    out: list[FaceRecord] = []
    if meta_path is not None:
        meta = read_cacd_meta(meta_path)
        # Names with accents (Émile_Hirsch) may be stored composed in one place and decomposed in the other.
        disk_by_nfc = {unicodedata.normalize("NFC", n): n for n in on_disk}
        for name, age, ident in zip(meta.names, meta.ages.tolist(), meta.identities.tolist(), strict=True):
            disk_name = disk_by_nfc.get(unicodedata.normalize("NFC", name))
            if disk_name is not None:
                out.append(FaceRecord(str(images / disk_name), age=int(age), identity=str(int(ident))))
        if not out:
            raise DatasetError(
                f"{meta_path} lists {len(meta.names)} images but none of them is in {images}; "
                f"is the metadata from another CACD release?"
            )
    else:
        for name in on_disk:
            parsed = parse_cacd_name(name)
            if parsed is not None:
                out.append(FaceRecord(str(images / name), age=parsed[0], identity=parsed[1]))
        if not out:
            raise DatasetError(f"no CACD images named AGE_First_Last_NNNN.jpg in {images}")
    out.sort(key=lambda r: r.path)
    return out
