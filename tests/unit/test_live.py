"""The live mode's pure parts: the keep-the-newest hand-off, the controls, what a source or output names,
the generation pacer, and the typed report's JSON form. No model, no clip, no device."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import fields

import numpy as np
import pytest

from faceage_video.engine.generator import EngineOptions
from faceage_video.live import (
    GenerationPacer,
    LatestSlot,
    LiveControls,
    RealtimeOptions,
    output_kind,
    parse_size,
    source_kind,
)
from faceage_video.live.controls import ControlState
from faceage_video.live.generation import EngineSet, GenRequest, ResidualCache, make_generation
from faceage_video.live.stats import STATS_SCHEMA, LiveReport, LiveStats, ModelInfo, PacerState


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
    assert not c.snapshot().hair and c.handle_key(ord("h")) and c.snapshot().hair
    assert c.apply({"action": "hair"})["hair"] is False
    assert c.apply({"hair": True})["hair"] is True
    with pytest.raises(Exception, match="hair must be true or false"):
        c.apply({"hair": "yes"})
    assert LiveControls(hair=True).snapshot().hair
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


# The `--stats` JSON of schema faceage-live-stats/1, key by key and in order, as the dict-returning code wrote it.
STATS_KEYS = [
    "schema", "wall_s", "warmup_s", "frames", "drop_rate", "fps", "latency_ms", "residual_age_ms",
    "stage_ms", "generator_runs", "cpu", "source", "source_kind", "outputs", "width", "height",
    "source_fps", "capture_queue_max", "generator_queue_max", "generator_skipped", "generator_mode",
    "generate_every", "controls", "rolling", "model", "ended",
]  # fmt: skip


def report_of(stats: LiveStats, dropped: int, model: ModelInfo | None) -> LiveReport:
    m = stats.measure(dropped)
    return LiveReport(
        **{f.name: getattr(m, f.name) for f in fields(m)},
        source="clip.mp4",
        source_kind="file",
        outputs=("o.mp4",),
        width=64,
        height=48,
        source_fps=25.0,
        capture_queue_max=1,
        generator_queue_max=1,
        generator_skipped=0,
        generator_mode="async",
        generate_every=PacerState(True, 1, 2),
        controls=ControlState(True, "older", 1.0),
        rolling=stats.rolling().rounded(),
        model=model,
        ended="quit",
    )


def test_report_is_typed_and_its_json_keeps_the_schema() -> None:
    stats = LiveStats(warmup_s=0.0)
    t0 = time.perf_counter()
    for i in range(5):
        stats.frame_captured()
        if i != 2:  # frame 2 was dropped
            stats.stage("render", 0.004)
            stats.frame_out(t0 + i * 0.04, t0 + i * 0.04 + 0.03, faces=1, reused=i % 2, ages_ms=[10.0])
    stats.frame_rate_skipped()
    rep = report_of(stats, dropped=1, model=None)
    assert rep.frames.captured == rep.frames.processed + rep.frames.dropped == 5
    assert (rep.frames.rate_skipped, rep.frames.reused_residual, rep.frames.faces_aged) == (1, 2, 4)
    assert rep.latency_ms.n == 4 and rep.latency_ms.p50 == pytest.approx(30.0, abs=0.01)
    assert rep.drop_rate == 0.2 and rep.stage_ms["render"].p95 == pytest.approx(4.0)

    d = rep.to_dict()
    assert list(d) == STATS_KEYS
    assert d["schema"] == STATS_SCHEMA and d["model"] == {} and d["outputs"] == ["o.mp4"]
    assert list(d["frames"]) == [
        "captured", "processed", "dropped", "with_faces", "faces_aged", "faces_last", "reused_residual",
        "rate_skipped",
    ]  # fmt: skip
    assert list(d["latency_ms"]) == ["p50", "p95", "p99", "mean", "max", "n"]
    assert list(d["residual_age_ms"]) == ["p50", "p95"] and list(d["stage_ms"]["render"]) == ["p50", "p95"]
    assert d["controls"] == {
        "enabled": True,
        "direction": "older",
        "strength": 1.0,
        "quit": False,
        "target_age": None,
        "hair": False,
    }
    assert d["generate_every"] == {"adaptive": True, "k": 1, "k_max": 2}
    assert set(d["rolling"]) == {"fps", "p50", "p95", "gen_fps"}
    json.dumps(d, allow_nan=False)
    assert report_of(stats, 1, ModelInfo("m", 7)).to_dict()["model"] == {"name": "m", "steps": 7}


class FakeEngine:
    """Stands in for `AgingEngine` in the generation tests: adds `delta` to every crop."""

    def __init__(self, direction: str = "older", delta: float = 5.0, fail: bool = False) -> None:
        self.options = EngineOptions(direction=direction)  # type: ignore[arg-type]
        self.size = 8
        self.delta = delta
        self.fail = fail
        self.calls = 0
        self.conditioned = True
        self.asked: list[np.ndarray | None] = []

    def generate(self, crops: np.ndarray, ages: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        self.asked.append(ages)
        if self.fail and self.calls > 1:  # the warm-up passes, the first live request fails
            raise RuntimeError("generator blew up")
        return crops.astype(np.float32) + self.delta


def request(tid: int, t: float) -> GenRequest:
    return GenRequest("older", (tid,), np.zeros((1, 8, 8, 3), np.uint8), t)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_generation_fills_the_cache_and_reports_failures(mode: str) -> None:
    engine = FakeEngine()
    engines = EngineSet(EngineOptions(), engine)  # type: ignore[arg-type]
    cache, stats = ResidualCache(), LiveStats(0.0)
    gen = make_generation(mode, engines, cache, stats)  # type: ignore[arg-type]
    gen.start()
    try:
        gen.request(request(3, 1.5))
        deadline = time.monotonic() + 5
        while cache.get("older", 3) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        got = cache.get("older", 3)
        assert got is not None and got.capture_t == 1.5
        assert np.all(got.residual == 5.0)  # full strength: G(crop) − crop
        assert stats.generated == 1 and gen.queue_max == (1 if mode == "async" else 0)
        gen.check()  # nothing failed
    finally:
        gen.stop()

    broken = FakeEngine(fail=True)
    broken.generate(np.zeros((1, 8, 8, 3), np.uint8))  # the warm-up
    gen = make_generation(mode, EngineSet(EngineOptions(), broken), ResidualCache(), LiveStats(0.0))  # type: ignore[arg-type]
    gen.start()
    try:
        with pytest.raises(RuntimeError, match="blew up"):
            gen.request(request(1, 0.0))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                gen.check()
                time.sleep(0.01)
    finally:
        gen.stop()


def test_target_age_control_picks_the_generator_and_its_ages() -> None:
    from faceage_video.engine.generator import EngineOptions
    from faceage_video.errors import OptionsError
    from faceage_video.live.controls import LiveControls

    c = LiveControls(direction="older")
    eng = EngineOptions(input_age=40)
    assert c.snapshot().generator(eng) == ("older", (40.0, 75.0))
    assert c.apply({"target_age": 22})["target_age"] == 22.0
    assert c.snapshot().generator(eng) == ("younger", (40.0, 22.0))
    c.apply({"target_age": None})
    assert c.snapshot().target_age is None
    with pytest.raises(OptionsError, match="target age"):
        c.apply({"target_age": 400})
    with pytest.raises(OptionsError, match="target_age"):
        c.apply({"target_age": "old"})


def test_live_residuals_take_an_age_per_face_and_leave_faces_past_the_target() -> None:
    from faceage_video.live.generation import full_residuals

    engine = FakeEngine()
    crops = np.zeros((2, 8, 8, 3), np.uint8)
    both = full_residuals(engine, crops, (30.0, 60.0))  # type: ignore[arg-type]
    assert np.all(both == 5.0)
    np.testing.assert_array_equal(engine.asked[-1], [[30, 60], [30, 60]])
    own = full_residuals(engine, crops, np.array([[30.0, 60.0], [70.0, 60.0]], np.float32))  # type: ignore[arg-type]
    assert np.all(own[0] == 5.0) and np.all(own[1] == 0.0)  # the 70-year-old is past 60: unchanged
    np.testing.assert_array_equal(engine.asked[-1], [[30, 60], [70, 60]])


def test_hud_shows_each_face_own_age_and_the_target() -> None:
    from dataclasses import replace

    from faceage_video.live.hud import hud_lines
    from faceage_video.live.stats import Rolling

    state = ControlState(True, "older", 1.0)
    r = Rolling(30.0, 20.0, 30.0, 15.0)
    assert "->" not in hud_lines(state, 1, r, 0.0, 1, [31.0])[0]  # no target: nothing to say
    aimed = replace(state, target_age=60.0)
    assert hud_lines(aimed, 2, r, 0.0, 1, [31.4, 47.6])[0].endswith("faces 2  31/48->60 y")
    assert hud_lines(aimed, 1, r, 0.0, 1)[0].endswith("target 60 y")  # --input-age given: none estimated
    assert "hair" not in hud_lines(state, 1, r, 0.0, 1)[0]
    assert hud_lines(replace(state, hair=True), 1, r, 0.0, 1)[0].startswith("ON  older x1.0  hair  faces 1")


def test_toward_sends_each_face_its_own_way_to_the_target() -> None:
    from faceage_video.engine.input_age import toward

    own = np.array([30.0, 70.0, 60.0], np.float32)
    assert toward(own, 60.0, "older") == ("older", "younger", "older")
    assert toward(own, 60.0, "younger")[2] == "younger"  # at the target: the caller's (asked for nothing)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_request_ages_the_younger_face_and_de_ages_the_older(mode: str) -> None:
    """With a target age, a frame's faces go to both generators in one request, each with its own ages."""
    older, younger = FakeEngine("older", 5.0), FakeEngine("younger", -3.0)
    engines = EngineSet(EngineOptions(), older, younger)  # type: ignore[arg-type]
    cache, stats = ResidualCache(), LiveStats(0.0)
    gen = make_generation(mode, engines, cache, stats)  # type: ignore[arg-type]
    ages = np.array([[30.0, 45.0], [70.0, 45.0], [20.0, 45.0]], np.float32)
    req = GenRequest(
        "older", (1, 2, 3), np.zeros((3, 8, 8, 3), np.uint8), 2.0, ages, ("older", "younger", "older")
    )
    gen.start()
    try:
        gen.request(req)
        deadline = time.monotonic() + 5
        while cache.get("younger", 2) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        gen.check()
    finally:
        gen.stop()
    got = {(d, t): cache.get(d, t) for d in ("older", "younger") for t in (1, 2, 3)}
    assert {k for k, v in got.items() if v is not None} == {("older", 1), ("older", 3), ("younger", 2)}
    assert np.all(got["older", 1].residual == 5.0) and np.all(got["younger", 2].residual == -3.0)  # type: ignore[union-attr]
    # each generator ran once, on its own faces and their own ages
    np.testing.assert_array_equal(older.asked[-1], ages[[0, 2]])
    np.testing.assert_array_equal(younger.asked[-1], ages[[1]])
    assert (older.calls, younger.calls, stats.generated) == (1, 1, 1)
    with pytest.raises(ValueError, match="2 directions for 3 crops"):
        GenRequest("older", (1, 2, 3), req.crops, 0.0, None, ("older", "younger")).groups()
