"""Validation faces at native resolution: the fixed face lists, aging a still, and judging a transform.

The faces are UTKFace photos of the validation split (`training.datasets`: a hash of the file name, never
trained on), at their own 200 px, not aligned crops:
- **older** ages the young validation faces (18–29) and compares them with the real old ones (50+);
- **younger** de-ages the old validation faces and compares them with the real young ones;
- both sides are balanced in gender and race, cell by cell (`realism.balanced_pairs`), and ordered round-robin
  over the cells, so the first n faces of a list already mix both genders and every race group;
- **black-and-white faces** are greyscale copies (Rec. 601 luma) of the first `bw` faces of each list.

`age_stills` is the one place a still face is aged, through the runtime's own path for the bundle's face
space (five-point align or canonical mesh → transform → paste-back); change it when the runtime's path does.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.measures import colour, realism, regions
from faceage_video.face.align import AlignTemplate, align_face, apply_affine
from faceage_video.face.blend import BlendOptions, apply_change_roi, crop_mask, paste_back, paste_back_mesh
from faceage_video.face.hair import HairOptions, age_hair, hair_matte
from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, detect_padded, oval_polygon
from faceage_video.face.mesh import CanonicalMesh
from faceage_video.face.segment import PersonSegmenter
from faceage_video.types import Crop, Frame, Landmarks

Direction = Literal["older", "younger"]
DIRECTIONS: tuple[Direction, ...] = ("older", "younger")
Crops = NDArray[np.uint8]  # (N, S, S, 3) RGB aligned crops
Transform = Callable[[Crops], NDArray[Any]]  # crops -> (N, S, S, 3) in levels 0..255
Space = AlignTemplate | CanonicalMesh  # a bundle's face space

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "utkface"
RACES = ("white", "black", "asian", "indian", "other")
GENDERS = ("male", "female")
_UTK = re.compile(r"^(\d+)_(\d)_(\d)_")


@dataclass(frozen=True)
class Face:
    """One still face and where it is.

    Attributes:
        name: file name (plus " (b/w)" for a greyscale copy).
        age: labelled age. gender: 0 male, 1 female. race: index into `RACES`.
        bw: a greyscale copy.
        image: (H, W, 3) uint8 RGB at native resolution.
        landmarks: (478, 2) MediaPipe landmarks of the face, image pixels.
    """

    name: str
    age: int
    gender: int
    race: int
    bw: bool
    image: Frame = field(repr=False)
    landmarks: Landmarks = field(repr=False)

    @property
    def group(self) -> tuple[int, int]:
        """(gender, race): the cell the two sides are balanced on."""
        return self.gender, self.race

    @property
    def frame(self) -> regions.FaceFrame:
        return regions.FaceFrame.from_landmarks(self.landmarks)

    @property
    def label(self) -> str:
        return f"{self.age} {GENDERS[self.gender][0].upper()} {RACES[self.race]}" + (
            " b/w" if self.bw else ""
        )


@dataclass(frozen=True)
class FaceSets:
    """The faces of one direction.

    Attributes:
        sources: faces to transform, balanced against `targets`, round-robin over (gender, race).
        targets: real faces of the target age group, the same count per cell.
        bw: greyscale copies of the first sources.
        missed: files where the landmarker found no face (left out).
    """

    sources: tuple[Face, ...]
    targets: tuple[Face, ...]
    bw: tuple[Face, ...]
    missed: tuple[str, ...] = ()


def _read(path: Path) -> Frame | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


def _round_robin(faces: Sequence[Face]) -> list[Face]:
    """Faces reordered to take one of each (gender, race) cell in turn, cells in sorted order."""
    cells: dict[tuple[int, int], list[Face]] = defaultdict(list)
    for f in faces:
        cells[f.group].append(f)
    out: list[Face] = []
    queues = [cells[k] for k in sorted(cells)]
    depth = max((len(q) for q in queues), default=0)
    for i in range(depth):
        out += [q[i] for q in queues if i < len(q)]
    return out


def load_faces(
    data: Path,
    direction: Direction,
    landmarker: FaceLandmarker,
    limit: int = 200,
    bw: int = 12,
    young: tuple[int, int] = (18, 29),
    old: tuple[int, int] = (50, 200),
) -> FaceSets:
    """The fixed validation faces of one direction (see the module docstring).

    Args:
        data: UTKFace folder.
        direction: "older" transforms young faces, "younger" old ones.
        landmarker: an IMAGE-mode landmarker.
        limit: at most this many faces a side after balancing.
        bw: greyscale copies to make of the first sources.
        young: inclusive young age range; old: the old one (the training ranges by default).

    Raises:
        FileNotFoundError: no UTKFace folder.
    """
    from training.datasets import AgeRanges, load_utkface, split_domains
    from training.errors import DatasetError

    try:
        split = split_domains(load_utkface(data), AgeRanges(young, old))
    except DatasetError as error:
        raise FileNotFoundError(str(error)) from error
    src_recs, tgt_recs = (
        (split.young_val, split.old_val) if direction == "older" else (split.old_val, split.young_val)
    )
    missed: list[str] = []

    def labelled(recs: Sequence[Any]) -> list[tuple[Path, int, int, int]]:
        out = []
        for r in recs:
            m = _UTK.match(Path(r.path).name)
            if m is not None:
                out.append((Path(r.path), int(m[1]), int(m[2]), min(int(m[3]), 4)))
        return out

    def faces(items: Sequence[tuple[Path, int, int, int]]) -> list[Face]:
        out: list[Face] = []
        for path, age, gender, race in items:
            image = _read(path)
            lm = regions.largest_face(detect_padded(landmarker, image)) if image is not None else None
            if image is None or lm is None:
                missed.append(path.name)
                continue
            out.append(Face(path.name, age, gender, race, False, image, lm))
        return out

    # Balance on the file names' labels first, so landmarks run only on the faces kept; balance again after,
    # dropping the partner of any face the landmarker missed.
    src_l, tgt_l = labelled(src_recs), labelled(tgt_recs)
    src_l, tgt_l = realism.balanced_pairs(
        src_l, [(g, r) for _, _, g, r in src_l], tgt_l, [(g, r) for _, _, g, r in tgt_l], limit
    )
    src, tgt = faces(src_l), faces(tgt_l)
    src_b, tgt_b = realism.balanced_pairs(src, [f.group for f in src], tgt, [f.group for f in tgt])
    sources = _round_robin(src_b)
    grey = tuple(
        Face(f"{f.name} (b/w)", f.age, f.gender, f.race, True, colour.greyscale(f.image), f.landmarks)
        for f in sources[:bw]
    )
    return FaceSets(tuple(sources), tuple(_round_robin(tgt_b)), grey, tuple(missed))


def open_landmarker() -> FaceLandmarker:
    """The IMAGE-mode landmarker the face lists and `compare` use."""
    return FaceLandmarker(LandmarkerOptions(mode="image", max_faces=2))


def cut_face(image: Frame, landmarks: Landmarks, template: Space) -> tuple[Crop, Any]:
    """The face as the runtime cuts it for a generator: (S, S, 3) uint8 crop and its frame → crop geometry.

    Five-point space: `align_face` (a (2, 3) similarity). Canonical mesh space: `CanonicalMesh.fit` then
    `to_canonical` (a `MeshFit`).
    """
    if isinstance(template, CanonicalMesh):
        fit = template.fit(landmarks, image.shape)
        return template.to_canonical(image, fit), fit
    return align_face(image, landmarks, template)


def age_stills(
    images: Sequence[Frame],
    landmarks: Sequence[Landmarks],
    transform: Transform,
    template: Space,
    blend: BlendOptions | None = None,
) -> list[Frame]:
    """Age (or de-age) still faces through the runtime's path: cut the face → transform → paste back.

    This is the one function to change when the runtime's face path changes. It follows the bundle's face
    space as `faceage_video.pipeline` does: five-point crops with the feathered oval mask and colour match, or
    the canonical mesh with its mask, the profile fade and the change warped back through the mesh.

    Args:
        images: (H, W, 3) uint8 RGB pictures, one face each.
        landmarks: (478, 2) landmarks of that face in each picture.
        transform: (N, S, S, 3) uint8 crops → (N, S, S, 3) in levels 0..255, e.g. `AgingEngine.generate`
            at full strength, or a baseline.
        template: the transform's face space (the bundle's `AgingEngine.template`).
        blend: paste-back options; the runtime's defaults when None.

    Returns:
        The pictures with the face replaced, uint8, same sizes.
    """
    blend = blend or BlendOptions()
    if not images:
        return []
    cut = [cut_face(img, lm, template) for img, lm in zip(images, landmarks, strict=True)]
    generated = np.asarray(transform(np.stack([c for c, _ in cut])), np.float32)
    out: list[Frame] = []
    for img, lm, (crop, geometry), gen in zip(images, landmarks, cut, generated, strict=True):
        if isinstance(template, CanonicalMesh):
            mask = template.face_mask(geometry, blend.mask)
            residual = gen - crop.astype(np.float32)
            out.append(paste_back_mesh(img, residual, mask, geometry, template, blend)[0])
            continue
        oval = apply_affine(geometry, oval_polygon(lm)) if blend.mask == "face" else None
        mask = crop_mask(blend.mask, template.size, oval, blend.feather)
        out.append(paste_back(img, gen, crop, geometry, mask, blend)[0])
    return out


def hair_stills(
    images: Sequence[Frame],
    landmarks: Sequence[Landmarks],
    outputs: Sequence[Frame],
    shares: Sequence[float],
    options: HairOptions,
    segmenter: PersonSegmenter,
) -> list[Frame]:
    """The runtime's hair stage on still faces: each input's hair matte (found on the input, as the
    analyzer finds it), aged by its signed share in the aged output (as `stages.composite` does).

    Args:
        images: (H, W, 3) uint8 inputs; landmarks: (478, 2) of their face; outputs: `age_stills` of them.
        shares: signed share per face (`face.hair.hair_share`: > 0 greys, < 0 colours grey strands).
        options: the hair stage's options.
        segmenter: the person segmenter.

    Returns:
        The outputs with the hair aged; a face whose matte is not found is returned as it was.
    """
    done: list[Frame] = []
    for img, lm, out, share in zip(images, landmarks, outputs, shares, strict=True):
        matte = hair_matte(img, lm, segmenter(img), options)
        done.append(
            out
            if matte is None or share == 0
            else apply_change_roi(out, age_hair(out, matte, share, options))
        )
    return done


def unchanged(crops: Crops) -> NDArray[np.uint8]:
    """The 'do nothing' baseline: the crop itself."""
    return crops


def prototype_deltas(
    data: Path, landmarker: FaceLandmarker, template: Space, per_side: int = 300
) -> dict[Direction, NDArray[np.float32]]:
    """Mean aligned old train face − mean aligned young train face (Burt & Perrett 1995), per direction.

    The prototype baseline of `benchmarks.quality.prototype_shift`, built from `per_side` training photos a
    side, evenly spaced through the sorted file list (the crop cache, when built, holds the same crops).
    """
    from training.datasets import AgeRanges, load_utkface, split_domains

    split = split_domains(load_utkface(data), AgeRanges())
    means: dict[str, NDArray[np.float32]] = {}
    for side, recs in (("young", split.young_train), ("old", split.old_train)):
        picks = [recs[i] for i in np.linspace(0, len(recs) - 1, min(per_side, len(recs))).round().astype(int)]
        total = np.zeros((template.size, template.size, 3), np.float64)
        count = 0
        for r in picks:
            image = _read(Path(r.path))
            lm = regions.largest_face(detect_padded(landmarker, image)) if image is not None else None
            if image is None or lm is None:
                continue
            total += cut_face(image, lm, template)[0]
            count += 1
        means[side] = (total / max(count, 1)).astype(np.float32)
    return {"older": means["old"] - means["young"], "younger": means["young"] - means["old"]}


# ---------------------------------------------------------------------------------------------------------
# Judging outputs
# ---------------------------------------------------------------------------------------------------------


def canonical_pair(inp: Frame, out: Frame, frame: regions.FaceFrame) -> tuple[Any, Any, regions.Masks]:
    """Input and output resampled by the input's face frame, and the region masks of the pixels shown."""
    ci, valid = regions.canonical(inp, frame)
    co, _ = regions.canonical(out, frame)
    return ci, co, regions.region_masks(valid)


def colour_of(
    inputs: Sequence[Frame], outputs: Sequence[Frame], frames: Sequence[regions.FaceFrame]
) -> list[colour.ColourChange]:
    """Colour change of each face, in the inner face of the input's frame."""
    out: list[colour.ColourChange] = []
    for a, b, f in zip(inputs, outputs, frames, strict=True):
        ci, co, masks = canonical_pair(a, b, f)
        out.append(colour.colour_change(ci, co, masks["inner"]))
    return out


def features_of(images: Sequence[Frame], frames: Sequence[regions.FaceFrame]) -> NDArray[np.float64]:
    """(N, F) realism features of faces, each in its given face frame."""
    rows = []
    for img, f in zip(images, frames, strict=True):
        face, valid = regions.canonical(img, f)
        rows.append(realism.face_features(face, regions.region_masks(valid)))
    return np.stack(rows) if rows else np.zeros((0, len(regions.PARTS) * realism.FEATURES_PER_REGION))


def realism_references(sets: FaceSets, seed: int = 0) -> dict[str, Any]:
    """The two references of the realism test, from the same faces as every row.

    Returns:
        `real_vs_real`: AUC of two halves of the real target faces (about 0.5); `unchanged`: AUC of the
        untouched sources against the real targets (the gap a transform has to close); `n` per side.
    """
    tgt = features_of([f.image for f in sets.targets], [f.frame for f in sets.targets])
    src = features_of([f.image for f in sets.sources], [f.frame for f in sets.sources])
    h1, h2 = realism.split_halves(list(range(len(tgt))), [f.group for f in sets.targets])
    return {
        "n": len(tgt),
        "real_vs_real": safe_auc(tgt[h1], tgt[h2], seed),
        "unchanged": safe_auc(tgt, src, seed),
    }


def safe_breakdown(
    a: NDArray[np.float64], b: NDArray[np.float64], seed: int = 0
) -> dict[str, dict[str, float]] | None:
    """`realism.breakdown` (AUC per feature family and per region), or None where a set is too small."""
    if min(len(a), len(b)) < realism.FOLDS:
        return None
    return realism.breakdown(a, b, seed)


def safe_auc(a: NDArray[np.float64], b: NDArray[np.float64], seed: int = 0) -> float | None:
    """`realism.cv_auc` rounded, or None where a set is too small for the folds (a tiny test run)."""
    if min(len(a), len(b)) < realism.FOLDS:
        return None
    return round(realism.cv_auc(a, b, seed=seed), 3)
