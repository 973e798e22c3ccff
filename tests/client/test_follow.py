"""The stream-following decisions with no I/O: what is yielded once, when and how to resume."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.client.errors import (
    ConnectionFailedError,
    InternalServerError,
    NotFoundError,
    ServerError,
)
from tether.client.follow import Follower, Reconnect
from tether.serve.sse import SseFrame

RUN = "session:a.s:turn:1"


def frame(event_id: int | None, kind: str = "model.text", data: str = "{}") -> SseFrame:
    return SseFrame(event=kind, data=data, id=None if event_id is None else str(event_id))


@settings(max_examples=60)
@given(ids=st.lists(st.integers(1, 40), min_size=1, max_size=30, unique=True).map(sorted),
       rewinds=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=5))
def test_replays_from_any_earlier_point_yield_each_id_once(
        ids: list[int], rewinds: list[tuple[int, int]]) -> None:
    """However a server re-sends earlier frames (a resume from any older point), the ids
    yielded are the run's ids, each once, in order."""
    follower = Follower(RUN, rng=random.Random(0))
    sent: list[int] = []
    position = 0
    for at, back in sorted(rewinds):
        sent += ids[position:at]
        position = max(0, min(at, len(ids)) - back)
    sent += ids[position:]
    got = [e.id for e in map(follower.accept, map(frame, sent)) if e is not None]
    assert got == ids


def test_ephemeral_deltas_repeat_but_other_idless_events_do_not() -> None:
    """Two equal model.delta frames are two tokens; two equal resource.updated are one."""
    follower = Follower(RUN)
    frames = [frame(None, "model.delta", '{"text": "a"}')] * 2 + \
        [frame(None, "resource.updated", '{"name": "plan", "version": 2}')] * 2
    assert [e.type for e in map(follower.accept, frames) if e is not None] == \
        ["model.delta", "model.delta", "resource.updated"]


def test_nothing_is_yielded_after_the_terminal_event() -> None:
    """After run.waiting the follower is done and drops anything else."""
    follower = Follower(RUN)
    assert follower.accept(frame(3, "run.waiting")) is not None and follower.done
    assert follower.accept(frame(4, "turn.finished")) is None


def test_the_run_is_learned_from_the_first_event_naming_it() -> None:
    """A fire stream starts without a run id and takes it from turn.started's data."""
    follower = Follower(None)
    follower.accept(frame(1, "turn.started", '{"run_id": "session:a.s:turn:7"}'))
    assert follower.run_id == "session:a.s:turn:7"
    assert follower.resume_call().headers["Last-Event-ID"] == "1"


def test_a_stream_without_a_run_is_never_resumed() -> None:
    """With no run named yet, a drop is ConnectionFailedError (resuming would have to guess)."""
    with pytest.raises(ConnectionFailedError, match="may have fired"):
        Follower(None).dropped(None)


def test_attempts_are_bounded_and_reset_by_progress() -> None:
    """``attempts`` drops in a row are retried, the next raises; an event in between starts
    the count again."""
    follower = Follower(RUN, policy=Reconnect(attempts=2), rng=random.Random(0))
    follower.dropped(None)
    follower.dropped(InternalServerError(503, "x", "restarting"))
    follower.accept(frame(5))
    follower.dropped(None)
    follower.dropped(None)
    with pytest.raises(ConnectionFailedError) as caught:
        follower.dropped(None)
    assert (caught.value.run_id, caught.value.last_id) == (RUN, 5)


def test_a_refusal_is_raised_not_retried() -> None:
    """A 4xx while resuming (the run is not there) is raised as it is."""
    refusal = NotFoundError(404, "not_found", "no run")
    with pytest.raises(NotFoundError):
        Follower(RUN).dropped(refusal)


@given(attempt=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_backoff_stays_within_its_bounds(attempt: int, seed: int) -> None:
    """Each wait is in [half the base, the base], the base doubling up to the cap."""
    policy = Reconnect(backoff_s=0.5, backoff_s_max=4.0)
    base = min(4.0, 0.5 * 2 ** (attempt - 1))
    assert base / 2 <= policy.delay_s(attempt, random.Random(seed)) <= base


def test_a_non_integer_id_is_an_invalid_response() -> None:
    """An id that is not a journal seq is refused: resuming from it could not be right."""
    with pytest.raises(ServerError, match="integer seq"):
        Follower(RUN).accept(SseFrame(event="x", data="{}", id="abc"))
