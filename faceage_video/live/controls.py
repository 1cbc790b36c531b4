"""The live controls: on/off, direction, strength, target age and hair, shared by the window keys, the
preview page and the loop."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from faceage_video.engine.generator import EngineOptions
from faceage_video.errors import OptionsError
from faceage_video.types import DIRECTIONS, Direction

# Strength change per +/- key press or page button.
STRENGTH_STEP = 0.1


@dataclass(frozen=True)
class ControlState:
    """The live controls at one moment.

    Attributes:
        enabled: the effect is on.
        direction: "older" (G) or "younger" (F).
        strength: share of the generated change applied, 0..1.
        quit: the user asked to stop.
        target_age: age in years to move faces to (age-conditioned models); None: `direction` alone.
        hair: the hair ages with the face (the hair stage, `--age-hair`).
    """

    enabled: bool
    direction: Direction
    strength: float
    quit: bool = False
    target_age: float | None = None
    hair: bool = False

    def generator(self, engine: EngineOptions) -> tuple[Direction, tuple[float, float]]:
        """The direction whose model runs and the (input, target) ages it is asked for, with the engine's
        defaults (`EngineOptions.ages`) filling in what the controls leave open."""
        if self.target_age is not None and self.target_age == engine.input_age:
            return self.direction, (self.target_age, self.target_age)
        opts = replace(engine, direction=self.direction, target_age=self.target_age)
        ages = opts.ages
        return ("older" if opts.generator == "G" else "younger"), ages


class LiveControls:
    """Thread-safe controls shared by the window keys, the preview page and the processing loop."""

    def __init__(
        self, enabled: bool = True, direction: Direction = "older", strength: float = 1.0, hair: bool = False
    ) -> None:
        self._lock = threading.Lock()
        self._state = ControlState(enabled, direction, self._check_strength(strength), hair=bool(hair))

    @staticmethod
    def _check_strength(value: float) -> float:
        v = float(value)
        if not math.isfinite(v):
            raise OptionsError(f"strength must be a number in 0..1, got {value!r}")
        return round(min(1.0, max(0.0, v)), 3)

    def snapshot(self) -> ControlState:
        with self._lock:
            return self._state

    def _update(self, **changes: Any) -> ControlState:
        with self._lock:
            self._state = replace(self._state, **changes)
            return self._state

    def toggle(self) -> ControlState:
        return self._update(enabled=not self.snapshot().enabled)

    def set_enabled(self, on: bool) -> ControlState:
        return self._update(enabled=bool(on))

    def set_strength(self, value: float) -> ControlState:
        """Set the strength; values outside 0..1 are clamped (a slider or key repeat overshoots)."""
        return self._update(strength=self._check_strength(value))

    def bump_strength(self, delta: float) -> ControlState:
        return self.set_strength(self.snapshot().strength + delta)

    def set_direction(self, direction: str) -> ControlState:
        if direction not in DIRECTIONS:
            raise OptionsError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return self._update(direction=direction)

    def switch_direction(self) -> ControlState:
        return self._update(direction="younger" if self.snapshot().direction == "older" else "older")

    def set_target_age(self, value: float | None) -> ControlState:
        """Set the target age in years (10..100), or None to follow the direction alone."""
        if value is None:
            return self._update(target_age=None)
        v = float(value)
        if not (math.isfinite(v) and 10.0 <= v <= 100.0):
            raise OptionsError(f"target age must be a number of years in 10..100, got {value!r}")
        return self._update(target_age=round(v, 1))

    def set_hair(self, on: bool) -> ControlState:
        return self._update(hair=bool(on))

    def toggle_hair(self) -> ControlState:
        return self._update(hair=not self.snapshot().hair)

    def request_quit(self) -> ControlState:
        return self._update(quit=True)

    def handle_key(self, key: int | str) -> bool:
        """Apply one key: space toggles, +/= and - change the strength, d switches direction, h toggles the
        hair, q or Esc quits.

        Returns:
            True when the key meant something.
        """
        ch = chr(key & 0xFF) if isinstance(key, int) else key
        if ch == " ":
            self.toggle()
        elif ch in ("+", "="):
            self.bump_strength(STRENGTH_STEP)
        elif ch in ("-", "_"):
            self.bump_strength(-STRENGTH_STEP)
        elif ch in ("d", "D"):
            self.switch_direction()
        elif ch in ("h", "H"):
            self.toggle_hair()
        elif ch in ("q", "Q", "\x1b"):
            self.request_quit()
        else:
            return False
        return True

    def apply(self, command: dict[str, Any]) -> dict[str, Any]:
        """Apply a command from the preview page and return the new state as a dict.

        Args:
            command: {"action": "toggle" | "on" | "off" | "direction" | "stronger" | "weaker" | "hair" |
                "quit"}, and/or {"strength": 0..1}, {"direction": "older" | "younger"}, {"enabled": bool},
                {"hair": bool}, {"target_age": years | null}.

        Raises:
            OptionsError: an unknown action or a bad value.
        """
        action = command.get("action")
        actions: dict[str, Callable[[], ControlState]] = {
            "toggle": self.toggle,
            "on": lambda: self.set_enabled(True),
            "off": lambda: self.set_enabled(False),
            "direction": self.switch_direction,
            "stronger": lambda: self.bump_strength(STRENGTH_STEP),
            "weaker": lambda: self.bump_strength(-STRENGTH_STEP),
            "hair": self.toggle_hair,
            "quit": self.request_quit,
        }
        if action is not None:
            if action not in actions:
                raise OptionsError(f"unknown action {action!r}; one of {', '.join(actions)}")
            actions[action]()
        if "target_age" in command:
            value = command["target_age"]
            try:
                self.set_target_age(None if value in (None, "", "off") else float(value))
            except (TypeError, ValueError):
                raise OptionsError(f"target_age must be a number of years or null, got {value!r}") from None
        if "strength" in command:
            try:
                self.set_strength(float(command["strength"]))
            except (TypeError, ValueError):
                raise OptionsError(
                    f"strength must be a number in 0..1, got {command['strength']!r}"
                ) from None
        if "direction" in command:
            self.set_direction(str(command["direction"]))
        if "enabled" in command:
            self.set_enabled(bool(command["enabled"]))
        if "hair" in command:
            if not isinstance(command["hair"], bool):
                raise OptionsError(f"hair must be true or false, got {command['hair']!r}")
            self.set_hair(command["hair"])
        return asdict(self.snapshot())
