"""`TrainConfig`: every knob of a training run, loaded from a named TOML file in `training/configs/`."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from training.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DatasetKind = Literal["utkface", "cacd", "folders"]


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
        name: run and default export name.
        dataset: "utkface", "cacd" (real CACD2000 layout) or "folders" (young/ and old/).
        data: dataset root folder.
        cache: aligned-crop cache folder (built once by `python -m training cache`).
        run_dir: checkpoints, TensorBoard logs and sample grids.
        young: inclusive young age range.
        old: inclusive old age range.
        val_fraction: share of identities held out for validation.
        size: crop side in pixels (the alignment template size).
        ngf: generator width.
        n_blocks: generator residual blocks.
        ndf: discriminator width.
        steps: total optimisation steps.
        warm_steps: first steps trained only on teacher pseudo-pairs (no discriminators): converges in
            minutes and gives the adversarial phase a generator that already ages.
        batch_size: faces per domain per adversarial step.
        warm_batch_size: faces per domain per warm-start step.
        lr: Adam learning rate. beta1: Adam β1.
        decay_from: step where the learning rate starts its linear decay to 0 at `steps`.
        lambda_adv: LSGAN weight. lambda_cycle: cycle weight (λ). lambda_identity: identity weight (0.5 λ in
            the paper; weaker suits a residual generator, which already keeps identity by construction).
        lambda_teacher: L1 weight towards the teacher's pseudo-pair during the adversarial phase; it decays
            linearly to `lambda_teacher_end` at `steps`.
        teacher_shape: mean-face difference strength of the aging teacher (G's targets). teacher_texture:
            its band-amplitude exponent. The student reaches about two thirds of its teacher's judged age
            shift, so the teacher is set stronger than the shift wanted.
        teacher_shape_younger, teacher_texture_younger: the same for the de-aging teacher (F's targets).
        pool_size: image pool of past fakes shown to the discriminators.
        checkpoint_every: steps between checkpoints. sample_every: steps between sample grids and scalars.
        keep_checkpoints: checkpoints kept on disk.
        seed: the one seed every random choice derives from.
        xla: compile the train step with XLA.
        mixed_precision: "auto" (bfloat16 compute with float32 weights where a GPU is present), "on" or
            "off". bfloat16 needs no loss scaling, and exported weights stay float32 either way.
        space: "five_point" (similarity crops, the first bundle) or "mesh" (canonical textures registered on
            the dense mesh, `faceage_video.face.mesh`).
        landmarks: landmark cache (.npz) the mesh cache is built from; detected once when missing.
        conditioned: G and F take the input and target ages as extra channels (mesh space only).
        film: the conditioned generators also read the ages after every normalisation (FiLM), so a target
            age reaches the network; without it only the engine's gap scaling does.
        detail_head: G and F get a full-resolution head that reads the input RGB
            (`models.networks.GeneratorConfig.detail_head`), so their change can take a face's own finest
            detail away. `init_from` a bundle without it starts the head at zero.
        targets_per_face: teacher pairs per training face, each for another target age (conditioned).
        teacher_shading, teacher_detail: the registered teacher's low-pass shading and exemplar-detail
            weights (`training.teacher`); `teacher_shape` is its landmark-displacement weight there.
        teacher_amplify: the registered teacher scales a face's own bands up when aging (Tiddeman); False
            keeps them and takes all the extra detail from real exemplars.
        teacher_brows: weight of the registered teacher's shading difference on the eyebrows (0: skin
            only, as before version 4); 1 applies the skin's difference there too.
        teacher_shading_younger: the teacher's shading weight when de-aging; negative: `teacher_shading`.
        teacher_transplant: the share of the skin's fine bands the registered teacher takes from a real
            exemplar of the target age instead of the face's own (`TeacherOptions.transplant`; 0: none).
        teacher_transplant_coarse: the same share for the coarse band, folds and bags
            (`TeacherOptions.transplant_coarse`).
        teacher_shading_masked: blur the teacher's shading difference over the skin only
            (`TeacherOptions.shading_masked`).
        teacher_exemplar_mean: every face gets its target group's mean exemplar
            (`TeacherOptions.exemplar_mean`).
        teacher_warp_fine: the teacher's shape warp moves the skin's fine bands too; false leaves them in
            place (`TeacherOptions.warp_fine`).
        teacher_eyes_still: the teacher's landmark displacement fades to 0 towards the eye contours over this
            fraction of the texture size (`TeacherOptions.eyes_still`; 0: off).
        teacher_shading_rim: the teacher's shading difference fades to 0 towards the face oval over this
            fraction of the texture size (`TeacherOptions.shading_rim`; 0: off).
        teacher_oval_fade: the teacher's landmark displacement fades to 0 towards the face oval over this
            fraction of the texture size (`TeacherOptions.oval_fade`; 0.08 is `training.teacher.OVAL_FADE`).
        teacher_outline_rim: the teacher's whole change fades to 0 towards the face oval over this fraction of
            the texture size (`TeacherOptions.outline_rim`; 0: off).
        teacher_lids: the teacher's skin reaches the eye and brow contours (`TeacherOptions.lids`).
        skin_lids: the training's skin (`teacher_lowpass`'s low-passed L1, and what `teacher_regions` weighs
            as features) reaches the eye and brow contours as `teacher_lids`'s does. Otherwise the lids are
            features: a full-resolution L1 at `1 + teacher_regions` times the weight pulls the exemplar detail
            the teacher gives them to its average, none.
        teacher_regions: extra weight of the teacher L1 on the eyes, brows and lips (mesh space), where the
            teacher keeps the face's own detail and a small generator's average of it softens them; 0 for
            a plain L1.
        lambda_texture: weight of the band-envelope L1 to the teacher's pair (`train.BandEnvelope`): the
            local amplitude of each luminance band, whatever the detail's position, so a generator makes the
            exemplar detail an L1 averages away. 0: off.
        texture_single_exemplar: with `teacher_exemplar_mean`, the band envelopes are taken from the same
            teacher's pairs with one exemplar a face instead of the group's mean (a second pairs file, the
            same faces and target ages). The L1 then teaches the mean's deterministic change and the
            envelopes the amplitude of real detail, which the mean exemplar has averaged away.
        texture_transplant: the fine-band transplant share of the teacher the band envelopes follow, when
            it is not the L1's (`teacher_transplant`); one exemplar a face. At 1 the envelopes are a real
            young exemplar's own, not half the old face's. -1: the L1 teacher's share.
        texture_oriented: the band envelopes are taken per orientation (horizontal, vertical and both
            diagonals), so the loss also says which way the detail runs: a student free to invent the
            teacher's fine detail otherwise puts its energy into whatever pattern its discriminator takes
            for age (horizontal forehead lines).
        teacher_lowpass: in the adversarial phase, the teacher L1 on the skin compares what is left after
            a Gaussian blur of this sigma (pixels at 128 px, scaled with size) and the chroma of the rest;
            the luminance of the skin's finer detail is left to the discriminators and the band-envelope
            loss. The teacher's made detail is a real exemplar's, a pattern the input does not predict, so
            a full-resolution L1 pulls it to its average (none) against the discriminator. Eyes, brows, lips
            and everything off the skin keep the full-resolution L1. 0: off (the full-resolution L1
            everywhere).
        disc_age_negatives: weight of the other domain's real faces among each discriminator's negatives in
            the adversarial phase: `D_Y` also learns that a real young face is not an old one, `D_X` that a
            real old face is not a young one. A plain discriminator can tell a fake by its artifacts alone,
            and the generators then learned to change less; with these negatives it reads age as well, so its
            gradient asks the generator for age and not only for fewer artifacts. 0: off.
        train_generators: "both", "G" or "F": which generators (and their discriminators, `D_Y` for `G`,
            `D_X` for `F`) learn; the other keeps its start (`init_from`). G and F learn apart without a
            cycle term, so a candidate for one direction trains in half the time.
        init_from: a bundle folder whose G and F start a fresh run (the discriminators and optimisers
            start new): fine-tuning a bundled model on another teacher costs a short warm start, not a
            whole run. The architecture of the generators that learn must be this config's, at any texture
            size (a 128 px bundle can start a 192 px run); the one that does not learn ships from the bundle
            as it is. Ignored when resuming.
        ema_decay: keep an exponential moving average of the learning generators' weights (decay per
            step, warmed up as min(decay, (1 + n) / (10 + n)) over its first updates) and export it
            instead of the last step's weights: the adversarial phase's step-to-step swings (mottled
            skin, blotches) average out. 0: off. The average is in the checkpoints, so a resumed run
            keeps it.
    """

    name: str = "utkface-128"
    dataset: DatasetKind = "utkface"
    data: str = "../shared/data/utkface"
    cache: str = "cache/utkface-128"
    run_dir: str = "runs/utkface-128"
    young: tuple[int, int] = (18, 29)
    old: tuple[int, int] = (50, 200)
    val_fraction: float = 0.1
    size: int = 128
    ngf: int = 16
    n_blocks: int = 6
    ndf: int = 32
    steps: int = 6000
    warm_steps: int = 1500
    batch_size: int = 2
    warm_batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    decay_from: int = 4000
    lambda_adv: float = 2.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 2.0
    lambda_teacher: float = 5.0
    lambda_teacher_end: float = 1.0
    teacher_shape: float = 1.5
    teacher_texture: float = 1.5
    teacher_shape_younger: float = 1.5
    teacher_texture_younger: float = 1.5
    pool_size: int = 50
    checkpoint_every: int = 100
    sample_every: int = 100
    keep_checkpoints: int = 3
    seed: int = 1234
    xla: bool = False
    mixed_precision: str = "auto"
    space: str = "five_point"
    landmarks: str = ""
    conditioned: bool = False
    film: bool = False
    detail_head: bool = False
    targets_per_face: int = 2
    teacher_shading: float = 2.0
    teacher_detail: float = 1.0
    teacher_amplify: bool = True
    teacher_brows: float = 0.0
    teacher_shading_younger: float = -1.0
    teacher_transplant: float = 0.0
    teacher_transplant_coarse: float = 0.0
    teacher_shading_masked: bool = False
    teacher_exemplar_mean: bool = False
    teacher_warp_fine: bool = True
    teacher_eyes_still: float = 0.0
    teacher_shading_rim: float = 0.0
    teacher_oval_fade: float = 0.08
    teacher_outline_rim: float = 0.0
    teacher_lids: bool = False
    skin_lids: bool = False
    teacher_regions: float = 0.0
    lambda_texture: float = 0.0
    texture_oriented: bool = False
    texture_single_exemplar: bool = False
    texture_transplant: float = -1.0
    teacher_lowpass: float = 0.0
    disc_age_negatives: float = 0.0
    train_generators: str = "both"
    init_from: str = ""
    ema_decay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("auto", "on", "off"):
            raise ConfigError(f"mixed_precision must be auto, on or off, got {self.mixed_precision!r}")
        self._check_types()
        if self.train_generators not in ("both", "G", "F"):
            raise ConfigError(f"train_generators must be both, G or F, got {self.train_generators!r}")
        if self.space not in ("five_point", "mesh"):
            raise ConfigError(f"space must be five_point or mesh, got {self.space!r}")
        if self.conditioned and self.space != "mesh":
            raise ConfigError("conditioned generators need space = 'mesh' (their teacher works there)")
        if self.film and not self.conditioned:
            raise ConfigError("film = true needs conditioned = true (FiLM reads the age maps)")
        if self.texture_single_exemplar and not (self.teacher_exemplar_mean and self.lambda_texture > 0):
            raise ConfigError(
                "texture_single_exemplar needs teacher_exemplar_mean = true and lambda_texture > 0 (it changes "
                "the band envelopes' target from the mean exemplar's pairs to one exemplar's)"
            )
        if self.texture_transplant != -1.0 and not (
            0 <= self.texture_transplant <= 1 and self.lambda_texture > 0
        ):
            raise ConfigError(
                f"texture_transplant must be -1 (the teacher's) or in 0..1 with lambda_texture > 0, got "
                f"{self.texture_transplant}"
            )
        if self.space == "mesh" and not self.landmarks:
            raise ConfigError("space = 'mesh' needs landmarks = PATH (the landmark cache .npz)")
        if not 1 <= self.targets_per_face <= 16:
            raise ConfigError(f"targets_per_face must be in 1..16, got {self.targets_per_face}")
        if self.dataset not in ("utkface", "cacd", "folders"):
            raise ConfigError(f"dataset must be utkface, cacd or folders, got {self.dataset!r}")
        if self.size % 4 or self.size < 32:
            raise ConfigError(f"size must be a multiple of 4 and >= 32, got {self.size}")
        for name in ("steps", "batch_size", "warm_batch_size", "checkpoint_every", "sample_every", "ndf"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        # The generator builder rejects narrower networks; say so here, before any data is touched.
        if self.ngf < 4:
            raise ConfigError(f"ngf must be >= 4, got {self.ngf}")
        for name in ("n_blocks", "pool_size", "decay_from"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("young", "old"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"{name} must be [low, high] with 0 <= low <= high, got {[lo, hi]}")
        if self.young[1] >= self.old[0]:
            raise ConfigError(f"young {list(self.young)} must end below old {list(self.old)}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.warm_steps <= self.steps:
            raise ConfigError(f"warm_steps must be in 0..steps ({self.steps}), got {self.warm_steps}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or not 0 <= self.beta1 < 1:
            raise ConfigError(f"lr must be > 0 and beta1 in [0, 1), got {self.lr}, {self.beta1}")
        for name in (
            "lambda_adv",
            "lambda_cycle",
            "lambda_identity",
            "lambda_teacher",
            "lambda_teacher_end",
            "teacher_regions",
            "teacher_brows",
            "teacher_transplant",
            "teacher_transplant_coarse",
            "lambda_texture",
            "teacher_lowpass",
            "disc_age_negatives",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def _check_types(self) -> None:
        """Each field must have its default's type (an int is fine for a float), so a TOML typo such as
        `steps = "6000"` is named here instead of failing as a comparison error without the key."""
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, bool):
                ok, want = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
            elif isinstance(default, float):
                ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
            elif isinstance(default, str):
                ok, want = isinstance(value, str), "a string"
            elif isinstance(default, tuple):
                ok = isinstance(value, tuple | list) and len(value) == 2
                ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                want = "two integers [low, high]"
            else:
                ok, want = isinstance(value, dict), "a table"
            if not ok:
                raise ConfigError(f"{f.name} must be {want}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return TrainConfig(**{**self.to_dict(), **changes})


def load_config(name_or_path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a config: a path to a TOML file, or the name of one in `training/configs/`.

    Raises:
        ConfigError: the file is missing, is not TOML, or holds unknown or out-of-range keys.
    """
    p = Path(name_or_path)
    if not p.is_file():
        named = CONFIG_DIR / f"{name_or_path}.toml"
        if not named.is_file():
            avail = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.toml")))
            raise ConfigError(
                f"config {name_or_path!r} not found (no such file, no named config). Named: {avail}"
            )
        p = named
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown keys {unknown}. Known keys: {sorted(known)}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("young", "old"):
        if isinstance(raw.get(key), list):  # anything else is named by TrainConfig's type check
            raw[key] = tuple(raw[key])
    try:
        return TrainConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
