"""faceage-video: age or de-age the faces in a video, offline or live.

The Python API is `age_video(input, output, options)`; see `faceage_video.pipeline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceage_video.pipeline import AgeOptions, ExtraOutputs, Report, StageOptions, age_video
    from faceage_video.report import Progress

__all__ = ["AgeOptions", "ExtraOutputs", "Progress", "Report", "StageOptions", "age_video"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. for the CLI's --help) must not load TensorFlow and MediaPipe.
    if name in __all__:
        from faceage_video import pipeline, report

        return getattr(report if name == "Progress" else pipeline, name)
    raise AttributeError(f"module 'faceage_video' has no attribute {name!r}")
