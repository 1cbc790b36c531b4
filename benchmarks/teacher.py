"""The registered teacher of a training config as a row of the quality benchmark.

A student is trained to follow its teacher, so the teacher's own realism is the reference a student has to get
closer to 0.5 than (the goal of the realistic-model issue). The teacher ages one canonical face from its
labelled age and gender, which a benchmark transform (crops in, crops out) does not carry: each crop is
matched to its face by the crop's bytes, which `cut_face` makes the same on every call.

Each face moves to the mean labelled age of the direction's real target faces, the group its output is
compared with.

Optional: it lives in `training.teacher`, which may change independently of this benchmark, and it needs the
config's canonical cache (or the prototypes its run saved).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.stills import DIRECTIONS, Crops, Direction, Face, FaceSets, Space, Transform, cut_face
from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.face.align import apply_affine
from faceage_video.face.mesh import N_LANDMARKS, CanonicalMesh, MeshOptions


def crop_key(crop: NDArray[np.uint8]) -> str:
    """A crop's identity by content: transforms that are handed crops find their face (and its ages) by it."""
    return hashlib.sha1(np.ascontiguousarray(crop).tobytes()).hexdigest()


def load_prototypes(config: str, template: CanonicalMesh) -> Any:
    """A mesh config's registered prototypes: the ones its run saved, or built from its canonical cache and saved
    there (`training.teacher.cached_prototypes`)."""
    cfg = importlib.import_module("training.config").load_config(config)
    teaching = importlib.import_module("training.teacher")
    canonical = importlib.import_module("training.canonical")
    saved = Path(cfg.run_dir) / "registered-prototypes.npz"
    saved.parent.mkdir(parents=True, exist_ok=True)
    return teaching.cached_prototypes(
        saved, lambda: teaching.Prototypes.build(canonical.load_canonical(cfg.cache), template)
    )


@dataclass(frozen=True)
class VariantSetup:
    """What a measure over a config's teacher, its variants and bundles' `G` starts from.

    Attributes:
        data: the config's canonical cache (`training.canonical.CanonicalSet`).
        mesh: the canonical mesh at the config's size.
        teachers: ("config", its teacher), then (name, teacher) per variant.
        engines: (model, `AgingEngine`) per bundle, each at the config's size.
    """

    data: Any
    mesh: CanonicalMesh
    teachers: list[tuple[str, Any]]
    engines: list[tuple[str, AgingEngine]]


def variant_setup(
    config: str, variants: Sequence[tuple[str, dict[str, Any]]], models: Sequence[str]
) -> VariantSetup:
    """A mesh config's cache, mesh, teacher and variants (its `TeacherOptions` with some fields replaced), and
    the bundles' engines.

    Raises:
        ValueError: a bundle that works at another texture size than the config.
    """
    cfg = importlib.import_module("training.config").load_config(config)
    teaching = importlib.import_module("training.teacher")
    data = importlib.import_module("training.canonical").load_canonical(cfg.cache)
    mesh = CanonicalMesh(MeshOptions(size=cfg.size))
    protos = load_prototypes(config, mesh)
    teachers = [
        (name, teaching.RegisteredTeacher(protos, mesh, replace(teaching.teacher_options(cfg), **overrides)))
        for name, overrides in [("config", {}), *variants]
    ]
    engines = []
    for model in models:
        engine = AgingEngine(EngineOptions(model=model))
        if engine.size != cfg.size:
            raise ValueError(f"{model} works at {engine.size} px, config {config} at {cfg.size} px")
        engines.append((model, engine))
    return VariantSetup(data, mesh, teachers, engines)


def age_faces(teacher: Any, data: Any, idx: NDArray[np.int64], target: float) -> NDArray[np.float32]:
    """(N, S, S, 3) in 0..255: the canonical faces `data.faces[idx]` aged by a registered `teacher` from their
    labelled ages to `target`, each with its own gender, exemplar key (its path) and landmarks."""
    return np.stack(
        [
            teacher(
                data.faces[i].astype(np.float32) / 255.0,
                float(data.age[i]),
                target,
                int(data.gender[i]),
                str(data.paths[i]),
                data.shape[i],
            )
            * 255.0
            for i in idx
        ]
    )


def labelled_ages(sets: FaceSets, template: Space) -> dict[str, tuple[float, float]]:
    """Each face of a direction (sources and b/w copies), keyed by its cut crop as `age_stills` cuts it in
    `template`: (its labelled age, the mean labelled age of the real target faces), the ages the teacher row
    ages it between."""
    target = target_age(sets)
    return {
        crop_key(cut_face(f.image, f.landmarks, template)[0]): (float(f.age), target)
        for f in (*sets.sources, *sets.bw)
    }


def target_age(sets: FaceSets) -> float:
    """The mean labelled age of the real target faces of one direction."""
    return float(np.mean([f.age for f in sets.targets]))


def teacher_transforms(
    config: str,
    sets: dict[Direction, FaceSets],
    template: Space,
    overrides: dict[str, Any] | None = None,
    prototypes: Any = None,
) -> dict[Direction, Transform] | str:
    """Both directions of a config's registered teacher, or why they are unavailable.

    Args:
        config: a training config name or path whose `space` is "mesh".
        sets: the faces of each direction wanted; a crop of any other face raises KeyError.
        template: the face space the benchmark cuts crops in; it must be the config's canonical mesh size.
        overrides: `TeacherOptions` fields to change from the config's (a teacher ablation).
        prototypes: the config's `training.teacher.Prototypes` when the caller has them (several variants);
            loaded from the run or built from the config's cache otherwise.

    Returns:
        direction → transform ((N, S, S, 3) uint8 crops → (N, S, S, 3) levels), or the reason as a string.
    """
    try:
        config_mod = importlib.import_module("training.config")
        teaching = importlib.import_module("training.teacher")
        cfg = config_mod.load_config(config)
        if cfg.space != "mesh":
            return f"config {cfg.name} trains in the {cfg.space} space; the registered teacher is mesh only"
        if not isinstance(template, CanonicalMesh) or template.size != cfg.size:
            return f"the benchmark's face space is not the {cfg.size} px canonical mesh of config {cfg.name}"
        protos = prototypes if prototypes is not None else load_prototypes(config, template)
        opts = replace(teaching.teacher_options(cfg), **(overrides or {}))
        teacher = teaching.RegisteredTeacher(protos, template, opts)
    except Exception as error:  # an optional extra row: any failure skips it, with the reason
        return f"training.teacher unavailable: {type(error).__name__}: {error}"

    def make(faces: dict[str, tuple[Face, NDArray[np.float32]]], target: float) -> Transform:
        def transform(crops: Crops) -> NDArray[np.float32]:
            out = []
            for crop in crops:
                face, shape = faces[crop_key(crop)]
                img = crop.astype(np.float32) / 255.0
                aged = teacher(img, float(face.age), target, face.gender, face.name, shape)
                out.append(aged * 255.0)
            return np.stack(out).astype(np.float32)

        return transform

    result: dict[Direction, Transform] = {}
    for d in (d for d in DIRECTIONS if d in sets):
        s = sets[d]
        faces = {}
        for f in (*s.sources, *s.bw):
            crop, fit = cut_face(f.image, f.landmarks, template)
            # The registered landmarks in canonical pixels, as the training cache stores them.
            shape = apply_affine(fit.similarity, fit.vertices[:N_LANDMARKS]).astype(np.float32)
            faces[crop_key(crop)] = (f, shape)
        result[d] = make(faces, target_age(s))
    return result


def describe(config: str, sets: dict[Direction, FaceSets]) -> dict[str, Any]:
    """What the teacher row is, for the report."""
    return {"config": config, "target_age": {d: round(target_age(sets[d]), 1) for d in DIRECTIONS}}
