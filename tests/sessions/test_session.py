"""Sessions on every store: turns carry the history, revisions settle races, streams stay hidden."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether import VirtualClock
from tether.cli import app
from tether.errors import SessionConflict, SessionInactive, UsageError
from tether.events import SessionCreated, TurnFinished, TurnStarted
from tether.sessions import SessionStatus
from tether.store.sqlite import SQLiteStore

from .session_helpers import BarrierStore, lookup_agent, sessions_on


def test_a_turn_starts_from_the_history_of_the_turns_before(store_factory) -> None:
    """The model of turn 2 is shown turn 1's request, tool call, result and answer."""
    seen: list[int] = []
    sessions = sessions_on(store_factory(), lookup_agent(seen=seen))
    sessions.create("s1", agent="helper")
    first = asyncio.run(sessions.turn("s1", "refund"))
    second = asyncio.run(sessions.turn("s1", "status"))
    # Turn 1 answers after user, assistant, tool (3); turn 2 after those 4 and its own 3.
    assert seen == [3, 7]
    assert (first.turn, second.turn) == (1, 2)
    assert second.run.result["answer"] == '{"found": "STATUS"} after 7 messages'
    roles = [m.role for m in sessions.session("s1").history()]
    assert roles == ["user", "assistant", "tool", "assistant"] * 2


def test_history_keeps_each_message_source_and_trust(store_factory) -> None:
    """Requests are the user's, answers the model's, tool results the tool's."""
    sessions = sessions_on(store_factory(), lookup_agent())
    sessions.create("s1", agent="helper")
    asyncio.run(sessions.turn("s1", "hi"))
    history = sessions.session("s1").history()
    assert [(m.role, m.source, m.trust) for m in history] == [
        ("user", "user", "user"), ("assistant", "model", None), ("tool", "lookup", "system"),
        ("assistant", "model", None)]
    assert history[2].tool_call_id == history[1].tool_calls[0].id


def test_transcript_names_the_run_and_event_of_every_message(store_factory) -> None:
    """Each transcript row points at the journal event it was derived from."""
    store = store_factory()
    sessions = sessions_on(store, lookup_agent())
    sessions.create("s1", agent="helper")
    asyncio.run(sessions.turn("s1", "hi"))
    rows = sessions.session("s1").transcript()
    assert [r["role"] for r in rows] == ["user", "assistant", "tool", "assistant"]
    assert {r["run_id"] for r in rows} == {"session:s1:turn:1"}
    assert rows[1]["tool_calls"][0]["name"] == "lookup" and "tool_calls" not in rows[0]
    events = {e.seq: e for e in store.read("session:s1:turn:1")}
    assert [events[r["seq"]].kind for r in rows] == [
        "run_started", "model_called", "tool_result", "model_called"]


def test_the_stream_records_creation_and_each_turn(store_factory) -> None:
    """A session is the journal session:<id>: created, then turn_started/turn_finished."""
    store = store_factory()
    sessions = sessions_on(store, lookup_agent())
    sessions.create("s1", agent="helper", variables={"tier": "gold"}, ttl_s=60)
    asyncio.run(sessions.turn("s1", "hi"))
    events = store.read("session:s1")
    kinds = [e.kind for e in events]
    assert kinds == ["run_started", "run_finished", "session_created", "turn_started",
                     "turn_finished"]
    created = next(e for e in events if isinstance(e, SessionCreated))
    assert (created.agent, created.variables, created.ttl_s) == ("helper", {"tier": "gold"}, 60)
    started = next(e for e in events if isinstance(e, TurnStarted))
    finished = next(e for e in events if isinstance(e, TurnFinished))
    assert started.run_id == finished.run_id == "session:s1:turn:1"
    assert sessions.session("s1").revision == 5


def test_variables_and_resources_are_journaled_with_provenance(store_factory) -> None:
    """Each variable change and resource version is kept, with who and where it came from."""
    sessions = sessions_on(store_factory(), lookup_agent())
    sessions.create("s1", agent="helper", variables={"tier": "gold"})
    sessions.set_variable("s1", "tier", "platinum", by="tool", provenance={"run_id": "r"})
    sessions.put_resource("s1", "notes", "v1", source="client", trust="user")
    latest = sessions.put_resource("s1", "notes", {"text": "v2"}, source="kb:x",
                                   trust="retrieved", run_id="r2")
    session = sessions.session("s1")
    assert session.variables == {"tier": "platinum"}
    assert (latest.version, latest.content) == (2, {"text": "v2"})
    assert session.resources["notes"].provenance == {"source": "kb:x", "run_id": "r2",
                                                     "trust": "retrieved"}


def test_two_concurrent_turns_one_wins_the_other_conflicts(store_factory) -> None:
    """Two workers that read one revision: one turn runs, the other gets SessionConflict naming
    the revision it expected and found, and nothing of it is appended."""
    store = store_factory()
    sessions_on(store, lookup_agent()).create("s1", agent="helper")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def worker(name: str) -> None:
        handle = BarrierStore(store_factory.peer(store), barrier, "turn_started")
        sessions = sessions_on(handle, lookup_agent(), owner=name)  # type: ignore[arg-type]
        try:
            outcomes.append(asyncio.run(sessions.turn("s1", f"from {name}")))
        except SessionConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conflicts = [o for o in outcomes if isinstance(o, SessionConflict)]
    assert len(conflicts) == 1 and len(outcomes) == 2
    # The winner's turn_started made revision 4; it may have gone further by the time the
    # loser looked.
    assert conflicts[0].expected_revision == 3 and conflicts[0].found_revision >= 4
    assert "expected 3" in str(conflicts[0])
    session = sessions_on(store, lookup_agent()).session("s1")
    assert len(session.turns) == 1 and session.turns[0].status == "completed"
    assert [m.role for m in session.history()].count("user") == 1


def test_creating_a_session_twice_conflicts(store_factory) -> None:
    """A second create of one id is refused; the first session is untouched."""
    sessions = sessions_on(store_factory(), lookup_agent())
    sessions.create("s1", agent="helper", variables={"a": 1})
    with pytest.raises(SessionConflict, match="already exists"):
        sessions.create("s1", agent="helper")
    assert sessions.session("s1").variables == {"a": 1}


def test_a_session_expires_after_its_ttl_on_the_clock(store_factory) -> None:
    """Past ttl_s since the last turn a session is expired, and a turn is refused."""
    clock = VirtualClock()
    sessions = sessions_on(store_factory(), lookup_agent(), clock=clock)
    sessions.create("s1", agent="helper", ttl_s=30)
    clock.advance(20)
    asyncio.run(sessions.turn("s1", "hi"))
    clock.advance(29)
    assert sessions.session("s1").status is SessionStatus.ACTIVE
    clock.advance(1)
    assert sessions.session("s1").status is SessionStatus.EXPIRED
    with pytest.raises(SessionInactive, match="restore") as caught:
        asyncio.run(sessions.turn("s1", "again"))
    assert caught.value.status == "expired"


def test_a_closed_session_takes_no_turn(store_factory) -> None:
    """After close, turns and changes are refused; closing again is a no-op."""
    sessions = sessions_on(store_factory(), lookup_agent())
    sessions.create("s1", agent="helper")
    sessions.close("s1", "done")
    revision = sessions.close("s1").revision
    assert sessions.session("s1").revision == revision
    assert sessions.session("s1").status is SessionStatus.CLOSED
    with pytest.raises(SessionInactive, match="closed"):
        asyncio.run(sessions.turn("s1", "hi"))
    with pytest.raises(SessionInactive):
        sessions.set_variable("s1", "x", 1)


def test_a_turn_for_another_agent_or_an_unknown_session_is_refused(store_factory) -> None:
    """The session's agent is fixed; an unknown session is a UsageError saying how to make it."""
    sessions = sessions_on(store_factory(), lookup_agent())
    sessions.create("s1", agent="helper")
    other = lookup_agent()
    other = type(other)(name="other", model=other.model, tools=other.tools)
    with pytest.raises(UsageError, match="talks to agent 'helper'"):
        asyncio.run(sessions.turn("s1", "hi", agent=other))
    with pytest.raises(UsageError, match=r"sessions\.create"):
        asyncio.run(sessions.turn("nope", "hi"))


def test_a_run_id_of_another_workflow_is_not_a_session(store_factory) -> None:
    """A run stored under session:<id> by a workflow is refused, not read as a session."""
    from tether import RunContext, Runtime

    store = store_factory()

    async def plain(ctx: RunContext, x: int) -> int:
        return x

    asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(plain, 1,
                                                                   run_id="session:s1"))
    with pytest.raises(UsageError, match="reserved"):
        sessions_on(store, lookup_agent()).session("s1")


def test_runs_list_hides_session_streams_but_shows_turn_runs(tmp_path: Path) -> None:
    """`tether runs list` lists each turn's run, not the session's stream (unless --all)."""
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    sessions = sessions_on(store, lookup_agent())
    sessions.create("s1", agent="helper")
    asyncio.run(sessions.turn("s1", "hi"))
    store.close()
    listed = CliRunner().invoke(app, ["runs", "list", "--store", str(path), "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"session:s1:turn:1"' in listed.output and '"session:s1"' not in listed.output
    everything = CliRunner().invoke(app, ["runs", "list", "--store", str(path), "--json",
                                          "--all"])
    assert '"session:s1"' in everything.output
