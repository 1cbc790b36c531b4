"""CACD loader on fake trees in the real layout, with both MATLAB metadata flavours (v5 and v7.3/HDF5)."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from training.cacd import load_cacd, parse_cacd_name, read_cacd_meta
from training.datasets import AgeRanges, split_domains
from training.errors import DatasetError

# (file name, age in the metadata, celebrity id). The metadata age of Robin Williams' 3rd photo differs from
# its file name on purpose, to show which source the loader used.
IMAGES: list[tuple[str, int, int]] = [
    ("53_Robin_Williams_0001.jpg", 53, 1),
    ("55_Robin_Williams_0002.jpg", 55, 1),
    ("60_Robin_Williams_0003.jpg", 61, 1),
    ("18_Zoë_Kravitz_0001.jpg", 18, 2),
    ("20_Zoë_Kravitz_0002.jpg", 20, 2),
    ("25_Robert_Downey_Jr._0001.jpg", 25, 3),
    ("50_Robert_Downey_Jr._0002.jpg", 50, 3),
]
LISTED_NOT_ON_DISK = ("40_Robert_Downey_Jr._0009.jpg", 40, 3)
ON_DISK_NOT_LISTED = "33_Someone_Else_0001.jpg"
CELEBRITIES = [(1, "Robin_Williams", 1951), (2, "Zoë_Kravitz", 1988), (3, "Robert_Downey_Jr.", 1965)]


def _jpeg(path: Path) -> None:
    img = np.full((250, 250, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    path.write_bytes(buf.tobytes())


def _tree(root: Path, nested: bool = False) -> Path:
    """root/CACD2000/*.jpg as the download unpacks it (or CACD2000/CACD2000/ when unpacked twice)."""
    images = root / "CACD2000" / "CACD2000" if nested else root / "CACD2000"
    images.mkdir(parents=True)
    for name, _, _ in IMAGES:
        _jpeg(images / name)
    _jpeg(images / ON_DISK_NOT_LISTED)
    (images / "Thumbs.db").write_bytes(b"\0")
    return root


def _meta_rows() -> list[tuple[str, int, int]]:
    return [*IMAGES, LISTED_NOT_ON_DISK]


def _column(values: list[float]) -> np.ndarray:
    return np.asarray(values, np.float64).reshape(-1, 1)  # MATLAB N×1 column


def write_v5(path: Path) -> None:
    """celebrity2000_meta.mat: two 1×1 structs of N×1 fields, names as N×1 cells (scipy.io.savemat)."""
    rows = _meta_rows()
    n = len(rows)
    names = np.empty((n, 1), object)
    names[:, 0] = [r[0] for r in rows]
    births = {cid: b for cid, _, b in CELEBRITIES}
    image_data = {
        "age": _column([r[1] for r in rows]),
        "identity": _column([r[2] for r in rows]),
        "year": _column([births[r[2]] + r[1] for r in rows]),
        "feature": np.zeros((n, 0)),  # the meta file carries no LBP features
        "rank": _column([r[2] for r in rows]),
        "lfw": _column([0] * n),
        "birth": _column([births[r[2]] for r in rows]),
        "name": names,
    }
    celeb_names = np.empty((len(CELEBRITIES), 1), object)
    celeb_names[:, 0] = [c[1].replace("_", " ") for c in CELEBRITIES]
    celebrity_data = {
        "name": celeb_names,
        "identity": _column([c[0] for c in CELEBRITIES]),
        "birth": _column([c[2] for c in CELEBRITIES]),
        "rank": _column([c[0] for c in CELEBRITIES]),
        "lfw": _column([0] * len(CELEBRITIES)),
    }
    scipy.io.savemat(str(path), {"celebrityData": celebrity_data, "celebrityImageData": image_data})


def _matlab_chars(f: h5py.File, key: str, text: str) -> h5py.Reference:
    """A MATLAB char row vector as v7.3 stores it: an L×1 uint16 dataset under #refs#."""
    d = f.create_dataset(f"#refs#/{key}", data=np.array([ord(c) for c in text], np.uint16).reshape(-1, 1))
    d.attrs["MATLAB_class"] = np.bytes_("char")
    return d.ref


def write_v73(path: Path) -> None:
    """celebrity2000.mat: HDF5 behind a 512-byte MATLAB header; fields (1, N); names as object references."""
    rows = _meta_rows()
    n = len(rows)
    births = {cid: b for cid, _, b in CELEBRITIES}
    with h5py.File(path, "w", userblock_size=512) as f:
        img = f.create_group("celebrityImageData")
        numeric = {
            "age": [r[1] for r in rows],
            "identity": [r[2] for r in rows],
            "year": [births[r[2]] + r[1] for r in rows],
            "rank": [r[2] for r in rows],
            "lfw": [0] * n,
            "birth": [births[r[2]] for r in rows],
        }
        for key, vals in numeric.items():
            img.create_dataset(key, data=np.asarray(vals, np.float64).reshape(1, -1))
        img.create_dataset("feature", data=np.zeros((16, n), np.float64))  # 4,000 × N in the real file
        refs = [_matlab_chars(f, f"img{i}", r[0]) for i, r in enumerate(rows)]
        img.create_dataset("name", data=np.array(refs, dtype=h5py.ref_dtype).reshape(1, -1))
        cel = f.create_group("celebrityData")
        cel.create_dataset(
            "identity", data=np.asarray([c[0] for c in CELEBRITIES], np.float64).reshape(1, -1)
        )
        cel.create_dataset("birth", data=np.asarray([c[2] for c in CELEBRITIES], np.float64).reshape(1, -1))
        crefs = [_matlab_chars(f, f"cel{i}", c[1].replace("_", " ")) for i, c in enumerate(CELEBRITIES)]
        cel.create_dataset("name", data=np.array(crefs, dtype=h5py.ref_dtype).reshape(1, -1))
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  6 12:00:00 2014 HDF5 schema 1.00 ."
    )
    with path.open("r+b") as fh:
        fh.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")


def _expected_from_meta(images: Path) -> list[tuple[str, int, str]]:
    return sorted((str(images / name), age, str(cid)) for name, age, cid in IMAGES)


def _as_tuples(records: list) -> list[tuple[str, int, str]]:
    return [(r.path, r.age, r.identity) for r in records]


def test_parse_cacd_name() -> None:
    assert parse_cacd_name("53_Robin_Williams_0001.jpg") == (53, "Robin_Williams")
    assert parse_cacd_name("50_Robert_Downey_Jr._0002.jpg") == (50, "Robert_Downey_Jr.")
    assert parse_cacd_name("18_Zoë_Kravitz_0001.JPG") == (18, "Zoë_Kravitz")
    assert parse_cacd_name("Thumbs.db") is None
    assert parse_cacd_name("Robin_Williams_0001.jpg") is None
    assert parse_cacd_name("53_Robin_Williams_0001.txt") is None


def test_file_names_without_metadata(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    recs = load_cacd(root)
    images = root / "CACD2000"
    expected = sorted(
        [(str(images / n), int(n.split("_")[0]), n.split("_", 1)[1].rsplit("_", 1)[0]) for n, _, _ in IMAGES]
        + [(str(images / ON_DISK_NOT_LISTED), 33, "Someone_Else")]
    )
    assert _as_tuples(recs) == expected
    assert {r.identity for r in recs} == {
        "Robin_Williams",
        "Zoë_Kravitz",
        "Robert_Downey_Jr.",
        "Someone_Else",
    }
    assert all(r.gender == -1 and r.domain is None for r in recs)


@pytest.mark.parametrize("flavour", ["v5", "v73"])
def test_metadata_gives_age_and_celebrity_id(tmp_path: Path, flavour: str) -> None:
    root = _tree(tmp_path)
    if flavour == "v5":
        write_v5(root / "celebrity2000_meta.mat")
    else:
        write_v73(root / "celebrity2000.mat")
    recs = load_cacd(root)
    # Metadata ages win over file names (61, not 60); the unlisted file and the missing file are left out.
    assert _as_tuples(recs) == _expected_from_meta(root / "CACD2000")
    # Without metadata the same tree is read from file names.
    assert len(load_cacd(root, use_metadata=False)) == len(IMAGES) + 1


def test_both_flavours_read_the_same(tmp_path: Path) -> None:
    write_v5(tmp_path / "celebrity2000_meta.mat")
    write_v73(tmp_path / "celebrity2000.mat")
    a = read_cacd_meta(tmp_path / "celebrity2000_meta.mat")
    b = read_cacd_meta(tmp_path / "celebrity2000.mat")
    assert a.names == b.names == tuple(r[0] for r in _meta_rows())
    np.testing.assert_array_equal(a.ages, b.ages)
    np.testing.assert_array_equal(a.identities, b.identities)
    assert a.ages.dtype == np.int64
    # The format is told by content: a v7.3 file under the v5 name still reads.
    (tmp_path / "renamed.mat").write_bytes((tmp_path / "celebrity2000.mat").read_bytes())
    assert read_cacd_meta(tmp_path / "renamed.mat").names == a.names


def test_nested_extraction(tmp_path: Path) -> None:
    root = _tree(tmp_path, nested=True)
    write_v5(root / "celebrity2000_meta.mat")
    recs = load_cacd(root)
    assert _as_tuples(recs) == _expected_from_meta(root / "CACD2000" / "CACD2000")


def test_split_is_by_celebrity(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    write_v5(root / "celebrity2000_meta.mat")
    recs = load_cacd(root)
    # With a val fraction of 0.3 the hash holds out celebrity 1 and trains on 2 and 3.
    split = split_domains(recs, AgeRanges((14, 30), (45, 70)), val_fraction=0.3)
    train_ids = {r.identity for r in split.young_train + split.old_train}
    val_ids = {r.identity for r in split.young_val + split.old_val}
    assert train_ids == {"2", "3"} and val_ids == {"1"}
    assert len(split.old_val) == 3  # every photo of Robin Williams, young or old, on one side
    assert sum(split.counts().values()) == len(recs)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CACD folder not found.*--data"):
        load_cacd(tmp_path / "nope")


def test_root_without_image_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CACD2000/.*AGE_First_Last_NNNN"):
        load_cacd(tmp_path)


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "CACD2000").mkdir()
    (tmp_path / "CACD2000" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images in"):
        load_cacd(tmp_path)


def test_images_not_following_the_naming(tmp_path: Path) -> None:
    (tmp_path / "CACD2000").mkdir()
    _jpeg(tmp_path / "CACD2000" / "face.jpg")
    with pytest.raises(DatasetError, match="AGE_First_Last_NNNN"):
        load_cacd(tmp_path)


def test_corrupt_metadata_names_the_file(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "celebrity2000_meta.mat").write_bytes(b"this is not a mat file" * 10)
    with pytest.raises(DatasetError, match=r"celebrity2000_meta\.mat"):
        load_cacd(root)


def test_metadata_without_image_struct(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    scipy.io.savemat(str(root / "celebrity2000_meta.mat"), {"something": np.zeros((2, 2))})
    with pytest.raises(DatasetError, match="celebrityImageData"):
        load_cacd(root)


def test_metadata_matching_no_image(tmp_path: Path) -> None:
    (tmp_path / "CACD2000").mkdir()
    _jpeg(tmp_path / "CACD2000" / "30_Other_Person_0001.jpg")
    write_v5(tmp_path / "celebrity2000_meta.mat")
    with pytest.raises(DatasetError, match="none of them"):
        load_cacd(tmp_path)
