"""The options of one offline run, `AgeOptions`, in groups: stages, reader, sequence, writer and extras.

Each group is a frozen dataclass validated when built, so an `AgeOptions` that exists is a valid one.
`age_video` reads a deep (10/12-bit) video at 16 bits whatever `reader.deep` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faceage_video.errors import OptionsError
from faceage_video.media.reader import ReaderOptions
from faceage_video.media.sequence import SequenceOptions
from faceage_video.media.writer import WriterOptions
from faceage_video.stages import StageOptions


@dataclass(frozen=True)
class ExtraOutputs:
    """What a run writes besides its output.

    Attributes:
        matte: also write the blend mask here (grey video, or PNG sequence for a folder/pattern).
        side_by_side: also write an input | output preview video here.
        report: also write a JSON report here.
        matte_alpha: write the matte as the alpha channel of an RGB sequence output.

    Raises:
        OptionsError: a path that is not a string.
    """

    matte: str | None = None
    side_by_side: str | None = None
    report: str | None = None
    matte_alpha: bool = False

    def __post_init__(self) -> None:
        for name in ("matte", "side_by_side", "report"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise OptionsError(f"{name} must be a path string or None, got {type(value).__name__}")


@dataclass(frozen=True)
class AgeOptions:
    """Everything `age_video` needs, in groups.

    Attributes:
        stages: what the per-frame stages need (engine, landmarks, tracker, temporal, blend, faces, queues).
        reader: the window (`start_s`, `end_s`) and `allow_protocols` of the input.
        sequence: frame rate, gap policy and colour management of an image-sequence input.
        writer: codec and quality of the output; `writer.audio` False drops the audio.
        extras: the matte, side-by-side and report outputs.
    """

    stages: StageOptions = field(default_factory=StageOptions)
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    sequence: SequenceOptions = field(default_factory=SequenceOptions)
    writer: WriterOptions = field(default_factory=WriterOptions)
    extras: ExtraOutputs = field(default_factory=ExtraOutputs)
