"""Realism as a two-sample test: can a simple classifier tell generated faces from real ones?

Features are image statistics that no training here optimises, per region of the canonical face
(`regions.PARTS`: forehead, eyes, cheeks, mouth), `FEATURES_PER_REGION` numbers each:
- colour: mean and standard deviation of L*, a*, b* (6);
- luminance band energies: log mean square of four difference-of-Gaussians bands of L* (σ 0.5–1, 1–2,
  2–4, 4–8 px of the canonical frame) (4);
- chroma spread: standard deviation of C* (1);
- gradient orientations: an 8-bin histogram of L* gradient directions (0–180°), weighted by magnitude and
  normalised, and the log mean magnitude (9).

Identity descriptors are left out on purpose: an aging that keeps identity keeps the person's young
descriptor, so they tell aged from real old faces whatever the realism (AGING.md).

The classifier is an L2-regularised logistic regression (Newton's method, numpy), fitted on standardised
features; the score is the 5-fold cross-validated ROC AUC, folds stratified and fixed by a seed, averaged
over 5 fold draws. 0.5 means
the two sets cannot be told apart; 1.0 means every face is told. The caller balances gender and race (see
`balanced_pairs`), so the classifier cannot win on demographics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.measures.colour import to_lab
from benchmarks.measures.regions import PARTS, Canonical, Masks

FEATURES_PER_REGION = 20
# Columns of each family within a region's 20 features, in `face_features` order.
FAMILIES: dict[str, tuple[int, ...]] = {
    "colour": (0, 1, 2, 3, 4, 5),
    "bands": (6, 7, 8, 9),
    "chroma": (10,),
    "orientation": tuple(range(11, 19)),
    "gradient": (19,),
}
_BANDS = ((0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0))
_ORIENT_BINS = 8
# Ridge strength on the mean log-loss; fixed, not tuned per run, so every row is judged by the same test.
RIDGE = 0.05
FOLDS = 5
REPEATS = 5

Features = NDArray[np.float64]  # (N, F)
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def face_features(face: Canonical, masks: Masks) -> NDArray[np.float64]:
    """The realism features of one canonical face.

    Args:
        face: (SIZE, SIZE, 3) uint8 RGB in the canonical frame.
        masks: region masks of this face (`regions.region_masks`), limited to pixels inside the image.

    Returns:
        (len(PARTS) * FEATURES_PER_REGION,) float64; a region with fewer than 16 pixels gives zeros.
    """
    lab = to_lab(face).astype(np.float64)
    lum = lab[..., 0]
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    blurred = {s: cv2.GaussianBlur(lum, (0, 0), s) for s in sorted({s for band in _BANDS for s in band})}
    bands = [blurred[a] - blurred[b] for a, b in _BANDS]
    gx = cv2.Sobel(lum, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_64F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((ang / np.pi * _ORIENT_BINS).astype(int), _ORIENT_BINS - 1)
    out: list[float] = []
    for part in PARTS:
        m = masks[part]
        if m.sum() < 16:
            out += [0.0] * FEATURES_PER_REGION
            continue
        px = lab[m]
        out += [*px.mean(axis=0), *px.std(axis=0)]
        out += [float(np.log(np.mean(b[m] ** 2) + 1e-6)) for b in bands]
        out.append(float(chroma[m].std()))
        hist = np.bincount(bins[m], weights=mag[m], minlength=_ORIENT_BINS)
        out += list(hist / max(float(hist.sum()), 1e-9))
        out.append(float(np.log(mag[m].mean() + 1e-6)))
    return np.asarray(out, np.float64)


def _fit(x: Features, y: NDArray[np.float64], ridge: float = RIDGE, iters: int = 25) -> NDArray[np.float64]:
    """Weights (F + 1,) of an L2-regularised logistic regression (bias unpenalised), by Newton's method."""
    n, f = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(f + 1)
    pen = np.full(f + 1, ridge)
    pen[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) / n + pen * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / n + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def auc(scores: NDArray[np.float64], labels: NDArray[np.int_]) -> float:
    """ROC AUC of scores for labels 1 against 0 (Mann–Whitney U, ties counted half).

    Raises:
        ValueError: one of the classes is empty.
    """
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs both classes")
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    u = ranks[labels == 1].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def cv_auc(a: Features, b: Features, folds: int = FOLDS, seed: int = 0, repeats: int = REPEATS) -> float:
    """Cross-validated AUC of telling set `b` (label 1) from set `a` (label 0), averaged over fold draws.

    Folds are stratified and fixed by the seed; features are standardised on each training fold; each repeat's
    AUC is computed once over all its held-out scores, and the repeats (seeds `seed` … `seed + repeats − 1`)
    are averaged, which removes most of the fold-draw noise (sd 0.02–0.03 for one draw at 105 faces a side).
    What remains is the sampling noise of the faces themselves: two random halves of 105 real old faces
    (52 a side) read 0.49 ± 0.10 over 20 splits.

    Args:
        a: (Na, F) features of one set, e.g. real old faces.
        b: (Nb, F) features of the other, e.g. aged young faces.
        folds: number of folds; each class needs at least that many faces.
        seed: fixes the fold assignment of the first repeat.
        repeats: fold draws averaged.

    Returns:
        AUC in [0, 1]; about 0.5 when the sets cannot be told apart.

    Raises:
        ValueError: mismatched feature widths, or a set smaller than `folds`.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, F) with one F, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < folds:
        raise ValueError(f"each set needs at least {folds} faces for {folds}-fold CV, got {len(a)}, {len(b)}")
    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    return float(np.mean([_one_cv_auc(x, y, folds, seed + r) for r in range(max(1, repeats))]))


def _one_cv_auc(x: Features, y: NDArray[np.float64], folds: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    fold = np.empty(len(x), int)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    scores = np.empty(len(x))
    for k in range(folds):
        train, test = fold != k, fold == k
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        sd[sd < 1e-9] = 1.0
        w = _fit((x[train] - mu) / sd, y[train])
        scores[test] = np.hstack([(x[test] - mu) / sd, np.ones((int(test.sum()), 1))]) @ w
    return auc(scores, y.astype(int))


def breakdown(a: Features, b: Features, seed: int = 0) -> dict[str, dict[str, float]]:
    """What gives `b` away: `cv_auc` on one feature family (every region), and on one region (every family).

    It says where an output differs from real faces (e.g. airbrushed bands in the eyes), not by how much a
    model is worse: the full test over all features is the gate.

    Args:
        a: (Na, len(PARTS) * FEATURES_PER_REGION) real faces. b: the same width, e.g. outputs.

    Returns:
        {"family": {name: AUC}, "region": {part: AUC}}, AUCs rounded to 3 places.
    """

    def cols(regions: Sequence[int], within: Sequence[int]) -> list[int]:
        return [r * FEATURES_PER_REGION + k for r in regions for k in within]

    every = range(len(PARTS))
    return {
        "family": {
            name: round(cv_auc(a[:, cols(every, c)], b[:, cols(every, c)], seed=seed), 3)
            for name, c in FAMILIES.items()
        },
        "region": {
            part: round(
                cv_auc(
                    a[:, cols([r], range(FEATURES_PER_REGION))],
                    b[:, cols([r], range(FEATURES_PER_REGION))],
                    seed=seed,
                ),
                3,
            )
            for r, part in enumerate(PARTS)
        },
    }


def feature_names() -> list[str]:
    """A name for each column of `face_features`, e.g. "cheeks band 1-2 px", "eyes orient 45-68°"."""
    per = ["L* mean", "a* mean", "b* mean", "L* sd", "a* sd", "b* sd"]
    per += [f"band {lo:g}-{hi:g} px" for lo, hi in _BANDS]
    per.append("chroma sd")
    step = 180 / _ORIENT_BINS
    per += [f"orient {k * step:g}-{(k + 1) * step:g}°" for k in range(_ORIENT_BINS)]
    per.append("gradient")
    return [f"{part} {name}" for part in PARTS for name in per]


def giveaways(a: Features, b: Features, k: int = 8) -> list[tuple[str, float]]:
    """The `k` features whose means differ most between `a` (real faces) and `b` (e.g. outputs), as
    (name, Cohen's d = (mean b - mean a) / pooled sd), largest |d| first: which way an output misses the
    real faces (d < 0 on a band: less detail there than real skin has), where `breakdown` says only where.

    Args:
        a: (Na, len(PARTS) * FEATURES_PER_REGION) real faces. b: the same width.
    """
    sd = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / 2.0)
    d = (b.mean(axis=0) - a.mean(axis=0)) / np.maximum(sd, 1e-9)
    names = feature_names()
    order = np.argsort(-np.abs(d))[:k]
    return [(names[i], round(float(d[i]), 3)) for i in order]


def balanced_pairs(
    a: Sequence[T], a_keys: Sequence[K], b: Sequence[T], b_keys: Sequence[K], limit: int | None = None
) -> tuple[list[T], list[T]]:
    """Subsets of `a` and `b` with the same count in every group (e.g. (gender, race)).

    Within a group the items keep their given order (the caller fixes it), so the choice is deterministic.
    With `limit`, groups are cut in proportion to reach at most `limit` a side.

    Returns:
        The two balanced lists, group by group in sorted group order.
    """
    ga: dict[K, list[T]] = defaultdict(list)
    gb: dict[K, list[T]] = defaultdict(list)
    for item, key in zip(a, a_keys, strict=True):
        ga[key].append(item)
    for item, key in zip(b, b_keys, strict=True):
        gb[key].append(item)
    counts = {k: min(len(ga[k]), len(gb[k])) for k in ga if k in gb}
    total = sum(counts.values())
    if limit is not None and total > limit:
        counts = {k: int(c * limit / total) for k, c in counts.items()}
    keys = sorted(counts, key=repr)
    return [x for k in keys for x in ga[k][: counts[k]]], [x for k in keys for x in gb[k][: counts[k]]]


def split_halves(items: Sequence[T], keys: Sequence[K]) -> tuple[list[T], list[T]]:
    """Two halves of one set, alternating within each group, so both halves share its demographics."""
    groups: dict[K, list[T]] = defaultdict(list)
    for item, key in zip(items, keys, strict=True):
        groups[key].append(item)
    first: list[T] = []
    second: list[T] = []
    for k in sorted(groups, key=repr):
        g = groups[k]
        # The half that is behind takes a group's odd face, so the halves end within one face of each other.
        a, b = (g[0::2], g[1::2]) if len(first) <= len(second) else (g[1::2], g[0::2])
        first += a
        second += b
    return first, second
