"""The aging options `age`, `batch` (and its manifest columns) and `webcam` share, declared once.

Each option is one `Annotated` alias carrying its type and its help text; `AgeFlags` lists the options of an
offline run with their defaults, so `age` and `batch` take exactly its fields (`with_age_flags`), a manifest
column converts its text by the field's type (`manifest_fields`), and `webcam` reuses the aliases it shares.
A help text therefore cannot differ between commands.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceage_video.errors import OptionsError
from faceage_video.media.writer import Codec, Preset
from faceage_video.types import Direction, FaceSelection, MaskKind

if TYPE_CHECKING:
    from faceage_video.media.sequence import SequenceOptions
    from faceage_video.options import AgeOptions

DirectionFlag = Annotated[Direction, typer.Option("--direction", "-d", help="older (G) or younger (F)")]
StrengthFlag = Annotated[float, typer.Option(min=0.0, max=1.0, help="share of the generated change, 0..1")]
TargetAgeFlag = Annotated[
    float | None,
    typer.Option(
        min=10,
        max=100,
        help="age in years to move every face to (age-conditioned models): above the input age ages it, "
        "below de-ages it, whatever --direction says",
    ),
]
InputAgeFlag = Annotated[
    float | None,
    typer.Option(
        min=10,
        max=100,
        help="the faces' age in years [default: with --target-age, each face's own age, estimated by the "
        "bundled age estimator; without it, 25 when aging and 62 when de-aging]",
    ),
]
ModelFlag = Annotated[
    str | None, typer.Option(help="bundled model name or bundle folder (default: the bundled default)")
]
BatchSizeFlag = Annotated[int, typer.Option(min=1, max=256, help="crops per generator call")]
XlaFlag = Annotated[
    bool | None, typer.Option("--xla/--no-xla", help="XLA-compile the generator [default: on with a GPU]")
]
TemporalFlag = Annotated[float, typer.Option(min=0.0, max=0.99, help="residual smoothing, 0 = off")]
MaskFlag = Annotated[MaskKind, typer.Option(help="face oval, or a soft box that keeps the hair")]
FeatherFlag = Annotated[float, typer.Option(help="mask feather, fraction of the crop")]
ColorMatchFlag = Annotated[
    bool,
    typer.Option(
        "--color-match/--no-color-match", help="cap the change's global colour shift (skin keeps its tone)"
    ),
]
AgeHairFlag = Annotated[
    bool,
    typer.Option(
        "--age-hair/--no-age-hair",
        help="age the hair around each face too: grey a share of its strands when aging (the share of grey "
        "hair at the target age), give grey strands their colour back when de-aging",
    ),
]
GreyShareFlag = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="when aging, the share of the strands --age-hair turns grey (implies --age-hair) [default: from the ages]",
    ),
]
MaxFacesFlag = Annotated[int, typer.Option(min=1, max=16, help="most faces tracked")]
FacesFlag = Annotated[str, typer.Option(help="all, largest, or track ids like 0,2 (see `info`)")]
CodecFlag = Annotated[Codec, typer.Option(help="video codec: h264/hevc, or lossless ffv1, or prores")]
CrfFlag = Annotated[int, typer.Option(help="quality for h264/hevc (lower is better)")]
PresetFlag = Annotated[Preset, typer.Option(help="x264/x265 speed preset")]
AudioFlag = Annotated[bool, typer.Option("--audio/--no-audio", help="remux the audio untouched")]
StartFlag = Annotated[float | None, typer.Option(help="first second to process")]
EndFlag = Annotated[float | None, typer.Option(help="stop before this second")]
MatteFlag = Annotated[
    str | None, typer.Option(help="write the blend mask: video file, or folder/pattern of PNGs")
]
SideBySideFlag = Annotated[str | None, typer.Option(help="write an input | output preview video")]
ReportFlag = Annotated[str | None, typer.Option(help="write a JSON report")]
LandmarkerFlag = Annotated[str | None, typer.Option(help="face_landmarker.task path")]
DetectWidthFlag = Annotated[int, typer.Option(min=0, help="downscale wider frames for landmarks (0 = off)")]
AllowProtocolsFlag = Annotated[bool, typer.Option(help="allow URLs and playlist demuxers")]

# Flags only the caller may set: a manifest row may not widen what the tool reads.
CALLER_ONLY = ("allow_protocols",)


def parse_faces(value: str) -> FaceSelection | tuple[int, ...]:
    """`all`, `largest`, or a comma-separated list of track ids.

    Raises:
        OptionsError: anything else, naming the accepted forms.
    """
    v = value.strip().lower()
    if v == "all":
        return "all"
    if v == "largest":
        return "largest"
    try:
        ids = tuple(int(x) for x in v.split(",") if x.strip())
    except ValueError:
        raise OptionsError(f"--faces must be all, largest or track ids like 0,2; got {value!r}") from None
    if not ids:
        raise OptionsError("--faces needs at least one track id")
    return ids


@dataclass(frozen=True)
class AgeFlags:
    """The command-line options of one offline run (`age`, a `batch` shot), with their defaults.

    Field names are the options' names (`--batch-size` is `batch_size`) and the manifest's columns; each
    field's `Annotated` type carries its help text. `to_options` builds (and so validates) `AgeOptions`.
    """

    direction: DirectionFlag = "older"
    strength: StrengthFlag = 1.0
    target_age: TargetAgeFlag = None
    input_age: InputAgeFlag = None
    model: ModelFlag = None
    batch_size: BatchSizeFlag = 8
    xla: XlaFlag = None
    temporal: TemporalFlag = 0.6
    mask: MaskFlag = "face"
    feather: FeatherFlag = 0.08
    color_match: ColorMatchFlag = True
    age_hair: AgeHairFlag = False
    grey_share: GreyShareFlag = None
    max_faces: MaxFacesFlag = 4
    faces: FacesFlag = "all"
    codec: CodecFlag = "h264"
    crf: CrfFlag = 18
    preset: PresetFlag = "medium"
    audio: AudioFlag = True
    start: StartFlag = None
    end: EndFlag = None
    matte: MatteFlag = None
    side_by_side: SideBySideFlag = None
    report: ReportFlag = None
    landmarker: LandmarkerFlag = None
    detect_width: DetectWidthFlag = 0
    allow_protocols: AllowProtocolsFlag = False

    def to_options(self, sequence: SequenceOptions | None = None, matte_alpha: bool = False) -> AgeOptions:
        """The run's `AgeOptions`; `sequence` and `matte_alpha` are the `age`-only extras.

        Raises:
            OptionsError: a value the stage options refuse, naming the option and the fix.
        """
        from faceage_video.engine.generator import EngineOptions
        from faceage_video.engine.temporal import TemporalOptions
        from faceage_video.face.blend import BlendOptions
        from faceage_video.face.hair import HairOptions
        from faceage_video.face.landmarks import LandmarkerOptions
        from faceage_video.face.tracker import TrackerOptions
        from faceage_video.media.reader import ReaderOptions
        from faceage_video.media.sequence import SequenceOptions
        from faceage_video.media.writer import WriterOptions
        from faceage_video.options import AgeOptions, ExtraOutputs
        from faceage_video.stages import StageOptions

        stages = StageOptions(
            engine=EngineOptions(
                model=self.model,
                direction=self.direction,
                strength=self.strength,
                batch_size=self.batch_size,
                xla=self.xla,
                target_age=self.target_age,
                input_age=self.input_age,
            ),
            landmarks=LandmarkerOptions(
                max_faces=self.max_faces, model_path=self.landmarker, detect_width=self.detect_width
            ),
            tracker=TrackerOptions(max_faces=self.max_faces),
            temporal=TemporalOptions(strength=self.temporal),
            blend=BlendOptions(mask=self.mask, feather=self.feather, color_match=self.color_match),
            faces=parse_faces(self.faces),
            hair=HairOptions(enabled=self.age_hair or self.grey_share is not None, amount=self.grey_share),
        )
        return AgeOptions(
            stages=stages,
            reader=ReaderOptions(start_s=self.start, end_s=self.end, allow_protocols=self.allow_protocols),
            sequence=sequence if sequence is not None else SequenceOptions(),
            writer=WriterOptions(codec=self.codec, crf=self.crf, preset=self.preset, audio=self.audio),
            extras=ExtraOutputs(
                matte=self.matte, side_by_side=self.side_by_side, report=self.report, matte_alpha=matte_alpha
            ),
        )


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on", "y"):
        return True
    if s in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError(f"expected true/false, got {v!r}")


def _to_faces(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ",".join(str(int(x)) for x in v)
    return str(v)


def _converter(name: str, tp: Any) -> Callable[[Any], Any]:
    """How a manifest cell becomes the field's value: by its type, `X | None` as X (an empty cell is unset)."""
    if name == "faces":
        return _to_faces  # a JSONL row may give a list of track ids
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if isinstance(tp, types.UnionType) and len(args) == 1:
        tp = args[0]
    if tp is bool:
        return _to_bool
    if tp is int or tp is float:
        return typing.cast(Callable[[Any], Any], tp)
    return str  # str, and Literal choices (checked by the options)


def manifest_fields() -> dict[str, Callable[[Any], Any]]:
    """Per-shot options a manifest may set, in `AgeFlags` order, each with the conversion of its text."""
    hints = typing.get_type_hints(AgeFlags)
    return {f.name: _converter(f.name, hints[f.name]) for f in fields(AgeFlags) if f.name not in CALLER_ONLY}


def with_age_flags(exclude: Collection[str] = ()) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a Typer command every `AgeFlags` field (but `exclude`) as an option, after its required ones.

    The command declares a `flags: AgeFlags` parameter and receives the options gathered into it; excluded
    fields keep their defaults.
    """

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "flags"]
        hints = typing.get_type_hints(AgeFlags, include_extras=True)
        names = [f.name for f in fields(AgeFlags) if f.name not in exclude]
        added = []
        for f in fields(AgeFlags):
            if f.name in names:
                assert f.default is not MISSING
                added.append(
                    inspect.Parameter(
                        f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
                    )
                )

        @functools.wraps(func)
        def command(**kw: Any) -> None:
            flags = AgeFlags(**{n: kw.pop(n) for n in names})
            func(flags=flags, **kw)

        # Typer calls commands by keyword: the command's required parameters first, then the flags, then
        # its own optional ones, as the options were listed before.
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        required = [p for p in own if p.default is inspect.Parameter.empty]
        optional = [p for p in own if p.default is not inspect.Parameter.empty]
        params = required + added + optional
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return command

    return decorate
