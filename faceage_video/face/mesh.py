"""Canonical face space: every face registered on the dense MediaPipe mesh by a piecewise-affine warp.

The canonical layout is the mean registered shape of the 468 non-iris MediaPipe landmarks over adult UTKFace
faces (`data/canonical_mesh.json`, built by `python -m training layout`, provenance inside), plus a ring of
vertices grown out of the face oval: up to the hairline above, a margin beyond the jaw below. A fixed
Delaunay triangulation of the layout covers the face and that ring, so the blend mask fades out *outside*
the face, never on it.

A canonical pixel is the same point of skin in every frame and on every person: the generator, the
teacher's prototypes and the temporal smoothing all work there, and the change is warped back through the
same mesh, so it rides on the skin instead of on a five-point similarity.

- Forward (face → canonical): each canonical pixel's triangle and barycentric coordinates are fixed, so a
  frame's sampling map is one gather of the frame's vertex positions, then `cv2.remap`. A face larger than
  the training crops (more frame pixels a texel) is low-passed first, so its fine detail does not alias.
- Inverse (canonical → face): triangle ids are rasterised in the face's region of interest (on a coarse
  grid; the map is continuous and piecewise affine, so bilinear upsampling of it is exact inside each
  triangle), each pixel maps through its triangle's affine, then `cv2.remap`. Pixels outside the mask are
  never written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError
from faceage_video.face.align import estimate_similarity, invert_affine
from faceage_video.face.landmarks import FACE_OVAL
from faceage_video.types import Affine, Crop, Frame, Landmarks, Mask, MaskKind

MESH_VERSION = "faceage-mesh/1"
# Below this share of the face's mesh area turned towards the camera (a profile view, where the far side of
# the mesh folds over), the change fades out; at and above FRONTAL_FULL it is applied in full.
FRONTAL_NONE, FRONTAL_FULL = 0.80, 0.93
LAYOUT_PATH = Path(__file__).resolve().parent / "data" / "canonical_mesh.json"
N_LANDMARKS = 468  # the mesh proper; 468..477 are the irises, which ride on the eyeball, not the skin
# Longest side, in grid cells, of the coarse grid on which the inverse map is computed: the map is affine
# inside each triangle, so a grid this fine is exact away from triangle edges and costs the same at 4K.
_INVERSE_GRID = 128
# Newton iterations of the inverse map (see `inverse_map`), and the residual, in grid cells, above which a
# grid point counts as unresolved (a fold) and maps off the texture.
_INVERSE_TOLERANCE = 0.5
_OFF_TEXTURE = -1.0e5
_INVERSE_ITERATIONS = 6
# The UTKFace training crops are sampled at 1.95-2.16 frame pixels per texel at 128 px (5th-95th percentile,
# median 2.06): the bundled generators learned from textures sampled at about 2 frame pixels a texel, and a
# model at S px from 2 * 128 / S.
TRAINING_SAMPLING_128 = 2.0


@dataclass(frozen=True)
class MeshOptions:
    """The canonical face space at one texture size.

    Attributes:
        size: side S of the square canonical texture in pixels (the generator's input size).
        layout: path of the canonical layout JSON; None is the packaged layout.
        feather: how far out the blend mask's fade reaches, as a fraction of the way from the face oval to
            the ring, in (0, 1]: full strength on the oval, 0 from there on. 1 fades over the whole ring
            (forehead to the hairline, jaw to the margin); less keeps the change off the background that the
            ring covers beside a turned head, at the cost of the upper forehead.
        antialias: frame pixels per texel above which `to_canonical` low-passes the frame before sampling
            it, so a face larger than that (a close-up, a 4K plate) is textured as if it were that size:
            bilinear sampling of a face 8 frame pixels a texel wide aliases its pores and lashes into
            noise that moves with every sub-pixel step of the face. 0 turns it off; None (the default) is
            the training crops' own sampling at this size, `TRAINING_SAMPLING_128` * 128 / size, so faces
            at or under it are sampled as the generators learned.
    """

    size: int = 128
    layout: str | None = None
    feather: float = 0.6
    antialias: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 32 <= self.size <= 1024:
            raise OptionsError(f"canonical size must be an integer in 32..1024 px, got {self.size!r}")
        if not (math.isfinite(self.feather) and 0.0 < self.feather <= 1.0):
            raise OptionsError(f"mesh feather must be in (0, 1], got {self.feather}")
        a = self.antialias
        if a is not None and not (math.isfinite(a) and (a == 0.0 or a >= 0.5)):
            raise OptionsError(
                f"mesh antialias must be None, 0 (off) or at least 0.5 frame pixels a texel, got {a}"
            )
        if self.layout is not None and not Path(self.layout).is_file():
            raise OptionsError(f"canonical layout {self.layout} not found; omit it to use the packaged one")


@dataclass(frozen=True)
class Layout:
    """The canonical layout in unit coordinates (x, y in [0, 1] of the texture side).

    Attributes:
        points: (468, 2) mean landmark positions.
        ring_oval: indices (into the 36 FACE_OVAL positions) the ring vertices grow from, in order.
        ring_offset: (K, 2) each ring vertex minus its oval vertex, in unit coordinates.
        triangles: (T, 3) vertex indices into points ++ ring.
        provenance: how and from what the layout was made.
    """

    points: NDArray[np.float64]
    ring_offset: NDArray[np.float64]
    triangles: NDArray[np.int32]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def vertices(self) -> NDArray[np.float64]:
        """(468 + 36, 2) unit coordinates of every vertex: the landmarks, then the ring."""
        oval = self.points[list(FACE_OVAL)]
        return np.concatenate([self.points, oval + self.ring_offset])

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": MESH_VERSION,
                "points": np.round(self.points, 6).tolist(),
                "ring_offset": np.round(self.ring_offset, 6).tolist(),
                "triangles": self.triangles.tolist(),
                "provenance": self.provenance,
            },
            indent=None,
        )

    @classmethod
    def load(cls, path: str | Path = LAYOUT_PATH) -> Layout:
        """Read a layout JSON.

        Raises:
            OptionsError: naming the file and the fix, if it is missing, of another version or malformed.
        """
        p = Path(path)
        try:
            d = json.loads(p.read_text())
            if d.get("version") != MESH_VERSION:
                raise ValueError(f"version {d.get('version')!r} is not {MESH_VERSION!r}")
            pts = np.asarray(d["points"], np.float64)
            ring = np.asarray(d["ring_offset"], np.float64)
            tri = np.asarray(d["triangles"], np.int32)
            if pts.shape != (N_LANDMARKS, 2) or ring.shape != (len(FACE_OVAL), 2) or tri.ndim != 2:
                raise ValueError(f"shapes {pts.shape}, {ring.shape}, {tri.shape}")
            if tri.shape[1] != 3 or tri.min() < 0 or tri.max() >= N_LANDMARKS + len(FACE_OVAL):
                raise ValueError("triangle indices out of range")
            return cls(pts, ring, tri, dict(d.get("provenance", {})))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OptionsError(
                f"canonical layout {p} is unusable ({exc}). Fix: reinstall faceage-video, or rebuild it "
                "with `python -m training layout`."
            ) from exc


@dataclass(frozen=True)
class MeshFit:
    """One face registered on the mesh, in one frame.

    Attributes:
        vertices: (V, 2) frame pixel positions of every mesh vertex (landmarks, then ring).
        similarity: (2, 3) least-squares similarity frame → canonical pixels of the landmarks: used where
            the mesh does not reach (outside the ring) so the generator still sees natural context.
        roi: (x0, y0, x1, y1) frame box the ring covers, clipped to the frame.
        frontal: area fraction of the face's triangles that face the camera, in [0, 1]; low in profile.
    """

    vertices: NDArray[np.float64]
    similarity: Affine
    roi: tuple[int, int, int, int]
    frontal: float


class CanonicalMesh:
    """The canonical layout rasterised at one texture size: forward maps, the blend mask, the fit.

    Build once per run (the cost is a few milliseconds) and share across threads: it holds no per-frame
    state.
    """

    def __init__(self, options: MeshOptions) -> None:
        self.options = options
        self.size = options.size
        self.layout = Layout.load(options.layout or LAYOUT_PATH)
        s = self.size
        # Canonical pixel centres sit at integer coordinates, as in `AlignTemplate.points`.
        self.vertices = self.layout.vertices * s - 0.5  # (V, 2)
        self.landmark_vertices = self.vertices[:N_LANDMARKS]
        self.triangles = self.layout.triangles  # (T, 3)
        self.tri_id, self.bary = self._rasterise()
        self._canon_area = _signed_area(self.vertices[self.triangles])
        yy, xx = np.mgrid[0 : self.size, 0 : self.size].astype(np.float64)
        self._grid = (xx, yy)
        inside = self.tri_id >= 0
        self._inside_flat = np.flatnonzero(inside)
        self._inside_tri = self.triangles[self.tri_id[inside]]  # (P, 3) vertex ids of each mesh pixel
        self._inside_bary = self.bary[inside].astype(np.float64)  # (P, 3)
        self._masks: dict[str, Mask] = {}

    def to_dict(self) -> dict[str, Any]:
        """Manifest form: kind, version, size and the layout's provenance."""
        return {
            "kind": "mesh",
            "version": MESH_VERSION,
            "size": self.size,
            "layout_sha": self.layout_sha,
            "provenance": self.layout.provenance,
        }

    @cached_property
    def layout_sha(self) -> str:
        import hashlib

        # The geometry only: what the textures' pixels mean, not how the provenance is worded.
        lay = self.layout
        geometry = np.concatenate([np.round(lay.points, 6).ravel(), np.round(lay.ring_offset, 6).ravel()])
        h = hashlib.sha256(geometry.astype("<f8").tobytes())
        h.update(lay.triangles.astype("<i4").tobytes())
        return h.hexdigest()[:16]

    def _rasterise(self) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """Triangle id (−1 outside the mesh) and barycentric coordinates of every canonical pixel."""
        s = self.size
        ids = np.full((s, s), -1, np.int32)
        sub = 4
        for t, tri in enumerate(self.triangles):
            pts = np.round(self.vertices[tri] * (1 << sub)).astype(np.int32)
            cv2.fillConvexPoly(ids, pts, t, lineType=cv2.LINE_8, shift=sub)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
        bary = np.zeros((s, s, 3), np.float32)
        inside = ids >= 0
        tri = self.triangles[ids[inside]]  # (P, 3)
        a, b, c = (self.vertices[tri[:, i]] for i in range(3))
        p = np.stack([xx[inside], yy[inside]], axis=1)
        v0, v1, v2 = b - a, c - a, p - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-12, 1e-12, den)
        wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        bary[inside] = np.stack([1.0 - wb - wc, wb, wc], axis=1).astype(np.float32)
        return ids, bary

    @cached_property
    def inside(self) -> NDArray[np.bool_]:
        """(S, S) True where a canonical pixel lies on the mesh."""
        return np.asarray(self.tri_id >= 0)

    def _polygon_fill(self, poly: NDArray[np.float64]) -> NDArray[np.uint8]:
        s = self.size
        out = np.zeros((s + 2, s + 2), np.uint8)
        pts = np.round((poly + 1.0) * 16).astype(np.int32)
        cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=4)
        out[0, :] = out[-1, :] = out[:, 0] = out[:, -1] = 0
        return out

    def mask(self, kind: MaskKind = "face") -> Mask:
        """(S, S) float32 blend mask in canonical space.

        "face": 1 inside the face oval, fading smoothly to 0 on the ring (across the forehead up to the
        hairline and past the jaw); "box": 1 over the whole mesh, fading only near the ring.
        """
        oval = self.vertices[list(FACE_OVAL)]
        ring = self.vertices[N_LANDMARKS:]
        ring_fill = self._polygon_fill(ring)
        d_ring = cv2.distanceTransform(ring_fill, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        if kind == "box":
            ramp = max(1.0, 0.06 * self.size * self.options.feather)
            return _smoothstep(np.asarray(d_ring, np.float32) / ramp)
        oval_out = 1 - self._polygon_fill(oval)
        d_oval = cv2.distanceTransform(oval_out, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        # t: 1 on the oval and inside it, 0 on the ring; the fade runs over t in [1 − feather, 1].
        t = d_ring / np.maximum(d_ring + d_oval, 1e-6)
        f = self.options.feather
        return _smoothstep(np.where(ring_fill[1:-1, 1:-1] > 0, (t - (1.0 - f)) / f, 0.0))

    def inside_oval(self, width: float) -> Mask:
        """(S, S) float32 weight: 0 on and outside the face oval, rising smoothly to 1 at `width` of the
        texture size inside it."""
        return _smoothstep(self.oval_depth() / max(width * self.size, 1e-6))

    def oval_depth(self) -> NDArray[np.float32]:
        """(S, S) float32 each texel's distance to the face oval in texels: positive inside, negative outside."""
        fill = self._polygon_fill(self.vertices[list(FACE_OVAL)])
        inside = cv2.distanceTransform(fill, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        outside = cv2.distanceTransform(1 - fill, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        return np.asarray(np.where(inside > 0, inside, -outside), np.float32)

    def fit(self, landmarks: Landmarks, frame_shape: tuple[int, ...]) -> MeshFit:
        """Register one face: its vertices in the frame (ring grown with the face's own pose).

        Args:
            landmarks: (478, 2) or (468, 2) frame pixel positions.
            frame_shape: (H, W, ...) of the frame.

        Raises:
            ValueError: on too few or non-finite landmarks.
        """
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 2 or lm.shape[0] < N_LANDMARKS or lm.shape[1] < 2 or not np.isfinite(lm).all():
            raise ValueError(f"expected (478, 2) finite landmarks, got shape {lm.shape}")
        pts = lm[:N_LANDMARKS, :2]
        sim = estimate_similarity(pts, self.landmark_vertices)  # frame → canonical
        inv = invert_affine(sim)  # canonical → frame
        # The ring keeps its canonical offset from the oval, turned and scaled with the face's pose.
        offset = (self.vertices[N_LANDMARKS:] - self.vertices[list(FACE_OVAL)]) @ inv[:, :2].T
        verts = np.concatenate([pts, pts[list(FACE_OVAL)] + offset])
        h, w = frame_shape[:2]
        x0 = int(max(0, math.floor(verts[:, 0].min()) - 2))
        y0 = int(max(0, math.floor(verts[:, 1].min()) - 2))
        x1 = int(min(w, math.ceil(verts[:, 0].max()) + 3))
        y1 = int(min(h, math.ceil(verts[:, 1].max()) + 3))
        return MeshFit(verts, sim, (x0, y0, x1, y1), self._frontal(verts))

    def _frontal(self, verts: NDArray[np.float64]) -> float:
        tri = self.triangles
        face = np.all(tri < N_LANDMARKS, axis=1)
        a_frame = _signed_area(verts[tri[face]])
        a_canon = _signed_area(self.vertices[tri[face]])
        total = float(np.abs(a_frame).sum())
        if total <= 0.0:
            return 0.0
        return float(np.abs(a_frame[np.sign(a_frame) == np.sign(a_canon)]).sum() / total)

    def face_mask(self, fit: MeshFit, kind: MaskKind = "face") -> Mask:
        """(S, S) blend mask of one registered face: `mask(kind)`, faded out in profile views (by the share of
        the mesh turned towards the camera, `FRONTAL_NONE`..`FRONTAL_FULL`) and off skin the camera does not
        see (`visibility`). The one mask every caller pastes with."""
        if kind not in self._masks:
            self._masks[kind] = self.mask(kind)
        fade = float(np.clip((fit.frontal - FRONTAL_NONE) / (FRONTAL_FULL - FRONTAL_NONE), 0.0, 1.0))
        return (self._masks[kind] * (fade * self.visibility(fit))).astype(np.float32)

    def visibility(self, fit: MeshFit) -> NDArray[np.float32]:
        """(S, S) weight in [0, 1] of each canonical pixel being visible skin in this frame.

        0 on triangles turned away from the camera (folded over, in a profile view) and on triangles squeezed
        to under 15 % of their usual area (the skin at a silhouette), rising to 1 at half their usual area;
        blurred so the change fades in towards the silhouette instead of stopping at a triangle edge.
        """
        tri = self.triangles
        a_frame = _signed_area(fit.vertices[tri])
        ratio = a_frame / np.where(np.abs(self._canon_area) > 1e-9, self._canon_area, 1e-9)
        typical = float(np.median(ratio[ratio > 0])) if np.any(ratio > 0) else 1.0
        rel = ratio / max(typical, 1e-9)  # negative where folded
        vis_tri = np.clip((rel - 0.15) / 0.35, 0.0, 1.0)
        flat = np.ones(self.size * self.size, np.float32)  # off the mesh: the mask is 0 there anyway
        flat[self._inside_flat] = vis_tri[self.tri_id.ravel()[self._inside_flat]]
        vis = flat.reshape(self.size, self.size)
        sigma = max(1.0, self.size / 64)
        return np.asarray(np.minimum(vis, cv2.GaussianBlur(vis, (0, 0), sigma)), np.float32)

    def forward_map(self, fit: MeshFit) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(S, S) map_x, map_y: the frame position each canonical pixel samples."""
        xx, yy = self._grid
        inv = invert_affine(fit.similarity)
        mx = (inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]).ravel()
        my = (inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]).ravel()
        v = fit.vertices[self._inside_tri]  # (P, 3, 2)
        w = self._inside_bary
        mx[self._inside_flat] = np.einsum("pk,pk->p", w, v[..., 0])
        my[self._inside_flat] = np.einsum("pk,pk->p", w, v[..., 1])
        s = self.size
        return mx.reshape(s, s).astype(np.float32), my.reshape(s, s).astype(np.float32)

    def to_canonical(self, frame: Frame, fit: MeshFit) -> Crop:
        """Warp one face of a frame into the canonical texture: low-passed first where the face is sampled
        more coarsely than the training crops were (`prefilter_sigma`), then bilinear.

        Args:
            frame: (H, W, 3) uint8 RGB.

        Returns:
            (S, S, 3) uint8. Pixels beyond the frame edge are reflected, as in `align.warp_to_crop`.
        """
        mx, my = self.forward_map(fit)
        src, mx, my = self._prefiltered(frame, fit, mx, my)
        out = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        return np.asarray(out, np.uint8)

    @property
    def antialias(self) -> float:
        """`MeshOptions.antialias` with the default filled in: frame pixels a texel, 0 when off."""
        a = self.options.antialias
        return TRAINING_SAMPLING_128 * 128.0 / self.size if a is None else float(a)

    def sampling(self, fit: MeshFit) -> float:
        """Frame pixels per canonical texel of one registered face (its similarity's scale, inverted)."""
        det = abs(float(np.linalg.det(fit.similarity[:, :2])))
        return 1.0 / math.sqrt(det) if det > 0.0 else 0.0

    def prefilter_sigma(self, fit: MeshFit) -> float:
        """Gaussian sigma, frame pixels, of the low-pass `to_canonical` applies first: 0 up to
        `MeshOptions.antialias` (a) frame pixels a texel, then the blur a downscale of the face by r = f / a
        calls for, sigma = sqrt(r^2 - 1) / 2 (a pixel's own footprint, half a pixel, grown to half a
        downscaled one), so the texture of a face f pixels a texel wide reads like that of the same face at a.
        Continuous in f, so a zoom does not step."""
        a = self.antialias
        f = self.sampling(fit)
        if a <= 0.0 or f <= a:
            return 0.0
        return 0.5 * math.sqrt((f / a) ** 2 - 1.0)

    def _prefiltered(
        self, frame: Frame, fit: MeshFit, mx: NDArray[np.float32], my: NDArray[np.float32]
    ) -> tuple[Frame, NDArray[np.float32], NDArray[np.float32]]:
        """The frame low-passed by `prefilter_sigma` (only the box the maps read, and its mirror where they
        read past the frame edge), with the maps moved into that box; the frame itself when none is due.

        A large blur is mostly done by `cv2.pyrDown` (a Gaussian of sigma 1 pixel, then every second pixel),
        as many levels as stay within sigma, and the rest by a Gaussian at that level: a 4K close-up costs a
        few milliseconds instead of 30.
        """
        sigma = self.prefilter_sigma(fit)
        if sigma < 0.05:
            return frame, mx, my
        h, w = frame.shape[:2]
        pad = math.ceil(3.0 * sigma) + 2
        x0, x1 = _read_span(float(mx.min()), float(mx.max()), w, pad)
        y0, y1 = _read_span(float(my.min()), float(my.max()), h, pad)
        box: NDArray[Any] = np.ascontiguousarray(frame[y0:y1, x0:x1])
        k = 1  # frame pixels per pixel of the level reached
        done = 0.0  # variance of the blur the pyramid applied, frame pixels squared
        # Each level adds a Gaussian of sigma 1 level pixel; go down only while that stays within sigma.
        while done + float(k * k) <= sigma * sigma and min(box.shape[:2]) >= 8:
            box = cv2.pyrDown(box, borderType=cv2.BORDER_REFLECT101)
            done += float(k * k)
            k *= 2
        rest = math.sqrt(max(sigma * sigma - done, 0.0)) / k
        if rest >= 0.05:
            box = cv2.GaussianBlur(box, (0, 0), rest, borderType=cv2.BORDER_REFLECT101)
        # pyrDown's pixel i sits on pixel 2i of the level above, so a level's coordinates are the box's / k.
        sx, sy = (mx - np.float32(x0)) / np.float32(k), (my - np.float32(y0)) / np.float32(k)
        return np.asarray(box, frame.dtype), sx, sy

    def inverse_map(self, fit: MeshFit) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Canonical position of every pixel of the fit's region of interest.

        Returns:
            map_x, map_y, each (y1 − y0, x1 − x0) float32, for `cv2.remap` of a canonical image into the ROI.
        """
        x0, y0, x1, y1 = fit.roi
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        k = max(1, math.ceil(max(w, h) / _INVERSE_GRID))
        gw, gh = math.ceil(w / k), math.ceil(h / k)
        # Grid cell (i, j) centres sit at frame x0 − 0.5 + (i + 0.5)·k, so INTER_LINEAR resizing by k lands
        # output pixel u exactly on frame x0 + u.
        gx = x0 - 0.5 + (np.arange(gw) + 0.5) * k
        gy = y0 - 0.5 + (np.arange(gh) + 0.5) * k
        # Newton's method on the forward map, fwd(u) = p: it is affine inside each triangle, so the Jacobian
        # there is exact and constant, and a point converges in two or three steps once it is in the right
        # triangle. Off the mesh fwd is the similarity, where the first step is already exact.
        fx, fy, jinv = self._newton_maps(fit)
        sim = fit.similarity
        xx, yy = np.meshgrid(gx, gy)
        px, py = xx.astype(np.float32), yy.astype(np.float32)
        mx = (sim[0, 0] * px + sim[0, 1] * py + sim[0, 2]).astype(np.float32)
        my = (sim[1, 0] * px + sim[1, 1] * py + sim[1, 2]).astype(np.float32)
        lin, near, rep = cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.BORDER_REPLICATE
        for _ in range(_INVERSE_ITERATIONS):
            ex = px - cv2.remap(fx, mx, my, lin, borderMode=rep)
            ey = py - cv2.remap(fy, mx, my, lin, borderMode=rep)
            j = [cv2.remap(m, mx, my, near, borderMode=rep) for m in jinv]
            mx = mx + j[0] * ex + j[1] * ey
            my = my + j[2] * ex + j[3] * ey
        # Where the mesh folds over (the far side of a turned head) a frame pixel has no single point of
        # skin, and Newton need not converge: such pixels map off the texture, so nothing is pasted there.
        miss = np.hypot(
            px - cv2.remap(fx, mx, my, lin, borderMode=rep), py - cv2.remap(fy, mx, my, lin, borderMode=rep)
        )
        off = miss > _INVERSE_TOLERANCE * k
        mx[off] = _OFF_TEXTURE
        my[off] = _OFF_TEXTURE
        if k > 1:
            mx = cv2.resize(mx.astype(np.float32), (gw * k, gh * k), interpolation=cv2.INTER_LINEAR)[:h, :w]
            my = cv2.resize(my.astype(np.float32), (gw * k, gh * k), interpolation=cv2.INTER_LINEAR)[:h, :w]
        return np.asarray(mx, np.float32), np.asarray(my, np.float32)

    def _newton_maps(
        self, fit: MeshFit
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], list[NDArray[np.float32]]]:
        """Forward map (S, S) x and y, and the four (S, S) entries of its inverse Jacobian (frame → canonical
        linear part of each pixel's triangle; the similarity's off the mesh), for `inverse_map`."""
        fx, fy = self.forward_map(fit)
        # Extend the forward map past the canonical square's edge linearly, via the similarity, by
        # letting remap replicate an edge that already follows it (the ring stays inside the square).
        tri = self.triangles
        aff = _triangle_affines(self.vertices[tri], fit.vertices[tri])  # canonical → frame, (T, 2, 3)
        lin = aff[:, :, :2]
        det = lin[:, 0, 0] * lin[:, 1, 1] - lin[:, 0, 1] * lin[:, 1, 0]
        sim = fit.similarity[:, :2]
        good = np.abs(det) > 1e-9
        inv = np.empty_like(lin)
        inv[good] = np.linalg.inv(lin[good])
        inv[~good] = sim
        flat = [np.full(self.size * self.size, sim[i // 2, i % 2], np.float64) for i in range(4)]
        ids = self.tri_id.ravel()[self._inside_flat]
        for i in range(4):
            flat[i][self._inside_flat] = inv[ids, i // 2, i % 2]
        s = self.size
        return fx, fy, [f.reshape(s, s).astype(np.float32) for f in flat]

    def to_frame(
        self, canonical: NDArray[np.floating], fit: MeshFit, interpolation: int = cv2.INTER_LINEAR
    ) -> NDArray[np.float32]:
        """Warp a canonical image (S, S) or (S, S, C) into the fit's ROI; 0 where the mesh does not reach."""
        mx, my = self.inverse_map(fit)
        if mx.size == 0:
            return np.zeros((0, 0, *canonical.shape[2:]), np.float32)
        out = cv2.remap(
            np.asarray(canonical, np.float32),
            mx,
            my,
            interpolation,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return np.asarray(out, np.float32)


def _read_span(lo: float, hi: float, n: int, pad: int) -> tuple[int, int]:
    """[start, stop) of the frame pixels a map from `lo` to `hi` reads along an axis of `n` pixels, `pad`
    beyond, reflected at the frame edge as `cv2.BORDER_REFLECT101` reads them."""
    a, b = math.floor(lo) - pad, math.ceil(hi) + pad + 1
    if lo < 0.0:  # reads mirrored pixels: -x reads x
        b = max(b, math.ceil(-lo) + pad + 1)
    if hi > n - 1:  # n - 1 + x reads n - 1 - x
        a = min(a, math.floor(2 * (n - 1) - hi) - pad)
    start = min(max(0, a), n - 1)
    return start, max(min(n, b), start + 1)


def _smoothstep(x: NDArray[np.floating]) -> NDArray[np.float32]:
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def _signed_area(tri: NDArray[np.float64]) -> NDArray[np.float64]:
    """(T,) signed areas of (T, 3, 2) triangles."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


def _triangle_affines(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """(T, 2, 3) affines mapping each (T, 3, 2) source triangle onto its destination triangle."""
    t = len(src)
    s = np.concatenate([src, np.ones((t, 3, 1))], axis=2)  # (T, 3, 3): rows [x, y, 1]
    det = np.linalg.det(s)
    s[np.abs(det) < 1e-9] = np.eye(3)  # degenerate: never drawn (zero area), keep the solve finite
    return np.asarray(np.linalg.solve(s, dst).transpose(0, 2, 1))  # s @ A^T = dst
