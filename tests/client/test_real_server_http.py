"""The sync client over real HTTP: the ``tether serve`` app (support chat on SQLite) served by
uvicorn on a loopback port, driven through a client tool and an approval, and every run's
stream resumed from every point it could have been dropped at."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.fake_server import serving_app
from tests.serve.serve_helpers import EXAMPLE, KEYS, ring
from tether.client import Client, Options, PermissionDeniedError, Reconnect
from tether.serve.app import create_app
from tether.serve.server import Server
from tether.sessions.loader import load_definition
from tether.sim.episode import environment_for
from tether.sim.scenario import load_scenario
from tether.store.sqlite import SQLiteStore

REFUND_LARGE = "The espresso machine from order ch_0003 arrived broken. Please refund it."


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """The support chat behind the real app, on uvicorn, on a loopback port."""
    env = environment_for(load_scenario(EXAMPLE / "world.yaml"), seed=1)
    server = Server(SQLiteStore(tmp_path / "runs.db"),
                    [load_definition(EXAMPLE / "agent.yaml")], ring(), env=env, poll_s=0.05)
    with serving_app(create_app(server)) as base:
        yield base


def client(url: str, who: str) -> Client:
    options = Options(reconnect=Reconnect(attempts=3), rng=random.Random(5))
    return Client(url, KEYS[who][0], options=options, sleep=lambda s: None)


def test_a_refund_through_client_tool_and_approval_over_http(url: str) -> None:
    """A large refund: the client tool is answered with continue_execution, the customer's
    key may not approve, the supervisor's does, and the turn's stream then finishes; every
    point of the run's stream resumes to exactly its suffix."""
    with client(url, "ada") as ada, client(url, "grace") as grace:
        ada.create_session("support-chat", session_id="http1",
                           variables={"customer_name": "Ada"})
        first = list(ada.fire("http1", "user-message", {"text": REFUND_LARGE}))
        asked = next(e.data for e in first if e.type == "client_tool.requested")
        run_id = asked["execution_id"]
        held = list(ada.continue_execution(run_id, {asked["call_id"]: {"confirmed": True}}))
        assert held[-1].type == "run.waiting"
        with pytest.raises(PermissionDeniedError):
            ada.approve(run_id)
        assert grace.approve(run_id, note="fine").run_id == run_id
        last = max(e.id for e in held if e.id is not None)
        tail = list(ada.events(run_id, after=last))
        assert tail[-1].type == "turn.finished" and tail[-1].data["status"] == "completed"

        journaled = [e for e in first + held + tail if e.id is not None]
        ids = [e.id for e in journaled]
        assert ids == sorted(set(ids)), "no id twice across the run's three streams"
        for after in [0, *ids[:-1]]:
            # A stream ends at its first terminal event: resumed inside the first stream it
            # ends at that stream's run.waiting, inside the second at the approval's.
            expected: list[int | None] = []
            for event in (e for e in journaled if e.id is not None and e.id > after):
                expected.append(event.id)
                if event.terminal:
                    break
            resumed = [e.id for e in ada.events(run_id, after=after) if e.id is not None]
            assert resumed == expected
        assert [t.number for t in ada.session("http1").turns] == [1]


def test_a_stream_until_finished_carries_a_decision_made_by_another_key(url: str) -> None:
    """events(until_finished=True) on a turn held for approval yields run.waiting and goes
    on: the supervisor's approval, made from another client while the stream is open, and
    the turn's end arrive on it, and it stops at turn.finished."""
    import threading

    with client(url, "ada") as ada, client(url, "grace") as grace:
        ada.create_session("support-chat", session_id="http2")
        first = list(ada.fire("http2", "user-message", {"text": REFUND_LARGE}))
        asked = next(e.data for e in first if e.type == "client_tool.requested")
        run_id = asked["execution_id"]
        held = list(ada.continue_execution(run_id, {asked["call_id"]: {"confirmed": True}}))
        assert held[-1].type == "run.waiting"
        seen: list[str] = []
        for event in ada.events(run_id, after=max(e.id for e in held if e.id is not None),
                                until_finished=True):
            seen.append(event.type)
            if event.type == "run.waiting":
                threading.Thread(target=grace.approve, args=(run_id,)).start()
        assert seen[0] == "run.waiting" and seen[-1] == "turn.finished"
        assert "approval.decided" in seen
