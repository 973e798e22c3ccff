"""A real `tether serve` (uvicorn in a subprocess, on a free loopback port) driven over HTTP:
the support-chat example through five turns, and the server SIGKILLed and restarted under a
client that reconnects with Last-Event-ID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tether.serve.sse import parse_frames
from tether.serve.stream import ui_events
from tether.serve.tenants import KeyRing
from tether.store.sqlite import SQLiteStore

from .serve_helpers import EXAMPLE

CLI = [sys.executable, "-c", "from tether.cli import app; app()"]
Event = tuple[int | None, str, Any]


def make_key(keys: Path, tenant: str, principal: str, *roles: str) -> str:
    """A new key in the keys file (as `tether serve keys add` makes one; tested there)."""
    ring = KeyRing.load(keys)
    key = f"tk_{tenant}-{principal}-{len(ring):04d}-0123456789abcdef"
    ring.add(key, tenant=tenant, principal=principal, roles=roles)
    ring.save(keys)
    return key


@contextmanager
def tether_serve(tmp: Path, keys: Path, agent: Path = EXAMPLE / "agent.yaml",
                 world: Path | None = EXAMPLE / "world.yaml", host: str = "127.0.0.1",
                 port: int = 0) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`tether serve` of ``agent`` on ``port`` (0: a free loopback port): (process, base
    URL). A server restarted on the address it had takes its unfinished turns back at once
    (its default worker name is that address)."""
    args = [*CLI, "serve", str(agent), "--store", str(tmp / "runs.db"), "--keys", str(keys),
            "--port", str(port), "--host", host]
    if world is not None:
        args += ["--world", str(world), "--seed", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GATE_DIR": str(tmp)})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://"), (
            line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, line.split()[1]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60.0,
                                 headers={"Authorization": f"Bearer {key}"})

    def json(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, path, json=body)

    def stream(self, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None, stop_at: str | None = None) -> list[Event]:
        """The events of a streaming answer (until it ends, or until an event of type
        ``stop_at``, when the connection is dropped)."""
        events: list[Event] = []
        with self.http.stream(method, path, json=body, headers=headers or {}) as response:
            assert response.status_code == 200, response.read()
            for frame in parse_frames(response.iter_text()):
                events.append((None if frame.id is None else int(frame.id), frame.event,
                               json.loads(frame.data)))
                if frame.event == stop_at:
                    break
        return events

    def say(self, sid: str, text: str, **kw: Any) -> list[Event]:
        return self.stream("POST", f"/v1/sessions/{sid}/triggers/user-message",
                           {"input": {"text": text}}, **kw)

    def answer(self, events: list[Event], confirmed: bool = True) -> list[Event]:
        asked = next(d for _, t, d in events if t == "client_tool.requested")
        return self.stream("POST", f"/v1/executions/{asked['execution_id']}/continue",
                           {"results": {asked["call_id"]: {"confirmed": confirmed}}})


def test_support_chat_over_http_through_five_turns(tmp_path: Path) -> None:
    """Five turns against a real server: a read, a refund confirmed in the app (continue), a
    refund confirmed then approved by the supervisor's key (the customer's is refused), the
    plan-changed trigger, and a question answered from the new plan."""
    keys = tmp_path / "keys.yaml"
    ada, grace = make_key(keys, "shop", "ada", "customer"), make_key(keys, "shop", "grace",
                                                                     "supervisor")
    with tether_serve(tmp_path, keys) as (_, base):
        me, boss = Api(base, ada), Api(base, grace)
        created = me.json("POST", "/v1/sessions", {"agent": "support-chat", "session_id":
                                                   "ada", "variables": {"customer_name": "Ada"}})
        assert created.status_code == 201, created.text
        first = me.say("ada", "Hi, how much did I pay for order ch_0001?")
        assert first[-1][1] == "turn.finished" and "49.99" in first[-1][2]["answer"]

        second = me.answer(me.say("ada", "The headphones from order ch_0002 stopped working. "
                                  "Please refund them."))
        assert second[-1][2]["status"] == "completed"

        held = me.answer(me.say("ada", "The espresso machine from order ch_0003 arrived "
                                "broken. Please refund it."))
        assert held[-1][1] == "run.waiting"
        assert any(t == "approval.requested" for _, t, _ in held)
        run_id = me.json("GET", "/v1/approvals").json()["approvals"][0]["run_id"]
        assert me.json("POST", f"/v1/approvals/{run_id}/approve", {}).status_code == 403
        decided = boss.json("POST", f"/v1/approvals/{run_id}/approve", {"note": "fine"})
        assert decided.status_code == 200 and decided.json()["by"] == "grace@shop"
        last = max(i for i, _, _ in held if i is not None)
        rest = me.stream("GET", f"/v1/executions/{run_id}/events?after={last}")
        assert rest[-1][1] == "turn.finished" and rest[-1][2]["status"] == "completed"

        plan = me.stream("POST", "/v1/sessions/ada/triggers/plan-changed",
                         {"input": {"plan": "pro"}})
        assert plan[-1][1] == "turn.finished"
        fifth = me.say("ada", "Thanks! Which plan am I on now?")
        assert "pro" in fifth[-1][2]["answer"]

        view = me.json("GET", "/v1/sessions/ada").json()
        assert [t["status"] for t in view["turns"]] == ["completed"] * 5
        assert view["variables"]["plan"] == "pro"
        assert view["resources"]["order_notes"]["version"] == 2
        assert [r["status"] for r in me.json("GET", "/v1/runs").json()["runs"]] == [
            "completed"] * 5
        me.http.close()
        boss.http.close()


GATED_AGENT = """
name: gated
instructions: Refund what is asked.
model: {provider: scripted, script: "gated.py:script"}
tools: ["gated.py:tools"]
"""
GATED = """
import asyncio, os
from pathlib import Path
from pydantic import BaseModel
import tether
from tether.models import call, reply

class Refund(BaseModel):
    order_id: str

@tether.tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
async def refund(ctx: tether.ToolContext, args: Refund) -> dict[str, str]:
    \"\"\"Refund an order; the provider deduplicates by key (the effects file).\"\"\"
    where = Path(os.environ["GATE_DIR"])
    (where / "entered").write_text(ctx.idempotency_key or "")
    while not (where / "open").exists():
        await asyncio.sleep(0.02)
    effects = where / "effects"
    done = set(effects.read_text().split()) if effects.exists() else set()
    if ctx.idempotency_key not in done:
        with effects.open("a") as f:
            f.write(f"{ctx.idempotency_key}\\n")
    return {"refunded": args.order_id}

def tools(env):
    return [refund]

def script(request):
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return call("refund", {"order_id": "ch_1"})
    return reply(f"done: {results[-1].content}")
"""


def test_server_sigkilled_mid_turn_resumes_it_and_the_client_sees_each_event_once(
        tmp_path: Path) -> None:
    """The server is SIGKILLed while a turn's write is under way (its intent journaled, the
    handler not returned) and the client's stream is open; a new server on the same store
    resumes the turn, and the client, reconnecting with Last-Event-ID, gets the rest: every
    journal-backed event of the run exactly once, in order, ending with turn.finished, and
    the write took effect once."""
    agent, keys = _gated(tmp_path), tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada")
    with tether_serve(tmp_path, keys, agent, None) as (proc, base):
        port = int(base.rsplit(":", 1)[1])
        me = Api(base, ada)
        me.json("POST", "/v1/sessions", {"agent": "gated", "session_id": "ada"})
        before = me.say("ada", "Refund ch_1 please", stop_at="tool.started")
        assert (tmp_path / "entered").exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        me.http.close()
    run_id = before[0][2]["run_id"]
    store = SQLiteStore(tmp_path / "runs.db")
    assert store.get_run(run_id).status.value == "running"  # type: ignore[union-attr]
    store.close()
    (tmp_path / "open").write_text("")
    with tether_serve(tmp_path, keys, agent, None, port=port) as (_, base):
        me = Api(base, ada)
        last = max(i for i, _, _ in before if i is not None)
        after = me.stream("GET", f"/v1/executions/{run_id}/events",
                          headers={"Last-Event-ID": str(last)})
        seen = before + after
        assert seen[-1][1] == "turn.finished" and seen[-1][2]["status"] == "completed"
        ids = [i for i, _, _ in seen if i is not None]
        assert ids == sorted(set(ids)) == _journal_ids(tmp_path, run_id)
        assert (tmp_path / "effects").read_text().split() == ["refund:ch_1"]
        view = me.json("GET", "/v1/sessions/ada").json()
        assert [t["status"] for t in view["turns"]] == ["completed"]
        me.http.close()


def test_a_turn_waiting_for_the_app_is_continued_on_a_restarted_server(
        tmp_path: Path) -> None:
    """A turn waits for the app's answer when the server is SIGKILLed; the app continues it
    on the next server, and its stream goes on from there with no id seen twice."""
    keys = tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada")
    with tether_serve(tmp_path, keys) as (proc, base):
        me = Api(base, ada)
        me.json("POST", "/v1/sessions", {"agent": "support-chat", "session_id": "ada"})
        waiting = me.say("ada", "The headphones from order ch_0002 stopped working. "
                         "Please refund them.")
        assert waiting[-1][1] == "run.waiting"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        me.http.close()
    with tether_serve(tmp_path, keys) as (_, base):
        me = Api(base, ada)
        done = me.answer(waiting)
        assert done[-1][1] == "turn.finished" and done[-1][2]["status"] == "completed"
        run_id = waiting[0][2]["run_id"]
        ids = [i for i, _, _ in waiting + done if i is not None]
        assert ids == sorted(set(ids)) == _journal_ids(tmp_path, run_id)
        view = me.json("GET", "/v1/sessions/ada").json()
        assert [t["status"] for t in view["turns"]] == ["completed"]
        me.http.close()


def _journal_ids(tmp: Path, run_id: str) -> list[int]:
    """The ids every journal-backed UI event of the run has, read from the store itself."""
    store = SQLiteStore(tmp / "runs.db")
    try:
        return [e.id for e in ui_events(store.read(run_id), run_id=run_id) if e.id is not None]
    finally:
        store.close()


def _gated(tmp: Path) -> Path:
    agent = tmp / "gated.yaml"
    agent.write_text(GATED_AGENT)
    (tmp / "gated.py").write_text(GATED)
    return agent


def test_a_dropped_connection_does_not_cancel_the_turn(tmp_path: Path) -> None:
    """The client drops its stream while the turn's write is under way; the turn goes on in
    the server, and a reconnect with Last-Event-ID gets the rest, each event once."""
    agent, keys = _gated(tmp_path), tmp_path / "keys.yaml"
    ada = make_key(keys, "shop", "ada")
    with tether_serve(tmp_path, keys, agent, None) as (_, base):
        me = Api(base, ada)
        me.json("POST", "/v1/sessions", {"agent": "gated", "session_id": "ada"})
        before = me.say("ada", "Refund ch_1 please", stop_at="tool.started")
        assert (tmp_path / "entered").exists()
        (tmp_path / "open").write_text("")  # only now may the write finish
        run_id = before[0][2]["run_id"]
        last = max(i for i, _, _ in before if i is not None)
        after = me.stream("GET", f"/v1/executions/{run_id}/events?after={last}")
        assert after[-1][1] == "turn.finished" and after[-1][2]["status"] == "completed"
        ids = [i for i, _, _ in before + after if i is not None]
        assert ids == sorted(set(ids)) == _journal_ids(tmp_path, run_id)
        me.http.close()


def test_binding_beyond_loopback_prints_a_loud_banner(tmp_path: Path) -> None:
    """`tether serve --host 0.0.0.0` warns on stderr that the API is reachable from other
    machines; on loopback it does not."""
    keys = tmp_path / "keys.yaml"
    make_key(keys, "shop", "ada")
    warnings = []
    for host in ("0.0.0.0", "127.0.0.1"):
        with tether_serve(tmp_path, keys, host=host) as (proc, _):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            assert proc.stderr is not None
            warnings.append("WARNING" in proc.stderr.read())
    assert warnings == [True, False]
