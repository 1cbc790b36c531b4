"""`RayPool.probe_ages` decides which shots get one probed input age for every segment (no cluster: the
actors and `ray.get` are stand-ins)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from faceage_video.engine.generator import EngineOptions
from faceage_video.errors import ModelError
from faceage_video.scale.plan import Segment
from faceage_video.scale.pool import RayPool, ShotPlan
from tests.helpers import age_options


class _Exceptions:
    class RayTaskError(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__(str(cause))
            self.cause = cause

    class RayActorError(Exception):
        pass

    class WorkerCrashedError(Exception):
        pass


class _Ray:
    exceptions = _Exceptions

    @staticmethod
    def get(ref: Any) -> Any:
        if isinstance(ref, BaseException):
            raise ref
        return ref


class _Actor:
    """`probe_ages.remote` answers with what the shot's input file name says."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, list[float]]] = []
        actor = self

        class Method:
            @staticmethod
            def remote(input: str, reader: Any, stages: Any, starts: list[float]) -> Any:
                actor.asked.append((input, starts))
                return actor.answers[input]

        self.probe_ages = Method()


def _pool(actor: _Actor) -> RayPool:
    pool = RayPool.__new__(RayPool)
    pool._ray = _Ray()
    pool._actors = [actor]
    return pool


def _shot(name: str, **engine: Any) -> ShotPlan:
    opts = age_options(engine=EngineOptions(**engine))
    segs = [Segment(k, None, None, 2.0 * k if k else None, None, None, None) for k in range(3)]
    return ShotPlan(input=name, output=f"{name}.out.mp4", options=opts, segments=segs)


def test_only_a_one_face_shot_gets_one_probed_age_for_every_segment() -> None:
    actor = _Actor(
        {
            "one.mp4": ({0: 37.26}, 1),
            "two.mp4": ({0: 37.0, 1: 62.0}, 2),
            "later.mp4": ({0: 37.0}, 2),  # one face at the start, two at a later segment's start
            "broken.mp4": _Exceptions.RayTaskError(ModelError("estimator missing")),
            "lost.mp4": _Exceptions.RayActorError(),
        }
    )
    shots = [
        _shot("one.mp4", target_age=60),
        _shot("two.mp4", target_age=60),
        _shot("later.mp4", target_age=60),
        _shot("broken.mp4", target_age=60),
        _shot("lost.mp4", target_age=60),
        _shot("given.mp4", target_age=60, input_age=30),  # told its age: not probed
        _shot("direction.mp4"),  # no target age: not probed
    ]
    failed = _pool(actor).probe_ages(shots)
    assert [name for name, _ in actor.asked] == ["one.mp4", "two.mp4", "later.mp4", "broken.mp4", "lost.mp4"]
    assert actor.asked[0][1] == [2.0, 4.0]  # the later segments' starts
    one = shots[0]
    assert one.input_ages == {0: 37.3} and one.options.stages.engine.input_age == pytest.approx(37.3)
    for shot in shots[1:3] + shots[4:5]:  # left to their segments
        assert shot.input_ages == {} and shot.options.stages.engine.input_age is None
    assert set(failed) == {3} and isinstance(failed[3], ModelError)
    assert shots[5].options.stages.engine.input_age == 30  # untouched
    assert replace(shots[6].options.stages.engine) == EngineOptions()
