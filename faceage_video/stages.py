"""The per-frame stages every path shares (offline, live, Ray workers, `info`, the throughput benchmark).

`FaceAnalyzer` turns frames into face jobs in two public halves: `track` (scene cut, landmarks, tracking,
stabilisation) and `register` (face selection, then a five-point alignment or a canonical-mesh fit, with
each face's crop and mask); `analyze` is both. `render` generates every face of a batch of frames and
`composite` smooths each face's change per track and pastes it back. `StageOptions` holds what these
stages need, the one options object the offline pipeline and the Ray workers hand them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.engine.input_age import InputAgeOptions, OwnAges
from faceage_video.engine.temporal import ResidualSmoother, SceneCutDetector, TemporalOptions
from faceage_video.errors import OptionsError
from faceage_video.face.align import align_face, apply_affine
from faceage_video.face.blend import (
    BlendOptions,
    WarpedChange,
    apply_change_roi,
    crop_mask,
    paste_back_mesh,
    warp_change,
)
from faceage_video.face.hair import (
    HairMatte,
    HairOptions,
    HairSmoother,
    age_hair,
    face_axes,
    hair_matte,
    hair_share,
)
from faceage_video.face.landmarks import FaceLandmarker, LandmarkerOptions, face_box, oval_polygon
from faceage_video.face.mesh import CanonicalMesh, MeshFit
from faceage_video.face.segment import PersonSegmenter
from faceage_video.face.stabilize import MeshStabilizer, StabilizerOptions
from faceage_video.face.tracker import FaceTracker, TrackedFace, TrackerOptions
from faceage_video.media.plates import IntegerTransfer, Plate, apply_plate_change
from faceage_video.media.reader import DecodedFrame
from faceage_video.media.sequence import PlateFrame
from faceage_video.types import Affine, Crop, FaceSelection, Frame, Mask

# Decoded 10/12-bit video comes as 16-bit RGB (ReaderOptions.deep), display-referred like the 8-bit frames.
_DEEP_VIDEO = IntegerTransfer(65535.0)


@dataclass(frozen=True)
class StageOptions:
    """What the per-frame stages of a video need: one frozen options object per stage.

    Attributes:
        engine: model, direction, strength, batch size, XLA.
        landmarks: landmarker model, most faces, detection thresholds, downscale width ('video' mode).
        tracker: association and One Euro landmark smoothing.
        temporal: residual smoothing strength and scene-cut threshold.
        blend: mask kind, feather, colour match.
        faces: "all", "largest", or a tuple of track ids (as `faceage-video info` lists them).
        input_age: the per-face input-age estimate, used when the engine has a target age and no input age.
        hair: the hair stage, which ages the hair around each face with it (`face.hair`).
        queue_size: frames each inter-stage queue holds (capped by the byte budget, `checks.queue_frames`).

    Raises:
        OptionsError: a face selection, queue size or landmarker mode the stages cannot use.
    """

    engine: EngineOptions = field(default_factory=EngineOptions)
    landmarks: LandmarkerOptions = field(default_factory=LandmarkerOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    temporal: TemporalOptions = field(default_factory=TemporalOptions)
    blend: BlendOptions = field(default_factory=BlendOptions)
    faces: FaceSelection | tuple[int, ...] = "all"
    input_age: InputAgeOptions = field(default_factory=InputAgeOptions)
    hair: HairOptions = field(default_factory=HairOptions)
    queue_size: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.faces, str) and self.faces not in ("all", "largest"):
            raise OptionsError(f"faces must be 'all', 'largest' or track ids, got {self.faces!r}")
        if not isinstance(self.faces, str) and not all(isinstance(i, int) and i >= 0 for i in self.faces):
            raise OptionsError(f"face track ids must be integers >= 0, got {self.faces!r}")
        if not 1 <= self.queue_size <= 256:
            raise OptionsError(f"queue_size must be in 1..256, got {self.queue_size}")
        if self.landmarks.mode != "video":
            raise OptionsError("the video pipeline needs the landmarker in 'video' mode")


@dataclass
class FaceJob:
    """One face of one frame, ready for the generator."""

    track_id: int
    m: Affine | MeshFit  # frame → crop similarity (five-point space), or the mesh registration
    crop: Crop  # (S, S, 3) uint8
    mask: Mask  # (S, S) in crop (canonical) coordinates
    mesh: CanonicalMesh | None = None  # set in canonical mesh space
    hair: HairMatte | None = None  # where the face's hair is, with the hair stage on


@dataclass
class FrameJob:
    """One analysed frame: its faces, the tracks that ended and whether a scene cut starts here; the
    paste-back fills `image`, `matte` and `plate`."""

    frame: DecodedFrame
    faces: list[FaceJob]
    ended: list[int]  # track ids whose smoothing state must be dropped before this frame
    cut: bool  # a scene cut starts at this frame
    image: Frame | None = None  # the output picture once blended
    matte: Mask | None = None
    plate: Plate | None = None  # the output plate at full precision, for a sequence input


@dataclass
class TrackedFrame:
    """The first half of `FaceAnalyzer.analyze`: the tracked faces of one frame, before registration.

    Attributes:
        faces: every tracked face (stabilised in canonical-mesh mode), not yet selected.
        ended: track ids whose smoothing state must be dropped before this frame.
        cut: a scene cut starts at this frame.
    """

    faces: list[TrackedFace]
    ended: list[int]
    cut: bool


def select_faces(faces: list[TrackedFace], selection: FaceSelection | tuple[int, ...]) -> list[TrackedFace]:
    """Keep the faces the user asked for: all, the largest one, or those with given track ids."""
    if selection == "all" or not faces:
        return faces
    if selection == "largest":

        def area(f: TrackedFace) -> float:
            b = face_box(f.landmarks)
            return float((b[2] - b[0]) * (b[3] - b[1]))

        return [max(faces, key=area)]
    wanted = set(selection)
    return [f for f in faces if f.track_id in wanted]


class FaceAnalyzer:
    """Landmarks → tracking → alignment for one stream, frame by frame, in order.

    Shared by the offline pipeline, the real-time mode and `faceage-video info`.
    """

    def __init__(
        self,
        landmarks: LandmarkerOptions,
        tracker: TrackerOptions,
        temporal: TemporalOptions,
        blend: BlendOptions,
        template_size: int,
        template: Any,
        selection: FaceSelection | tuple[int, ...] = "all",
        stabilizer: StabilizerOptions | None = None,
        hair: HairOptions | None = None,
    ) -> None:
        self.landmarker = FaceLandmarker(landmarks)
        self.hair = hair or HairOptions()
        # The hair matte is found on the input frame, before any face's change is pasted into it.
        self.segmenter = PersonSegmenter() if self.hair.enabled else None
        self.hair_on = self.hair.enabled  # `set_hair` turns it on and off between frames (the live control)
        self.hair_smoother = HairSmoother(self.hair.smoothing)
        # For `HairOptions.every`: frames with faces since the last cut, and the tracks looked at so far.
        self._hair_count = 0
        self._hair_seen: set[int] = set()
        # In canonical mesh space the change rides on every landmark, so the mesh follows the skin: the raw
        # detections carried along the optical flow (`face.stabilize`). On known motion this cut the jitter
        # from 1.8 % to 0.4 % of the inter-ocular distance per frame, where One Euro smoothing, which lags
        # behind real motion, made it 4.3 % (`python -m benchmarks.geometry`, benchmarks/README.md).
        self.mesh_mode = isinstance(template, CanonicalMesh)
        if stabilizer is None:
            stabilizer = StabilizerOptions() if self.mesh_mode else StabilizerOptions(weight=0.0)
        self.stabilizer = MeshStabilizer(stabilizer)
        self.tracker = FaceTracker(tracker)
        self._cut_threshold = temporal.scene_cut_threshold
        self.cuts = SceneCutDetector(self._cut_threshold)
        self.blend = blend
        self.template = template
        self.size = template_size
        self.selection = selection

    def analyze(self, frame: DecodedFrame) -> FrameJob:
        """Detect, track and register the faces of one frame: `track`, then `register`."""
        tracked = self.track(frame)
        return FrameJob(frame, self.register(frame.image, tracked.faces), tracked.ended, tracked.cut)

    def track(self, frame: DecodedFrame) -> TrackedFrame:
        """Scene cut, landmarks (VIDEO mode, at the frame's time), tracking and, in canonical-mesh mode,
        stabilisation of one frame; frames must come in order.

        Args:
            frame: the decoded frame; `image` is (H, W, 3) uint8 RGB.
        """
        cut = self.cuts(frame.image)
        ended: list[int] = []
        if cut:
            ended = [t.track_id for t in self.tracker.tracks]
            self.tracker.reset()
            self.stabilizer.reset()
            self._reset_hair()
        detections = self.landmarker.detect(frame.image, round(frame.time_s * 1000))
        tracked = self.tracker.update(detections, frame.time_s)
        ended += self.tracker.ended
        for tid in self.tracker.ended:
            self.stabilizer.reset(tid)
            self.hair_smoother.reset(tid)
            self._hair_seen.discard(tid)
        if self.mesh_mode:
            tracked = [replace(f, landmarks=self.stabilizer(frame.image, f.track_id, f.raw)) for f in tracked]
        return TrackedFrame(tracked, ended, cut)

    def register(self, image: Frame, faces: list[TrackedFace]) -> list[FaceJob]:
        """Select the faces asked for and register each to the engine's template: a five-point alignment
        (crop (S, S, 3), mask (S, S) in crop space) or a canonical-mesh fit (`engine.template` decides).

        Args:
            image: (H, W, 3) uint8 RGB, the frame the faces were tracked in.
            faces: `track(...).faces`.
        """
        jobs: list[FaceJob] = []
        chosen = select_faces(faces, self.selection)
        person = None
        if self.segmenter is not None and self.hair_on and chosen:
            new = any(f.track_id not in self._hair_seen for f in chosen)
            if self._hair_count % self.hair.every == 0 or new:
                person = self.segmenter(image)
                self._hair_seen.update(f.track_id for f in chosen)
            self._hair_count += 1
        for face in chosen:
            if isinstance(self.template, CanonicalMesh):
                job = self._mesh_job(image, face)
            else:
                crop, m = align_face(image, face.landmarks, self.template)
                oval = apply_affine(m, oval_polygon(face.landmarks)) if self.blend.mask == "face" else None
                mask = crop_mask(self.blend.mask, self.size, oval, self.blend.feather)
                job = FaceJob(face.track_id, m, crop, mask)
            if person is not None:
                matte = hair_matte(image, face.landmarks, person, self.hair)
                job.hair = None if matte is None else self.hair_smoother(face.track_id, matte)
            elif self.segmenter is not None and self.hair_on:
                # Between the frames it is found on, the matte rides with the head.
                job.hair = self.hair_smoother.carried(face.track_id, face_axes(face.landmarks), image.shape)
            jobs.append(job)
        return jobs

    def set_hair(self, on: bool) -> None:
        """Find hair mattes from the next frame on, or stop (the live hair control). Turned on, every face's
        matte is found afresh on the next frame, never carried from before it was off; the segmenter loads on
        first use."""
        if on == self.hair_on:
            return
        if on and self.segmenter is None:
            self.segmenter = PersonSegmenter()
        self.hair_on = on
        self._reset_hair()

    def _reset_hair(self) -> None:
        """Forget every track's matte, so each is found afresh on the next frame with faces."""
        self.hair_smoother.reset()
        self._hair_count = 0
        self._hair_seen.clear()

    def reset(self) -> None:
        """Forget every track and the previous frame, as at the start of a new clip (the landmarker's graph
        stays warm; its timestamps keep increasing)."""
        self.tracker.reset()
        self.stabilizer.reset()
        self._reset_hair()
        self.cuts = SceneCutDetector(self._cut_threshold)

    def _mesh_job(self, image: Frame, face: TrackedFace) -> FaceJob:
        mesh = self.template
        assert isinstance(mesh, CanonicalMesh)
        fit = mesh.fit(face.landmarks, image.shape)
        mask = mesh.face_mask(fit, self.blend.mask)
        return FaceJob(face.track_id, fit, mesh.to_canonical(image, fit), mask, mesh)

    def close(self) -> None:
        self.landmarker.close()
        if self.segmenter is not None:
            self.segmenter.close()

    @classmethod
    def for_run(cls, options: StageOptions, engine: AgingEngine, hair: bool = True) -> FaceAnalyzer:
        """The analyzer of an offline run: the stages' options, in the engine's face space. `hair` False
        leaves the hair stage off (an input-age probe has no use for hair mattes)."""
        o = options
        return cls(
            o.landmarks,
            o.tracker,
            o.temporal,
            o.blend,
            engine.size,
            engine.template,
            o.faces,
            hair=o.hair if hair else None,
        )


def probe_input_ages(
    frames: Iterable[DecodedFrame], analyzer: FaceAnalyzer, ages: OwnAges, limit: int
) -> int:
    """Estimate and hold the input age of every face track in a clip's first `limit` frames, before the run
    proper.

    The analyzer must be a fresh one with the run's options: tracking is deterministic, so the run's own
    analyzer then gives the same faces the same track ids, and each is asked for the age held here from its
    first frame (a streaming estimate would still be moving then). Faces that first appear later are
    estimated as the run meets them.

    Returns:
        The frames probed.
    """
    n = 0
    for frame in frames:
        if n >= limit:
            break
        job = analyzer.analyze(frame)
        if job.faces:
            ages([f.track_id for f in job.faces], [f.crop for f in job.faces])
        n += 1
    ages.freeze()
    return n


def render(
    jobs: list[FrameJob],
    engine: AgingEngine,
    smoother: ResidualSmoother,
    blend: BlendOptions,
    mattes: bool = True,
    input_ages: OwnAges | None = None,
    hair: HairOptions | None = None,
) -> None:
    """Generate every face of a batch of consecutive frames in one batch, smooth per track, paste back (in
    place).

    With `input_ages` (`input_age.track_ages_for`), each face goes to the engine's target age from its
    track's own estimated age: aged if younger, de-aged if older. With `hair` enabled, each face's hair (found
    by the analyzer) ages with it by `hair_amounts`.
    """
    crops = [f.crop for j in jobs for f in j.faces]
    n = len(crops)
    if not crops:
        residuals = np.zeros((0,), np.float32)
        own_ages = None
    elif input_ages is None:
        residuals = engine.residual(np.stack(crops))
        own_ages = None
    else:
        own: list[NDArray[np.float32]] = []
        for job in jobs:
            for tid in job.ended:
                input_ages.reset(tid)
            if job.faces:
                own.append(input_ages([f.track_id for f in job.faces], [f.crop for f in job.faces]))
        own_ages = np.concatenate(own)
        residuals = input_ages.residual(np.stack(crops), own_ages)
    amounts = hair_amounts(engine.options, hair, n, own_ages) if hair is not None and hair.enabled else None
    composite(jobs, residuals, smoother, blend, mattes, hair, amounts)


def hair_amounts(
    engine: EngineOptions, hair: HairOptions, n: int, own_ages: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """(n,) what the hair stage does to each face of a batch, signed (`face.hair.hair_share`): > 0 greys that
    share of the pigmented strands, < 0 colours that share of the grey ones. From each face's own age (or
    the engine's input age) to the target age, times the strength; a fixed `hair.amount` greys the faces
    that are aged and leaves the others."""
    start, target = engine.ages
    ages = own_ages if own_ages is not None else np.full(n, start, np.float32)
    if engine.target_age is None and own_ages is None:
        # Without a target age the direction decides, whatever the assumed ages say.
        older = np.full(n, engine.generator == "G")
    else:
        older = ages < target
    if hair.amount is not None:
        return np.where(older, hair.amount, 0.0).astype(np.float32)
    return np.array([hair_share(float(a), target, engine.strength) for a in ages], np.float32)


def composite(
    jobs: list[FrameJob],
    residuals: NDArray[np.float32],
    smoother: ResidualSmoother,
    blend: BlendOptions,
    mattes: bool = True,
    hair: HairOptions | None = None,
    hair_shares: NDArray[np.float32] | None = None,
) -> None:
    """Smooth each face's residual per track and paste it back, frame by frame in order (in place).

    Args:
        jobs: consecutive frames; `residuals` holds one (S, S, 3) change per face, in job then face order.
        mattes: also build each frame's full-frame matte (`job.matte`); off, canonical-space faces keep
            every per-face buffer to the face's region, so memory does not grow with the frame size.
        hair: the hair stage's options; with `hair_shares` (one per face, as `residuals`, signed as
            `hair_amounts`), each face with a hair matte has its hair aged by its share after its change.
    """
    k = 0
    for job in jobs:
        for tid in job.ended:
            smoother.reset(tid)
        if job.cut:
            smoother.reset()
        img = job.frame.image
        matte: Mask | None = None
        # A sequence or deep-video frame also takes the change on its full-precision plate.
        plate = job.frame.plate
        transfer = job.frame.transfer if isinstance(job.frame, PlateFrame) else _DEEP_VIDEO
        for face in job.faces:
            res = smoother.smooth(face.track_id, residuals[k])
            share = float(hair_shares[k]) if hair_shares is not None else 0.0
            k += 1
            changes: list[WarpedChange] = []
            if face.mesh is not None and isinstance(face.m, MeshFit):
                img, warped = paste_back_mesh(img, res, face.mask, face.m, face.mesh, blend)
                changes.append(warped)
            else:
                assert not isinstance(face.m, MeshFit)
                generated = face.crop.astype(np.float32) + res
                warped = warp_change(img.shape, generated, face.crop, face.m, face.mask, blend)
                img = apply_change_roi(img, warped)
                changes.append(warped)
            if hair is not None and face.hair is not None and share != 0.0:
                aged_hair = age_hair(img, face.hair, share, hair)
                img = apply_change_roi(img, aged_hair)
                changes.append(aged_hair)
            for change in changes:
                if plate is not None:
                    plate = apply_plate_change(plate, change, transfer)
                if mattes and not change.empty:
                    if matte is None:
                        matte = np.zeros(img.shape[:2], np.float32)
                    x0, y0, x1, y1 = change.box
                    np.maximum(matte[y0:y1, x0:x1], change.alpha, out=matte[y0:y1, x0:x1])
        if mattes and matte is None and job.faces:
            matte = np.zeros(img.shape[:2], np.float32)
        job.image = img
        job.matte = matte
        job.plate = plate
