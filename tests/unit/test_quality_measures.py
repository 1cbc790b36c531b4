"""The quality measures must see what a person sees: casts, blotches, tinted b/w faces, unrealism, flicker.

Synthetic and fast; the one test on real UTKFace chips skips where ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.measures import colour, realism, regions, stability


def _face(seed: int = 0, size: int = regions.SIZE) -> np.ndarray:
    """A skin-coloured canonical 'face': smooth random texture around a warm skin tone."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (size, size, 3)).astype(np.float32), (0, 0), 3)
    base = np.array([196, 150, 128], np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _inner() -> np.ndarray:
    return regions.region_masks()["inner"]


# -- regions -----------------------------------------------------------------------------------------------


def test_face_frame_puts_the_eyes_on_the_canonical_points_whatever_the_tilt() -> None:
    left, right = np.array([50.0, 80.0]), np.array([110.0, 60.0])  # a tilted face, 63 px between the eyes
    f = regions.FaceFrame.from_eyes(left, right)
    m = f.m
    mapped = np.array([m[:, :2] @ p + m[:, 2] for p in (left, right)])
    ex, ey = regions.EYES_AT
    np.testing.assert_allclose(mapped, [[ex - regions.IOD / 2, ey], [ex + regions.IOD / 2, ey]], atol=1e-9)
    assert f.iod_px == pytest.approx(np.hypot(60, 20))
    with pytest.raises(ValueError, match="coincide"):
        regions.FaceFrame.from_eyes(left, left)


def test_regions_lie_inside_the_inner_face_and_respect_the_valid_pixels() -> None:
    masks = regions.region_masks()
    for part in regions.PARTS:
        assert masks[part].any()
        assert not (masks[part] & ~masks["inner"]).any(), part
    valid = np.zeros((regions.SIZE, regions.SIZE), bool)
    valid[: regions.SIZE // 2] = True
    assert not regions.region_masks(valid)["mouth"].any()


# -- colour ------------------------------------------------------------------------------------------------


def test_unchanged_output_has_no_cast_and_no_blotches() -> None:
    face = _face()
    c = colour.colour_change(face, face, _inner())
    assert c.cast == 0.0 and c.blotches == 0.0 and not c.bw and not c.tinted


def test_a_synthetic_red_cast_trips_the_cast_gate() -> None:
    face = _face()
    red = np.clip(face.astype(np.int16) + np.array([12, -3, -3]), 0, 255).astype(np.uint8)
    c = colour.colour_change(face, red, _inner())
    assert c.cast > colour.CAST_GATE
    summary = colour.summarize_colour([c, c])
    assert summary["cast_mean"] > colour.CAST_GATE


def test_red_cheeks_read_as_blotches_not_as_a_cast() -> None:
    face = _face()
    cheeks = regions.region_masks()["cheeks"]
    blotchy = face.astype(np.int16)
    blotchy[cheeks] += np.array([25, -8, -8], np.int16)
    c = colour.colour_change(face, np.clip(blotchy, 0, 255).astype(np.uint8), _inner())
    assert c.blotches > colour.BLOTCH_GATE
    # A uniform brightening of the luminance only is neither.
    brighter = np.clip(face.astype(np.int16) + 10, 0, 255).astype(np.uint8)
    b = colour.colour_change(face, brighter, _inner())
    assert b.cast < 0.5 * colour.CAST_GATE and b.blotches < 0.5 * colour.BLOTCH_GATE


def test_a_tinted_greyscale_face_is_caught_and_an_untinted_one_is_not() -> None:
    grey = colour.greyscale(_face())
    kept = colour.colour_change(grey, np.clip(grey.astype(np.int16) + 8, 0, 255).astype(np.uint8), _inner())
    assert kept.bw and not kept.tinted
    blue = np.clip(grey.astype(np.int16) + np.array([-4, 0, 8]), 0, 255).astype(np.uint8)
    tinted = colour.colour_change(grey, blue, _inner())
    assert tinted.bw and tinted.tinted
    assert tinted.chroma_out >= colour.BW_CHROMA + colour.BW_TINT
    assert colour.summarize_colour([kept, tinted])["bw_tinted"] == 1


def test_a_pink_cheek_on_a_greyscale_face_is_tinted_though_the_mean_barely_moves() -> None:
    grey = colour.greyscale(_face())
    inner = _inner()
    ys, xs = np.nonzero(inner)
    # A disc on one side of the face, 10 % of the inner face: pink, as a generator's rosy cheek.
    cy, cx = int(np.median(ys)), int(np.percentile(xs, 20))
    yy, xx = np.mgrid[: inner.shape[0], : inner.shape[1]]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 0.1 * inner.sum() / np.pi
    pink = grey.astype(np.int16)
    pink[disc] += np.array([6, -3, 0], np.int16)
    cheek = colour.colour_change(grey, np.clip(pink, 0, 255).astype(np.uint8), inner)
    assert cheek.bw and cheek.tinted
    assert cheek.chroma_out < colour.BW_CHROMA + colour.BW_TINT  # the mean alone would pass it
    assert cheek.chroma_out_patch >= colour.BW_CHROMA
    # Grain of the same size spread evenly is not a patch.
    rng = np.random.default_rng(0)
    grain = np.clip(grey.astype(np.int16) + rng.integers(-3, 4, grey.shape), 0, 255).astype(np.uint8)
    noisy = colour.colour_change(grey, grain, inner)
    assert noisy.bw and not noisy.tinted
    summary = colour.summarize_colour([cheek, noisy])
    assert summary["bw_tinted"] == 1 and summary["bw_chroma_patch_max"] >= colour.BW_CHROMA


def test_colour_change_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="share"):
        colour.colour_change(_face(), _face()[:100], _inner())


# -- realism -----------------------------------------------------------------------------------------------


def test_two_halves_of_one_set_read_about_half() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(160, 40))
    value = realism.cv_auc(x[:80], x[80:], seed=0)
    assert 0.35 <= value <= 0.65


def test_two_different_sets_read_near_one() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(80, 40))
    b = rng.normal(size=(80, 40))
    b[:, 3] += 3.0  # one feature moves: the classifier must find it
    assert realism.cv_auc(a, b) > 0.9


def test_breakdown_points_at_the_family_and_region_that_moved() -> None:
    rng = np.random.default_rng(3)
    width = len(regions.PARTS) * realism.FEATURES_PER_REGION
    a, b = rng.normal(size=(60, width)), rng.normal(size=(60, width))
    eyes = regions.PARTS.index("eyes")
    first_band = realism.FAMILIES["bands"][0]
    b[:, eyes * realism.FEATURES_PER_REGION + first_band] -= 3.0  # the eyes lose their finest band
    by = realism.breakdown(a, b)
    assert set(by["family"]) == set(realism.FAMILIES)
    assert set(by["region"]) == set(regions.PARTS)
    assert by["family"]["bands"] > 0.9 and by["region"]["eyes"] > 0.9
    assert max(v for k, v in by["family"].items() if k != "bands") < 0.75
    assert max(v for k, v in by["region"].items() if k != "eyes") < 0.75


def test_giveaways_name_the_feature_that_moved_and_the_way_it_missed() -> None:
    rng = np.random.default_rng(4)
    width = len(regions.PARTS) * realism.FEATURES_PER_REGION
    a, b = rng.normal(size=(80, width)), rng.normal(size=(80, width))
    cheeks = regions.PARTS.index("cheeks")
    b[:, cheeks * realism.FEATURES_PER_REGION + realism.FAMILIES["bands"][1]] -= 2.0  # less detail
    b[:, realism.FAMILIES["gradient"][0]] += 1.0  # the forehead's gradient up, by less
    names = realism.feature_names()
    assert len(names) == width and len(set(names)) == width
    top = realism.giveaways(a, b, k=3)
    assert [n for n, _ in top[:2]] == ["cheeks band 1-2 px", "forehead gradient"]
    assert top[0][1] < -1.5 and 0.6 < top[1][1] < 1.5
    assert abs(top[2][1]) < 0.6


def test_families_cover_every_feature_of_a_region_once() -> None:
    columns = sorted(c for cols in realism.FAMILIES.values() for c in cols)
    assert columns == list(range(realism.FEATURES_PER_REGION))


def test_auc_counts_ties_as_half() -> None:
    assert realism.auc(np.array([0.0, 0.0]), np.array([0, 1])) == 0.5
    assert realism.auc(np.array([0.0, 1.0]), np.array([0, 1])) == 1.0


def test_features_see_a_smooth_painted_face() -> None:
    masks = regions.region_masks()
    faces = [_face(s) for s in range(40)]
    painted = [cv2.GaussianBlur(f, (0, 0), 2.5) for f in faces[20:]]
    real = np.stack([realism.face_features(f, masks) for f in faces[:20]])
    fake = np.stack([realism.face_features(f, masks) for f in painted])
    assert real.shape == (20, len(regions.PARTS) * realism.FEATURES_PER_REGION)
    assert realism.cv_auc(real, fake) > 0.9


def test_balanced_pairs_match_every_group() -> None:
    a, b = list(range(10)), list(range(100, 106))
    ka = ["m"] * 7 + ["f"] * 3
    kb = ["m"] * 2 + ["f"] * 4
    xa, xb = realism.balanced_pairs(a, ka, b, kb)
    assert xa == [7, 8, 9, 0, 1] and xb == [102, 103, 104, 100, 101]
    h1, h2 = realism.split_halves(a, ka)
    assert sorted(h1 + h2) == a and abs(len(h1) - len(h2)) <= 1


def test_halves_of_real_old_faces_read_about_half(utkface_dir: Path) -> None:
    files = sorted(p for p in utkface_dir.glob("*.jpg") if 55 <= int(p.name.split("_")[0]) <= 75)[:120]
    if len(files) < 120:
        pytest.skip("fewer than 120 UTKFace chips aged 55-75")
    masks = regions.region_masks()
    # UTKFace chips are aligned by their eyes already: a fixed frame puts them roughly on the canonical one.
    frame = regions.FaceFrame.from_eyes(np.array([61.0, 95.0]), np.array([139.0, 95.0]))
    feats = []
    for p in files:
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        face, valid = regions.canonical(img, frame)
        feats.append(realism.face_features(face, regions.region_masks(valid)))
    x = np.stack(feats)
    assert 0.3 <= realism.cv_auc(x[0::2], x[1::2]) <= 0.7
    # The same faces against themselves blurred are told apart: the features are not blind.
    blurred = []
    for p in files[:60]:
        img = cv2.GaussianBlur(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (0, 0), 1.5)
        blurred.append(realism.face_features(regions.canonical(img, frame)[0], masks))
    assert realism.cv_auc(x[60:], np.stack(blurred)) > 0.8


# -- stability ---------------------------------------------------------------------------------------------


def _clip(tmp_path: Path, frames: int = 10) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    photo = cv2.resize(_face(3, 128), (160, 160))
    opts = stability.MotionOptions(frames=frames, size=(224, 224))
    path = stability.motion_path((160, 160), opts, seed=5)
    raw = stability.render_clip(photo, path, opts, seed=5)
    video = stability.encode_h264(raw, tmp_path / "clip.mp4", opts)
    import av

    with av.open(str(video)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == frames
    return photo, path, decoded


def test_motion_path_moves_as_asked() -> None:
    opts = stability.MotionOptions(frames=60)
    path = stability.motion_path((200, 200), opts, seed=1)
    again = stability.motion_path((200, 200), opts, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(path, again, strict=True))  # deterministic
    centres = np.array([a[:, :2] @ [99.5, 99.5] + a[:, 2] for a in path])
    drift = centres - (np.asarray(opts.size) - 1) / 2  # the photo's centre against the frame's
    assert 20 < np.abs(drift).max() <= opts.drift_px + 1e-6
    angles = np.degrees([np.arctan2(a[1, 0], a[0, 0]) for a in path])
    assert np.abs(angles).max() <= opts.rotate_deg + 1e-6
    with pytest.raises(ValueError, match="even"):
        stability.MotionOptions(size=(321, 320))


def test_unchanged_output_adds_zero_temporal_change(tmp_path: Path) -> None:
    _photo, path, frames = _clip(tmp_path)
    mask = _photo_mask(path)
    back = stability.map_back(frames, path, (160, 160))
    r = stability.temporal_change(back, back.copy(), mask)
    assert r["added_change"] == 0.0 and r["change_size"] == 0.0 and r["out_minus_in"] == 0.0
    assert r["in_change"] > 0.0  # the input does change: noise, resampling and H.264


def test_per_frame_random_jitter_reads_above_zero(tmp_path: Path) -> None:
    _photo, path, frames = _clip(tmp_path)
    rng = np.random.default_rng(0)
    jittered = []
    for f in frames:  # the whole frame shifted by a random sub-pixel amount, as a jittery paste-back would
        dx, dy = rng.uniform(-1, 1, 2)
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
        jittered.append(cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REPLICATE))
    mask = _photo_mask(path)
    r = stability.temporal_change(
        stability.map_back(frames, path, (160, 160)), stability.map_back(jittered, path, (160, 160)), mask
    )
    assert r["added_change"] > 0.3
    assert r["added_pct"] is not None and r["added_pct"] > 0


def test_a_change_fixed_to_the_photo_adds_far_less_than_jitter(tmp_path: Path) -> None:
    photo, path, frames = _clip(tmp_path)
    # The same fixed change (a darker patch on the photo) rendered into every frame: attached to the skin.
    changed = photo.astype(np.int16)
    changed[50:110, 40:120] -= 16
    opts = stability.MotionOptions(frames=len(frames), size=(224, 224), noise=0.0)
    moved = stability.render_clip(np.clip(changed, 0, 255).astype(np.uint8), path, opts, seed=5)
    still = stability.render_clip(photo, path, opts, seed=5)
    out = [np.clip(f.astype(np.int16) + m.astype(np.int16) - s, 0, 255).astype(np.uint8)
           for f, m, s in zip(frames, moved, still, strict=True)]  # fmt: skip
    mask = _photo_mask(path)
    r = stability.temporal_change(
        stability.map_back(frames, path, (160, 160)), stability.map_back(out, path, (160, 160)), mask
    )
    assert r["change_size"] > 3.0
    assert r["added_pct"] is not None and r["added_pct"] < 10.0


def _photo_mask(path: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros((160, 160), bool)
    mask[30:140, 30:130] = True
    return mask & stability.visible(path, (160, 160), (224, 224))


def test_a_large_face_is_measured_like_the_same_face_small() -> None:
    """The canonical frame makes the measures resolution-free: a 4× face reads the cast and blotches of the 1× one."""
    small = cv2.resize(_face(4), (200, 200), interpolation=cv2.INTER_AREA)
    red = small.astype(np.int16)
    red[60:140, 50:150] += np.array([18, -5, -5], np.int16)
    red = np.clip(red, 0, 255).astype(np.uint8)
    big, big_red = (cv2.resize(x, (800, 800), interpolation=cv2.INTER_CUBIC) for x in (small, red))
    f_small = regions.FaceFrame.from_eyes(np.array([60.0, 80.0]), np.array([140.0, 80.0]))
    f_big = regions.FaceFrame.from_eyes(
        np.array([241.5, 321.5]), np.array([561.5, 321.5])
    )  # the same eyes, 4×

    def measure(a: np.ndarray, b: np.ndarray, f: regions.FaceFrame) -> colour.ColourChange:
        ca, valid = regions.canonical(a, f)
        cb, _ = regions.canonical(b, f)
        return colour.colour_change(ca, cb, regions.region_masks(valid)["inner"])

    s, b = measure(small, red, f_small), measure(big, big_red, f_big)
    assert s.cast > 1.0 and s.blotches > 3.0
    assert b.cast == pytest.approx(s.cast, rel=0.1) and b.blotches == pytest.approx(s.blotches, rel=0.15)
