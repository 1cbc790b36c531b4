"""The live mode: a camera, stream or real-time file through the offline stages to live outputs.

One file per purpose:
- `options`: `RealtimeOptions`, the choices (`Literal`s) and what a `--source`/`--output` names;
- `handoff`: `LatestSlot`, the keep-the-newest hand-off between threads (the drop policy);
- `controls`: on/off, direction, strength, target age and hair, driven by keys, the preview page or an
  embedding app;
- `stats`: counters and samples, and the typed `LiveReport` a run returns;
- `sources`: camera, URL and file sources, and the capture thread;
- `generation`: the generator's pacing, its thread (or inline), the engines and the residual cache;
- `outputs`: file, stream, virtual camera, window and preview page;
- `hud`: the figures drawn on the picture;
- `session`: `RealtimeSession`, which wires them, and `run_realtime`.

The preview server itself is `faceage_video.preview`.
"""

from faceage_video.live.controls import STRENGTH_STEP, ControlState, LiveControls
from faceage_video.live.generation import GenerationPacer
from faceage_video.live.handoff import LatestSlot
from faceage_video.live.options import (
    GENERATOR_MODES,
    LIVE_HAIR_EVERY,
    LIVE_ONE_EURO,
    LIVE_TEMPORAL,
    OUTPUT_KINDS,
    SOURCE_KINDS,
    GeneratorMode,
    OutputKind,
    RealtimeOptions,
    SourceKind,
    output_kind,
    parse_size,
    source_kind,
)
from faceage_video.live.session import RealtimeSession, run_realtime
from faceage_video.live.sources import LiveFrame
from faceage_video.live.stats import STATS_SCHEMA, EndReason, FrameCounts, LiveReport

__all__ = [
    "GENERATOR_MODES",
    "LIVE_HAIR_EVERY",
    "LIVE_ONE_EURO",
    "LIVE_TEMPORAL",
    "OUTPUT_KINDS",
    "SOURCE_KINDS",
    "STATS_SCHEMA",
    "STRENGTH_STEP",
    "ControlState",
    "EndReason",
    "FrameCounts",
    "GenerationPacer",
    "GeneratorMode",
    "LatestSlot",
    "LiveControls",
    "LiveFrame",
    "LiveReport",
    "OutputKind",
    "RealtimeOptions",
    "RealtimeSession",
    "SourceKind",
    "output_kind",
    "parse_size",
    "run_realtime",
    "source_kind",
]
