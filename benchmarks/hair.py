"""The hair stage (`faceage_video.face.hair`, `--age-hair`): what it adds to aging and de-aging, judged like
the face.

    python -m benchmarks.hair [--model NAME_OR_PATH] [--n 60] [--targets 60 70] [--young-targets 35 25]
                              [--motion-faces 4] [--clips] [--cost] [--no-stills]
                              [--out benchmarks/results/hair.json]

1. stills: the quality benchmark's young validation faces (`benchmarks.stills.load_faces`), aged by the
   model through the runtime's path (`age_stills`), then with the hair stage (`hair_stills`) at the share
   each target asks of the face's labelled age (`hair_share`); and its old faces de-aged to
   `--young-targets`, where the stage colours grey strands (pictures `hair_older_<last target>.jpg` and
   `hair_younger_<first young target>.jpg`: input, the model alone, with the hair). The age and identity judges read both. Black-and-white copies must stay
   black-and-white: the most chroma the hair stage adds to them is reported (`bw_chroma_added`, levels of
   max − min channel);
2. known motion: some of those photos moved along known paths through the real pipeline with the hair stage
   on (`benchmarks.motion.run_clip`), measured inside each photo's own hair matte instead of the inner face:
   the frame-to-frame change the stage adds there, against the input's own;
3. `--clips`: the real clips of the quality benchmark, their first seconds through the pipeline with and
   without the hair stage, judged on evenly spaced frames, and a picture of each clip's first frame (input,
   aged, aged with grey hair) at native resolution;
4. `--cost`: the stage's time per frame on a clip against the face's own stages, measured in the same run
   (`--no-stills --motion-faces 0 --cost` runs it alone).

The judges measure; nothing here is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.judges import AgeJudge, IdentityJudge
from benchmarks.measures.stability import MotionOptions
from benchmarks.motion import decode, run_clip, write_jpeg
from benchmarks.quality import DEFAULT_CLIPS, DEFAULT_VIDEOS, _trim, compare, judge_images
from benchmarks.stills import DEFAULT_DATA, Direction, age_stills, hair_stills, load_faces, open_landmarker
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.hair import HairOptions, grey_amount, hair_matte, hair_share
from faceage_video.face.segment import PersonSegmenter
from faceage_video.types import Frame

DEFAULT_OUT = Path("benchmarks/results/hair.json")


def _chroma(images: Sequence[Frame]) -> float:
    """The largest max − min channel over every pixel of the images, in levels (0 for grey pictures)."""
    return float(max((np.ptp(im.astype(np.int16), axis=2).max() for im in images), default=0))


def stills(
    model: str | None,
    n: int,
    targets: Sequence[float],
    hair: HairOptions,
    direction: Direction = "older",
    pictures: Path | None = None,
) -> dict[str, Any]:
    """Section 1 of the module docstring: one row per target, the model alone and with the hair stage.

    `direction` "older" ages the young validation faces, "younger" de-ages the old ones (whose grey
    strands the stage colours).
    """
    with open_landmarker() as landmarker:
        sets = load_faces(DEFAULT_DATA, direction, landmarker, limit=n, bw=12)
    faces = list(sets.sources)[:n]
    bw = list(sets.bw)
    images, marks = [f.image for f in faces], [f.landmarks for f in faces]
    age_j, id_j = AgeJudge(), IdentityJudge()
    judged_in = judge_images(images, age_j, id_j)
    segmenter = PersonSegmenter()
    found = sum(
        hair_matte(im, lm, segmenter(im), hair) is not None for im, lm in zip(images, marks, strict=True)
    )
    rows: list[dict[str, Any]] = []
    # One engine for every target: `_generate` hands a conditioned bundle each face's ages itself.
    engine = AgingEngine(EngineOptions(model=model, direction=direction))
    for target in targets:
        outputs: dict[str, list[Frame]] = {}
        for name, group in (("faces", faces), ("bw", bw)):
            ims, lms = [f.image for f in group], [f.landmarks for f in group]
            aged = age_stills(ims, lms, _generate(engine, group, target), engine.template)
            shares = [hair_share(f.age, target) for f in group]
            outputs[name] = aged
            outputs[name + "_hair"] = hair_stills(ims, lms, aged, shares, hair, segmenter)
        row: dict[str, Any] = {
            "direction": direction,
            "target": target,
            "share_mean": round(float(np.mean([hair_share(f.age, target) for f in faces])), 3),
            "model": compare(judged_in, judge_images(outputs["faces"], age_j, id_j)),
            "model_hair": compare(judged_in, judge_images(outputs["faces_hair"], age_j, id_j)),
            "bw_chroma_in": _chroma([f.image for f in bw]),
            "bw_chroma_added": _chroma(outputs["bw_hair"]) - _chroma(outputs["bw"]),
        }
        rows.append(row)
        print(
            f"{direction}, target {target:.0f}: share {row['share_mean']:+.2f}; shift "
            f"{row['model']['shift_mean']:+.1f} y → {row['model_hair']['shift_mean']:+.1f} y with the hair aged; "
            f"identity {row['model']['id_mean']:.3f} → {row['model_hair']['id_mean']:.3f}; b/w chroma added "
            f"{row['bw_chroma_added']:.0f}"
        )
        # Pictures: the strongest target of each direction (aging's last, de-aging's first).
        if pictures is not None and target == (targets[0] if direction == "younger" else targets[-1]):
            picks = list(range(min(8, len(faces))))
            write_jpeg(
                pictures / f"hair_{direction}_{target:.0f}.jpg",
                np.concatenate(
                    [
                        np.concatenate(
                            [faces[i].image, outputs["faces"][i], outputs["faces_hair"][i]], axis=1
                        )
                        for i in picks
                    ]
                ),
            )
    segmenter.close()
    return {"faces": len(faces), "mattes_found": int(found), "rows": rows}


def _generate(engine: AgingEngine, faces: Sequence[Any], target: float) -> Any:
    """The crops → outputs transform of `age_stills`: each face from its labelled age to the target (an
    age-conditioned bundle), else the engine's defaults."""
    if not engine.conditioned:
        return engine.generate
    ages = np.array([[f.age, target] for f in faces], np.float32)
    return lambda crops: engine.generate(crops, ages[: len(crops)])


def motion(model: str | None, faces: int, hair: HairOptions, target: float) -> dict[str, Any]:
    """Section 2: stability inside each photo's own hair matte, with the hair stage on."""
    with open_landmarker() as landmarker:
        sets = load_faces(DEFAULT_DATA, "older", landmarker, limit=60, bw=0)
    segmenter = PersonSegmenter()
    # The target reaches a conditioned bundle; an unconditioned one ages by its direction whatever it says.
    engine = AgingEngine(EngineOptions(model=model, target_age=target))
    on = replace(hair, enabled=True)
    rows: list[dict[str, Any]] = []
    options = MotionOptions()
    with tempfile.TemporaryDirectory(prefix="faceage-hair-") as tmp:
        for i, face in enumerate(list(sets.sources)):
            if len(rows) >= faces:
                break
            matte = hair_matte(face.image, face.landmarks, segmenter(face.image), hair)
            if matte is None or (matte.alpha > 0.5).sum() < 200:
                continue
            region = np.zeros(face.image.shape[:2], bool)
            x0, y0, x1, y1 = matte.box
            region[y0:y1, x0:x1] = matte.alpha > 0.5
            try:
                result, _, _ = run_clip(face, engine, i, options, Path(tmp), hair=on, region=region)
                rows.append({"face": face.name, **result})
            except Exception as error:  # one broken clip must not lose the others' numbers
                rows.append({"face": face.name, "error": f"{type(error).__name__}: {error}"})
    segmenter.close()
    ok = [r for r in rows if "error" not in r]
    out: dict[str, Any] = {"clips": rows}
    for key in ("added_change", "change_size", "in_change", "out_change"):
        out[key] = round(float(np.mean([r[key] for r in ok])), 4) if ok else None
    if ok and out["change_size"]:
        out["added_pct"] = round(100.0 * out["added_change"] / out["change_size"], 2)
    print(
        f"known motion, hair region ({len(ok)} clips): added {out['added_change']} levels/frame on a change of "
        f"{out['change_size']}; the input's own change {out['in_change']}"
    )
    return out


def clips(
    model: str | None, names: Sequence[str], hair: HairOptions, seconds: float, samples: int, pictures: Path
) -> list[dict[str, Any]]:
    """Section 3: each clip's start through the pipeline with and without the hair stage, judged."""
    from faceage_video.media.writer import WriterOptions
    from faceage_video.pipeline import AgeOptions, StageOptions, age_video

    engine = AgingEngine(EngineOptions(model=model))
    age_j, id_j = AgeJudge(), IdentityJudge()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="faceage-hair-") as tmp:
        for name in names:
            src = Path(tmp) / f"{Path(name).stem}.mp4"
            _trim(DEFAULT_VIDEOS / name, src, seconds)
            frames_in = decode(src)
            picks = np.unique(np.linspace(0, len(frames_in) - 1, samples).round().astype(int))
            judged_in = judge_images([frames_in[i] for i in picks], age_j, id_j)
            row: dict[str, Any] = {"clip": name, "frames": len(frames_in)}
            firsts = [frames_in[0]]
            for key, stage in (("model", HairOptions()), ("model_hair", replace(hair, enabled=True))):
                dst = Path(tmp) / f"{Path(name).stem}-{key}.mkv"
                options = AgeOptions(
                    stages=StageOptions(engine=engine.options, hair=stage),
                    writer=WriterOptions(codec="ffv1", audio=False),
                )
                age_video(src, dst, options, engine=engine)
                frames_out = decode(dst)
                row[key] = compare(judged_in, judge_images([frames_out[i] for i in picks], age_j, id_j))
                firsts.append(frames_out[0])
            write_jpeg(pictures / f"hair_{Path(name).stem}.jpg", np.concatenate(firsts, axis=1))
            rows.append(row)
            print(
                f"{name}: shift {row['model']['shift_mean']} y → {row['model_hair']['shift_mean']} y with grey "
                f"hair; identity {row['model']['id_mean']} → {row['model_hair']['id_mean']}"
            )
    return rows


def cost(model: str | None, clip: Path, seconds: float) -> dict[str, Any]:
    """Section 4: the hair stage's time per frame against the face's own stages, in the same run.

    On the clip's first `seconds`: the analyzer's tracking (landmarks), its registration without and with
    the hair stage (the difference is the segmentation, the matte and its streaks), the generator, and the
    paste-back without and with the hair greyed at 25 → 60 (the difference is the greying), each timed
    after a warm-up as `benchmarks.throughput` times the stages.
    """
    from benchmarks.throughput import rate, ratio, time_align, time_decode, time_landmarks
    from faceage_video.engine.temporal import ResidualSmoother, TemporalOptions
    from faceage_video.face.blend import BlendOptions
    from faceage_video.face.landmarks import LandmarkerOptions
    from faceage_video.face.tracker import TrackerOptions
    from faceage_video.stages import FaceAnalyzer, composite

    engine = AgingEngine(EngineOptions(model=model))
    blend = BlendOptions()
    frames, _ = time_decode(clip, 0.0, seconds)

    def analyzer(hair: HairOptions | None) -> FaceAnalyzer:
        return FaceAnalyzer(
            LandmarkerOptions(),
            TrackerOptions(),
            TemporalOptions(),
            blend,
            engine.size,
            engine.template,
            hair=hair,
        )

    plain, haired = analyzer(None), analyzer(HairOptions(enabled=True))
    tracked, track = time_landmarks(frames, plain)
    jobs, register = time_align(frames, tracked, plain)
    hair_jobs, register_hair = time_align(frames, tracked, haired)
    crops = np.stack([f.crop for j in jobs for f in j.faces])
    engine.residual(crops[: engine.options.batch_size])
    t = time.perf_counter()
    residuals = engine.residual(crops)
    generator = rate(len(frames), time.perf_counter() - t)
    shares = np.full(len(crops), grey_amount(25.0, 60.0), np.float32)
    composite(jobs[:3], residuals, ResidualSmoother(TemporalOptions()), blend)
    t = time.perf_counter()
    composite(jobs, residuals, ResidualSmoother(TemporalOptions()), blend)
    paste = rate(len(frames), time.perf_counter() - t)
    composite(
        hair_jobs[:3], residuals, ResidualSmoother(TemporalOptions()), blend, True, HairOptions(), shares
    )
    t = time.perf_counter()
    composite(hair_jobs, residuals, ResidualSmoother(TemporalOptions()), blend, True, HairOptions(), shares)
    paste_hair = rate(len(frames), time.perf_counter() - t)
    plain.close()
    haired.close()
    matte_ms = register_hair["ms_per_frame"] - register["ms_per_frame"]
    grey_ms = paste_hair["ms_per_frame"] - paste["ms_per_frame"]
    face_ms = sum(r["ms_per_frame"] for r in (track, register, generator, paste))
    out = {
        "clip": clip.name,
        "frames": len(frames),
        "size": list(frames[0].image.shape[1::-1]),
        "landmarks_track": track,
        "register": register,
        "register_with_hair": register_hair,
        "generator": generator,
        "paste": paste,
        "paste_with_hair": paste_hair,
        "hair_matte_ms": round(matte_ms, 2),
        "hair_grey_ms": round(grey_ms, 2),
        "face_path_ms": round(face_ms, 2),
        "hair_over_face_path": ratio(matte_ms + grey_ms, face_ms),
    }
    print(
        f"cost on {clip.name} ({out['size'][0]}×{out['size'][1]}): hair matte {matte_ms:.1f} ms + greying "
        f"{grey_ms:.1f} ms a frame, against {face_ms:.1f} ms for the face's own stages "
        f"(ratio {out['hair_over_face_path']})"
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hair", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--targets", type=float, nargs="+", default=[60.0, 70.0])
    p.add_argument(
        "--young-targets", type=float, nargs="*", default=[35.0, 25.0], help="de-aging the old faces"
    )
    p.add_argument("--motion-faces", type=int, default=4)
    p.add_argument("--clips", action="store_true")
    p.add_argument("--clip-seconds", type=float, default=2.0)
    p.add_argument("--no-stills", action="store_true", help="skip the stills (both directions)")
    p.add_argument("--cost", action="store_true", help="also time the stage against the face's own stages")
    p.add_argument("--cost-clip", type=Path, default=DEFAULT_VIDEOS / "liveportrait_d0.mp4")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    hair = HairOptions(enabled=True)
    report: dict[str, Any] = {
        "command": "python -m benchmarks.hair "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "model": a.model or "default",
        "hair": vars(hair) | {},
    }
    if not a.no_stills:
        report["stills"] = stills(a.model, a.n, a.targets, hair, "older", a.out.parent)
    if a.young_targets and not a.no_stills:
        report["stills_younger"] = stills(a.model, a.n, a.young_targets, hair, "younger", a.out.parent)
    if a.motion_faces:
        report["motion"] = motion(a.model, a.motion_faces, hair, max(a.targets))
    if a.clips:
        report["clips"] = clips(a.model, DEFAULT_CLIPS, hair, a.clip_seconds, 12, a.out.parent)
    if a.cost:
        report["cost"] = cost(a.model, a.cost_clip, a.clip_seconds)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
