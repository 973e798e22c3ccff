"""The server's timer tick asks the store's work queue what is due: it reads no run listing
while nothing is, resumes a turn whose wait was resolved from outside the server (another
process), and takes over a turn whose owner's lease expired."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether.runtime.runtime import Runtime
from tether.store.sqlite import SQLiteStore

from .serve_helpers import Served, served
from .test_server_input import LaterClock

REFUND = "The headphones from order ch_0002 stopped working. Please refund them."


async def _waiting(s: Served) -> dict[str, Any]:
    await s.call("POST", "/v1/sessions", body={"agent": "support-chat", "session_id": "c"})
    events = await s.frames("POST", "/v1/sessions/c/triggers/user-message",
                            body={"input": {"text": REFUND}})
    return next(d for _, t, d in events if t == "client_tool.requested")


def _count_listings(store: Any) -> list[int]:
    """Counts the store's run listings from now on (the real method, wrapped)."""
    calls = [0]
    real = store.list_runs

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    store.list_runs = counted
    return calls


def test_a_tick_with_nothing_due_lists_no_runs(tmp_path: Path) -> None:
    """A turn waits for the app (its deadline 600 s away): ticks queue nothing and read no
    listing of runs, however many there are; once the deadline passes one tick resumes it."""

    async def go() -> None:
        clock = LaterClock()
        async with served(tmp_path, clock=clock) as s:
            await _waiting(s)
            calls = _count_listings(s.server.store)
            for _ in range(3):
                assert await s.server.tick() == 0
            assert calls[0] == 0
            clock.offset_s = 601.0
            assert await s.server.tick() == 1
            await s.server.idle()
            view = (await s.call("GET", "/v1/sessions/c")).json()
            assert view["turns"][0]["status"] == "completed"  # the wait timed out

    asyncio.run(go())


def test_a_wait_resolved_by_another_process_is_resumed_by_the_next_tick(
        tmp_path: Path) -> None:
    """Another process (its own Runtime on the same SQLite file) records the app's answer
    without resuming the run; the server's next tick resumes the turn to its end."""

    async def go() -> None:
        async with served(tmp_path) as s:
            asked = await _waiting(s)
            other = Runtime(SQLiteStore(tmp_path / "runs.db"), owner="elsewhere")
            await other.continue_execution(asked["execution_id"],
                                           {asked["call_id"]: {"confirmed": True}},
                                           by="ada@acme", resume=False)
            assert await s.server.tick() == 1
            await s.server.idle()
            view = (await s.call("GET", "/v1/sessions/c")).json()
            assert view["turns"][0]["status"] == "completed"
            assert await s.server.tick() == 0
            other.store.close()

    asyncio.run(go())


def test_a_turn_whose_server_died_is_taken_over_once_its_lease_expired(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Server A's turn is inside a write when A stops without finishing it; server B (another
    worker name, same store) leaves it while A's lease may still be live, and its first tick
    after the lease expired resumes the turn to its end, the write taking effect once."""
    from tether.serve.server import Server
    from tether.sessions.loader import load_definition

    from .serve_helpers import KEYS, ring
    from .test_server_process import _gated

    monkeypatch.setenv("GATE_DIR", str(tmp_path))
    agent = load_definition(_gated(tmp_path))
    who = ring().identify(KEYS["ada"][0])
    assert who is not None

    async def go() -> None:
        clock = LaterClock()
        a = Server(SQLiteStore(tmp_path / "runs.db"), [agent], ring(), owner="a", tick_s=None)
        b = Server(SQLiteStore(tmp_path / "runs.db"), [agent], ring(), owner="b", clock=clock,
                   tick_s=None)
        a.create_session(who, {"agent": "gated", "session_id": "g"})
        started = await a.fire(who, "g", "user-message", {"input": {"text": "refund"}})
        assert not isinstance(started, dict)
        while not (tmp_path / "entered").exists():
            await asyncio.sleep(0.01)
        await a.stop()  # A is gone; its lease (30 s) may still be live
        assert await b.tick() == 0
        clock.offset_s = 31.0
        (tmp_path / "open").write_text("")
        assert await b.tick() == 1
        await b.idle()
        assert b.sessions.session("acme.g").turns[0].status == "completed"
        assert (tmp_path / "effects").read_text().split() == ["refund:ch_1"]
        a.store.close()
        b.store.close()

    asyncio.run(go())
