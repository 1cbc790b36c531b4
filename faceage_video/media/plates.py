"""Plates at full precision: the transfer from a plate to the 8-bit sRGB picture the model sees, and back.

Integer plates (PNG, TIFF, DPX) are display-referred: the change is scaled to the plate's range. Float plates
(EXR) are scene-linear: converted to display-referred with OpenColorIO when a config is given, else with the
sRGB transfer function (IEC 61966-2-1, on linear Rec.709 primaries); the change goes back through the
inverse, so it lands in linear light. Pixels the mask does not reach are copied, so they stay bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from faceage_video.errors import OptionsError
from faceage_video.face.blend import WarpedChange

Plate = NDArray[Any]  # (H, W, C) uint8 / uint16 / float16 / float32, C = 3 (RGB) or 4 (RGBA), as stored

# Colour spaces tried, in order, as the model's display-referred sRGB when `display_colorspace` is None.
_SRGB_NAMES = ("sRGB Encoded Rec.709 (sRGB)", "sRGB - Texture", "sRGB", "srgb_tx", "sRGB - Display")


class PlateTransfer(Protocol):
    """Maps a plate's RGB to display-referred sRGB in 0..1 (nominal) and back, elementwise on float32."""

    def to_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]: ...

    def from_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]: ...


@dataclass(frozen=True)
class IntegerTransfer:
    """An integer plate is display-referred already: scale its range to 0..1 and back."""

    maximum: float

    def to_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        return (rgb / np.float32(self.maximum)).astype(np.float32)

    def from_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        return (rgb * np.float32(self.maximum)).astype(np.float32)


@dataclass(frozen=True)
class SRGBTransfer:
    """Scene-linear Rec.709 ↔ sRGB-encoded (IEC 61966-2-1), extended past 0..1 so the inverse is exact."""

    def to_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        x = rgb.astype(np.float32)
        hi = 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055
        return np.where(x <= 0.0031308, 12.92 * x, hi).astype(np.float32)

    def from_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        x = rgb.astype(np.float32)
        hi = np.power((np.maximum(x, 0.04045) + 0.055) / 1.055, 2.4)
        return np.where(x <= 0.04045, x / 12.92, hi).astype(np.float32)


class OCIOTransfer:
    """`colorspace` ↔ a display-referred sRGB colour space of an OpenColorIO config."""

    def __init__(self, config: str, colorspace: str | None, display: str | None) -> None:
        """Load the config and build both processors.

        Raises:
            OptionsError: the config cannot be read, or a colour space is not in it.
        """
        import PyOpenColorIO as ocio

        try:
            cfg = ocio.Config.CreateFromFile(config)
        except Exception as e:  # OCIO raises its own Exception type for every failure
            raise OptionsError(f"--ocio {config}: cannot be read as an OpenColorIO config ({e})") from e
        names = [cs.getName() for cs in cfg.getColorSpaces()]
        src = colorspace
        if src is None:
            role = cfg.getColorSpace("scene_linear")
            src = role.getName() if role is not None else None
        if src is None or cfg.getColorSpace(src) is None:
            raise OptionsError(
                f"--colorspace {colorspace!r} is not in {config} and it has no scene_linear role; pick one of "
                f"{', '.join(names[:12])}"
            )
        dst = display or next((n for n in _SRGB_NAMES if cfg.getColorSpace(n) is not None), None)
        if dst is None or cfg.getColorSpace(dst) is None:
            raise OptionsError(
                f"display colour space {display!r} is not in {config}; pick an sRGB one of {', '.join(names[:12])}"
            )
        self.colorspace, self.display = cfg.getColorSpace(src).getName(), cfg.getColorSpace(dst).getName()
        self._fwd = cfg.getProcessor(self.colorspace, self.display).getDefaultCPUProcessor()
        self._inv = cfg.getProcessor(self.display, self.colorspace).getDefaultCPUProcessor()

    @staticmethod
    def _apply(cpu: Any, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        if out.size:
            cpu.applyRGB(out)  # in place on a packed float32 RGB buffer
        return out

    def to_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._apply(self._fwd, rgb)

    def from_display(self, rgb: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._apply(self._inv, rgb)


def display_u8(plate: Plate, transfer: PlateTransfer) -> NDArray[np.uint8]:
    """The 8-bit sRGB picture of a plate for the face stages and the model: (H, W, 3) uint8, C-contiguous."""
    rgb = transfer.to_display(plate[..., :3].astype(np.float32))
    return np.ascontiguousarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))


def apply_plate_change(plate: Plate, warped: WarpedChange, transfer: PlateTransfer) -> Plate:
    """Add one face's change (computed on the 8-bit sRGB picture) to the plate at its own precision.

    out = from_display(to_display(in) + alpha · change / 255) − from_display(to_display(in)) + in, so the
    change is the same in display terms and goes back through the plate's own transfer (linear for EXR).

    Args:
        plate: (H, W, C) as `Plate`; not modified. Only RGB changes; an alpha channel is passed through.
        warped: from `blend.warp_change` on the plate's 8-bit picture.
        transfer: the plate's `PlateTransfer`.

    Returns:
        A new plate of the same dtype and shape; every pixel with alpha 0 is a bit-exact copy of the input.
    """
    out = plate.copy()
    if warped.empty:
        return out
    x0, y0, x1, y1 = warped.box
    roi = plate[y0:y1, x0:x1, :3]
    base = roi.astype(np.float32)
    shown = transfer.to_display(base)
    delta = warped.alpha[..., None] * warped.change / np.float32(255.0)
    moved = base + (transfer.from_display(shown + delta) - transfer.from_display(shown))
    if np.issubdtype(plate.dtype, np.integer):
        top = np.iinfo(plate.dtype).max
        new = np.clip(np.rint(moved), 0, top).astype(plate.dtype)
    else:
        new = moved.astype(plate.dtype)
    out[y0:y1, x0:x1, :3] = np.where(warped.alpha[..., None] > 0.0, new, roi)
    return out
