"""Dataset loaders: UTKFace, CACD (real layout) and two plain folders, with the young/old split rules.

Every loader returns `FaceRecord`s; `split_domains` turns them into the young (X) and old (Y) domains, split
into train and validation without identity leakage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.errors import DatasetError

Split = Literal["train", "val"]
Domain = Literal["young", "old"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class FaceRecord:
    """One face photo.

    Attributes:
        path: image file.
        age: age in years, or -1 where the layout gives a domain but no age (two-folder layout).
        identity: a person key for identity-disjoint splits; the file name where no identity is known.
        gender: 0 male, 1 female, -1 unknown.
        domain: set by the two-folder layout; None elsewhere (decided by age).
    """

    path: str
    age: int
    identity: str
    gender: int = -1
    domain: Domain | None = None


@dataclass(frozen=True)
class AgeRanges:
    """Inclusive young and old age ranges. Defaults: 18–29 against 50+."""

    young: tuple[int, int] = (18, 29)
    old: tuple[int, int] = (50, 200)

    def __post_init__(self) -> None:
        (ya, yb), (oa, ob) = self.young, self.old
        if not (0 <= ya <= yb and 0 <= oa <= ob):
            raise DatasetError(
                f"age ranges must be (low, high) with low <= high, got {self.young}, {self.old}"
            )
        if yb >= oa:
            raise DatasetError(f"young range {self.young} must end below the old range {self.old}")

    def domain_of(self, age: int) -> Domain | None:
        if self.young[0] <= age <= self.young[1]:
            return "young"
        if self.old[0] <= age <= self.old[1]:
            return "old"
        return None


def hash_split(key: str, val_fraction: float = 0.1) -> Split:
    """Deterministic split from a stable hash of `key` (same answer on every machine and Python run)."""
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


_UTK_RE = re.compile(r"^(\d+)_(\d)_(\d)_(\d+)")


def load_utkface(root: str | Path) -> list[FaceRecord]:
    """UTKFace chips named `AGE_GENDER_RACE_TIMESTAMP.jpg.chip.jpg`.

    Files that do not follow the pattern are skipped. UTKFace has no identity labels, so each file is its
    own identity and the split hashes the file name.

    Raises:
        DatasetError: if the folder is missing or holds no UTKFace files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"UTKFace folder not found: {root}. Pass --data PATH to the folder of *.chip.jpg files."
        )
    out: list[FaceRecord] = []
    for p in sorted(root.iterdir()):
        m = _UTK_RE.match(p.name)
        if m is None or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        out.append(FaceRecord(str(p), age=int(m[1]), identity=p.name, gender=int(m[2])))
    if not out:
        raise DatasetError(f"no UTKFace files (AGE_GENDER_RACE_TIMESTAMP.jpg.chip.jpg) in {root}")
    return out


def load_folders(root: str | Path) -> list[FaceRecord]:
    """Two folders, `root/young/` and `root/old/`, of face photos. Each file is its own identity.

    Raises:
        DatasetError: if either folder is missing or empty.
    """
    root = Path(root)
    out: list[FaceRecord] = []
    for domain in ("young", "old"):
        d = root / domain
        if not d.is_dir():
            raise DatasetError(f"folder layout needs {d}/ (and its sibling young/ or old/) with face photos")
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"no images in {d}")
        out.extend(FaceRecord(str(p), age=-1, identity=f"{domain}/{p.name}", domain=domain) for p in files)  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class DomainSplit:
    """The young (X) and old (Y) domains, each split into train and validation."""

    young_train: tuple[FaceRecord, ...]
    young_val: tuple[FaceRecord, ...]
    old_train: tuple[FaceRecord, ...]
    old_val: tuple[FaceRecord, ...]

    def counts(self) -> dict[str, int]:
        """Faces per domain and split, for the report."""
        return {
            "young_train": len(self.young_train),
            "young_val": len(self.young_val),
            "old_train": len(self.old_train),
            "old_val": len(self.old_val),
        }


def split_domains(
    records: Iterable[FaceRecord],
    ranges: AgeRanges = AgeRanges(),
    val_fraction: float = 0.1,
    balance: bool = False,
) -> DomainSplit:
    """Assign records to young/old by age (or folder) and to train/val by a hash of the identity.

    Args:
        records: faces from any loader.
        ranges: the young and old age ranges.
        val_fraction: share of identities held out for validation.
        balance: cut the larger training domain to the size of the smaller one, deterministically (by hash
            order). Training balances anyway by drawing one face of each domain per step, so the cache keeps
            every face by default.

    Raises:
        DatasetError: if a domain ends up empty.
    """
    buckets: dict[tuple[Domain, Split], list[FaceRecord]] = {
        (d, s): [] for d in ("young", "old") for s in ("train", "val")
    }
    for r in records:
        dom = r.domain if r.domain is not None else ranges.domain_of(r.age)
        if dom is None:
            continue
        buckets[(dom, hash_split(r.identity, val_fraction))].append(r)
    for (dom, split), items in buckets.items():
        if not items and split == "train":
            raise DatasetError(f"the {dom} training domain is empty (ranges {ranges.young} / {ranges.old})")
    yt, ot = buckets[("young", "train")], buckets[("old", "train")]
    if balance:
        n = min(len(yt), len(ot))

        def _by_hash(rs: Sequence[FaceRecord]) -> list[FaceRecord]:
            return sorted(rs, key=lambda r: hashlib.sha1(r.path.encode()).hexdigest())[:n]

        yt, ot = sorted(_by_hash(yt), key=lambda r: r.path), sorted(_by_hash(ot), key=lambda r: r.path)
    return DomainSplit(tuple(yt), tuple(buckets[("young", "val")]), tuple(ot), tuple(buckets[("old", "val")]))
