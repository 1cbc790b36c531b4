"""The live mode's pure parts: the keep-the-newest hand-off, the controls, what a source or output names,
the generation pacer, and the typed report's JSON form. No model, no clip, no device."""

from __future__ import annotations

import threading
import time

import pytest

from faceage_video.live import (
    GenerationPacer,
    LatestSlot,
    LiveControls,
    RealtimeOptions,
    output_kind,
    parse_size,
    source_kind,
)


def test_latest_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    got: list[int] = []
    done = threading.Event()

    def consumer() -> None:
        while not done.is_set() or len(slot):
            item = slot.get(0.01)
            if item is not None:
                got.append(item)
                time.sleep(0.005)

    th = threading.Thread(target=consumer)
    th.start()
    for i in range(300):
        slot.put(i)
        assert len(slot) <= 1
        time.sleep(0.0005)
    done.set()
    th.join()
    assert slot.max_depth == 1
    assert got == sorted(got) and got[-1] == 299  # in order, and the newest always arrives
    assert slot.dropped == 300 - len(got) and slot.dropped > 0


def test_controls_keys_and_commands() -> None:
    c = LiveControls(strength=0.5)
    for key in (" ", "+", "+", "d"):
        assert c.handle_key(ord(key))
    s = c.snapshot()
    assert (s.enabled, s.strength, s.direction, s.quit) == (False, 0.7, "younger", False)
    assert not c.handle_key(ord("x"))
    assert c.apply({"action": "toggle", "strength": 3})["strength"] == 1.0  # clamped
    assert c.apply({"direction": "older"})["direction"] == "older"
    with pytest.raises(Exception, match="unknown action"):
        c.apply({"action": "explode"})
    c.handle_key(ord("q"))
    assert c.snapshot().quit


def test_source_and_output_kinds() -> None:
    assert [source_kind(s) for s in ("0", "/dev/video2", "rtsp://x/y", "clip.mp4")] == [
        "camera",
        "camera",
        "url",
        "file",
    ]
    kinds = [
        output_kind(o)
        for o in ("window", "virtualcam", "udp://127.0.0.1:5000", "http://127.0.0.1:8080", "o.mp4")
    ]
    assert kinds == ["window", "virtualcam", "stream", "preview", "file"]
    assert parse_size("640x480") == (640, 480)
    with pytest.raises(Exception, match="WIDTHxHEIGHT"):
        parse_size("640")
    with pytest.raises(Exception, match="even sides"):
        RealtimeOptions(source="clip.mp4", outputs=("o.mp4",), size=(641, 480))


def test_generation_pacer_yields_cpu_while_frames_drop() -> None:
    fixed = GenerationPacer(3)
    assert [fixed.offer() for _ in range(6)] == [False, False, True, False, False, True]
    p = GenerationPacer(0)
    assert p.adaptive and p.k == 1
    captured = dropped = 0
    for second in range(12):  # 30 frames a second, half of them dropped: k climbs to its cap
        captured, dropped = captured + 30, dropped + 15
        p.update(float(second), captured, dropped)
    assert p.k == GenerationPacer.MAX_K
    for second in range(12, 30):  # no drops any more: k comes back to 1
        captured += 30
        p.update(float(second), captured, dropped)
    assert p.k == 1 and p.k_max == GenerationPacer.MAX_K
