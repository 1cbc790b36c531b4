"""Hair that ages with the face: the hair around a face, found in the frame, greyed or given its colour back.

Hair greys with age, and the canonical texture the generators change stops at the hairline, so the hair is
a stage of its own, in frame pixels, after the face's change is pasted back:

1. where (`hair_matte`, on the input frame): the person (`face.segment`), inside a head region around the
   face, outside the face below the brows, not skin-coloured (against the face's own cheeks), and coloured
   like the hair found above the forehead, and connected to the crown or the temples (hair grows from the
   scalp; a collar or a shirt of the hair's colour does not connect); feathered. Below the mouth, long hair
   counts where it hangs in an unbroken run from the mouth's level down (fanning out by a pixel every
   `HANG_SPREAD` rows at most), to four inter-ocular distances below the chin;
2. how much (`hair_share`): aging greys the share of grey hair at the target age minus the share at the
   input age (`GREY_SHARE`, a coarse curve), of the hair still pigmented (`grey_amount`); de-aging gives
   colour back to that difference, of the hair that is grey (`colour_amount`);
3. how (`grey_change`): a share p of the strands turns white. Each pixel mixes its own colour with a grey
   strand's, whose lightness follows the hair's own shading (its highlights and shadows, blurred over a
   quarter of the inter-ocular distance) and keeps the pixel's fine detail, stronger (white strands show
   more contrast than dark ones). Which strands grey is a fixed pattern tied to the head and drawn out along
   the hair's own direction (`strand_shares`), so the grey comes in streaks, the same ones every frame.
   Chroma is only ever taken away, never added: a black-and-white frame stays black-and-white.

4. de-aging (`colour_change`): the grey strands take the colour of the hair's darkest strands, those still
   pigmented, or a dark brown where none are left: the picture cannot say what colour white hair once was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError
from faceage_video.face.blend import ALPHA_FLOOR, WarpedChange
from faceage_video.face.landmarks import oval_polygon
from faceage_video.face.segment import resize_to
from faceage_video.types import Affine, Frame, Landmarks, Mask

# Share of grey hair by age (years, share of strands): a coarse curve after the worldwide survey of
# Panhard, Lozano and Loussouarn (Br. J. Dermatol. 2012), where people of 45–65 had about a quarter of their
# hair grey on average; it varies a great deal between people, and sets only the default amount.
GREY_SHARE: tuple[tuple[float, float], ...] = (
    (20.0, 0.0), (30.0, 0.03), (40.0, 0.10), (50.0, 0.25), (60.0, 0.45), (70.0, 0.65), (80.0, 0.80),
    (100.0, 0.90),
)  # fmt: skip
# MediaPipe mesh landmarks used here: eye corners, chin, the lips' inner midpoints, the brows' middles.
_EYES = ((33, 133), (362, 263))
_CHIN, _MOUTH, _BROWS = 152, (13, 14), (105, 334)
# How far below the chin long hair is still aged, in inter-ocular distances: it fades out over the last
# `LONG_HAIR_FADE` of that, and beside the head it hangs within `HANG_WIDTH` of the face's midline.
LONG_HAIR = 4.0
LONG_HAIR_FADE = 1.5
HANG_WIDTH = 2.3
# The longest gap, in inter-ocular distances, that a run of hanging hair bridges down its column (a
# highlight across a lock, a strand over an earring).
HANG_GAP = 0.3
# Long hair fans out as it falls: a run of it may step one pixel sideways every `HANG_SPREAD` rows (a
# slope of 1 in 3 follows liveportrait_d10's; a jacket it touches takes no more than that wedge).
HANG_SPREAD = 3
# Fine detail, as a multiple of the cheeks', from which a pixel of the skin's colour is taken for hair.
TEXTURED = 3.0
# How far the streak field moves a pixel's grey share, in logits per unit of the field.
STREAK = 1.0 / 0.6
# The least share of grey strands `colour_amount` counts on (the share at about 50).
MIN_GREY_SHARE = 0.25
# Hair with no pigmented strand left takes a dark brown when de-aged (sRGB levels: luma, and chroma as the
# offset of R, G and B from it).
DARK_BROWN_LUMA = 45.0
DARK_BROWN_CHROMA = (14.0, -3.0, -12.0)
_RGB_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class HairOptions:
    """Options of the hair stage.

    Attributes:
        enabled: age the hair with the face: grey it when aging, colour grey strands when de-aging (off:
            the hair is left as it is).
        amount: a fixed share of strands to turn grey when aging, in [0, 1]; None derives what to do from
            the input and target ages (`hair_share`), times the run's strength.
        white: luma, in levels, of a grey strand where the hair's shading is at its median.
        reach: how far the head region reaches above the eyes, in inter-ocular distances.
        smoothing: weight of a track's previous matte, carried with the head, in each frame's (`HairSmoother`);
            0 is off. The matte of one frame alone moved about 9 % of its range a frame on known motion.
        every: find the mattes on every k-th frame only (and on a track's first); in between, each track's
            last matte is carried with its head (`HairSmoother.carried`). The live mode's saving: finding
            a matte costs about what the face's own stages do.
    """

    enabled: bool = False
    amount: float | None = None
    white: float = 175.0
    reach: float = 2.3
    smoothing: float = 0.8
    every: int = 1

    def __post_init__(self) -> None:
        if self.amount is not None and not (math.isfinite(self.amount) and 0.0 <= self.amount <= 1.0):
            raise OptionsError(f"hair grey amount must be in 0..1, got {self.amount}")
        if not (math.isfinite(self.white) and 60.0 <= self.white <= 250.0):
            raise OptionsError(f"grey strand luma must be in 60..250 levels, got {self.white}")
        if not (math.isfinite(self.reach) and 1.0 <= self.reach <= 4.0):
            raise OptionsError(f"hair reach must be in 1..4 inter-ocular distances, got {self.reach}")
        if not (math.isfinite(self.smoothing) and 0.0 <= self.smoothing < 1.0):
            raise OptionsError(f"hair matte smoothing must be in [0, 1), got {self.smoothing}")
        if not 1 <= self.every <= 30:
            raise OptionsError(f"the hair matte must be found every 1..30 frames, got {self.every}")


@dataclass(frozen=True)
class HairMatte:
    """Where one face's hair is, in the frame.

    Attributes:
        box: (x0, y0, x1, y1) in frame pixels.
        alpha: (y1 - y0, x1 - x0) float32 in [0, 1].
        scale: the face's inter-ocular distance in frame pixels.
        to_face: (2, 3) frame pixels → the face's own axes (origin between the eyes, x along the eyes,
            y towards the chin, in pixels), which carry a matte from one frame to the next.
        streaks: (y1 - y0, x1 - x0) float32, which strands grey first (`strand_field`, about zero-mean and
            unit-variance over the hair); None greys every pixel alike.
    """

    box: tuple[int, int, int, int]
    alpha: Mask
    scale: float
    to_face: Affine
    streaks: NDArray[np.float32] | None = None


def grey_share(age: float) -> float:
    """Share of grey strands at an age in years (`GREY_SHARE`, interpolated linearly, clamped)."""
    ages, shares = zip(*GREY_SHARE, strict=True)
    return float(np.interp(age, ages, shares))


def grey_amount(input_age: float, target_age: float, strength: float = 1.0) -> float:
    """The share of the still-pigmented strands to turn grey, going from one age to another (0 when the
    target is not older), times `strength`."""
    if target_age <= input_age:
        return 0.0
    before, after = grey_share(input_age), grey_share(target_age)
    return float(np.clip(strength * (after - before) / max(1.0 - before, 1e-6), 0.0, 1.0))


def colour_amount(input_age: float, target_age: float, strength: float = 1.0) -> float:
    """The share of the grey strands to give their colour back, going from one age to a younger one (0 when
    the target is not younger), times `strength`.

    Of the grey strands, counted as at least a quarter of the hair: at an age with little grey, what looks
    grey is mostly the highlights of pigmented hair, which must keep their light.
    """
    before, after = grey_share(input_age), grey_share(target_age)
    if target_age >= input_age:
        return 0.0
    return float(np.clip(strength * (before - after) / max(before, MIN_GREY_SHARE), 0.0, 1.0))


def hair_share(input_age: float, target_age: float, strength: float = 1.0) -> float:
    """What the hair stage does to one face, signed: `grey_amount` when aging (> 0), minus `colour_amount`
    when de-aging (< 0)."""
    if target_age > input_age:
        return grey_amount(input_age, target_age, strength)
    return -colour_amount(input_age, target_age, strength)


def _smoothstep(x: NDArray[np.floating]) -> NDArray[np.float32]:
    t = np.clip(x, 0.0, 1.0)
    return np.asarray(t * t * (3.0 - 2.0 * t), np.float32)


def _blur(image: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """A Gaussian blur of an (h, w) float32 image; a wide one runs on a reduced copy (the result is smooth
    at that scale anyway), which keeps it a few milliseconds on a 4K face."""
    factor = int(sigma // 3.0)
    h, w = image.shape[:2]
    if factor < 2 or min(h, w) < 8 * factor:
        return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.float32)
    small = cv2.resize(image, (max(w // factor, 1), max(h // factor, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


def _mahalanobis(
    lab: NDArray[np.float32], samples: NDArray[np.float32], floor: tuple[float, ...]
) -> NDArray[np.float32]:
    """Distance of every (…, 3) Lab pixel to the samples' (N, 3) mean, in their covariance plus `floor`."""
    mu = samples.mean(axis=0)
    cov = np.cov(samples.T.astype(np.float64)) + np.diag(floor)
    d = lab - mu.astype(np.float32)
    q = (d @ np.linalg.inv(cov).astype(np.float32)) * d
    # Three adds: numpy's reduction over a last axis of 3 is several times slower.
    return np.asarray(np.sqrt(np.maximum(q[..., 0] + q[..., 1] + q[..., 2], 0.0)), np.float32)


def _fine_detail(luma: NDArray[np.float32], window: float) -> NDArray[np.float32]:
    """(h, w) local RMS of the luma's finest band (the image less its 1-pixel Gaussian blur), averaged over
    a Gaussian `window` in pixels."""
    fine = luma - cv2.GaussianBlur(luma, (0, 0), 1.0)
    return np.sqrt(np.maximum(cv2.GaussianBlur(fine * fine, (0, 0), max(window, 0.5)), 0.0)).astype(
        np.float32
    )


def _axes(
    lm: NDArray[np.float64],
) -> tuple[float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The inter-ocular distance, the point between the eyes, and the unit axes along the eyes and towards
    the chin, of (478, 2) landmarks in frame pixels."""
    left, right = (lm[list(pair)].mean(axis=0) for pair in _EYES)
    d = float(np.linalg.norm(right - left))
    eye = (left + right) / 2.0
    ux = (right - left) / max(d, 1e-6)
    uy = np.array([-ux[1], ux[0]])
    if np.dot(lm[_CHIN] - eye, uy) < 0:
        uy = -uy  # uy points from the eyes towards the chin
    return d, eye, ux, uy


def _to_face(
    eye: NDArray[np.float64], ux: NDArray[np.float64], uy: NDArray[np.float64]
) -> NDArray[np.float64]:
    return np.array([[ux[0], ux[1], -float(ux @ eye)], [uy[0], uy[1], -float(uy @ eye)]], np.float64)


def face_axes(landmarks: Landmarks) -> NDArray[np.float64]:
    """(2, 3) frame pixels → the face's own axes (`HairMatte.to_face`) of (478, 2) landmarks."""
    _, eye, ux, uy = _axes(np.asarray(landmarks, np.float64))
    return _to_face(eye, ux, uy)


def _hanging(held: NDArray[np.bool_], spread: int) -> NDArray[np.bool_]:
    """(h, w) where an unbroken run of `held` comes down from the top row, each run free to step one pixel
    sideways every `spread` rows."""
    run = np.zeros_like(held)
    run[0] = held[0]
    for y in range(1, held.shape[0]):
        above = run[y - 1]
        if y % spread == 0:
            above = above.copy()
            above[1:] |= run[y - 1, :-1]
            above[:-1] |= run[y - 1, 1:]
        np.logical_and(held[y], above, out=run[y])
    return run


def hair_matte(frame: Frame, landmarks: Landmarks, person: Mask, options: HairOptions) -> HairMatte | None:
    """Where one face's hair is (module docstring, step 1), on the input frame.

    Args:
        frame: (H, W, 3) uint8 RGB, before any change.
        landmarks: (478, 2) the face's landmarks in frame pixels.
        person: the person's confidence over the whole frame at any size (`PersonSegmenter.__call__`).
        options: `reach` sets the head region.

    Returns:
        The matte over the box its hair covers, or None where the face is too small, off the frame, or
        shows too little skin or hair to tell them apart, or no hair.
    """
    h, w = frame.shape[:2]
    lm = np.asarray(landmarks, np.float64)
    d, eye, ux, uy = _axes(lm)
    if d < 8.0:
        return None
    v_chin = float(np.dot(lm[_CHIN] - eye, uy))
    v_mouth = float(np.dot(lm[list(_MOUTH)].mean(axis=0) - eye, uy))
    v_brow = float(np.dot(lm[list(_BROWS)].mean(axis=0) - eye, uy))
    # The head region: an ellipse centred above the eyes down to the mouth; below it, a band beside and
    # under the head where long hair hangs, down to `LONG_HAIR` below the chin.
    cy, ax, ay = -0.4 * d, 2.1 * d, options.reach * d
    low = v_chin + LONG_HAIR * d
    corners = [eye + sx * 1.15 * ax * ux + sy * uy for sx in (-1, 1) for sy in (cy - 1.15 * ay, low)]
    xs, ys = zip(*corners, strict=True)
    x0, x1 = max(math.floor(min(xs)), 0), min(math.ceil(max(xs)) + 1, w)
    y0, y1 = max(math.floor(min(ys)), 0), min(math.ceil(max(ys)) + 1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u = (gx - eye[0]) * ux[0] + (gy - eye[1]) * ux[1]
    v = (gx - eye[0]) * uy[0] + (gy - eye[1]) * uy[1]
    r = np.sqrt((u / ax) ** 2 + ((v - cy) / ay) ** 2)
    hang = v > v_mouth
    ellipse = _smoothstep((1.1 - r) / 0.15)
    band = _smoothstep((HANG_WIDTH * d - np.abs(u)) / (0.15 * d)) * _smoothstep(
        (low - v) / (LONG_HAIR_FADE * d)
    )
    # From the eyes down, not the mouth: the ellipse narrows there, and hair beside the jaw fell between.
    head = np.where(v > 0.0, np.maximum(ellipse, band), ellipse)

    outline = oval_polygon(landmarks)
    oval = np.zeros((y1 - y0, x1 - x0), np.uint8)
    poly = np.round(outline - np.array([x0, y0], np.float32)).astype(np.int32)
    cv2.fillPoly(oval, [poly], 1)
    # The face below the brows is the generator's; above them the skin test tells forehead from a fringe.
    face = _blur((oval > 0).astype(np.float32) * (v > v_brow - 0.15 * d), 0.06 * d)

    roi = frame[y0:y1, x0:x1]
    lab = cv2.cvtColor(roi, cv2.COLOR_RGB2LAB).astype(np.float32)
    cheeks = (oval > 0) & (v > 0.3 * d) & (v < 0.9 * d) & (np.abs(u) > 0.2 * d)
    if cheeks.sum() < 20:
        return None
    skin_distance = _mahalanobis(lab, lab[cheeks], (30.0, 4.0, 4.0))
    # Lit blonde, copper or red hair can have the skin's colour; its strands still give it far more fine
    # detail than skin has, so fine detail well above the cheeks' also marks a pixel as not skin.
    texture = _fine_detail(lab[..., 0], 0.05 * d)
    textured = _smoothstep((texture / max(float(np.median(texture[cheeks])), 0.5) - TEXTURED) / 2.0)
    # Pixels half skin, half hair at the hairline would grey into a light seam: keep a pixel clear of skin.
    not_skin = np.asarray(
        cv2.erode(np.maximum(_smoothstep((skin_distance - 2.5) / 2.0), textured), np.ones((3, 3), np.uint8)),
        np.float32,
    )
    body = resize_to(person, frame.shape, (x0, y0, x1, y1))
    candidate = body * head * (1.0 - face) * not_skin
    # The hair's own colour, preferably from the crown (above the face oval), else from every candidate:
    # it keeps a background or a collar of another colour out where the person mask takes them in.
    top = float(np.min(np.dot(outline - eye, uy)))
    crown = (v < top) & (v > top - 0.8 * d) & (np.abs(u) < 0.9 * d)
    pool = crown & (candidate > 0.5)
    if pool.sum() < 30:
        pool = candidate > 0.5
    if pool.sum() < 30:
        return None
    samples = lab[pool]
    # Refit on the samples nearest the first fit, so a strip of background in the pool does not widen it.
    first = _mahalanobis(samples, samples, (100.0, 9.0, 9.0))
    samples = samples[first <= np.quantile(first, 0.7)]
    hair_like = _smoothstep((5.0 - _mahalanobis(lab, samples, (100.0, 9.0, 9.0))) / 2.0)
    # Inside the oval only hair darker than the skin counts: a fringe, not the forehead's highlight.
    skin_l = float(np.median(lab[cheeks][:, 0]))
    darker = _smoothstep((skin_l - lab[..., 0] - 5.0) / 15.0)
    inside = (oval > 0).astype(np.float32)
    hair_like = hair_like * (1.0 - inside + inside * darker)
    raw = candidate * hair_like
    # Hair grows from the scalp: keep only what connects to the crown or the temples, so a collar, a scarf
    # or a white shirt beside the jaw, of the hair's colour, stays out.
    anchor = crown | ((v > top) & (v < 0.3 * d) & (np.abs(u) > 0.8 * d) & (np.abs(u) < 1.6 * d))
    _, labels = cv2.connectedComponents((raw > 0.25).astype(np.uint8), connectivity=8)
    rooted = np.unique(labels[anchor & (raw > 0.25)])
    rooted = rooted[rooted > 0]
    raw = raw * np.isin(labels, rooted)
    # Long hair hangs: below the mouth a pixel counts only under an unbroken run of hair from the mouth's
    # level down its column, so a shoulder, a collar or a jacket of the hair's colour that the hair touches
    # from the side stays out, and so does the neck's shadow under the chin.
    gap = max(round(HANG_GAP * d), 1)
    held = cv2.morphologyEx(
        (raw > 0.25).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((2 * gap + 1, 1), np.uint8)
    )
    run = _hanging((held > 0) | ~hang, HANG_SPREAD)
    raw = raw * (run | ~hang)
    alpha = cv2.GaussianBlur(raw, (0, 0), max(0.02 * d, 0.7))
    alpha = np.clip(alpha, 0.0, 1.0)
    alpha[alpha < ALPHA_FLOOR] = 0.0
    to_face = _to_face(eye, ux, uy)
    # The box shrinks to the hair, so what follows (streaks, greying, carrying) works on the hair only.
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = (x0 + int(c0), y0 + int(r0), x0 + int(c1), y0 + int(r1))
    matte = HairMatte(box, np.ascontiguousarray(alpha[r0:r1, c0:c1], np.float32), d, to_face)
    luma = roi[r0:r1, c0:c1].astype(np.float32) @ _RGB_LUMA
    return replace(matte, streaks=strand_field(luma, matte))


class HairSmoother:
    """Each track's hair matte averaged with its previous one, carried along with the head.

    The previous matte is moved to the current frame through both frames' face axes (`HairMatte.to_face`),
    so a head that turns or moves takes its matte along, and averaged there:
    `alpha = w · previous + (1 − w) · current`. Where the previous matte does not reach, the current one
    stands alone. One instance serves one stream; frames must come in order.
    """

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self._last: dict[int, HairMatte] = {}

    def __call__(self, track_id: int, matte: HairMatte) -> HairMatte:
        """The matte of one track in this frame, smoothed (the current one as it is on a track's first)."""
        prev = self._last.get(track_id)
        if self.weight > 0.0 and prev is not None:
            m = _to_previous_box(prev, matte.to_face, matte.box[0], matte.box[1])
            alpha = self._carry(prev.alpha, m, matte.alpha)
            alpha[alpha < ALPHA_FLOOR] = 0.0
            streaks = matte.streaks
            if streaks is not None and prev.streaks is not None:
                streaks = self._carry(prev.streaks, m, streaks)
            matte = replace(matte, alpha=alpha, streaks=streaks)
        self._last[track_id] = matte
        return matte

    def carried(self, track_id: int, to_face: Affine, shape: tuple[int, ...]) -> HairMatte | None:
        """The track's last matte carried with its head to a frame where the face's axes are `to_face`
        (`face_axes`), without finding it there (`HairOptions.every`); None for a track with none.

        Args:
            shape: the frame's (H, W, …); the carried box is clipped to it.
        """
        prev = self._last.get(track_id)
        if prev is None:
            return None
        # The previous box's corners in this frame: previous frame pixel → face axes → this frame's pixel.
        fwd = _invert(to_face) @ np.vstack([np.asarray(prev.to_face, np.float64), [0.0, 0.0, 1.0]])
        px0, py0, px1, py1 = prev.box
        corners = fwd[:2] @ np.array([[px0, px1, px0, px1], [py0, py0, py1, py1], [1.0, 1.0, 1.0, 1.0]])
        x0, y0 = max(math.floor(corners[0].min()), 0), max(math.floor(corners[1].min()), 0)
        x1, y1 = min(math.ceil(corners[0].max()), shape[1]), min(math.ceil(corners[1].max()), shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        m = _to_previous_box(prev, to_face, x0, y0)
        size = (x1 - x0, y1 - y0)

        def move(a: NDArray[np.float32]) -> NDArray[np.float32]:
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            return np.asarray(cv2.warpAffine(a, m, size, flags=flags, borderValue=0.0), np.float32)

        alpha = move(prev.alpha)
        alpha[alpha < ALPHA_FLOOR] = 0.0
        streaks = None if prev.streaks is None else move(prev.streaks)
        return HairMatte((x0, y0, x1, y1), alpha, prev.scale, np.asarray(to_face, np.float64), streaks)

    def _carry(
        self, previous: NDArray[np.float32], m: NDArray[np.float64], current: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """`w · previous` carried through `m` (current box pixel → previous box pixel) `+ (1 − w) · current`;
        the current values alone where the previous box does not reach."""
        h, w = current.shape
        valid = cv2.warpAffine(
            np.ones(previous.shape, np.float32),
            m,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        carried = cv2.warpAffine(
            previous,
            m,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        mix = self.weight * np.clip(valid, 0.0, 1.0)
        return np.asarray(mix * carried + (1.0 - mix) * current, np.float32)

    def reset(self, track_id: int | None = None) -> None:
        """Forget one track's matte, or every track's (a scene cut)."""
        if track_id is None:
            self._last.clear()
        else:
            self._last.pop(track_id, None)


def _to_previous_box(prev: HairMatte, to_face: Affine, x0: int, y0: int) -> NDArray[np.float64]:
    """(2, 3) pixel of a box at (x0, y0) in a frame whose face axes are `to_face` → pixel of `prev.box`:
    box → frame → face axes → previous frame → previous box."""
    to_prev = _invert(prev.to_face) @ np.vstack([np.asarray(to_face, np.float64), [0.0, 0.0, 1.0]])
    shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    return np.asarray((to_prev @ shift)[:2] - np.array([[0.0, 0.0, prev.box[0]], [0.0, 0.0, prev.box[1]]]))


def _invert(m: Affine) -> NDArray[np.float64]:
    """(3, 3) inverse of a (2, 3) affine map."""
    return np.asarray(np.linalg.inv(np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])), np.float64)


def _hair_light(
    roi: NDArray[np.uint8], matte: HairMatte
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """What greying and colouring both read of the hair over `matte.box`: (h, w) luma, (h, w, 3) chroma
    (RGB minus luma), (h, w) shading (the luma averaged over the hair, a quarter of the inter-ocular
    distance wide) and (h, w) fine detail (the luma above a 1 px blur)."""
    f = roi.astype(np.float32)
    luma = f @ _RGB_LUMA
    m = matte.alpha
    sigma = 0.25 * matte.scale
    shading = _blur(luma * m, sigma) / (_blur(m, sigma) + 1e-4)
    fine = luma - cv2.GaussianBlur(luma, (0, 0), 1.0)
    return luma, f - luma[..., None], shading, fine


def grey_change(roi: NDArray[np.uint8], matte: HairMatte, amount: float, white: float) -> NDArray[np.float32]:
    """The change that greys a share of the hair's strands (module docstring, step 3).

    Args:
        roi: (h, w, 3) uint8 RGB, the frame over `matte.box` (the face's own change already in it).
        matte: where the hair is; its alpha weighs the hair's shading statistics, and its face axes anchor
            the strands' pattern to the head.
        amount: share of grey strands, 0..1.
        white: luma of a grey strand at the hair's median shading, in levels.

    Returns:
        (h, w, 3) float32, the change in levels to add times the matte's alpha.
    """
    if amount <= 0.0:
        return np.zeros(roi.shape, np.float32)
    luma, chroma, shading, fine = _hair_light(roi, matte)
    hair = matte.alpha > 0.5
    median = float(np.median(shading[hair])) if hair.any() else 100.0
    strand = np.clip(white * (np.maximum(shading, 1.0) / max(median, 1.0)) ** 0.75, 60.0, 235.0)
    # A white strand shows its neighbours' shadows more than a dark one: the detail grows with the lift.
    gain = np.clip(strand / np.maximum(shading, 1.0), 1.2, 2.5)
    p = strand_shares(matte, amount)
    new_luma = (1.0 - p) * luma + p * (strand + gain * fine)
    out = new_luma[..., None] + chroma * (1.0 - p)[..., None]
    return np.asarray(out - roi.astype(np.float32), np.float32)


def strand_field(luma: NDArray[np.float32], matte: HairMatte) -> NDArray[np.float32]:
    """(h, w) which strands grey first: grey and pigmented streaks along the hair's flow, about zero-mean and
    unit-variance over the hair (less where the hair is soft or has no direction).

    The streaks are a fixed noise pattern tied to the face's axes (so it moves with the head) smeared along
    the hair's own direction (the structure tensor of its luma; a line integral over ± 8 % of the
    inter-ocular distance). Their strength follows the hair's own fine detail and the direction's
    coherence: soft, out-of-focus or directionless hair greys evenly instead of in drawn-on strokes.

    Args:
        luma: (h, w) float32 luma of the input frame over `matte.box`.
        matte: the hair's matte (its alpha and face axes).
    """
    h, w = luma.shape
    d = matte.scale
    x0, y0 = matte.box[0], matte.box[1]
    # The pattern: a texel about 1.5 frame pixels, over ± 3 inter-ocular distances of the face's axes.
    per_d = float(np.clip(d / 1.5, 30.0, 150.0))
    size = int(6 * per_d)
    noise = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    gy, gx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    axes = matte.to_face
    tu = ((axes[0, 0] * gx + axes[0, 1] * gy + axes[0, 2]) / d + 3.0) * per_d
    tv = ((axes[1, 0] * gx + axes[1, 1] * gy + axes[1, 2]) / d + 3.0) * per_d
    field = cv2.remap(
        noise, tu.astype(np.float32), tv.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    # The hair's direction: across its strongest gradient, averaged over 10 % of the inter-ocular distance.
    ix = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    iy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    s = max(0.1 * d, 1.0)
    jxx, jxy, jyy = (_blur(a, s) for a in (ix * ix, ix * iy, iy * iy))
    theta = 0.5 * np.arctan2(2.0 * jxy, jxx - jyy)  # the gradient's direction
    coherence = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy**2) / (jxx + jyy + 1e-3)
    tx, ty = -np.sin(theta).astype(np.float32), np.cos(theta).astype(np.float32)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    reach = int(np.clip(round(0.08 * d), 2, 12))
    streak = np.zeros((h, w), np.float32)
    # Every other pixel along the line: the field is smooth along the hair once sampled linearly.
    for k in range(-reach, reach + 1, 2):
        streak += cv2.remap(field, xs + k * tx, ys + k * ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    hair = matte.alpha > 0.5
    ref = streak[hair] if hair.sum() > 16 else streak.ravel()
    z = (streak - float(ref.mean())) / (float(ref.std()) + 1e-6)
    fine = luma - cv2.GaussianBlur(luma, (0, 0), 1.0)
    sharpness = float(np.sqrt(np.mean(fine[hair] ** 2))) if hair.any() else 0.0
    return np.asarray(z * min(sharpness / 5.0, 1.0) * np.sqrt(np.clip(coherence, 0.0, 1.0)), np.float32)


def strand_shares(matte: HairMatte, amount: float) -> NDArray[np.float32]:
    """(h, w) share of grey per pixel: `amount` where the streak field is zero, more on its light streaks
    and less on its dark ones (logistic in the field); `amount` everywhere without a field."""
    a = float(np.clip(amount, 0.01, 0.99))
    if matte.streaks is None:
        return np.full(matte.alpha.shape, a, np.float32)
    return np.asarray(1.0 / (1.0 + np.exp(-(math.log(a / (1.0 - a)) + STREAK * matte.streaks))), np.float32)


def colour_change(roi: NDArray[np.uint8], matte: HairMatte, amount: float) -> NDArray[np.float32]:
    """The change that gives a share of the grey strands their colour back (de-aging).

    The colour is the hair's own: the mean of its darkest tenth, the strands still pigmented. Where the
    hair has none left (its darkest tenth is not clearly darker than the rest, or lighter than mid-grey),
    a dark brown. Each pixel takes it in proportion to how grey it is (how far it lies from that colour
    towards the hair's median lightness), following the hair's own shading and keeping its fine detail,
    weaker, as darker strands show less. Where the pigment has colour, only strands much less colourful than
    it count as grey, so a brown head's highlights stay. A black-and-white frame gets a neutral colour.

    Args:
        roi: (h, w, 3) uint8 RGB over `matte.box`.
        matte: where the hair is.
        amount: share of the grey strands to colour, 0..1.

    Returns:
        (h, w, 3) float32, the change in levels to add times the matte's alpha.
    """
    hair = matte.alpha > 0.5
    if amount <= 0.0 or hair.sum() < 16:
        return np.zeros(roi.shape, np.float32)
    luma, chroma, shading, fine = _hair_light(roi, matte)
    values = luma[hair]
    median = float(np.median(values))
    darkest = hair & (luma <= float(np.quantile(values, 0.1)))
    pigment_l = float(luma[darkest].mean())
    pigment_c = chroma[darkest].mean(axis=0)
    if pigment_l > min(0.7 * median, 110.0):
        pigment_l, pigment_c = DARK_BROWN_LUMA, np.asarray(DARK_BROWN_CHROMA, np.float32)
    # A picture without colour (its hair and everything around it grey) gets a neutral colour.
    if float(np.abs(chroma).max(axis=2).mean()) < 2.0:
        pigment_c = np.zeros(3, np.float32)
    target_l = np.clip(pigment_l * (np.maximum(shading, 1.0) / max(median, 1.0)) ** 0.75, 5.0, 200.0)
    gain = np.clip(target_l / np.maximum(shading, 1.0), 0.4, 1.0)
    greyness = _smoothstep((luma - pigment_l) / max(median - pigment_l, 10.0))
    # A pigment with colour keeps it in its highlights, which a grey strand has lost: only the pixels much
    # less colourful than the pigment at their lightness (under half as colourful) are grey.
    saturation = float(np.linalg.norm(pigment_c)) / max(pigment_l, 1.0)
    if saturation > 0.08:
        own = np.linalg.norm(chroma, axis=2) / np.maximum(luma, 1.0)
        greyness = greyness * _smoothstep((0.5 * saturation - own) / (0.3 * saturation))
    q = (amount * greyness)[..., None]
    target = (target_l + gain * fine)[..., None] + pigment_c
    return np.asarray(q * (target - roi.astype(np.float32)), np.float32)


def age_hair(frame: Frame, matte: HairMatte, share: float, options: HairOptions) -> WarpedChange:
    """One face's hair aged by a signed share (`hair_share`): `share` > 0 turns that share of its pigmented
    strands grey, `share` < 0 gives that share of its grey strands their colour back. The change covers the
    matte's box (`blend.apply_change_roi` applies it; pixels outside the matte stay as they are)."""
    x0, y0, x1, y1 = matte.box
    roi = frame[y0:y1, x0:x1]
    if share >= 0.0:
        change = grey_change(roi, matte, share, options.white)
    else:
        change = colour_change(roi, matte, -share)
    return WarpedChange(matte.box, matte.alpha, change)
