"""The heads-up display: the run's figures and the controls' state drawn on the output picture."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from faceage_video.live.controls import ControlState
from faceage_video.live.stats import Rolling
from faceage_video.types import Frame


def draw_hud(image: Frame, lines: list[str]) -> Frame:
    """Draw text lines on a dark translucent panel in the top-left corner (in place; returns `image`)."""
    h, w = image.shape[:2]
    scale = max(0.4, min(1.0, w / 1280))
    thick = 1 if scale < 0.7 else 2
    lh = int(22 * scale / 0.6)
    pw = min(w, int(max(len(s) for s in lines) * 11 * scale / 0.6) + 12)
    ph = min(h, lh * len(lines) + 10)
    roi = image[:ph, :pw]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, s in enumerate(lines):
        cv2.putText(image, s, (6, lh * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)  # fmt: skip
    return image


def hud_lines(
    state: ControlState,
    faces: int,
    rolling: Rolling,
    drop_pct: float,
    k: int,
    own_ages: Sequence[float] = (),
) -> list[str]:
    """The HUD's three lines: controls, faces and, with a target age, each face's estimated age → the target;
    fps and latency; drops and the generator's rate (1/k)."""
    r = rolling
    ages = ""
    if state.target_age is not None:
        own = "/".join(f"{a:.0f}" for a in own_ages)
        ages = f"  {own}->{state.target_age:.0f} y" if own else f"  target {state.target_age:.0f} y"
    return [
        f"{'ON ' if state.enabled else 'OFF'} {state.direction} x{state.strength:.1f}"
        f"{'  hair' if state.hair else ''}  faces {faces}{ages}",
        f"{r.fps:4.1f} fps  lat p50 {r.p50:3.0f} p95 {r.p95:3.0f} ms",
        f"drops {drop_pct:4.1f}%  gen {r.gen_fps:4.1f}/s (1/{k})",
    ]
