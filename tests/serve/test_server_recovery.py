"""A server starting on a store finishes every turn a killed server left open, wherever the
kill came: before the turn's run was created, or after it finished but before the turn's
ending was recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tether.agent.agent import Task
from tether.events import TurnStarted
from tether.serve.server import Server
from tether.sessions.loader import load_definition
from tether.sessions.state import turn_run_id
from tether.store.sqlite import SQLiteStore

from .serve_helpers import EXAMPLE, ring

QUESTION = "How much did I pay for order ch_0001?"


def _server(tmp: Path) -> Server:
    from tether.sim.episode import environment_for
    from tether.sim.scenario import load_scenario

    env = environment_for(load_scenario(EXAMPLE / "world.yaml"), seed=1)
    return Server(SQLiteStore(tmp / "runs.db"), [load_definition(EXAMPLE / "agent.yaml")],
                  ring(), env=env)


def _open_turn(server: Server, stored: str) -> None:
    """Record turn 1's start as a turn does, and stop there (the kill)."""
    sessions = server.sessions
    sessions.create(stored, agent="support-chat")
    state = sessions.session(stored).state
    sessions._append(state, [TurnStarted(seq=0, at=0.0, turn=1, run_id=turn_run_id(stored, 1),
                                         trigger="user-message", input=QUESTION)])


def test_a_turn_started_before_its_run_was_created_is_run_at_start(tmp_path: Path) -> None:
    """Killed between turn_started and the run's creation: the next server runs the turn
    (once) and records its ending."""

    async def go() -> None:
        killed = _server(tmp_path)
        _open_turn(killed, "acme.c")
        killed.store.close()
        server = _server(tmp_path)
        assert await server.start() == ["acme.c"]
        await server.idle()
        session = server.sessions.session("acme.c")
        assert [t.status for t in session.turns] == ["completed"]
        assert "49.99" in session.history()[-1].content

    asyncio.run(go())


def test_a_finished_run_whose_turn_ending_was_not_recorded_is_recorded_at_start(
        tmp_path: Path) -> None:
    """Killed after the turn's run finished but before turn_finished: the next server
    records the ending from the run, without running anything again."""

    async def go() -> None:
        killed = _server(tmp_path)
        _open_turn(killed, "acme.c")
        agent = killed.sessions._agent("support-chat")
        task = Task(text=QUESTION, variables=killed.sessions.session("acme.c").variables)
        run_id = turn_run_id("acme.c", 1)
        done = await killed.runtime.start(agent, task.model_dump(mode="json"), run_id=run_id,
                                          session_id="acme.c")
        assert done.status.value == "completed"
        events = len(killed.store.read(run_id))
        killed.store.close()
        server = _server(tmp_path)
        assert await server.start() == ["acme.c"]
        await server.idle()
        assert [t.status for t in server.sessions.session("acme.c").turns] == ["completed"]
        assert len(server.store.read(run_id)) == events

    asyncio.run(go())


def test_nothing_is_resumed_when_every_turn_ended(tmp_path: Path) -> None:
    """A store whose sessions have no open turn: start resumes nothing."""

    async def go() -> None:
        server = _server(tmp_path)
        server.sessions.create("acme.c", agent="support-chat")
        await server.sessions.turn("acme.c", QUESTION)
        assert await server.start() == []

    asyncio.run(go())
