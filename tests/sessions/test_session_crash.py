"""Crashes at any point of a session's life lose no turn and repeat none: the history after any
interleaving of turns and crashes equals the serial one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import Crash, VirtualClock
from tether.sessions import Sessions
from tether.store.base import Store
from tether.store.memory import MemoryStore

from .session_helpers import CrashingStore, lookup_agent, sessions_on


def drive(store: Store, texts: Sequence[str], crashes: Sequence[tuple[int, bool]],
          calls: list[str] | None = None) -> list[dict[str, Any]]:
    """Run one turn per text on session "s", as a client that, after each crash, starts a new
    worker, finishes the half-done turn and sends its message again only if the session has no
    turn for it; the n-th worker crashes at ``crashes[n]`` (its k-th append, before or after it
    is stored). Returns the session's history."""
    clock = VirtualClock()
    agent = lookup_agent(calls=calls)
    plan = list(crashes)

    def worker() -> Sessions:
        if not plan:
            return sessions_on(store, agent, clock=clock)
        crash_at, after = plan.pop(0)
        return sessions_on(CrashingStore(store, crash_at, after=after), agent,  # type: ignore[arg-type]
                           clock=clock)

    sessions = worker()
    while True:
        try:
            if store.get_run("session:s") is None:
                sessions.create("s", agent="helper")
            break
        except Crash:
            sessions = worker()
    for number, text in enumerate(texts, 1):
        while True:
            try:
                if len(sessions.session("s").turns) < number:
                    asyncio.run(sessions.turn("s", text))
                else:
                    asyncio.run(sessions.resume("s"))
                break
            except Crash:
                sessions = worker()
    session = sessions_on(store, agent, clock=clock).session("s")
    assert [t.status for t in session.turns] == ["completed"] * len(texts)
    return [m.model_dump(mode="json") for m in session.history()]


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.sampled_from(["refund", "status", "hello"]), min_size=1, max_size=3),
       crashes=st.lists(st.tuples(st.integers(1, 24), st.booleans()), max_size=5))
def test_any_interleaving_of_turns_and_crashes_gives_the_serial_history(
        texts: list[str], crashes: list[tuple[int, bool]]) -> None:
    """On the memory store, whatever workers crash where, the history equals the serial one."""
    assert drive(MemoryStore(), texts, crashes) == drive(MemoryStore(), texts, [])


def test_a_crash_at_every_append_of_two_turns_loses_and_repeats_nothing(store_factory) -> None:
    """On every store, a worker killed before or after each append of a two-turn conversation
    leaves the same history, and every lookup made once per turn is journaled once."""
    texts = ["refund", "status"]
    serial_calls: list[str] = []
    serial = drive(store_factory(), texts, [], serial_calls)
    appends = CrashingStore(store_factory(), 0, after=False)
    drive(appends, texts, [])  # type: ignore[arg-type]
    appends.inner.close()
    assert appends.appends >= 10
    for crash_at in range(1, appends.appends + 1):
        for after in (False, True):
            store = store_factory()
            assert drive(store, texts, [(crash_at, after)]) == serial, (crash_at, after)
            turn_runs = [store.read(f"session:s:turn:{n}") for n in (1, 2)]
            results = [e for events in turn_runs for e in events if e.kind == "tool_result"]
            assert len(results) == 2  # one journaled lookup per turn, never two
            store.close()  # one connection per crash point would exhaust PostgreSQL's limit
    assert serial_calls == texts


@pytest.mark.parametrize("after", [False, True])
def test_a_crash_between_turn_started_and_the_run_resumes_the_same_turn(after: bool) -> None:
    """A worker dying right at turn_started: the next one starts the run under the derived
    id, once, and a repeated turn() does not open a second turn for the same message."""
    store = MemoryStore()
    agent = lookup_agent()
    sessions_on(store, agent).create("s", agent="helper")
    crashing = sessions_on(CrashingStore(store, 1, after=after), agent)  # type: ignore[arg-type]
    with pytest.raises(Crash):
        asyncio.run(crashing.turn("s", "refund"))
    fresh = sessions_on(store, agent)
    assert len(fresh.session("s").turns) == (1 if after else 0)
    finished = asyncio.run(fresh.resume("s"))
    assert (finished is not None) == after
    if finished is not None:
        assert finished.run.run_id == "session:s:turn:1"
        assert finished.run.result["answer"].startswith('{"found": "REFUND"}')
    assert [t.status for t in fresh.session("s").turns] == (["completed"] if after else [])
