"""The registered teacher: classic aging in canonical face space, per gender and age band.

Faces registered on the dense mesh line up eye to eye and fold to fold, so the prototypes (mean faces of an
age band) stay sharp, and their differences are the folds, not the colour. The transform from age `a` to age
`b` (any ages: the prototypes are interpolated between band centres) ages on luminance and geometry:

1. shape: the mean landmark displacement between the two ages, applied as a mesh warp;
2. shading: the low-pass luminance difference of the two prototypes, on the skin only;
3. texture: each luminance band scaled by the ratio of the two prototypes' band amplitudes (Tiddeman),
   on the skin only, so eyes, brows and lips keep their detail when de-aging;
4. made detail: when aging, the band energy the face still lacks is filled with the registered fine bands of
   one real exemplar of the target band. With `amplify` off, the face's own bands are not scaled up at all
   when aging (that turns a young face's grain into coarse grain, not into wrinkles): every band keeps its
   own detail and the exemplar adds the rest of the target age's energy, in quadrature (independent detail
   adds in power, not in amplitude);
5. chroma: only a slight desaturation with age. Every luminance change is added equally to R, G and B, so a
   black-and-white face stays exactly neutral;
6. transplant (options `transplant`, `transplant_coarse`): a share of the skin's fine bands, and of its coarse
   band of folds and bags, taken from one real exemplar of the target band instead of the face's own.

Arrays are float32 RGB in [0, 1], (S, S, 3), in canonical space at the cache's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.face.landmarks import FACE_OVAL
from faceage_video.face.mesh import N_LANDMARKS, CanonicalMesh, MeshFit
from training.canonical import CanonicalSet
from training.config import TrainConfig

Array = NDArray[np.float32]

BAND_CENTRES: tuple[float, ...] = (24.0, 35.0, 45.0, 55.0, 65.0, 76.0)
BAND_EDGES: tuple[tuple[int, int], ...] = ((18, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 200))
# Band-pass scales in pixels at 128 px (scaled with the texture size): pores, fine lines, wrinkles, folds.
BAND_SIGMAS_128: tuple[float, ...] = (0.7, 1.4, 2.8, 5.6)
ENVELOPE_SIGMA_128 = 4.0
SHADING_SIGMA_128 = 2.0
# The coarse band (`transplant_coarse`) runs from the last fine band's σ up to here: folds, bags and lines at
# the shading's scale (8 × its σ, as in `benchmarks.ceiling`); what lies above is light and skin tone.
COARSE_SIGMA_128 = 16.0
EXEMPLARS_PER_GROUP = 24
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

# MediaPipe landmark sets whose detail is kept as it is (FaceLandmarksConnections).
EYES = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398),
)
BROWS = ((46, 53, 52, 65, 55, 70, 63, 105, 66, 107), (276, 283, 282, 295, 285, 300, 293, 334, 296, 336))
LIPS = ((61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),)
# Where a beard or stubble grows (under the nose, around the mouth, the chin and the jaw), and a reference
# patch of bare skin (the upper forehead) to compare its detail and darkness with.
BEARD = (2, 98, 327, 203, 423, 207, 427, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)
FOREHEAD = (10, 109, 67, 103, 338, 297, 332, 151, 9)
# Male groups build their prototypes and exemplars from the least bearded fraction of their faces, so the
# difference between two ages carries no beard: a beard the input has is kept, none is added.
BEARDLESS_FRACTION = 0.5
# Glasses: the frame crosses the nose bridge and the upper cheeks under the eyes. Every group builds its
# prototypes and exemplars from its least glassed fraction, so the difference between two ages carries no
# frame (old groups wear glasses more often, and their mean band energy there was the frame's): an exemplar
# transferred frames, bindis and rims onto faces that had none.
BRIDGE = (168, 6, 197, 193, 417, 122, 351, 245, 465)
RIMS = ((116, 117, 118, 119, 100, 47, 121, 120), (345, 346, 347, 348, 329, 277, 350, 349))
CHEEKS = ((205, 50, 187, 123, 147), (425, 280, 411, 352, 376))
GLASSLESS_FRACTION = 0.5
# Exemplars are the group's most frontal faces (the texture of a turned face holds mirrored background at the
# far silhouette), then the least glassed of those.
FRONTAL_POOL = 3
# Bumped whenever the transform changes, so cached teacher pairs of an older transform are not reused.
# 2: the shape warp resamples bicubically (bilinear blurred the eyes and brows it moved), and de-aging scales a
# band by the prototypes' amplitude ratio itself (it was raised to a further power 1.5, which airbrushed).
# 3: given the face's registered landmarks, the change fades out on skin the camera did not see (the runtime's
# visibility), which removed streaks of background pulled onto the far cheek of turned faces.
# 4: prototypes and exemplars from the least glassed half of every group, exemplars among the most frontal
# faces, no exemplar detail at the mouth corners (a broad smile's teeth showed there as white specks), and
# the inner lip contour does not move (the warp turned the teeth of open mouths into dark blocks).
TEACHER_VERSION = 4
# Landmark displacements fade to 0 towards the face oval over this fraction of the texture size.
OVAL_FADE = 0.08
# A face's band amplitude this many times its age group's mean marks an object on the skin (`transplant`).
OBJECT_EXCESS = 2.0
# The inner lip contour (MediaPipe FACEMESH_LIPS, inner ring): the opening between the lips holds the teeth of
# an open mouth in a strip a few texels high. Moving it resampled the teeth edges into dark blocks on paste
# back, so landmark moves also fade to 0 towards this contour, over this fraction of the texture size.
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
MOUTH_FADE = 0.05


@dataclass(frozen=True)
class TeacherOptions:
    """Strengths of the registered teacher.

    Attributes:
        shape: weight of the landmark displacement (1 = the mean displacement between the two ages).
        shading: weight of the low-pass luminance difference.
        texture: exponent of the band-amplitude ratio.
        detail: weight of the exemplar detail that fills missing band energy when aging.
        saturation: chroma change per decade (negative: less saturated when older).
        amplify: when aging, scale the face's own bands by the amplitude ratio (Tiddeman) and fill only what
            is still missing; False keeps them and makes all the extra energy from the exemplar.
        brows: weight of the shading difference on the eyebrows too (0: skin only). Real brows thin and
            grey with age, which the prototypes' low-pass difference carries; the brows' own bands are kept.
        shading_younger: `shading` when de-aging, where it differs (None: the same as aging).
        transplant: in both directions, the share of the skin's fine bands taken from one real exemplar of the
            target band instead of the face's own (0: none; 1: the exemplar's alone). A real face's detail
            keeps the structure of real folds, which the face's own detail scaled by a ratio does not have.
            The mix is linear, so two unrelated fields at 0.5 keep half the band's energy: it also smooths
            (an energy-keeping mix de-aged less, −13.5 against −17.8 y; benchmarks/README.md).
        transplant_coarse: the same for the coarse band (σ of the last fine band up to `COARSE_SIGMA_128`):
            the exemplar's own folds, bags and lines instead of the face's, where the prototypes' mean
            shading difference only has their blurred average. The light and skin tone above it stay.
        shading_masked: blur the prototypes' shading difference over the skin (and brows) only, so the
            hair's and hairline's difference does not spill onto the skin beside them.
        exemplar_mean: every face gets the mean of its target group's exemplars instead of one picked by
            its key: the average a pixel-L1 student is taught. Judged, it de-ages further than one
            exemplar (benchmarks/README.md, "De-aging the folds too").
        warp_fine: the shape warp moves the skin's fine bands (σ below the folds' band) too. False moves
            the low-pass shape, the folds and the features but leaves the skin's pores and fine lines where
            they are: dragged along the displacement, they ran the way the flesh moved (diagonal lines on
            the cheeks, which real old cheeks do not have).
        eyes_still: the landmark displacement fades to 0 towards the eye contours over this fraction of the
            texture size (0: off), so the lids keep their shape: a warp of 4 × the mean displacement drooped
            the upper lids into a squint.
        shading_rim: the shading difference fades to 0 towards the face oval over this fraction of the texture
            size (0: off). At the outline the two prototypes differ by what lies there, not by age (a young
            group's hair over the temples and cheeks, its shadow under the jaw): their difference lit the
            whole outline and showed on paste-back as a light band along the jaw.
        oval_fade: the landmark displacement fades to 0 towards the face oval over this fraction of the
            texture size (`OVAL_FADE` by default). The warp moves the lower face towards the fixed outline,
            which lifts the skin just inside it; a longer fade lifts it less, and moves the jowls less.
        outline_rim: the whole change fades to 0 towards the face oval over this fraction of the texture size
            (0: off). With the outline fixed, the warp pushes the lower face's lighter skin into the darker
            band along the jaw, and the shading's rim alone left it: a light line followed the whole jaw
            (+17 levels 4 px inside the oval over young validation faces, `shape` 3). A narrow line, so
            fading only the change's low-pass left most of it.
        lids: the exemplar detail reaches the lids: its skin runs up to the brows' bare hulls and to within a
            texel of the eye contours, where the features' masks are otherwise grown by two texels and blurred
            over two. At 128 px the band between brow and upper lid (`lid_band`) is about 4 texels high, so
            no skin was left there and none at the lower lid's margin: the lids kept the young face's smooth
            skin (the upper lid's fold under the brow and the crease under the lower lid are
            the near-horizontal edges real old faces have most over the aged ones), and the warp only
            stretched a light lid into a light patch.
    """

    shape: float = 1.5
    shading: float = 2.0
    texture: float = 1.0
    detail: float = 1.0
    saturation: float = -0.02
    amplify: bool = True
    brows: float = 0.0
    shading_younger: float | None = None
    transplant: float = 0.0
    transplant_coarse: float = 0.0
    shading_masked: bool = False
    exemplar_mean: bool = False
    warp_fine: bool = True
    eyes_still: float = 0.0
    shading_rim: float = 0.0
    oval_fade: float = OVAL_FADE
    outline_rim: float = 0.0
    lids: bool = False

    def __post_init__(self) -> None:
        for name in ("eyes_still", "shading_rim", "outline_rim"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"{name} must be in 0..0.5, got {getattr(self, name)}")
        if not 0.0 < self.oval_fade <= 0.5:
            raise ValueError(f"oval_fade must be in (0, 0.5], got {self.oval_fade}")
        for name in ("transplant", "transplant_coarse"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {getattr(self, name)}")


def teacher_options(cfg: TrainConfig) -> TeacherOptions:
    """The registered teacher's options as a training config sets them (`teacher_*` keys)."""
    return TeacherOptions(
        shape=cfg.teacher_shape,
        shading=cfg.teacher_shading,
        texture=cfg.teacher_texture,
        detail=cfg.teacher_detail,
        amplify=cfg.teacher_amplify,
        brows=cfg.teacher_brows,
        shading_younger=None if cfg.teacher_shading_younger < 0 else cfg.teacher_shading_younger,
        transplant=cfg.teacher_transplant,
        transplant_coarse=cfg.teacher_transplant_coarse,
        shading_masked=cfg.teacher_shading_masked,
        exemplar_mean=cfg.teacher_exemplar_mean,
        warp_fine=cfg.teacher_warp_fine,
        eyes_still=cfg.teacher_eyes_still,
        shading_rim=cfg.teacher_shading_rim,
        oval_fade=cfg.teacher_oval_fade,
        outline_rim=cfg.teacher_outline_rim,
        lids=cfg.teacher_lids,
    )


def _canonical_fit(mesh: CanonicalMesh, landmarks: NDArray[np.floating[Any]]) -> MeshFit:
    """A fit whose frame is the canonical texture itself: the ring where the layout has it, the 468
    landmarks (canonical pixels) where given."""
    verts = mesh.vertices.copy()
    verts[:N_LANDMARKS] = landmarks
    s = mesh.size
    return MeshFit(verts, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (0, 0, s, s), 1.0)


def _sigmas(size: int) -> tuple[list[float], float, float]:
    k = size / 128.0
    return [s * k for s in BAND_SIGMAS_128], ENVELOPE_SIGMA_128 * k, SHADING_SIGMA_128 * k


def coarse_band(base: Array, y: Array, size: int) -> Array:
    """(S, S) the coarse band of a face's luminance `y`: its `band_split` base minus its low-pass at
    `COARSE_SIGMA_128` (scaled to `size`)."""
    return np.asarray(base - _blur(y, COARSE_SIGMA_128 * size / 128.0), np.float32)


def _blur(x: Array, sigma: float) -> Array:
    return np.asarray(cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101), np.float32)


def luma(img: Array) -> Array:
    """(S, S) luminance of an (S, S, 3) RGB image."""
    return np.asarray(img @ LUMA, np.float32)


def band_split(y: Array, sigmas: list[float]) -> tuple[list[Array], Array]:
    """Difference-of-Gaussians bands of a (S, S) image: y == sum(bands) + base."""
    out: list[Array] = []
    prev = y
    for s in sigmas:
        low = _blur(y, s)
        out.append(prev - low)
        prev = low
    return out, prev


def landmark_region(mesh: CanonicalMesh, points: tuple[int, ...]) -> NDArray[np.bool_]:
    """(S, S) inside the convex hull of some canonical landmarks."""
    s = mesh.size
    out = np.zeros((s, s), np.uint8)
    pts = np.round(mesh.vertices[list(points)] * 16).astype(np.int32)
    cv2.fillPoly(out, [cv2.convexHull(pts)], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def lid_band(mesh: CanonicalMesh) -> NDArray[np.bool_]:
    """(S, S) the band between each brow and its upper eye contour, the brows' and eyes' bare hulls left out.
    Each eye contour in `EYES` runs from one corner along the lower lid to the other (its first nine points),
    then back along the upper lid."""
    band = np.zeros((mesh.size, mesh.size), bool)
    for eye, brow in zip(EYES, BROWS, strict=True):
        band |= landmark_region(mesh, brow + eye[:1] + eye[8:])
    for hull in (*EYES, *BROWS):
        band &= ~landmark_region(mesh, hull)
    return band


def _features(mesh: CanonicalMesh, groups: tuple[tuple[int, ...], ...], grow: float = 1.0) -> Array:
    """(S, S) weight of some landmark hulls (eyes, brows, lips), grown and soft at the edge over `grow`
    texels at 128 px (scaled with the texture, at least one texel); with `grow` 0, the bare hulls, soft over
    half a texel."""
    s = mesh.size
    keep = np.zeros((s, s), np.uint8)
    for group in groups:
        keep |= landmark_region(mesh, group)
    if grow <= 0:
        return _blur(keep.astype(np.float32), 0.5 * s / 128.0)
    texels = max(1, round(grow * s / 64))
    keep = np.asarray(cv2.dilate(keep, np.ones((2 * texels + 1, 2 * texels + 1), np.uint8)), np.uint8)
    return _blur(keep.astype(np.float32), texels)


def skin_mask(mesh: CanonicalMesh, lids: bool = False) -> Array:
    """(S, S) weight of the skin: 1 on the face, 0 on the eyes, brows and lips, soft at their edges. With
    `lids`, the skin reaches the brows' bare hulls and to within a texel of the eyes (`TeacherOptions.lids`)."""
    if not lids:
        return np.asarray(mesh.mask("face") * (1.0 - _features(mesh, (*EYES, *BROWS, *LIPS))), np.float32)
    near = np.maximum(_features(mesh, EYES, grow=0.5), _features(mesh, BROWS, grow=0.0))
    return np.asarray(mesh.mask("face") * (1.0 - np.maximum(near, _features(mesh, LIPS))), np.float32)


def beard_scores(data: CanonicalSet, idx: NDArray[np.int64], mesh: CanonicalMesh) -> NDArray[np.float64]:
    """How bearded each face `data.faces[idx]` looks: a higher score is more beard (or stubble).

    The sum of two ranks within `idx`: the fine-band energy of the beard region over that of the forehead,
    and how much darker the beard region is than the forehead. Lips are left out of the beard region.
    """
    sig, _, _ = _sigmas(mesh.size)
    lips = landmark_region(mesh, LIPS[0])
    beard = landmark_region(mesh, BEARD) & ~lips & (mesh.mask("face") > 0.5)
    fore = landmark_region(mesh, FOREHEAD) & (mesh.mask("face") > 0.5)
    energy = np.empty(len(idx))
    dark = np.empty(len(idx))
    for n, i in enumerate(idx):
        y = luma(data.faces[i].astype(np.float32) / 255.0)
        bands, _ = band_split(y, sig[:2])
        e = np.abs(bands[0]) + np.abs(bands[1])
        energy[n] = e[beard].mean() / (e[fore].mean() + 1e-3)
        dark[n] = y[fore].mean() - y[beard].mean()
    return (np.argsort(np.argsort(energy)) + np.argsort(np.argsort(dark))).astype(np.float64)


def glasses_scores(data: CanonicalSet, idx: NDArray[np.int64], mesh: CanonicalMesh) -> NDArray[np.float64]:
    """How likely each face `data.faces[idx]` wears glasses: fine-band energy on the nose bridge and under the
    eyes, where a frame crosses the skin, over that of the cheeks. Higher is more frame."""
    sig, _, _ = _sigmas(mesh.size)
    face = mesh.mask("face") > 0.5
    bridge = landmark_region(mesh, BRIDGE) & face
    rims = (landmark_region(mesh, RIMS[0]) | landmark_region(mesh, RIMS[1])) & face
    cheeks = (landmark_region(mesh, CHEEKS[0]) | landmark_region(mesh, CHEEKS[1])) & face
    out = np.empty(len(idx))
    for n, i in enumerate(idx):
        bands, _ = band_split(luma(data.faces[i].astype(np.float32) / 255.0), sig[:3])
        e = np.abs(bands[1]) + np.abs(bands[2])
        out[n] = (e[bridge].mean() + e[rims].mean()) / (2.0 * e[cheeks].mean() + 1e-3)
    return out


def frontality(data: CanonicalSet, idx: NDArray[np.int64], mesh: CanonicalMesh) -> NDArray[np.float64]:
    """Mean visibility (`CanonicalMesh.visibility`) of each face's skin: 1 for a frontal face."""
    face = mesh.mask("face") > 0.5
    return np.array([mesh.visibility(_canonical_fit(mesh, data.shape[i]))[face].mean() for i in idx])


def _least(scores: NDArray[np.float64], idx: NDArray[np.int64], fraction: float) -> NDArray[np.int64]:
    keep = max(1, round(len(idx) * fraction))
    return np.sort(idx[np.argsort(scores, kind="stable")[:keep]])


def pick_exemplars(
    data: CanonicalSet, idx: NDArray[np.int64], mesh: CanonicalMesh, n: int = EXEMPLARS_PER_GROUP
) -> NDArray[np.int64]:
    """Up to `n` exemplars of a group's prototype faces `idx`: the least glassed of its `FRONTAL_POOL * n`
    most frontal faces, in index order."""
    if len(idx) <= n:
        return idx
    front = idx[np.argsort(-frontality(data, idx, mesh), kind="stable")[: FRONTAL_POOL * n]]
    return np.sort(front[np.argsort(glasses_scores(data, front, mesh), kind="stable")[:n]])


def brow_mask(mesh: CanonicalMesh) -> Array:
    """(S, S) weight of the eyebrows: their landmark hulls, grown by a texel and soft at the edge."""
    return np.asarray(_features(mesh, BROWS) * mesh.mask("face"), np.float32)


def mouth_corners(mesh: CanonicalMesh) -> Array:
    """(S, S) weight of the lips grown by a tenth of the texture: where an exemplar's broader smile puts its
    teeth and lip edges, soft at the edge."""
    s = mesh.size
    lips = landmark_region(mesh, LIPS[0]).astype(np.uint8)
    grow = max(1, round(s / 20))
    big = cv2.dilate(lips, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, grow + 1)))
    return _blur(big.astype(np.float32), grow / 3)


@dataclass(frozen=True)
class Prototypes:
    """Per gender (0 male, 1 female) and age band: mean texture, band amplitudes, shape, exemplar detail.

    Attributes:
        mean: (2, K, S, S) mean luminance.
        env: (2, K, B, S, S) mean local amplitude of each luminance band.
        shape: (2, K, 468, 2) mean registered landmark positions in canonical pixels.
        exemplar_bands: (2, K, E, B, S, S) fine luminance bands of E real faces per group.
        exemplar_env: (2, K, E, B, S, S) their local amplitudes.
        counts: (2, K) faces per group.
        exemplar_coarse: (2, K, E, S, S) the exemplars' coarse bands (`coarse_band`); None in prototypes
            saved before it existed (`transplant_coarse` needs them: `cached_prototypes` rebuilds).
    """

    mean: Array
    env: Array
    shape: Array
    exemplar_bands: Array
    exemplar_env: Array
    counts: NDArray[np.int64]
    exemplar_coarse: Array | None = None

    @classmethod
    def build(cls, data: CanonicalSet, mesh: CanonicalMesh, train_only: bool = True) -> Prototypes:
        """Prototypes from the training split of a canonical cache: every group's least glassed half (male
        groups: of their least bearded half), exemplars by `pick_exemplars`."""
        sig, env_sig, _ = _sigmas(mesh.size)
        s, b, k = mesh.size, len(sig), len(BAND_EDGES)
        mean = np.zeros((2, k, s, s), np.float64)
        env = np.zeros((2, k, b, s, s), np.float64)
        shape = np.zeros((2, k, N_LANDMARKS, 2), np.float64)
        ex_b = np.zeros((2, k, EXEMPLARS_PER_GROUP, b, s, s), np.float32)
        ex_e = np.zeros_like(ex_b)
        ex_c = np.zeros((2, k, EXEMPLARS_PER_GROUP, s, s), np.float32)
        counts = np.zeros((2, k), np.int64)
        for g in (0, 1):
            for j, (lo, hi) in enumerate(BAND_EDGES):
                sel = (data.gender == g) & (data.age >= lo) & (data.age <= hi)
                if train_only:
                    sel &= ~data.val
                idx = np.flatnonzero(sel)
                if g == 0 and len(idx) > 1:
                    idx = _least(beard_scores(data, idx, mesh), idx, BEARDLESS_FRACTION)
                if len(idx) > 1:
                    idx = _least(glasses_scores(data, idx, mesh), idx, GLASSLESS_FRACTION)
                counts[g, j] = len(idx)
                pick = set(pick_exemplars(data, idx, mesh).tolist()) if len(idx) else set()
                e = 0
                for i in idx:
                    y = luma(data.faces[i].astype(np.float32) / 255.0)
                    bands, base = band_split(y, sig)
                    amps = [_blur(np.abs(x), env_sig) for x in bands]
                    mean[g, j] += y
                    env[g, j] += np.stack(amps)
                    shape[g, j] += data.shape[i]
                    if int(i) in pick and e < EXEMPLARS_PER_GROUP:
                        ex_b[g, j, e] = np.stack(bands)
                        ex_e[g, j, e] = np.stack(amps)
                        ex_c[g, j, e] = coarse_band(base, y, s)
                        e += 1
                n = max(len(idx), 1)
                mean[g, j] /= n
                env[g, j] /= n
                shape[g, j] /= n
        return cls(
            mean.astype(np.float32),
            env.astype(np.float32),
            shape.astype(np.float32),
            ex_b,
            ex_e,
            counts,
            ex_c,
        )

    def save(self, path: str | Path) -> None:
        """Write to `path` (.npz), through a temporary file: a run killed mid-write leaves no half file."""
        arrays = dict(
            mean=self.mean,
            env=self.env,
            shape=self.shape,
            exemplar_bands=self.exemplar_bands,
            exemplar_env=self.exemplar_env,
            counts=self.counts,
        )
        if self.exemplar_coarse is not None:
            arrays["exemplar_coarse"] = self.exemplar_coarse
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Prototypes:
        with np.load(path) as d:
            coarse = d["exemplar_coarse"] if "exemplar_coarse" in d.files else None
            return cls(
                d["mean"], d["env"], d["shape"], d["exemplar_bands"], d["exemplar_env"], d["counts"], coarse
            )

    def at(self, gender: int, age: float) -> tuple[Array, Array, Array]:
        """Mean luminance (S, S), band amplitudes (B, S, S) and shape (468, 2) at any age (interpolated)."""
        w = band_weights(age)
        g = 1 if gender == 1 else 0
        mean = np.tensordot(w, self.mean[g], axes=1)
        env = np.tensordot(w, self.env[g], axes=1)
        shape = np.tensordot(w, self.shape[g], axes=1)
        return mean.astype(np.float32), env.astype(np.float32), shape.astype(np.float32)


def cached_prototypes(path: Path, build: Callable[[], Prototypes]) -> Prototypes:
    """The prototypes saved at `path`, or `build()`'s, saved there: also when the saved ones predate a field
    (`exemplar_coarse`). The build is deterministic, so every earlier field comes out the same."""
    if path.exists():
        protos = Prototypes.load(path)
        if protos.exemplar_coarse is not None:
            return protos
    protos = build()
    protos.save(path)
    return protos


def band_weights(age: float) -> NDArray[np.float64]:
    """(K,) interpolation weights of the age bands at `age` (linear between centres, clamped at the ends)."""
    c = np.asarray(BAND_CENTRES)
    w = np.zeros(len(c))
    a = float(np.clip(age, c[0], c[-1]))
    j = int(np.searchsorted(c, a, side="right")) - 1
    j = min(max(j, 0), len(c) - 2)
    t = (a - c[j]) / (c[j + 1] - c[j])
    w[j], w[j + 1] = 1.0 - t, t
    return w


def _band_of(age: float) -> int:
    return int(np.argmax(band_weights(age)))


def warp_shape(img: Array, mesh: CanonicalMesh, displacement: NDArray[np.float32]) -> Array:
    """Move the canonical landmarks by (468, 2) pixels and warp the texture with them (ring fixed)."""
    s = mesh.size
    fit = _canonical_fit(mesh, mesh.vertices[:N_LANDMARKS] + displacement)
    # The output's vertices sit at the moved positions; each output pixel samples the input where the
    # unmoved layout has the same point of skin.
    mx, my = mesh.inverse_map(fit)
    # Where the inverse does not converge (a triangle between the moved oval and the fixed ring folds under
    # a large displacement), remap would sample a reflection of the far edge, which showed as speckles along
    # the jaw: such pixels keep their own value instead.
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    off = (mx < -1.0) | (my < -1.0) | (mx > s) | (my > s)
    mx, my = np.where(off, xx, mx), np.where(off, yy, my)
    # Bicubic: bilinear sampling at sub-pixel offsets low-passes the pores and lashes of every moved pixel.
    out = cv2.remap(img, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    return np.asarray(out, np.float32)


def _fade_from(mesh: CanonicalMesh, points: tuple[int, ...], width: float) -> NDArray[np.float32]:
    pts = mesh.vertices[:N_LANDMARKS].astype(np.float32)
    ref = mesh.vertices[list(points)].astype(np.float32)
    dist = np.sqrt(((pts[:, None] - ref[None]) ** 2).sum(-1)).min(1)
    return np.clip(dist / (width * mesh.size), 0.0, 1.0).astype(np.float32)


def oval_fade(mesh: CanonicalMesh, width: float = OVAL_FADE) -> NDArray[np.float32]:
    """(468,) weight of each landmark's displacement: 0 on the face oval, rising to 1 at `width` of the
    texture size inside it.

    The runtime pastes a change inside the input's oval only, so a moved outline would show as half an edge:
    a streak of the background the texture holds past a turned face's silhouette."""
    return _fade_from(mesh, FACE_OVAL, width)


def shape_weights(
    mesh: CanonicalMesh, eyes_still: float = 0.0, oval: float = OVAL_FADE
) -> NDArray[np.float32]:
    """(468,) weight of each landmark's displacement: `oval_fade` over `oval` of the texture size, and 0 on the
    inner lip contour too (the opening of the mouth stays where it is), rising to 1 at `MOUTH_FADE` of the
    texture size from it; with `eyes_still` > 0, also 0 on the eye contours, rising to 1 at that fraction of
    the texture size."""
    w = np.minimum(oval_fade(mesh, oval), _fade_from(mesh, INNER_LIPS, MOUTH_FADE))
    return np.minimum(w, _fade_from(mesh, EYES[0] + EYES[1], eyes_still)) if eyes_still > 0 else w


class RegisteredTeacher:
    """Age any canonical face from its age to a target age: see the module docstring."""

    def __init__(self, protos: Prototypes, mesh: CanonicalMesh, options: TeacherOptions = TeacherOptions()):
        self.protos = protos
        self.mesh = mesh
        self.options = options
        self.skin = skin_mask(mesh)
        # With `lids` only the exemplar detail reaches the lids. The band gains and the detail kept in place
        # under the warp (`warp_fine` off) would take lashes and the eye's edge; the shading would take the
        # prototypes' difference at the eye's edge (the old mean's narrower eye), white specks at the corners.
        lid_skin = skin_mask(mesh, lids=True) if options.lids else self.skin
        self.detail_skin = lid_skin * (1.0 - mouth_corners(mesh))
        self.shading_mask = np.maximum(self.skin, options.brows * brow_mask(mesh)).astype(np.float32)
        if options.shading_rim > 0:
            self.shading_mask = self.shading_mask * mesh.inside_oval(options.shading_rim)
        self.face = mesh.mask("face")
        self.sigmas, self.env_sigma, self.shading_sigma = _sigmas(mesh.size)
        self.coarse_sigma = COARSE_SIGMA_128 * mesh.size / 128.0
        self.shape_weight = shape_weights(mesh, options.eyes_still, options.oval_fade)
        self.outline_keep = mesh.inside_oval(options.outline_rim) if options.outline_rim > 0 else None
        if options.transplant_coarse > 0 and protos.exemplar_coarse is None:
            raise ValueError("transplant_coarse needs prototypes with exemplar_coarse: rebuild them")
        # Per (gender, band): how many exemplar slots are filled (a group with fewer faces than
        # EXEMPLARS_PER_GROUP has empty ones) and, for `exemplar_mean`, their mean, computed once here.
        self.filled = np.clip(protos.counts, 1, EXEMPLARS_PER_GROUP).astype(int)
        self.mean_exemplars: dict[tuple[int, int], tuple[Array, Array, Array | None]] = {}
        if options.exemplar_mean:
            for g, j in np.ndindex(*protos.counts.shape):
                f = self.filled[g, j]
                c = protos.exemplar_coarse
                self.mean_exemplars[g, j] = (
                    protos.exemplar_bands[g, j, :f].mean(axis=0),
                    protos.exemplar_env[g, j, :f].mean(axis=0),
                    None if c is None else c[g, j, :f].mean(axis=0),
                )
        # The masked shading's normalisers: the mask's own blur at each of the two scales.
        self.mask_blur = {
            sig: _blur(self.shading_mask, sig) for sig in (self.shading_sigma, 8.0 * self.shading_sigma)
        }

    def exemplar(self, gender: int, target: float, key: str) -> tuple[Array, Array, Array | None]:
        """One real exemplar of the target band: its fine bands (B, S, S), their amplitudes (B, S, S) and
        its coarse band (S, S) or None; picked by `key`, or the group's mean with `exemplar_mean`."""
        g, j = (1 if gender == 1 else 0), _band_of(target)
        if self.options.exemplar_mean:
            return self.mean_exemplars[g, j]
        n = int(hashlib.sha1(key.encode()).hexdigest()[:6], 16) % int(self.filled[g, j])
        c = self.protos.exemplar_coarse
        return (
            self.protos.exemplar_bands[g, j, n],
            self.protos.exemplar_env[g, j, n],
            None if c is None else c[g, j, n],
        )

    def visible(self, shape: NDArray[np.float32]) -> Array:
        """(S, S) weight of each canonical pixel being skin the camera saw, from the face's registered
        landmarks (468, 2) in canonical pixels (`CanonicalSet.shape`): the runtime's `visibility`."""
        return self.mesh.visibility(_canonical_fit(self.mesh, shape))

    def __call__(
        self,
        img: Array,
        age: float,
        target: float,
        gender: int,
        key: str = "",
        shape: NDArray[np.float32] | None = None,
    ) -> Array:
        """Aged (or de-aged) copy of one (S, S, 3) canonical face in [0, 1].

        Args:
            img: the face; its age `age`, its gender (0 male, 1 female).
            target: the age to move to.
            key: picks the exemplar deterministically (e.g. the file name).
            shape: the face's registered landmarks (468, 2), canonical pixels. Given, the change fades out
                where the camera did not see skin: at the far silhouette of a turned face the texture holds
                background, and the shape warp moved it onto the cheek as a bright or dark streak.
        """
        o = self.options
        m_a, e_a, s_a = self.protos.at(gender, age)
        m_b, e_b, s_b = self.protos.at(gender, target)
        y = luma(img)
        chroma = img - y[..., None]
        bands, base = band_split(y, self.sigmas)
        own = [_blur(np.abs(x), self.env_sigma) for x in bands]
        out = base.copy()
        older = target > age
        ex = None
        if (older and o.detail > 0) or o.transplant > 0 or o.transplant_coarse > 0:
            ex = self.exemplar(gender, target, key)
        take: Array | None = None
        if ex is not None and (o.transplant > 0 or o.transplant_coarse > 0):
            # Detail far above what faces of this age have is an object on the skin (a glasses frame, a
            # moustache, a mole), not skin: it keeps its own bands, fully from half a unit of excess on.
            excess = np.max([own[k] / (e_a[k] + 2e-3) for k in range(len(bands))], axis=0)
            keep = np.clip(2.0 * _blur(np.clip(excess - OBJECT_EXCESS, 0.0, 1.0), self.env_sigma), 0.0, 1.0)
            if o.transplant > 0:
                take = o.transplant * self.detail_skin * (1.0 - keep)
            if o.transplant_coarse > 0 and ex[2] is not None:
                # An object's coarse shadow is wider than its edge: its guard spreads by the coarse band's σ.
                wide = _blur(keep, self.coarse_sigma / 2.0)
                take_c = o.transplant_coarse * self.detail_skin * (1.0 - np.clip(2.0 * wide, 0.0, 1.0))
                out += take_c * (ex[2] - coarse_band(base, y, self.mesh.size))
        # The skin's fine bands (all but the folds' band, the last), which `warp_fine` off keeps in place.
        fine = np.zeros_like(base)
        for k, band in enumerate(bands):
            ratio = ((e_b[k] + 2e-3) / (e_a[k] + 2e-3)) ** o.texture
            # Aging never smooths a band and de-aging never sharpens one: where the groups' amplitudes
            # differ the other way (photographic sharpness, make-up), the band is left alone.
            if older:
                gain = np.clip(ratio, 1.0, 2.5) if o.amplify else np.ones_like(ratio)
            else:
                gain = np.clip(ratio, 0.6 if k == 0 else 0.25, 1.0)
            mine = band * (1.0 + (gain - 1.0) * self.skin)
            add = mine
            if ex is not None and take is not None:
                add = add + take * (ex[0][k] - mine)
            if ex is not None and k > 0 and older and o.detail > 0:
                # The energy the target age has here that this face, even after the gain, still lacks.
                if o.amplify:
                    missing = np.maximum(e_b[k] - gain * own[k], 0.0)
                else:
                    missing = np.sqrt(np.maximum(e_b[k] ** 2 - own[k] ** 2, 0.0))
                scale = np.clip(missing / (ex[1][k] + 2e-3), 0.0, 1.5)
                add = add + o.detail * ex[0][k] * scale * self.detail_skin
            out += add
            if k < len(bands) - 1:
                fine += add
        diff = m_b - m_a
        if o.shading_masked:
            # Each blur only averages the skin: the hair, hairline and background differences of the two
            # prototypes no longer bleed into the skin beside them (they lifted young cheeks above real ones).
            w = self.shading_mask

            def nblur(x: Array, sigma: float) -> Array:
                return np.asarray(_blur(x * w, sigma) / np.maximum(self.mask_blur[sigma], 1e-3), np.float32)

            shading = nblur(diff, self.shading_sigma) - nblur(diff, 8.0 * self.shading_sigma)
        else:
            shading = _blur(diff, self.shading_sigma) - _blur(diff, 8.0 * self.shading_sigma)
        weight = o.shading if older or o.shading_younger is None else o.shading_younger
        out += weight * np.clip(shading, -0.12, 0.12) * self.shading_mask
        sat = float(np.clip(1.0 + o.saturation * (target - age) / 10.0, 0.7, 1.2))
        sat_map = 1.0 + (sat - 1.0) * self.face
        res = out[..., None] + chroma * sat_map[..., None]
        if o.shape:
            move = o.shape * (s_b - s_a) * self.shape_weight[:, None]
            if o.warp_fine:
                res = warp_shape(np.asarray(res, np.float32), self.mesh, move)
            else:
                # Added equally to R, G and B, as every luminance change: a grey face stays grey.
                still = (fine * self.skin)[..., None]
                res = warp_shape(np.asarray(res - still, np.float32), self.mesh, move) + still
        if self.outline_keep is not None:
            res = img + self.outline_keep[..., None] * (res - img)
        if shape is not None:
            vis = self.visible(shape)[..., None]
            res = vis * res + (1.0 - vis) * img
        return np.clip(res, 0.0, 1.0).astype(np.float32)
